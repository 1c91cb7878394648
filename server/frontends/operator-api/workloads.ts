import { z } from "@hono/zod-openapi";
import { ErrorSchema, WorkloadEntrySchema, workloadEntryView } from "../http/views.ts";
import {
  type ApiContext,
  actorOf,
  body,
  cursor,
  durationString,
  IdParam,
  json,
  limit,
  page,
  route,
  seconds,
} from "./openapi.ts";

const selectors = z
  .array(z.string().min(1).max(4200))
  .min(1)
  .max(16)
  .openapi({
    description:
      "all of them must match: unix:uid:N, unix:gid:N, unix:path:/abs, unix:sha256:<64 lowercase hex>, systemd:unit:NAME",
    example: ["unix:uid:1000"],
  });
const audiences = z.array(z.string().min(1).max(256)).max(16).openapi({ description: "audiences a JWT-SVID may name" });

/** Workload registration entries (SPIFFE): which workload, on which devices, gets which SPIFFE ID. */
export function workloadRoutes({ api, authority }: ApiContext): void {
  const view = (e: Parameters<typeof workloadEntryView>[0]) => workloadEntryView(e, authority.config.trustDomain);

  api.openapi(
    route({
      method: "post",
      path: "/workloads",
      operationId: "workload.register",
      summary: "Register a workload entry (operator)",
      description:
        "Name one parent: a device, a profile (its devices), or a device-id prefix. The SPIFFE ID is spiffe://<td>/device/<id>/workload/<name>, or spiffe://<td>/workload/<name> with fleetWide. The devices it applies to are told at once (MQTT command workloads-changed).",
      request: {
        ...body(
          z.strictObject({
            device: z.string().min(1).max(129).optional(),
            profile: z.string().min(1).max(32).optional(),
            devicePrefix: z.string().min(1).max(64).optional(),
            name: z.string().min(1).max(255),
            selectors,
            ttl: durationString
              .optional()
              .openapi({ description: "SVID TTL, default 1h; at most the profile's maximum" }),
            jwtAudiences: audiences.optional(),
            fleetWide: z.boolean().optional(),
          }),
        ),
      },
      responses: {
        201: json(WorkloadEntrySchema, "registered"),
        404: json(ErrorSchema, "no such device"),
        409: json(ErrorSchema, "an entry with this name exists for this parent"),
      },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const entry = await authority.workloads.register(actorOf(c), { ...b, ttl: seconds(b.ttl) });
      return c.json(view(entry), 201);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/workloads",
      operationId: "workload.list",
      summary: "List workload entries; with device, the entries that apply to it",
      request: {
        query: z.object({ device: z.string().min(1).max(160).optional(), cursor, limit }),
      },
      responses: { 200: json(page(WorkloadEntrySchema, "WorkloadEntryPage"), "entries, by id") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const p = await authority.workloads.list(actorOf(c), q);
      return c.json({ items: p.items.map(view), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/workloads/{id}",
      operationId: "workload.show",
      summary: "One workload entry",
      request: { params: IdParam },
      responses: { 200: json(WorkloadEntrySchema, "the entry"), 404: json(ErrorSchema, "no such entry") },
    }),
    async (c) => c.json(view(await authority.workloads.show(actorOf(c), c.req.valid("param").id)), 200),
  );

  api.openapi(
    route({
      method: "patch",
      path: "/workloads/{id}",
      operationId: "workload.update",
      summary: "Change an entry's selectors, TTL or JWT audiences (operator)",
      description: "New selectors revoke the SVIDs issued under the old ones (superseded).",
      request: {
        params: IdParam,
        ...body(
          z.strictObject({
            selectors: selectors.optional(),
            ttl: durationString.optional(),
            jwtAudiences: audiences.optional(),
          }),
        ),
      },
      responses: { 200: json(WorkloadEntrySchema, "changed"), 404: json(ErrorSchema, "no such entry") },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const entry = await authority.workloads.update(actorOf(c), c.req.valid("param").id, {
        ...b,
        ttl: seconds(b.ttl),
      });
      return c.json(view(entry), 200);
    },
  );

  api.openapi(
    route({
      method: "delete",
      path: "/workloads/{id}",
      operationId: "workload.delete",
      summary: "Delete a workload entry; its SVIDs are revoked (cessationOfOperation) (operator)",
      request: { params: IdParam },
      responses: { 200: json(WorkloadEntrySchema, "deleted"), 404: json(ErrorSchema, "no such entry") },
    }),
    async (c) => c.json(view(await authority.workloads.delete(actorOf(c), c.req.valid("param").id)), 200),
  );
}
