import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import * as x509 from "@peculiar/x509";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FederationFetcher, type FederationTarget } from "../../server/adapters/node/bundle-fetcher.ts";
import { SqliteStorage } from "../../server/adapters/storage/sqlite-storage.ts";
import { Authority } from "../../server/authority/authority.ts";
import type { Scheduler } from "../../server/authority/responders.ts";
import type { SpiffeBundle } from "../../server/authority/trust-bundles.ts";
import { toPem } from "../../server/pki/pem.ts";
import { crypto, type Harness, harness } from "../support/fixtures.ts";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

interface Issued {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

async function makeCa(name: string): Promise<Issued> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  return { cert, keys };
}

async function makeLeaf(ca: Issued, sans: x509.JsonGeneralName[]): Promise<Issued> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=bundle endpoint",
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + 86_400_000),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ALG,
    extensions: [new x509.SubjectAlternativeNameExtension(sans), new x509.BasicConstraintsExtension(false)],
  });
  return { cert, keys };
}

async function keyPem(keys: CryptoKeyPair): Promise<string> {
  return toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey)));
}

/** A scheduler that only records what was asked (the test drives refreshes itself). */
class RecordingScheduler implements Scheduler {
  readonly after_: number[] = [];
  every() {
    return { cancel: () => undefined };
  }
  after(ms: number) {
    this.after_.push(ms);
    return { cancel: () => undefined };
  }
}

/** A real HTTPS bundle endpoint whose answer the test sets. */
class Endpoint {
  server!: Server;
  body: string | Uint8Array = "";
  contentLength = true;
  url = "";
  async start(leaf: Issued): Promise<void> {
    this.server = createServer({ key: await keyPem(leaf.keys), cert: leaf.cert.toString("pem") }, (_req, res) => {
      const headers: Record<string, string | number> = { "content-type": "application/json" };
      if (this.contentLength) headers["content-length"] = Buffer.byteLength(this.body);
      res.writeHead(200, headers);
      res.end(this.body);
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}/bundle`;
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** A foreign trust domain's bundle: its root as x509-svid, a JWT key. */
async function foreignBundle(root: Issued, sequence: number, hint: number): Promise<SpiffeBundle> {
  const jwt = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const j = await crypto.subtle.exportKey("jwk", jwt.publicKey);
  const r = await crypto.subtle.exportKey("jwk", await root.cert.publicKey.export(crypto));
  return {
    keys: [
      {
        kty: "EC",
        crv: "P-256",
        x: r.x,
        y: r.y,
        use: "x509-svid",
        x5c: [Buffer.from(root.cert.rawData).toString("base64")],
      },
      { kty: "EC", crv: "P-256", x: j.x, y: j.y, use: "jwt-svid", kid: "k1" },
    ],
    spiffe_sequence: sequence,
    spiffe_refresh_hint: hint,
  };
}

describe("federation: fetching foreign bundles over HTTPS", () => {
  let h: Harness;
  let ca: Issued;
  let endpoint: Endpoint;
  let scheduler: RecordingScheduler;
  let logs: { level: string; msg: string; fields: Record<string, unknown> }[];
  let target: FederationTarget;

  beforeEach(async () => {
    ca = await makeCa("Other Web CA");
    endpoint = new Endpoint();
    await endpoint.start(await makeLeaf(ca, [{ type: "ip", value: "127.0.0.1" }]));
    target = { trustDomain: "other.org", bundleEndpointUrl: endpoint.url, profile: "https_web" };
    h = await harness({ config: { trustDomain: "example.org", federation: [target] } });
    scheduler = new RecordingScheduler();
    logs = [];
  });
  afterEach(async () => {
    await endpoint.stop();
    await h.close();
  });

  const fetcher = (authority = h.authority, caPem: string | null = ca.cert.toString("pem")) =>
    new FederationFetcher({
      authority,
      targets: [target],
      caFiles: caPem ? new Map([["other.org", caPem]]) : new Map(),
      scheduler,
      log: (level, msg, fields) => logs.push({ level, msg, fields }),
    });

  it("stores a good bundle and fetches again at its refresh hint, bounded to [30 s, 1 d]", async () => {
    const good = await foreignBundle(ca, 7, 120);
    endpoint.body = JSON.stringify(good);
    expect(await fetcher().refresh(target)).toBe(120_000);
    const held = await h.authority.trustBundles.federated();
    expect(held["other.org"]).toEqual(good);
    endpoint.body = JSON.stringify({ ...good, spiffe_refresh_hint: 1 });
    expect(await fetcher().refresh(target)).toBe(30_000);
    endpoint.body = JSON.stringify({ ...good, spiffe_refresh_hint: 10_000_000 });
    expect(await fetcher().refresh(target)).toBe(86_400_000);
    const audit = await h.storage.listAudit({ action: "spiffe.federated_bundle_updated", limit: 10 });
    expect(audit.length).toBe(3);
  });

  it("never replaces the good copy with a bad one, and tries again sooner", async () => {
    const good = await foreignBundle(ca, 1, 300);
    endpoint.body = JSON.stringify(good);
    await fetcher().refresh(target);
    const bad = [
      "not json",
      JSON.stringify({ keys: [] }),
      JSON.stringify({ ...good, keys: [{ ...good.keys[1], x: good.keys[0]?.x, y: "AAAA" }] }),
      JSON.stringify({ ...good, keys: [{ ...good.keys[0], x5c: undefined }] }),
      JSON.stringify({ ...good, keys: [{ ...good.keys[1], kid: undefined }] }),
      JSON.stringify({ ...good, spiffe_sequence: -1 }),
    ];
    const f = fetcher();
    for (const [i, body] of bad.entries()) {
      endpoint.body = body;
      expect(await f.refresh(target)).toBe(Math.min(86_400, 30 * 2 ** i) * 1000);
      expect((await h.authority.trustBundles.federated())["other.org"]).toEqual(good);
    }
    expect(logs.filter((l) => l.level === "warn").every((l) => l.fields.invalid === true)).toBe(true);
  });

  it("refuses an answer over 1 MiB, announced or not", async () => {
    const good = await foreignBundle(ca, 1, 300);
    endpoint.body = JSON.stringify(good);
    await fetcher().refresh(target);
    const huge = JSON.stringify({ ...good, padding: "x".repeat(1024 * 1024) });
    for (const contentLength of [true, false]) {
      endpoint.contentLength = contentLength;
      endpoint.body = huge;
      await fetcher().refresh(target);
      expect(logs.at(-1)?.fields.error).toMatch(/larger than 1048576 bytes/);
      expect((await h.authority.trustBundles.federated())["other.org"]).toEqual(good);
    }
  });

  it("https_web trusts only the CA it is given (or the system's)", async () => {
    endpoint.body = JSON.stringify(await foreignBundle(ca, 1, 300));
    await fetcher(h.authority, null).refresh(target);
    expect(logs.at(-1)?.fields.error).toMatch(/self-signed|unable to verify|certificate/i);
    expect(await h.authority.trustBundles.federated()).toEqual({});
  });

  it("a restart keeps the copy held and fetches it when it is due, not at once", async () => {
    endpoint.body = JSON.stringify(await foreignBundle(ca, 1, 600));
    await fetcher().refresh(target);
    // Another process over the same database (a restart).
    const storage = SqliteStorage.open(`${h.dir}/edgeid.db`);
    try {
      const authority = new Authority({ ...h.deps, storage });
      expect(Object.keys(await authority.trustBundles.federated())).toEqual(["other.org"]);
      h.clock.advance(100);
      scheduler.after_.length = 0;
      await fetcher(authority).start();
      expect(scheduler.after_).toEqual([500_000]);
    } finally {
      await storage.close();
    }
  });

  it("https_spiffe: the endpoint must be an X.509-SVID of the configured ID chaining to the foreign bundle", async () => {
    const spiffeRoot = await makeCa("Other SPIFFE root");
    const good = await foreignBundle(spiffeRoot, 3, 300);
    await endpoint.stop();
    endpoint = new Endpoint();
    await endpoint.start(await makeLeaf(spiffeRoot, [{ type: "url", value: "spiffe://other.org/bundle-endpoint" }]));
    endpoint.body = JSON.stringify(good);
    const spiffeTarget = (id: string): FederationTarget => ({
      trustDomain: "other.org",
      bundleEndpointUrl: endpoint.url,
      profile: "https_spiffe",
      endpointSpiffeId: id,
      trustBundle: spiffeRoot.cert.toString("pem"),
    });
    target = spiffeTarget("spiffe://other.org/someone-else");
    await fetcher().refresh(target);
    expect(logs.at(-1)?.fields.error).toMatch(/not spiffe:\/\/other.org\/someone-else/);
    expect(await h.authority.trustBundles.federated()).toEqual({});
    target = spiffeTarget("spiffe://other.org/bundle-endpoint");
    await fetcher().refresh(target);
    expect((await h.authority.trustBundles.federated())["other.org"]).toEqual(good);
    // Once a copy is held, it (not the initial trustBundle) authenticates the endpoint: an
    // endpoint that is not an SVID of the roots held is refused although the ID matches.
    const impostorRoot = await makeCa("Impostor root");
    await endpoint.stop();
    endpoint = new Endpoint();
    await endpoint.start(await makeLeaf(impostorRoot, [{ type: "url", value: "spiffe://other.org/bundle-endpoint" }]));
    endpoint.body = JSON.stringify(await foreignBundle(impostorRoot, 4, 300));
    target = {
      ...spiffeTarget("spiffe://other.org/bundle-endpoint"),
      bundleEndpointUrl: endpoint.url,
      trustBundle: impostorRoot.cert.toString("pem"),
    };
    await fetcher().refresh(target);
    expect(logs.at(-1)?.fields.error).toMatch(/certificate|verify|signature/i);
    expect((await h.authority.trustBundles.federated())["other.org"]).toEqual(good);
  });
});
