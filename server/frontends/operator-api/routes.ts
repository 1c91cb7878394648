import { createRoute, OpenAPIHono, type RouteConfig, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { type Actor, requireRole } from "../../authority/actor.ts";
import { decideEnrollment } from "../../authority/approvals.ts";
import { recordDenial } from "../../authority/audit.ts";
import { verifyAuditChain } from "../../authority/audit-chain.ts";
import type { Authority } from "../../authority/authority.ts";
import { getCommand, issueCommands, listCommands, OPERATOR_COMMANDS } from "../../authority/commands.ts";
import { caFor } from "../../authority/deps.ts";
import { resolveProfile } from "../../authority/enroll.ts";
import { AuthorityError, badRequest } from "../../authority/errors.ts";
import {
  fleetCounts,
  getCertificate,
  issueTokens,
  listDeviceEvents,
  listDevices,
  listEnrollments,
  listTokens,
  readAudit,
  revokeToken,
  showDevice,
} from "../../authority/fleet.ts";
import { type FleetAuditOptions, runFleetAudit } from "../../authority/fleet-audit.ts";
import { bindIdevid, decodeCertificateText } from "../../authority/idevid-binding.ts";
import { expiringReport, setDeviceMetadata } from "../../authority/lifecycle.ts";
import { decodeCsrText, issueWithGeneratedKey, signForDevice } from "../../authority/operator-issue.ts";
import { authenticateOperator, createOperator, listOperators, revokeOperator } from "../../authority/operators.ts";
import { REVOCATION_REASONS, reinstateDevice, revokeCertificate, revokeDevice } from "../../authority/revoke.ts";
import { batchDeviceIds } from "../../authority/tokens.ts";
import { isDuration, parseDuration } from "../../config/duration.ts";
import { toPem } from "../../pki/pem.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import { MAX_BRIDGED_MESSAGES, type MessageOutcome } from "../../ports/fleet-link.ts";
import { STATUS } from "../http/errors.ts";
import type { FleetApi } from "../http/fleet-api.ts";
import {
  AuditEventSchema,
  auditView,
  CertificateSchema,
  CommandSchema,
  certificateView,
  commandView,
  DeviceDetailSchema,
  DeviceEventSchema,
  DeviceIdevidSchema,
  DeviceSchema,
  deviceDetailView,
  deviceEventView,
  deviceIdevidView,
  deviceView,
  EnrollmentSchema,
  ErrorSchema,
  ExpiringSchema,
  enrollmentView,
  expiringView,
  FleetAuditSchema,
  fleetAuditView,
  MetadataSchema,
  metadataView,
  OperatorSchema,
  operatorView,
  TokenSchema,
  tokenView,
} from "../http/views.ts";
import { parseDeviceTopic } from "../mqtt/topics.ts";

export interface OperatorApiDeps {
  authority: Authority;
  peer: (c: Context) => PeerInfo;
  maxBodyBytes: number;
  /** The fleet loop, where one runs: audits also publish their findings on MQTT. */
  fleet?: FleetApi;
}

type Env = { Variables: { actor: Actor; refusal: string; peer: PeerInfo; action: string } };

export const API_BASE = "/api/v1";
const MAX_BATCH = 10_000;

const durationString = z
  .string()
  .max(32)
  .refine(isDuration, "a duration such as 30d, 72h or 15m")
  .openapi({ example: "7d" });

const limit = z.coerce.number().int().min(1).max(1000).optional().openapi({ example: 100 });
const cursor = z.string().max(512).optional().openapi({ description: "nextCursor of the previous page" });
const reason = z.enum(Object.keys(REVOCATION_REASONS) as [keyof typeof REVOCATION_REASONS]);

const page = <T extends z.ZodType>(item: T, name: string) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() }).openapi(name);

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { "application/json": { schema } },
  description,
});

const errors = {
  400: json(ErrorSchema, "invalid request"),
  401: json(ErrorSchema, "no, unknown, expired or revoked operator token"),
  403: json(ErrorSchema, "the token's role does not allow this"),
};

/**
 * A route with the API's security scheme and error responses. Its operationId is
 * also the action name of its audit records.
 */
function route<R extends RouteConfig & { operationId: string }>(r: R) {
  const action: MiddlewareHandler<Env> = async (c, next) => {
    c.set("action", r.operationId);
    await next();
  };
  return createRoute({
    ...r,
    middleware: [action],
    security: [{ bearer: [] }],
    responses: { ...errors, ...r.responses },
  });
}

const body = <T extends z.ZodType>(schema: T) => ({
  body: { content: { "application/json": { schema } }, required: true },
});

const pathId = z.string().min(1).max(160);
const IdParam = z.object({ id: pathId });
/** DNS names and IP addresses an operator declares for a device. */
const NamesSchema = z
  .strictObject({
    dns: z.array(z.string().min(1).max(253)).max(64).optional(),
    ip: z.array(z.string().min(1).max(45)).max(64).optional(),
  })
  .openapi({ description: "DNS names and IP addresses declared for the device; its certificates carry them" });
const SerialParam = z.object({ serial: pathId.openapi({ description: "hex serial number" }) });

/**
 * The operator API: JSON under /api/v1, bearer operator tokens with roles; the
 * OpenAPI document at /api/v1/openapi.json is generated from these route definitions.
 * Each handler decodes, calls one authority verb (which checks the role), encodes.
 */
export function operatorApi(deps: OperatorApiDeps): OpenAPIHono<Env> {
  const { authority } = deps;
  const core = authority.deps;
  const trustDomain = core.config.trustDomain;

  /** Every refusal: audited, and answered with a JSON error body. */
  const deny = async (c: Context<Env>, action: string, e: unknown): Promise<Response> => {
    if (!(e instanceof AuthorityError) || e.code === "internal") throw e instanceof AuthorityError ? (e.cause ?? e) : e;
    c.set("refusal", e.reason);
    const actor = c.get("actor");
    await recordDenial(
      core,
      {
        action,
        actor: actor?.id ?? "anonymous",
        remote: deps.peer(c).remoteAddress,
        deviceId:
          c.req.param("id") && (action.startsWith("device.") || action === "certificate.sign")
            ? c.req.param("id")
            : null,
      },
      e,
    );
    const headers: Record<string, string> = { "cache-control": "no-store" };
    if (e.code === "unauthenticated") headers["www-authenticate"] = 'Bearer realm="edgeid operator API"';
    const issues = (e.cause as { issues?: { path: string; message: string }[] } | undefined)?.issues;
    return c.json(
      { error: { code: e.reason, message: e.publicMessage, ...(issues ? { issues } : {}) } },
      STATUS[e.code],
      headers,
    );
  };

  const api = new OpenAPIHono<Env>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const issues = result.error.issues.map((i) => ({ path: i.path.join(".") || "(body)", message: i.message }));
      const first = issues[0];
      const err = badRequest("invalid_request", first ? `${first.path}: ${first.message}` : "invalid request");
      (err as { cause?: unknown }).cause = { issues };
      const ctx = c as Context<Env>;
      return deny(ctx, ctx.get("action") ?? "api.request", err);
    },
  }).basePath(API_BASE);

  api.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "An operator token (edo_…) from `edgeid init` or POST /api/v1/operators",
  });

  api.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "edgeid operator API",
      version: "1",
      description: "Fleet inventory, revocation, approvals, bootstrap tokens and the audit trail.",
    },
  });

  // Authentication, body limits and media type for everything but the document.
  api.use("*", async (c, next) => {
    if (c.req.path === `${API_BASE}/openapi.json`) return next();
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
    try {
      c.set("actor", await authenticateOperator(core, m?.[1], deps.peer(c).remoteAddress));
    } catch (e) {
      return deny(c, "api.authenticate", e);
    }
    if (c.req.method === "POST") {
      const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
      if (type !== "application/json") {
        return deny(
          c,
          "api.request",
          new AuthorityError("unsupported_media_type", "Content-Type must be application/json", "wrong_content_type"),
        );
      }
    }
    return next();
  });
  api.use(
    "*",
    bodyLimit({
      maxSize: deps.maxBodyBytes,
      onError: (c) =>
        deny(
          c as Context<Env>,
          "api.request",
          new AuthorityError("payload_too_large", `body exceeds ${deps.maxBodyBytes} bytes`, "payload_too_large"),
        ),
    }),
  );

  // Verbs throw typed errors; they are audited and answered here, under the route's action.
  api.onError(async (err, c) => {
    const ctx = c as Context<Env>;
    const action = ctx.get("action") ?? "api.request";
    // hono's JSON validator: a body that is not JSON at all.
    if (err instanceof HTTPException && err.status === 400) {
      return deny(ctx, action, badRequest("malformed_json", "body is not valid JSON"));
    }
    return deny(ctx, action, err);
  });

  const actorOf = (c: Context<Env>) => c.get("actor");

  api.openapi(
    route({
      method: "get",
      path: "/whoami",
      operationId: "whoami",
      summary: "The operator this token belongs to",
      responses: { 200: json(z.object({ actor: z.string(), role: z.string() }), "the caller") },
    }),
    (c) => c.json({ actor: actorOf(c).id, role: actorOf(c).role }, 200),
  );

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
    async (c) => {
      return c.json({ devices: await fleetCounts(core, actorOf(c)) }, 200);
    },
  );

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
      const p = await listDevices(core, actorOf(c), {
        status: q.status,
        profile: q.profile,
        gateway: q.gateway,
        expiringWithin: q.expiringWithin === undefined ? undefined : parseDuration(q.expiringWithin),
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
      const d = await showDevice(core, actorOf(c), c.req.valid("param").id);
      return c.json(deviceDetailView(d, trustDomain, core.clock.now()), 200);
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
      const b = c.req.valid("json");
      const r = await revokeDevice(core, {
        deviceId: c.req.valid("param").id,
        reason: b.reason,
        status: b.decommission ? "decommissioned" : "revoked",
        cascade: b.cascade,
        actor: actorOf(c),
      });
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
      const d = await reinstateDevice(core, {
        deviceId: c.req.valid("param").id,
        note: c.req.valid("json").note,
        actor: actorOf(c),
      });
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
      const b = c.req.valid("json");
      const binding = await bindIdevid(core, actorOf(c), {
        deviceId: c.req.valid("param").id,
        ...decodeCertificateText(b.certificate),
        ...(b.profile ? { profile: b.profile } : {}),
      });
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
      const p = await listDeviceEvents(core, actorOf(c), c.req.valid("param").id, c.req.valid("query"));
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
      const m = await setDeviceMetadata(core, actorOf(c), c.req.valid("param").id, c.req.valid("json"));
      return c.json(metadataView(m), 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/devices/{id}/certificates",
      operationId: "certificate.sign",
      summary: "Issue for an appliance with no EST client: sign its CSR, or make its key (operator)",
      description:
        "With csr (PEM or base64 DER) the request is checked as at enrollment: the profile's key policy, names decided by the server (CN = device id, the SPIFFE URI), a key no other device holds. With generateKey: true the server makes the key (profiles with serverKeygen only) and returns it once, PKCS#8 PEM; it is not stored. The device is created if new.",
      request: {
        params: IdParam,
        ...body(
          z
            .strictObject({
              profile: z.string().min(1).max(32),
              csr: z.string().min(1).max(16_384).optional(),
              generateKey: z.literal(true).optional(),
              names: NamesSchema.optional(),
              validity: durationString
                .optional()
                .openapi({ description: "shorter than the profile's validity, which is the maximum" }),
            })
            .refine((b) => (b.csr === undefined) !== (b.generateKey === undefined), "give csr or generateKey: true"),
        ),
      },
      responses: {
        201: json(
          z
            .object({
              deviceId: z.string(),
              serial: z.string(),
              notAfter: z.string(),
              certificate: z.string(),
              chain: z.string(),
              privateKey: z.string().optional(),
            })
            .openapi("SignedCertificate"),
          "issued: the certificate and the chain up to the root, PEM (and the key, when the server made it)",
        ),
        409: json(ErrorSchema, "the device holds a certificate of another profile"),
      },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const deviceId = c.req.valid("param").id;
      const validity = b.validity === undefined ? undefined : parseDuration(b.validity);
      const issued = b.generateKey
        ? await issueWithGeneratedKey(core, actorOf(c), { deviceId, profile: b.profile, names: b.names, validity })
        : await signForDevice(core, actorOf(c), {
            deviceId,
            profile: b.profile,
            csr: decodeCsrText(b.csr ?? ""),
            names: b.names,
            validity,
          });
      const privateKey = "privateKey" in issued ? toPem("PRIVATE KEY", issued.privateKey as Uint8Array) : undefined;
      return c.json(
        {
          deviceId: issued.deviceId,
          serial: issued.serial,
          notAfter: issued.notAfter.toISOString(),
          certificate: toPem("CERTIFICATE", issued.certificate),
          chain: caFor(core, resolveProfile(core, b.profile))
            .chain.map((d) => toPem("CERTIFICATE", d))
            .join(""),
          ...(privateKey ? { privateKey } : {}),
        },
        201,
        { "cache-control": "no-store" },
      );
    },
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
      const p = await expiringReport(core, actorOf(c), {
        within: parseDuration(q.within),
        cursor: q.cursor,
        limit: q.limit,
      });
      return c.json({ items: p.items.map(expiringView), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/commands",
      operationId: "command.create",
      summary: "Send a command (rotate, ca-update) to one device or a filtered set of active devices",
      description:
        "The commands are queued and published over MQTT (edgeid/v1/devices/<id>/cmd/<command>); each device's cmd-result closes its command. Name one device, a filter (profile, expiringWithin), or all: true.",
      request: {
        ...body(
          z.strictObject({
            command: z.enum(OPERATOR_COMMANDS),
            deviceId: z.string().max(129).optional(),
            profile: z.string().max(32).optional(),
            expiringWithin: durationString.optional(),
            all: z.boolean().optional(),
          }),
        ),
      },
      responses: {
        202: json(
          z
            .object({ batchId: z.string(), command: z.string(), count: z.number(), opIds: z.array(z.string()) })
            .openapi("CommandBatch"),
          "queued",
        ),
        404: json(ErrorSchema, "no such device"),
      },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const r = await issueCommands(core, actorOf(c), b.command, {
        deviceId: b.deviceId,
        profile: b.profile,
        expiringWithin: b.expiringWithin === undefined ? undefined : parseDuration(b.expiringWithin),
        all: b.all,
      });
      return c.json(r, 202);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/commands",
      operationId: "command.list",
      summary: "Commands and their results",
      request: {
        query: z.strictObject({
          deviceId: z.string().max(129).optional(),
          batchId: z.string().max(64).optional(),
          state: z.enum(["queued", "sent", "succeeded", "failed", "expired"]).optional(),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(CommandSchema, "CommandPage"), "a page of commands") },
    }),
    async (c) => {
      const p = await listCommands(core, actorOf(c), c.req.valid("query"));
      return c.json({ items: p.items.map(commandView), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/commands/{id}",
      operationId: "command.show",
      summary: "One command by op id",
      request: { params: IdParam },
      responses: { 200: json(CommandSchema, "the command"), 404: json(ErrorSchema, "no such command") },
    }),
    async (c) => c.json(commandView(await getCommand(core, actorOf(c), c.req.valid("param").id)), 200),
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
      const opts: FleetAuditOptions = {
        expiringWithin: b.expiringWithin === undefined ? undefined : parseDuration(b.expiringWithin),
        notSeenFor: b.notSeenFor === undefined ? undefined : parseDuration(b.notSeenFor),
        cloneWindow: b.cloneWindow === undefined ? undefined : parseDuration(b.cloneWindow),
        limit: b.limit,
      };
      const report = deps.fleet
        ? await deps.fleet.audit(actorOf(c), opts)
        : await runFleetAudit(core, actorOf(c), { ...opts, afterChunk: () => new Promise((r) => setTimeout(r, 0)) });
      return c.json(fleetAuditView(report), 200);
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
          z.object({ outcomes: z.array(z.enum(["accepted", "ignored", "malformed", "oversized", "dropped"])) }),
          "one outcome per message, in order",
        ),
        503: json(ErrorSchema, "this server does not ingest device messages"),
      },
    }),
    async (c) => {
      requireRole(actorOf(c), "operator");
      const receive = deps.fleet?.receive?.bind(deps.fleet);
      if (!receive) {
        return c.json({ error: { code: "unavailable", message: "this server does not ingest device messages" } }, 503);
      }
      const outcomes: MessageOutcome[] = [];
      for (const m of c.req.valid("json").messages) {
        const deviceId = parseDeviceTopic(m.topic)?.deviceId ?? "";
        outcomes.push(
          await receive({
            deviceId,
            topic: m.topic,
            payload: new TextEncoder().encode(m.payload),
            // The broker (with its session state) is elsewhere: as for any external broker.
            currentConnection: true,
          }),
        );
      }
      return c.json({ outcomes }, 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/certificates/{serial}",
      operationId: "certificate.show",
      summary: "One certificate by serial (hex)",
      request: { params: SerialParam },
      responses: { 200: json(CertificateSchema, "the certificate"), 404: json(ErrorSchema, "no such certificate") },
    }),
    async (c) => {
      return c.json(certificateView(await getCertificate(core, actorOf(c), c.req.valid("param").serial)), 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/certificates/{serial}/revoke",
      operationId: "certificate.revoke",
      summary: "Revoke one certificate (the device keeps its status)",
      request: { params: SerialParam, ...body(z.strictObject({ reason })) },
      responses: {
        200: json(CertificateSchema, "revoked"),
        404: json(ErrorSchema, "no such certificate"),
        409: json(ErrorSchema, "already revoked or expired"),
      },
    }),
    async (c) => {
      const cert = await revokeCertificate(core, {
        serial: c.req.valid("param").serial,
        reason: c.req.valid("json").reason,
        actor: actorOf(c),
      });
      return c.json(certificateView(cert), 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/tokens",
      operationId: "token.list",
      summary: "List bootstrap tokens (never their secrets)",
      request: {
        query: z.strictObject({
          deviceId: z.string().max(129).optional(),
          state: z.enum(["unused", "used", "revoked", "expired"]).optional(),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(TokenSchema, "TokenPage"), "a page of tokens") },
    }),
    async (c) => {
      const p = await listTokens(core, actorOf(c), c.req.valid("query"));
      const now = core.clock.now();
      return c.json({ items: p.items.map((t) => tokenView(t, now)), nextCursor: p.nextCursor }, 200);
    },
  );

  const CreatedTokenSchema = z
    .object({
      deviceId: z.string(),
      profile: z.string(),
      tokenId: z.string(),
      token: z.string(),
      expiresAt: z.string(),
    })
    .openapi("CreatedToken", { description: "The secret is in this response only; it is stored as a hash." });

  api.openapi(
    route({
      method: "post",
      path: "/tokens",
      operationId: "token.create",
      summary: "Create bootstrap tokens: one device, a list, or a numbered batch",
      request: {
        ...body(
          z
            .strictObject({
              deviceId: z.string().max(129).optional(),
              deviceIds: z.array(z.string().max(64)).min(1).max(MAX_BATCH).optional(),
              count: z.number().int().min(1).max(MAX_BATCH).optional(),
              devicePrefix: z.string().min(1).max(48).optional(),
              start: z.number().int().min(0).max(1_000_000_000).optional(),
              profile: z.string().max(32).optional(),
              ttl: durationString.optional(),
              names: NamesSchema.optional(),
            })
            .refine(
              (b) =>
                [b.deviceId !== undefined, b.deviceIds !== undefined, b.count !== undefined].filter(Boolean).length ===
                  1 && (b.count === undefined) === (b.devicePrefix === undefined),
              "give exactly one of deviceId, deviceIds, or count with devicePrefix",
            ),
        ),
      },
      responses: { 201: json(z.object({ tokens: z.array(CreatedTokenSchema) }), "created") },
    }),
    async (c) => {
      const b = c.req.valid("json");
      let deviceIds = b.deviceIds ?? (b.deviceId !== undefined ? [b.deviceId] : []);
      if (b.count !== undefined && b.devicePrefix !== undefined) {
        deviceIds = batchDeviceIds(b.devicePrefix, b.start ?? 1, b.count);
      }
      const created = await issueTokens(core, actorOf(c), {
        deviceIds,
        profile: b.profile,
        ttl: b.ttl === undefined ? undefined : parseDuration(b.ttl),
        names: b.names,
      });
      return c.json({ tokens: created.map((t) => ({ ...t, expiresAt: t.expiresAt.toISOString() })) }, 201, {
        "cache-control": "no-store",
      });
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/tokens/{id}/revoke",
      operationId: "token.revoke",
      summary: "Revoke an unused bootstrap token",
      request: { params: IdParam, ...body(z.strictObject({})) },
      responses: {
        200: json(TokenSchema, "revoked"),
        404: json(ErrorSchema, "no such token"),
        409: json(ErrorSchema, "already used or revoked"),
      },
    }),
    async (c) => {
      return c.json(tokenView(await revokeToken(core, actorOf(c), c.req.valid("param").id), core.clock.now()), 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/enrollments",
      operationId: "enrollment.list",
      summary: "Enrollment requests that wait for (or had) an operator's decision",
      request: {
        query: z.strictObject({
          status: z.enum(["pending", "approved", "rejected", "issued"]).optional(),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(EnrollmentSchema, "EnrollmentPage"), "a page of requests") },
    }),
    async (c) => {
      const p = await listEnrollments(core, actorOf(c), c.req.valid("query"));
      return c.json({ items: p.items.map(enrollmentView), nextCursor: p.nextCursor }, 200);
    },
  );

  for (const decision of ["approve", "reject"] as const) {
    api.openapi(
      route({
        method: "post",
        path: `/enrollments/{id}/${decision}`,
        operationId: `enrollment.${decision}`,
        summary:
          decision === "approve"
            ? "Approve: the device's next retry gets its certificate"
            : "Reject: the device's next retry is refused",
        request: { params: IdParam, ...body(z.strictObject({ reason: z.string().max(500).optional() })) },
        responses: {
          200: json(EnrollmentSchema, "decided"),
          404: json(ErrorSchema, "no such request"),
          409: json(ErrorSchema, "already decided"),
        },
      }),
      async (c) => {
        const p = await decideEnrollment(core, {
          id: c.req.valid("param").id,
          decision,
          reason: c.req.valid("json").reason,
          actor: actorOf(c),
        });
        return c.json(enrollmentView(p), 200);
      },
    );
  }

  api.openapi(
    route({
      method: "get",
      path: "/audit",
      operationId: "audit.list",
      summary: "The audit trail, newest first",
      request: {
        query: z.strictObject({
          deviceId: z.string().max(129).optional(),
          actor: z.string().max(128).optional(),
          action: z.string().max(64).optional(),
          cursor,
          limit,
        }),
      },
      responses: { 200: json(page(AuditEventSchema, "AuditPage"), "a page of audit records") },
    }),
    async (c) => {
      const p = await readAudit(core, actorOf(c), c.req.valid("query"));
      return c.json({ items: p.items.map(auditView), nextCursor: p.nextCursor }, 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/audit/verify",
      operationId: "audit.verify",
      summary: "Check the audit hash chain from the first record to the newest",
      responses: {
        200: json(
          z
            .object({
              ok: z.boolean(),
              records: z.number(),
              head: z.string().nullable(),
              lastId: z.number().nullable(),
              broken: z.object({ id: z.number(), problem: z.string() }).optional(),
            })
            .openapi("AuditChainReport"),
          "the report (ok: false names the first broken record)",
        ),
      },
    }),
    async (c) => {
      // Between pages of a long log the server answers other requests.
      const report = await verifyAuditChain(core, actorOf(c), () => new Promise((r) => setTimeout(r, 0)));
      return c.json(report, 200);
    },
  );

  api.openapi(
    route({
      method: "get",
      path: "/operators",
      operationId: "operator.list",
      summary: "Operators (admin)",
      responses: { 200: json(z.object({ items: z.array(OperatorSchema) }), "all operators") },
    }),
    async (c) => {
      return c.json({ items: (await listOperators(core, actorOf(c))).map(operatorView) }, 200);
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/operators",
      operationId: "operator.create",
      summary: "Create an operator and its token (admin); the token is in this response only",
      request: {
        ...body(
          z.strictObject({
            name: z.string().min(1).max(64),
            role: z.enum(["admin", "operator", "auditor"]),
            ttl: durationString.optional(),
          }),
        ),
      },
      responses: {
        201: json(OperatorSchema.extend({ token: z.string() }).openapi("CreatedOperator"), "created"),
      },
    }),
    async (c) => {
      const b = c.req.valid("json");
      const r = await createOperator(core, {
        name: b.name,
        role: b.role,
        ttl: b.ttl === undefined ? undefined : parseDuration(b.ttl),
        actor: actorOf(c),
      });
      return c.json({ ...operatorView(r.operator), token: r.token }, 201, { "cache-control": "no-store" });
    },
  );

  api.openapi(
    route({
      method: "post",
      path: "/operators/{id}/revoke",
      operationId: "operator.revoke",
      summary: "Revoke an operator's token (admin)",
      request: { params: IdParam, ...body(z.strictObject({})) },
      responses: {
        200: json(OperatorSchema, "revoked"),
        404: json(ErrorSchema, "no such operator"),
        409: json(ErrorSchema, "already revoked, or the last admin"),
      },
    }),
    async (c) => {
      return c.json(operatorView(await revokeOperator(core, c.req.valid("param").id, actorOf(c))), 200);
    },
  );

  // A route, not notFound(): a mounted app's notFound handler is its parent's.
  api.all("*", (c) =>
    deny(c as Context<Env>, "api.request", new AuthorityError("not_found", "no such API endpoint", "unknown_endpoint")),
  );
  return api;
}
