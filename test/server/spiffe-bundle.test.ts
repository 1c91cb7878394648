import * as x509 from "@peculiar/x509";
import { importJWK } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SealedJwtKeyVault } from "../../server/adapters/sealed-jwt-key-vault.ts";
import { createApp } from "../../server/app.ts";
import type { SpiffeBundle } from "../../server/authority/trust-bundles.ts";
import { createPublicApp } from "../../server/public-app.ts";
import {
  createToken,
  crypto,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  makeTestCa,
  peer,
  T0,
} from "../support/fixtures.ts";

let h: Harness;
let client: Uint8Array[] | undefined;
let app: ReturnType<typeof createApp>;
let publicApp: ReturnType<typeof createPublicApp>;

beforeEach(async () => {
  h = await harness({
    config: {
      trustDomain: "example.org",
      spiffe: { refreshHint: "2m" },
      federation: [{ trustDomain: "other.org", bundleEndpointUrl: "https://other.test/bundle", profile: "https_web" }],
    },
  });
  h.deps.jwtKeys = new SealedJwtKeyVault(crypto, "a Worker secret of at least thirty-two characters");
  client = undefined;
  const logger = { request: () => undefined, error: () => undefined };
  app = createApp({
    authority: h.authority,
    responders: h.responders,
    peer: () => ({ remoteAddress: "192.0.2.1", ...(client ? { client: { chain: client } } : {}) }),
    logger,
  });
  publicApp = createPublicApp({
    authority: h.authority,
    responders: h.responders,
    peer: () => ({ remoteAddress: "192.0.2.2" }),
    logger,
  });
});
afterEach(() => h.close());

async function enrolled(deviceId: string): Promise<Uint8Array> {
  const token = await createToken(h, deviceId);
  return (
    await h.authority.enroll({
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: deviceId, password: token },
      peer: peer(),
    })
  ).certificate;
}

describe("the SPIFFE bundle", () => {
  it("is a JWK Set: one x509-svid key per trust anchor, one jwt-svid key per published JWT key, sequence and hint", async () => {
    await h.authority.trustBundles.rotate();
    const bundle = await h.authority.trustBundles.bundle();
    expect(Object.keys(bundle).sort()).toEqual(["keys", "spiffe_refresh_hint", "spiffe_sequence"]);
    expect(bundle.spiffe_refresh_hint).toBe(120);
    expect(bundle.spiffe_sequence).toBe(1);
    const x509Keys = bundle.keys.filter((k) => k.use === "x509-svid");
    const jwtKeys = bundle.keys.filter((k) => k.use === "jwt-svid");
    expect(x509Keys.length).toBe(1);
    expect(jwtKeys.length).toBe(2);
    for (const k of jwtKeys) {
      expect(Object.keys(k).sort()).toEqual(["crv", "kid", "kty", "use", "x", "y"]);
      expect([k.kty, k.crv]).toEqual(["EC", "P-256"]);
    }
    const anchor = x509Keys[0] as NonNullable<(typeof x509Keys)[0]>;
    expect(Object.keys(anchor).sort()).toEqual(["crv", "kty", "use", "x", "x5c", "y"]);
    expect(anchor.kid).toBeUndefined();
  });

  it("x5c holds the root the X.509-SVIDs chain to (standard base64 DER), and its x, y are that root's key", async () => {
    const bundle = await h.authority.trustBundles.bundle();
    const anchor = bundle.keys.find((k) => k.use === "x509-svid");
    expect(anchor?.x5c?.length).toBe(1);
    const der = Uint8Array.from(Buffer.from(anchor?.x5c?.[0] as string, "base64"));
    expect(der).toEqual(h.ca.root);
    expect(anchor?.x5c?.[0]).toMatch(/^[A-Za-z0-9+/]+=*$/);
    // The JWK's public parameters and the certificate's key are the same key.
    const fromCert = await new x509.X509Certificate(der).publicKey.export(crypto);
    const certJwk = await crypto.subtle.exportKey("jwk", fromCert);
    expect([anchor?.x, anchor?.y]).toEqual([certJwk.x, certJwk.y]);
    await importJWK({ kty: "EC", crv: anchor?.crv, x: anchor?.x, y: anchor?.y }, "ES256");
  });

  it("is served at /spiffe/bundle on the public listener and over HTTPS, as JSON cached for the refresh hint", async () => {
    await h.authority.trustBundles.rotate();
    const expected = await h.authority.trustBundles.bundle();
    for (const a of [publicApp, app]) {
      const r = await a.request("http://bundle.test/spiffe/bundle");
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toBe("application/json");
      expect(r.headers.get("cache-control")).toBe("public, max-age=120");
      expect((await r.json()) as SpiffeBundle).toEqual(expected);
    }
  });

  it("a new revision changes the sequence the route serves", async () => {
    const before = (await (await publicApp.request("http://b.test/spiffe/bundle")).json()) as SpiffeBundle;
    expect(before.spiffe_sequence).toBe(0);
    expect(before.keys.filter((k) => k.use === "jwt-svid")).toEqual([]);
    await h.authority.trustBundles.rotate();
    const after = (await (await publicApp.request("http://b.test/spiffe/bundle")).json()) as SpiffeBundle;
    expect(after.spiffe_sequence).toBe(1);
  });

  it("a new trust anchor is a new revision too, audited with its reason", async () => {
    await h.authority.trustBundles.rotate();
    const other = await makeTestCa(T0, "Next");
    h.deps.ca = other.issuing;
    const r = await h.authority.trustBundles.rotate();
    expect(r).toEqual({ created: [], removed: [], sequence: 2 });
    const bundle = await h.authority.trustBundles.bundle();
    expect(bundle.keys.find((k) => k.use === "x509-svid")?.x5c).toEqual([Buffer.from(other.root).toString("base64")]);
    const [changed] = await h.storage.listAudit({ action: "spiffe.bundle_changed", limit: 1 });
    expect(changed?.detail).toEqual({ reason: "trust anchors changed", sequence: 2 });
  });

  it("/workload/v1/bundles gives a device with its current certificate the bundle and the federated ones", async () => {
    await h.authority.trustBundles.rotate();
    const foreign = await h.authority.trustBundles.bundle();
    await h.authority.trustBundles.storeFederated("other.org", "https://other.test/bundle", JSON.stringify(foreign));
    client = [await enrolled("dev-1")];
    const r = await app.request("https://est.test/workload/v1/bundles");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json");
    const body = (await r.json()) as { trustDomain: string; bundle: SpiffeBundle; federated: Record<string, unknown> };
    expect(body.trustDomain).toBe("example.org");
    expect(body.bundle).toEqual(await h.authority.trustBundles.bundle());
    expect(Object.keys(body.federated)).toEqual(["other.org"]);
    expect((body.federated["other.org"] as SpiffeBundle).keys.length).toBe(foreign.keys.length);
  });

  it("/workload/v1/bundles refuses without a certificate, with a revoked one, and is not on the public listener", async () => {
    const none = await app.request("https://est.test/workload/v1/bundles");
    expect(none.status).toBe(403);
    const cert = await enrolled("dev-2");
    const serial = (await h.storage.listCertificates("dev-2"))[0]?.serial as string;
    await h.storage.apply([{ kind: "revokeCertificate", serial, at: h.clock.now(), reason: null }]);
    client = [cert];
    const revoked = await app.request("https://est.test/workload/v1/bundles");
    expect(revoked.status).toBe(403);
    expect(await revoked.text()).toMatch(/revoked/);
    const audit = await h.storage.listAudit({ action: "workload.bundles", limit: 10 });
    expect(audit.map((a) => a.outcome)).toEqual(["denied", "denied"]);
    expect((await publicApp.request("http://b.test/workload/v1/bundles")).status).toBe(404);
  });
});
