import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { JwtKeyFiles } from "../../server/adapters/node/jwt-key-files.ts";
import { SealedJwtKeyVault } from "../../server/adapters/sealed-jwt-key-vault.ts";
import { MAX_JWT_SVID_SECONDS, type SpiffeBundle } from "../../server/authority/trust-bundles.ts";
import { crypto, type Harness, harness } from "../support/fixtures.ts";

const SECRET = "a Worker secret of at least thirty-two characters";
const DAY = 86_400;

let h: Harness;
afterEach(async () => h?.close());

async function setup(spiffe: { jwtKeyLifetime?: string; refreshHint?: string } = {}): Promise<Harness> {
  h = await harness({ config: { trustDomain: "example.org", spiffe } });
  h.deps.jwtKeys = new SealedJwtKeyVault(crypto, SECRET);
  return h;
}

const jwtKids = (b: SpiffeBundle) => b.keys.filter((k) => k.use === "jwt-svid").map((k) => k.kid as string);

async function verify(token: string, bundle: SpiffeBundle, audience: string) {
  // The bundle's jwt-svid keys as a JWK Set for jose, which only takes keys whose `use`
  // is absent or "sig": the SPIFFE `use` is dropped (x509-svid keys are not for JWTs).
  const keys = bundle.keys.filter((k) => k.use === "jwt-svid").map(({ use: _use, ...k }) => k);
  const jwks = createLocalJWKSet({ keys: keys as never });
  return jwtVerify(token, jwks, { audience, algorithms: ["ES256"], currentDate: h.clock.now() });
}

describe("JWT-SVIDs", () => {
  it("signs ES256 tokens with sub, aud, exp, iat that verify against the bundle's jwt-svid keys", async () => {
    await setup();
    await h.authority.trustBundles.rotate();
    const signed = await h.authority.trustBundles.signJwtSvid({
      spiffeId: "spiffe://example.org/workload/api",
      audience: ["db", "cache"],
      ttlSeconds: 600,
    });
    const bundle = await h.authority.trustBundles.bundle();
    const header = decodeProtectedHeader(signed.token);
    expect(header).toEqual({ alg: "ES256", kid: signed.kid, typ: "JWT" });
    const { payload } = await verify(signed.token, bundle, "cache");
    expect(payload).toEqual({
      sub: "spiffe://example.org/workload/api",
      aud: ["db", "cache"],
      iat: h.clock.now().getTime() / 1000,
      exp: h.clock.now().getTime() / 1000 + 600,
    });
    expect(signed.expiresAt.getTime()).toBe(h.clock.now().getTime() + 600_000);
    await expect(verify(signed.token, bundle, "other")).rejects.toThrow(/aud/);
  });

  it("names each key by its RFC 7638 thumbprint", async () => {
    await setup();
    await h.authority.trustBundles.rotate();
    const bundle = await h.authority.trustBundles.bundle();
    const jwtKeys = bundle.keys.filter((k) => k.use === "jwt-svid");
    expect(jwtKeys.length).toBe(2); // the active key and its prepared successor
    for (const k of jwtKeys) {
      expect(k.kid).toBe(await calculateJwkThumbprint({ kty: "EC", crv: "P-256", x: k.x, y: k.y }));
    }
  });

  it("caps the lifetime at one hour and refuses SPIFFE IDs of other trust domains", async () => {
    await setup();
    await h.authority.trustBundles.rotate();
    const signed = await h.authority.trustBundles.signJwtSvid({
      spiffeId: "spiffe://example.org/workload/api",
      audience: ["db"],
      ttlSeconds: 7200,
    });
    expect(signed.expiresAt.getTime() - h.clock.now().getTime()).toBe(MAX_JWT_SVID_SECONDS * 1000);
    await expect(
      h.authority.trustBundles.signJwtSvid({ spiffeId: "spiffe://other.org/x", audience: ["db"], ttlSeconds: 60 }),
    ).rejects.toMatchObject({ code: "bad_request", reason: "spiffe_id_invalid" });
    await expect(
      h.authority.trustBundles.signJwtSvid({ spiffeId: "spiffe://example.org/x", audience: [], ttlSeconds: 60 }),
    ).rejects.toMatchObject({ reason: "audience_invalid" });
  });

  it("refuses to sign before any key was made", async () => {
    await setup();
    await expect(
      h.authority.trustBundles.signJwtSvid({ spiffeId: "spiffe://example.org/x", audience: ["a"], ttlSeconds: 60 }),
    ).rejects.toMatchObject({ reason: "jwt_key_missing" });
  });

  it("rotates: the next key is published a key lifetime before it signs, the old one stays until its tokens expired", async () => {
    await setup({ jwtKeyLifetime: "7d", refreshHint: "5m" });
    const ts = h.authority.trustBundles;
    const first = await ts.rotate();
    expect(first.created.length).toBe(2);
    expect(first.sequence).toBe(1);
    const [k1, k2] = first.created as [string, string];

    // Nothing to do: same set, same sequence, no new revision.
    h.clock.advance(60);
    expect(await ts.rotate()).toEqual({ created: [], removed: [], sequence: 1 });
    const early = await ts.signJwtSvid({ spiffeId: "spiffe://example.org/w", audience: ["a"], ttlSeconds: 3600 });
    expect(early.kid).toBe(k1);

    // Just before k1 retires it still signs; k2 has been in the bundle all along.
    h.clock.advance(7 * DAY - 120);
    const last = await ts.signJwtSvid({ spiffeId: "spiffe://example.org/w", audience: ["a"], ttlSeconds: 3600 });
    expect(last.kid).toBe(k1);
    expect(jwtKids(await ts.bundle())).toEqual([k1, k2]);

    // k2 takes over; the rotation prepares k3 and keeps k1 (its tokens are still valid).
    h.clock.advance(120);
    const second = await ts.rotate();
    expect(second.created.length).toBe(1);
    expect(second.removed).toEqual([]);
    expect(second.sequence).toBe(2);
    const k3 = second.created[0] as string;
    const next = await ts.signJwtSvid({ spiffeId: "spiffe://example.org/w", audience: ["a"], ttlSeconds: 60 });
    expect(next.kid).toBe(k2);
    const bundle = await ts.bundle();
    expect(jwtKids(bundle)).toEqual([k1, k2, k3]);
    expect(bundle.spiffe_sequence).toBe(2);
    // The token k1 signed a minute before it retired still verifies against the bundle.
    expect((await verify(last.token, bundle, "a")).protectedHeader.kid).toBe(k1);

    // One hour after k1 retired, every token it signed has expired: it leaves the bundle.
    h.clock.advance(MAX_JWT_SVID_SECONDS);
    const third = await ts.rotate();
    expect(third).toEqual({ created: [], removed: [k1], sequence: 3 });
    expect(jwtKids(await ts.bundle())).toEqual([k2, k3]);
    expect((await ts.bundle()).spiffe_sequence).toBe(3);

    const actions = (await h.storage.listAudit({ limit: 20 })).map((a) => `${a.action}:${a.detail?.kid}`);
    expect(actions).toEqual(
      expect.arrayContaining([
        `spiffe.jwt_key_created:${k1}`,
        `spiffe.jwt_key_created:${k2}`,
        `spiffe.jwt_key_created:${k3}`,
        `spiffe.jwt_key_removed:${k1}`,
      ]),
    );
  });

  it("after a long stop, makes a key that signs at once and keeps the schedule", async () => {
    await setup({ jwtKeyLifetime: "1d" });
    const ts = h.authority.trustBundles;
    await ts.rotate();
    h.clock.advance(5 * DAY);
    const r = await ts.rotate();
    // Every old key left; one new key signs now and its successor is prepared.
    expect(r.removed.length).toBe(2);
    expect(r.created.length).toBe(2);
    const signed = await ts.signJwtSvid({ spiffeId: "spiffe://example.org/w", audience: ["a"], ttlSeconds: 60 });
    expect(signed.kid).toBe(r.created[0]);
  });

  it("a second process rotating at the same time loses cleanly: one key set, its keys discarded", async () => {
    await setup();
    const other = await harnessOnSameDb();
    const [a, b] = await Promise.all([h.authority.trustBundles.rotate(), other.rotate()]);
    const winners = [a, b].filter((r) => !r.lost);
    expect(winners.length).toBe(1);
    expect((await h.authority.trustBundles.bundle()).keys.filter((k) => k.use === "jwt-svid").length).toBe(2);
  });

  it("keeps private keys on Node as 0600 files encrypted with the CA passphrase", async () => {
    await setup();
    const dir = mkdtempSync(join(tmpdir(), "edgeid-jwt-"));
    try {
      h.deps.jwtKeys = new JwtKeyFiles(dir, "correct horse battery staple", 1000);
      const r = await h.authority.trustBundles.rotate();
      const files = readdirSync(dir).sort();
      expect(files).toEqual(r.created.map((k) => `${k}.key`).sort());
      for (const f of files) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
      const signed = await h.authority.trustBundles.signJwtSvid({
        spiffeId: "spiffe://example.org/w",
        audience: ["a"],
        ttlSeconds: 60,
      });
      await verify(signed.token, await h.authority.trustBundles.bundle(), "a");
      // Another reader with the wrong passphrase cannot use them.
      await expect(new JwtKeyFiles(dir, "wrong passphrase!!", 1000).load(signed.kid)).rejects.toThrow(/passphrase/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a sealed key opens only under its own kid and secret", async () => {
    const vault = new SealedJwtKeyVault(crypto, SECRET);
    const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
    ])) as CryptoKeyPair;
    const sealed = await vault.keep("kid-a", pair.privateKey);
    await expect(vault.load("kid-a", sealed)).resolves.toBeDefined();
    await expect(vault.load("kid-b", sealed)).rejects.toThrow(/does not open/);
    const other = new SealedJwtKeyVault(crypto, `${SECRET}!`);
    await expect(other.load("kid-a", sealed)).rejects.toThrow(/does not open/);
  });
});

/** A second authority over the same database file (another process, as the CLI would be). */
async function harnessOnSameDb() {
  const { SqliteStorage } = await import("../../server/adapters/storage/sqlite-storage.ts");
  const { Authority } = await import("../../server/authority/authority.ts");
  const storage = SqliteStorage.open(join(h.dir, "edgeid.db"));
  const deps = { ...h.deps, storage };
  const authority = new Authority(deps);
  return {
    rotate: async () => {
      try {
        return await authority.trustBundles.rotate();
      } finally {
        await storage.close();
      }
    },
  };
}
