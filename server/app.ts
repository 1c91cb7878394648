import { type Context, Hono } from "hono";
import type { Authority } from "./authority/authority.ts";
import { AuthorityError } from "./authority/errors.ts";
import type { RevocationResponders } from "./authority/responders.ts";
import { dashboardRoutes } from "./frontends/dashboard/routes.tsx";
import { estRoutes } from "./frontends/est/routes.ts";
import type { AppEnv } from "./frontends/http/env.ts";
import { textErrorResponse } from "./frontends/http/errors.ts";
import type { FleetApi } from "./frontends/http/fleet-api.ts";
import { type AppLogger, peerOnce, useErrorHandler, useRequestLog } from "./frontends/http/request-log.ts";
import { operatorApi } from "./frontends/operator-api/routes.ts";
import { pkiRoutes } from "./frontends/pki/routes.ts";
import { scepRoutes } from "./frontends/scep/routes.ts";
import { spiffeBundleRoutes, workloadBundleRoutes } from "./frontends/spiffe/routes.ts";
import { workloadRoutes } from "./frontends/workload/routes.ts";
import { base64url } from "./pki/base64.ts";
import type { PeerInfo } from "./ports/client-identity.ts";

export type { AppLogger, RequestLog } from "./frontends/http/request-log.ts";

export interface AppDeps {
  authority: Authority;
  /** CRL and OCSP, fed by the revocation feed. */
  responders: RevocationResponders;
  /** The fleet loop (audits publish their findings through it; bridged MQTT messages are ingested by it). */
  fleet?: FleetApi;
  /** Prometheus metrics at /metrics (auditor token). */
  metrics?: { render(): Promise<string> };
  /** How this runtime tells who is connected (Node TLS socket, Workers cf.tlsClientAuth). */
  peer: (c: Context) => PeerInfo;
  logger: AppLogger;
  now?: () => number;
  /** Waits `ms` (the refusal tarpit); tests pass one that records instead of waiting. */
  delay?: (ms: number) => Promise<void>;
}

/** Builds the HTTP application from its dependencies; no module-level state. */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const peer = peerOnce(deps.peer);
  useRequestLog(app, {
    peer: deps.peer,
    logger: deps.logger,
    now: deps.now,
    delay: deps.delay,
    tarpitMs: deps.authority.config.limits.refusals.tarpit * 1000,
  });

  app.route(
    "/",
    estRoutes({
      authority: deps.authority,
      peer,
      maxBodyBytes: deps.authority.config.limits.maxBodyBytes,
      // base64 has no '-', so a "--est-…" delimiter line cannot occur inside a part.
      boundary: () =>
        `est-${base64url(deps.authority.deps.crypto.getRandomValues(new Uint8Array(12))).replace(/[-_]/g, "x")}`,
    }),
  );

  app.route("/", pkiRoutes({ authority: deps.authority, responders: deps.responders, peer }));
  // SCEP (RFC 8894) at /scep[/<label>]: on the plain-HTTP public listener (public-app.ts), and here
  // for clients that are given an https URL.
  app.route(
    "/",
    scepRoutes({
      authority: deps.authority,
      peer,
      maxBodyBytes: deps.authority.config.limits.maxBodyBytes,
      crlOf: (ca) => deps.responders.currentCrl(ca)?.der,
    }),
  );
  // The SPIFFE bundle (also on the public listener), and the devices' view of the bundles (mutual TLS).
  app.route("/", spiffeBundleRoutes({ authority: deps.authority, peer }));
  app.route("/", workloadBundleRoutes({ authority: deps.authority, peer }));
  // Workload identity for the device's agent (mutual TLS with the device certificate).
  app.route("/", workloadRoutes({ authority: deps.authority, peer }));
  // The operator API carries its own base path (/api/v1), which its OpenAPI document names.
  app.route(
    "/",
    operatorApi({
      authority: deps.authority,
      peer,
      maxBodyBytes: deps.authority.config.limits.maxBodyBytes,
      fleet: deps.fleet,
    }),
  );

  // The operator dashboard (server-rendered pages under /dashboard, session cookie + CSRF).
  app.route(
    "/",
    dashboardRoutes({
      authority: deps.authority,
      peer,
      maxBodyBytes: deps.authority.config.limits.maxBodyBytes,
      fleet: deps.fleet,
    }),
  );

  // Prometheus: an operator token of any role (Prometheus sends it with `authorization`).
  const metrics = deps.metrics;
  if (metrics) {
    app.get("/metrics", async (c) => {
      const m = /^Bearer\s+(\S+)$/i.exec((c.req.header("authorization") ?? "").trim());
      try {
        deps.authority.refusals.admit({ action: "metrics.scrape", remote: peer(c).remoteAddress });
        await deps.authority.operators.authenticate(m?.[1], peer(c).remoteAddress);
      } catch (err) {
        if (!(err instanceof AuthorityError)) throw err;
        c.set("refusal", err.reason);
        if (err.code === "rate_limited") return textErrorResponse(err);
        await deps.authority.audit.refusal(
          { action: "metrics.scrape", actor: "anonymous", remote: peer(c).remoteAddress },
          err,
        );
        return c.text(`${err.publicMessage}\n`, 401, { "www-authenticate": 'Bearer realm="edgeid metrics"' });
      }
      return c.body(await metrics.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
    });
  }

  app.get("/healthz", (c) => c.text("ok\n"));
  app.notFound((c) => c.text("not found\n", 404));
  useErrorHandler(app, deps.logger);
  return app;
}
