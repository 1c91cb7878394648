/**
 * The SPIFFE bundle on Workers: the Worker makes its JWT keys in D1 (sealed with a key
 * from its secrets) when its isolate starts, and serves `/spiffe/bundle` over HTTPS and,
 * with a public http base, over plain HTTP.
 */
import "reflect-metadata";
import { applyD1Migrations, env } from "cloudflare:test";
import { createLocalJWKSet, jwtVerify } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { SealedJwtKeyVault } from "../../server/adapters/sealed-jwt-key-vault.ts";
import { D1Storage } from "../../server/adapters/storage/d1-storage.ts";
import { type SpiffeBundle, signJwtSvid } from "../../server/authority/trust-bundles.ts";
import worker from "../../server/entry/worker.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { BASE, coreDeps } from "./worker-client.ts";

const HTTP_BASE = BASE.replace(/^https:/, "http:");
const withHttp = { ...env, PUBLIC_HTTP_URL: HTTP_BASE };
const call = (url: string) => worker.fetch(new Request(url), withHttp as never, {});

beforeAll(async () => {
  await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
});

describe("the SPIFFE bundle on Workers", () => {
  it("serves the JWKS over HTTPS and plain HTTP, with the CA root and the JWT keys made in D1", async () => {
    const bundles: SpiffeBundle[] = [];
    for (const base of [BASE, HTTP_BASE]) {
      const r = await call(`${base}/spiffe/bundle`);
      expect(r.status, await r.clone().text()).toBe(200);
      expect(r.headers.get("content-type")).toBe("application/json");
      expect(r.headers.get("cache-control")).toBe("public, max-age=300");
      bundles.push((await r.json()) as SpiffeBundle);
    }
    expect(bundles[1]).toEqual(bundles[0]);
    const bundle = bundles[0] as SpiffeBundle;
    expect(bundle.spiffe_sequence).toBeGreaterThanOrEqual(1);
    expect(bundle.spiffe_refresh_hint).toBe(300);
    const root = pemCertificates(env.CA_CHAIN).at(-1) as Uint8Array;
    const anchor = bundle.keys.find((k) => k.use === "x509-svid");
    expect(anchor?.x5c).toEqual([btoa(String.fromCharCode(...root))]);
    const jwtKeys = bundle.keys.filter((k) => k.use === "jwt-svid");
    expect(jwtKeys.length).toBe(2);

    // The keys' private halves are sealed in D1 and open with the Worker's secret: a token
    // signed with them verifies against the bundle the Worker served.
    const storage = new D1Storage(env.DB, crypto.subtle);
    const rows = await storage.listJwtKeys();
    expect(rows.every((k) => typeof k.sealedKey === "string" && k.sealedKey.startsWith("v1."))).toBe(true);
    const vault = new SealedJwtKeyVault(crypto, env.CA_KEY);
    const signed = await signJwtSvid(coreDeps(storage) as never, (k) => vault.load(k.kid, k.sealedKey), {
      spiffeId: "spiffe://workers.example/workload/w",
      audience: ["svc"],
      ttlSeconds: 300,
    });
    const keys = jwtKeys.map(({ use: _use, ...k }) => k);
    const { payload } = await jwtVerify(signed.token, createLocalJWKSet({ keys: keys as never }), { audience: "svc" });
    expect(payload.sub).toBe("spiffe://workers.example/workload/w");
  });
});
