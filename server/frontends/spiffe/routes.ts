import { type Context, Hono } from "hono";
import { asAuthorityError } from "../../authority/audit.ts";
import type { Authority } from "../../authority/authority.ts";
import type { PeerInfo } from "../../ports/client-identity.ts";
import type { AppEnv } from "../http/env.ts";
import { textErrorResponse } from "../http/errors.ts";

export interface SpiffeDeps {
  authority: Authority;
  peer: (c: Context<AppEnv>) => PeerInfo;
}

const JSON_TYPE = "application/json";

/**
 * The trust domain's SPIFFE bundle endpoint (SPIFFE Trust Domain and Bundle §5.2):
 * `GET /spiffe/bundle`, the JWK Set, to anyone (it is public keys and certificates).
 * Caches may keep it for the refresh hint: a new JWT key is published a key lifetime
 * before it signs, far longer than that.
 */
export function spiffeBundleRoutes(deps: SpiffeDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/spiffe/bundle", async (c) => {
    const bundles = deps.authority.trustBundles;
    const body = JSON.stringify(await bundles.bundle());
    return c.body(body, 200, {
      "content-type": JSON_TYPE,
      "cache-control": `public, max-age=${bundles.refreshHint}`,
    });
  });
  return app;
}

/**
 * The device's view of the bundles (`GET /workload/v1/bundles`, HTTPS listener only):
 * this trust domain's bundle and the federated ones, for the agent's Workload API.
 * Authenticated by the device's current certificate over mutual TLS.
 */
export function workloadBundleRoutes(deps: SpiffeDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/workload/v1/bundles", async (c) => {
    const authority = deps.authority;
    try {
      authority.refusals.admit({ action: "workload.bundles", remote: deps.peer(c).remoteAddress });
    } catch (e) {
      const err = asAuthorityError(e);
      c.set("refusal", err.reason);
      return textErrorResponse(err);
    }
    try {
      const view = await authority.trustBundles.forDevice(deps.peer(c));
      return c.body(JSON.stringify(view), 200, { "content-type": JSON_TYPE, "cache-control": "no-store" });
    } catch (e) {
      const err = asAuthorityError(e);
      c.set("refusal", err.reason);
      return textErrorResponse(err);
    }
  });
  return app;
}
