import { z } from "@hono/zod-openapi";
import {
  DeviceDetailSchema,
  DeviceEventSchema,
  DeviceIdevidSchema,
  DeviceSchema,
  deviceDetailView,
  deviceEventView,
  deviceIdevidView,
  deviceView,
  ErrorSchema,
  MetadataSchema,
  metadataView,
} from "../http/views.ts";
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
  reason,
  route,
  seconds,
} from "./openapi.ts";

/** The inventory and what operators do to one device. */
export function deviceRoutes({ api, authority }: ApiContext): void {
  const trustDomain = authority.config.trustDomain;

  api.openapi(
    route({
      method: "get",
      path: "/devices",
      operationId: "device.list",
      summary: "List devices (keyset pagination)",
      request: {
        query: z.strictObject({
          status: z.enum(["pending", "active", "revoked", "decommissioned"]).optional(),
          profile: z.string().max(32).optional(),
          gateway: z.string().max(64).optional().openapi({ description: "only the appliances this gateway enrolled" }),
          expiringWithin: durationString.optional(),
          after: z.string().max(129).optional().openapi({ description: "continue after this device id (id order)" }),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(DeviceSchema, "DevicePage"), "a page of devices") },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const p = await authority.devices.list(actorOf(c), {
        status: q.status,
        profile: q.profile,
        gateway: q.gateway,
        expiringWithin: seconds(q.expiringWithin),
        afterId: q.after,
        cursor: q.cursor,
        limit: q.limit,
      });
      return c.json({ items: p.items.map((d) => deviceView(d, trustDomain)), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/devices/{id}",
      operationId: "device.show",
      summary: "One device with its certificates, tokens, IDevID binding and recent audit records",
      request: { params: IdParam },
      responses: {
        200: json(DeviceDetailSchema, "the device"),
        404: json(ErrorSchema, "no such device"),
      },
    }),
    async (c) => {
      const d = await authority.devices.show(actorOf(c), c.req.valid("param").id);
      return c.json(deviceDetailView(d, trustDomain, authority.now()), 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/devices/{id}/revoke",
      operationId: "device.revoke",
      summary: "Revoke a device in one step",
      description:
        "Revokes every unexpired certificate (CRL and OCSP reflect it when this returns), voids unused bootstrap tokens and the IDevID binding, closes open enrollment requests. With decommission: true the device is retired rather than revoked (same effect, different status). With cascade: true a gateway's appliances are revoked with it, in the same transaction.",
      request: {
        params: IdParam,
        ...body(z.strictObject({ reason, decommission: z.boolean().optional(), cascade: z.boolean().optional() })),
      },
      responses: {
        200: json(
          z
            .object({
              device: DeviceSchema,
              revokedSerials: z.array(z.string()),
              appliances: z.array(z.string()).optional(),
            })
            .openapi("DeviceRevocation"),
          "revoked",
        ),
        404: json(ErrorSchema, "no such device"),
        409: json(ErrorSchema, "already revoked"),
      },
    }),
    async (c) => {
      const r = await authority.devices.revoke(actorOf(c), c.req.valid("param").id, c.req.valid("json"));
      return c.json(
        {
          device: deviceView(r.device, trustDomain),
          revokedSerials: r.serials,
          ...(r.appliances ? { appliances: r.appliances } : {}),
        },
        200,
      );
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/devices/{id}/reinstate",
      operationId: "device.reinstate",
      summary: "Let a revoked device enroll again (with a new bootstrap token)",
      description:
        "The device becomes pending. Its certificates stay revoked; a revoked manufacturer certificate (IDevID) binding stays revoked.",
      request: { params: IdParam, ...body(z.strictObject({ note: z.string().max(200).optional() })) },
      responses: {
        200: json(DeviceSchema, "reinstated"),
        404: json(ErrorSchema, "no such device"),
        409: json(ErrorSchema, "the device is not revoked"),
      },
    }),
    async (c) => {
      const d = await authority.devices.reinstate(actorOf(c), c.req.valid("param").id, c.req.valid("json").note);
      return c.json(deviceView(d, trustDomain), 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/devices/{id}/idevid",
      operationId: "device.bind-idevid",
      summary: "Bind a manufacturer certificate (IDevID) to a device id before it enrolls with it",
      description:
        'The certificate must chain to the IDevID anchors of the profile (default: the device\'s profile, else device) with the same checks as at enrollment, and name this device id in the profile\'s deviceIdFrom field. The device need not exist yet. Then that IDevID, and no other, may enroll as this id: needed for an id that exists already, and for every id on profiles with "binding": "pre-bound".',
      request: {
        params: IdParam,
        ...body(
          z.strictObject({
            certificate: z
              .string()
              .min(1)
              .max(64 * 1024)
              .openapi({ description: "PEM: the IDevID, then any intermediate CA certificates (or base64 DER)" }),
            profile: z.string().min(1).max(32).optional(),
          }),
        ),
      },
      responses: {
        201: json(DeviceIdevidSchema, "bound"),
        403: json(ErrorSchema, "the token's role does not allow this, or the device is revoked or decommissioned"),
        409: json(ErrorSchema, "the device already has a binding, or the certificate is bound to another device"),
      },
    }),
    async (c) => {
      const binding = await authority.devices.bindIdevid(actorOf(c), c.req.valid("param").id, c.req.valid("json"));
      return c.json(deviceIdevidView(binding), 201);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/devices/{id}/events",
      operationId: "device.events",
      summary: "Events the device reported over MQTT, newest first",
      request: {
        params: IdParam,
        query: z.strictObject({
          before: z.coerce.number().int().min(1).optional().openapi({ description: "nextBefore of the previous page" }),
          limit,
        }),
      },
      responses: {
        200: json(
          z.object({ items: z.array(DeviceEventSchema), nextBefore: z.number().nullable() }).openapi("DeviceEventPage"),
          "a page of events",
        ),
        404: json(ErrorSchema, "no such device"),
      },
    }),
    async (c) => {
      const p = await authority.devices.events(actorOf(c), c.req.valid("param").id, c.req.valid("query"));
      return c.json({ items: p.items.map(deviceEventView), nextBefore: p.nextBefore }, 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/devices/{id}/metadata",
      operationId: "device.metadata",
      summary: "Set a device's owner and location (a string sets, null clears, absent keeps)",
      request: {
        params: IdParam,
        ...body(
          z.strictObject({
            owner: z.string().max(200).nullable().optional(),
            location: z.string().max(200).nullable().optional(),
          }),
        ),
      },
      responses: { 200: json(MetadataSchema, "the device's metadata"), 404: json(ErrorSchema, "no such device") },
    }),
    async (c) => {
      const m = await authority.devices.label(actorOf(c), c.req.valid("param").id, c.req.valid("json"));
      return c.json(metadataView(m), 200);
    },
  );
}
