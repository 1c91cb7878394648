/**
 * The SPIFFE bundle against real `edgeid serve` processes. Server A's `/spiffe/bundle` is
 * fetched with `curl` over the public listener (plain HTTP) and over HTTPS (trusting only
 * A's root) and checked by an independent implementation, Debian's python3-jwt
 * (`jwt.PyJWKSet.from_dict`) with python3-cryptography: every key parses, the x509-svid
 * key's x5c is A's root and carries the same public key, each jwt-svid kid is the RFC 7638
 * thumbprint computed in Python. Server B (another trust domain) federates with A
 * (https_web, trusting A's root through `caFile`): a device of B gets A's bundle under
 * `federated` from `GET /workload/v1/bundles`, over mutual TLS with its certificate.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curl } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import { eventually, makeWorkDir, removeDir, run } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

interface Bundle {
  keys: { kty: string; use: string; kid?: string; x5c?: string[]; x?: string; y?: string; crv?: string }[];
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

const PYTHON_CHECK = `
import base64, hashlib, json, sys
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

doc = json.load(open(sys.argv[1]))
root_pem = open(sys.argv[2], "rb").read()
jwks = jwt.PyJWKSet.from_dict(doc)
out = {"parsed": len(jwks.keys), "x509": [], "jwt": []}
spki = lambda k: k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
roots = [c for c in x509.load_pem_x509_certificates(root_pem)] if hasattr(x509, "load_pem_x509_certificates") else [x509.load_pem_x509_certificate(root_pem)]
for raw, parsed in zip(doc["keys"], jwks.keys):
    if raw["use"] == "x509-svid":
        cert = x509.load_der_x509_certificate(base64.b64decode(raw["x5c"][0]))
        out["x509"].append({
            "sameKeyAsCert": spki(cert.public_key()) == spki(parsed.key),
            "isRoot": any(cert == r for r in roots),
        })
    else:
        canon = json.dumps({k: raw[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
        thumb = base64.urlsafe_b64encode(hashlib.sha256(canon.encode()).digest()).rstrip(b"=").decode()
        out["jwt"].append({"kid": raw["kid"], "thumbprint": thumb, "keyId": parsed.key_id})
print(json.dumps(out))
`;

let work: string;
let a: TestServer;
let b: TestServer;

beforeAll(async () => {
  work = await makeWorkDir("spiffe-bundle");
  const initA = await cliInitDataDir(join(work, "a"), "a.example");
  a = await startServer(initA.dataDir, join(work, "a"));
  const initB = await cliInitDataDir(join(work, "b"), "b.example");
  const configFile = join(initB.dataDir, "edgeid.json");
  const config = JSON.parse(await readFile(configFile, "utf8")) as Record<string, unknown>;
  config.federation = [
    {
      trustDomain: "a.example",
      bundleEndpointUrl: `${a.url}/spiffe/bundle`,
      profile: "https_web",
      caFile: a.rootPemFile,
    },
  ];
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  b = await startServer(initB.dataDir, join(work, "b"));
}, 120_000);

afterAll(async () => {
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await removeDir(work);
});

async function pythonCheck(bundle: string, rootPem: string) {
  const file = join(work, `bundle-${Date.now()}-${Math.random()}.json`);
  await writeFile(file, bundle);
  const script = join(work, "check.py");
  await writeFile(script, PYTHON_CHECK);
  // Debian's interpreter, where python3-jwt is installed (not a pyenv shim).
  const r = await run("/usr/bin/python3", [script, file, rootPem]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as {
    parsed: number;
    x509: { sameKeyAsCert: boolean; isRoot: boolean }[];
    jwt: { kid: string; thumbprint: string; keyId: string }[];
  };
}

describe("the SPIFFE bundle of a real server", () => {
  it("is served over the public listener and HTTPS as the same JWKS, valid for python3-jwt", async () => {
    const plain = await curl(work, `${a.publicHttp}/spiffe/bundle`);
    const tls = await curl(work, `${a.url}/spiffe/bundle`, { cacert: a.rootPemFile });
    for (const r of [plain, tls]) {
      expect(r.status).toBe(200);
      expect(r.headers["content-type"]).toBe("application/json");
      expect(r.headers["cache-control"]).toBe("public, max-age=300");
    }
    expect(JSON.parse(plain.text)).toEqual(JSON.parse(tls.text));
    const bundle = JSON.parse(plain.text) as Bundle;
    expect(bundle.spiffe_sequence).toBe(1);
    expect(bundle.spiffe_refresh_hint).toBe(300);
    expect(bundle.keys.map((k) => k.use).sort()).toEqual(["jwt-svid", "jwt-svid", "x509-svid"]);

    const checked = await pythonCheck(plain.text, a.rootPemFile);
    expect(checked.parsed).toBe(3);
    expect(checked.x509).toEqual([{ sameKeyAsCert: true, isRoot: true }]);
    expect(checked.jwt.length).toBe(2);
    for (const k of checked.jwt) expect([k.kid, k.keyId]).toEqual([k.thumbprint, k.thumbprint]);
  });

  it("keeps its JWT keys in the data directory, encrypted, mode 0600", async () => {
    const bundle = JSON.parse((await curl(work, `${a.publicHttp}/spiffe/bundle`)).text) as Bundle;
    for (const k of bundle.keys.filter((key) => key.use === "jwt-svid")) {
      const file = join(a.dataDir, "jwt", `${k.kid}.key`);
      const text = await readFile(file, "utf8");
      expect(text).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
      const mode = (await run("stat", ["-c", "%a", file])).stdout.trim();
      expect(mode).toBe("600");
    }
  });

  it("federates: server B fetches A's bundle and hands it to its devices under `federated`", async () => {
    const device = await enrollDevice(b, join(work, "b"), "dev-fed-1");
    const aBundle = JSON.parse((await curl(work, `${a.publicHttp}/spiffe/bundle`)).text) as Bundle;
    const view = await eventually(
      async () => {
        const r = await curl(work, `${b.url}/workload/v1/bundles`, {
          cacert: b.rootPemFile,
          cert: device.cert,
          key: device.key,
        });
        expect(r.status, r.text).toBe(200);
        return JSON.parse(r.text) as { trustDomain: string; bundle: Bundle; federated: Record<string, Bundle> };
      },
      (v) => "a.example" in v.federated,
    );
    expect(view.trustDomain).toBe("b.example");
    expect(view.federated["a.example"]).toEqual(aBundle);
    const bBundle = JSON.parse((await curl(work, `${b.publicHttp}/spiffe/bundle`)).text) as Bundle;
    expect(view.bundle).toEqual(bBundle);
    expect(view.bundle).not.toEqual(aBundle);
    // Without a client certificate the device view is refused; on the public listener it does not exist.
    const anonymous = await curl(work, `${b.url}/workload/v1/bundles`, { cacert: b.rootPemFile });
    expect(anonymous.status).toBe(403);
    expect((await curl(work, `${b.publicHttp}/workload/v1/bundles`)).status).toBe(404);
    expect(b.log()).toContain("federated bundle updated");
  });
});
