import { z } from "@hono/zod-openapi";
import { parseDeviceTopic } from "../../authority/mqtt-contract.ts";
import { MAX_BRIDGED_MESSAGES } from "../../ports/fleet-link.ts";
import { yieldToOthers } from "../http/pause.ts";
import { ErrorSchema, ExpiringSchema, expiringView, FleetAuditSchema, fleetAuditView } from "../http/views.ts";
import {
  type ApiContext,
  actorOf,
  body,
  cursor,
  durationString,
  json,
  limit,
  page,
  route,
  seconds,
} from "./openapi.ts";

/** The fleet as a whole: counts, the expiry report, the fleet audit, relayed device messages. */
export function fleetRoutes({ api, authority, fleet }: ApiContext): void {
  api.openapi(
    route({
      method: "get",
      path: "/fleet/summary",
      operationId: "fleet.summary",
      summary: "Device counts by status",
      responses: {
        200: json(z.object({ devices: z.record(z.string(), z.number()) }), "counts"),
      },
    }),
    async (c) => c.json({ devices: await authority.fleet.summary(actorOf(c)) }, 200),
  );

  api.openapi(
    route({
      method: "get",
      path: "/reports/expiring",
      operationId: "report.expiring",
      summary: "Active devices whose certificate expires within a window, soonest first, with owner and location",
      request: {
        query: z.strictObject({ within: durationString, cursor, limit }),
      },
      responses: { 200: json(page(ExpiringSchema, "ExpiringPage"), "a page of the report") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const p = await authority.fleet.expiring(actorOf(c), {
        within: seconds(q.within) as number,
        cursor: q.cursor,
        limit: q.limit,
      });
      return c.json({ items: p.items.map(expiringView), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/fleet/audit",
      operationId: "fleet.audit",
      summary: "Run the fleet audit now (findings are also published on edgeid/v1/fleet/events)",
      description:
        "Checks: certificates expiring (default per profile: 30 days or a quarter of its validity), devices not seen, revoked devices still connected, cloned identities (takeovers of a live connection with the same certificate), reported certificates that are unknown, another device's or revoked, and weak keys.",
      request: {
        ...body(
          z.strictObject({
            expiringWithin: durationString.optional(),
            notSeenFor: durationString.optional(),
            cloneWindow: durationString.optional(),
            limit: z.number().int().min(1).max(10_000).optional(),
          }),
        ),
      },
      responses: { 200: json(FleetAuditSchema, "the report") },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const opts = {
        expiringWithin: seconds(b.expiringWithin),
        notSeenFor: seconds(b.notSeenFor),
        cloneWindow: seconds(b.cloneWindow),
        limit: b.limit,
        afterChunk: yieldToOthers,
      };
      return c.json(fleetAuditView(await authority.fleet.audit(actorOf(c), opts, fleet)), 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/fleet/messages",
      operationId: "fleet.messages",
      summary:
        "Device messages relayed from an MQTT broker (`edgeid bridge`), for a deployment with no broker of its own",
      description:
        "Each message is what the device published on edgeid/v1/devices/<id>/status, /events or /cmd-result/<opId>, as the broker delivered it (its topic ACL decided who may publish where). They are ingested exactly as the fleet loop ingests them from a broker: same validation, same session rule, same deduplication.",
      request: {
        ...body(
          z.strictObject({
            messages: z
              .array(z.strictObject({ topic: z.string().min(1).max(256), payload: z.string().max(256 * 1024) }))
              .min(1)
              .max(MAX_BRIDGED_MESSAGES),
          }),
        ),
      },
      responses: {
        200: json(
          z.object({
            outcomes: z.array(z.enum(["accepted", "ignored", "malformed", "oversized", "dropped", "over_quota"])),
          }),
          "one outcome per message, in order",
        ),
        503: json(ErrorSchema, "this server does not ingest device messages"),
      },
    }),
    async (c) => {
      const messages = c.req.valid("json").messages.map((m) => ({
        deviceId: parseDeviceTopic(m.topic)?.deviceId ?? "",
        topic: m.topic,
        payload: new TextEncoder().encode(m.payload),
        // The broker (with its session state) is elsewhere: as for any external broker.
        currentConnection: true,
      }));
      const outcomes = await authority.fleet.relay(actorOf(c), messages, fleet);
      if (!outcomes) {
        return c.json({ error: { code: "unavailable", message: "this server does not ingest device messages" } }, 503);
      }
      return c.json({ outcomes }, 200);
    },
  );
}
