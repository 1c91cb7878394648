import { type Context, Hono } from "hono";
import type { Authority } from "./authority/authority.ts";
import type { RevocationResponders } from "./authority/responders.ts";
import type { AppEnv } from "./frontends/http/env.ts";
import { type AppLogger, peerOnce, useErrorHandler, useRequestLog } from "./frontends/http/request-log.ts";
import { pkiRoutes } from "./frontends/pki/routes.ts";
import { scepRoutes } from "./frontends/scep/routes.ts";
import { spiffeBundleRoutes } from "./frontends/spiffe/routes.ts";
import type { PeerInfo } from "./ports/client-identity.ts";

/**
 * The public listener's application: plain HTTP, so only what is public and either
 * signed or not secret — CRLs, OCSP, CA certificates (`/pki/…`), SCEP (`/scep/…`), the SPIFFE
 * bundle (`/spiffe/bundle`) — and never anything
 * that authenticates a client or an operator (a token or a session cookie sent here
 * would cross the network in clear). Everything else is 404: EST (RFC 7030 §3.3 requires
 * TLS, `cacerts` included), the operator API, the dashboard, `/metrics`.
 */

export interface PublicRouteDeps {
  authority: Authority;
  responders: RevocationResponders;
  /** The connection's peer (on plain HTTP: the socket's address, never a certificate). */
  peer: (c: Context<AppEnv>) => PeerInfo;
  maxBodyBytes: number;
}

/** One public frontend: its routes, mounted at "/" (each names its own paths). */
export type PublicRoutes = (deps: PublicRouteDeps) => Hono<AppEnv>;

/**
 * What the public listener serves, in order. A frontend added here is reachable over
 * plain HTTP: it must authenticate nobody and answer only public or signed data.
 * SCEP (RFC 8894 §4.1) is HTTP by design: a challenge travels inside a CMS envelope
 * encrypted to the RA, and every answer is signed by it.
 */
export const PUBLIC_ROUTES: readonly PublicRoutes[] = [
  (d) => pkiRoutes({ authority: d.authority, responders: d.responders, peer: d.peer }),
  (d) =>
    scepRoutes({
      authority: d.authority,
      peer: d.peer,
      maxBodyBytes: d.maxBodyBytes,
      crlOf: (ca) => d.responders.currentCrl(ca)?.der,
    }),
  // The SPIFFE bundle (public keys and trust anchors; `https_web` federation may also use the HTTPS listener).
  (d) => spiffeBundleRoutes({ authority: d.authority, peer: d.peer }),
];

export interface PublicAppDeps {
  authority: Authority;
  responders: RevocationResponders;
  /** How this runtime tells the client's address (Node: the socket; Workers: cf-connecting-ip). */
  peer: (c: Context) => PeerInfo;
  logger: AppLogger;
  now?: () => number;
  delay?: (ms: number) => Promise<void>;
}

/**
 * Builds the public application from route modules (default `PUBLIC_ROUTES`), with the
 * HTTPS app's request log, refusal tarpit, body limits and error handling; the refusal
 * budgets are the authority's, shared with the HTTPS listener.
 */
export function createPublicApp(deps: PublicAppDeps, routes: readonly PublicRoutes[] = PUBLIC_ROUTES): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  useRequestLog(app, {
    peer: deps.peer,
    logger: deps.logger,
    now: deps.now,
    delay: deps.delay,
    tarpitMs: deps.authority.config.limits.refusals.tarpit * 1000,
    listener: "public",
  });
  const shared: PublicRouteDeps = {
    authority: deps.authority,
    responders: deps.responders,
    peer: peerOnce(deps.peer),
    maxBodyBytes: deps.authority.config.limits.maxBodyBytes,
  };
  for (const mount of routes) app.route("/", mount(shared));
  // For a load balancer in front of this port: says nothing but that the process answers.
  app.get("/healthz", (c) => c.text("ok\n"));
  app.notFound((c) => c.text("not found\n", 404));
  useErrorHandler(app, deps.logger);
  return app;
}
