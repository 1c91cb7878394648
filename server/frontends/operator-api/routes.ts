import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { Authority } from "../../authority/authority.ts";
import { AuthorityError, badRequest } from "../../authority/errors.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import { retryAfterHeader, STATUS } from "../http/errors.ts";
import type { FleetApi } from "../http/fleet-api.ts";
import { auditRoutes } from "./audit.ts";
import { certificateRoutes } from "./certificates.ts";
import { commandRoutes } from "./commands.ts";
import { deviceRoutes } from "./devices.ts";
import { enrollmentRoutes } from "./enrollments.ts";
import { fleetRoutes } from "./fleet.ts";
import { API_BASE, type ApiContext, type Env } from "./openapi.ts";
import { operatorRoutes } from "./operators.ts";
import { tokenRoutes } from "./tokens.ts";
import { workloadRoutes } from "./workloads.ts";

export interface OperatorApiDeps {
  authority: Authority;
  peer: (c: Context) => PeerInfo;
  maxBodyBytes: number;
  /** The fleet loop, where one runs: audits also publish their findings on MQTT. */
  fleet?: FleetApi;
}

/**
 * The operator API: JSON under /api/v1, bearer operator tokens with roles; the
 * OpenAPI document at /api/v1/openapi.json is generated from the route definitions of
 * each resource's file. Each handler decodes, calls one door of the authority (which
 * checks the role and audits its refusals), encodes.
 */
export function operatorApi(deps: OperatorApiDeps): OpenAPIHono<Env> {
  const { authority } = deps;

  /** Every refusal: audited, and answered with a JSON error body. */
  const deny = async (c: Context<Env>, action: string, e: unknown): Promise<Response> => {
    if (!(e instanceof AuthorityError) || e.code === "internal") throw e instanceof AuthorityError ? (e.cause ?? e) : e;
    c.set("refusal", e.reason);
    const actor = c.get("actor");
    await authority.audit.refusal(
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
    const headers: Record<string, string> = { "cache-control": "no-store", ...retryAfterHeader(e) };
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
      // A client that spent its refusal budget (failed authentications, mostly) waits first.
      authority.refusals.admit({ action: "api.authenticate", remote: deps.peer(c).remoteAddress });
      c.set("actor", await authority.operators.authenticate(m?.[1], deps.peer(c).remoteAddress));
    } catch (e) {
      return deny(c, "api.authenticate", e);
    }
    if (c.req.method === "POST" || c.req.method === "PATCH") {
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

  const context: ApiContext = { api, authority, fleet: deps.fleet };
  for (const routes of [
    operatorRoutes,
    fleetRoutes,
    deviceRoutes,
    certificateRoutes,
    commandRoutes,
    tokenRoutes,
    enrollmentRoutes,
    auditRoutes,
    workloadRoutes,
  ]) {
    routes(context);
  }

  // A route, not notFound(): a mounted app's notFound handler is its parent's.
  api.all("*", (c) =>
    deny(c as Context<Env>, "api.request", new AuthorityError("not_found", "no such API endpoint", "unknown_endpoint")),
  );
  return api;
}
