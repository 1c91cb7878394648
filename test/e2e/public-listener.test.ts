/**
 * The public listener against a real `edgeid serve`: revocation data over plain HTTP
 * (RFC 5280 §4.2.1.13). New certificates name http:// CRL and OCSP URLs at the public
 * listener (read with `openssl x509 -text` and with our parser); `openssl ocsp -url
 * http://…` answers good, then revoked; `openssl verify -crl_check` with a CRL fetched by
 * `curl http://…`. A certificate issued while the public listener was off names https://
 * URLs and still checks over HTTPS. The plain listener serves nothing else (404 for
 * EST, the operator API, the dashboard, metrics — GET and POST — with nothing audited and
 * a token sent there left unused), and `--public-listen off` listens on nothing extra.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRevocationUrls } from "../../server/pki/certificate.ts";
import { parsePem } from "../../server/pki/pem.ts";
import { caFiles } from "./support/ca.ts";
import { cliCreateToken } from "./support/cli.ts";
import { curl, estPost } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import { openssl, opensslCsrNewKeyP256, pkcs7ToPem, writePem, x509Serial, x509Text } from "./support/openssl.ts";
import { EDGEID_BIN, eventually, freePort, makeWorkDir, removeDir, run } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let adminToken: string;
let httpsPort: number;
let server: TestServer;
let chainFile: string;
let issuingFile: string;
/** Issued while the public listener was off: https:// URLs. */
let oldCert: { cert: string; key: string; serial: string };
/** The TCP ports the server with `--public-listen off --mqtt-listen off` listened on. */
let listeningWhenOff: number[];

/**
 * TCP ports in LISTEN state held by process `pid`: its socket descriptors matched against
 * /proc/net/tcp{,6}. Each port once (with `--loops N` every loop holds a socket on it).
 */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1] as string);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXADDR:HEXPORT; st 0A is LISTEN; field 9 is the inode.
      if (f.length > 9 && f[3] === "0A" && inodes.has(f[9] as string)) {
        ports.push(Number.parseInt((f[1] as string).split(":")[1] as string, 16));
      }
    }
  }
  return [...new Set(ports)].sort((a, b) => a - b);
}

/** `openssl ocsp` against `url`: the certificate's status and the whole output. */
async function ocsp(url: string, cert: string) {
  const r = await run("openssl", ["ocsp", "-issuer", issuingFile, "-cert", cert, "-url", url, "-CAfile", chainFile]);
  const out = `${r.stdout}${r.stderr}`;
  expect(out, out).toContain("Response verify OK");
  return { status: /: (good|revoked|unknown)\b/.exec(r.stdout)?.[1], out };
}

const api = (path: string, body?: unknown) =>
  curl(work, `${server.url}/api/v1${path}`, {
    cacert: server.rootPemFile,
    bearer: adminToken,
    ...(body !== undefined ? { method: "POST", body: JSON.stringify(body), contentType: "application/json" } : {}),
  });

/** The CRL at `url` (plain curl: no trust anchor for an http:// URL), as a PEM file. */
async function fetchCrl(url: string, opts: { cacert?: string } = {}): Promise<{ pem: string; text: string }> {
  const r = await curl(work, url, opts);
  expect(r.status).toBe(200);
  expect(r.headers["content-type"]).toBe("application/pkix-crl");
  const der = join(work, `crl-${Date.now()}-${Math.random().toString(16).slice(2)}.der`);
  await writeFile(der, r.body);
  const pem = `${der}.pem`;
  await openssl(["crl", "-inform", "DER", "-in", der, "-out", pem]);
  return { pem, text: (await openssl(["crl", "-in", pem, "-noout", "-text"])).stdout };
}

/** The newest audit record's id, read from the database file the server writes. */
function newestAuditId(): number {
  const db = new Database(join(dataDir, "edgeid.db"), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT max(id) AS id FROM audit_events").get() as { id: number }).id;
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  work = await makeWorkDir("public-listener");
  ({ dataDir, adminToken } = await cliInitDataDir(work, "example.org"));
  // One HTTPS port for both runs: the https:// URLs of the first run stay valid in the second.
  httpsPort = await freePort();
  const off = await startServer(dataDir, work, httpsPort, { publicListen: "off", mqtt: "off" });
  try {
    expect(off.publicHttp).toBeUndefined();
    expect(off.revocationUrl).toBe(off.url);
    listeningWhenOff = listeningPorts(off.process.pid as number);
    oldCert = await enrollDevice(off, work, "before-http-1");
  } finally {
    await off.stop();
  }
  server = await startServer(dataDir, work, httpsPort);
  ({ chainFile, issuingFile } = await caFiles(server, work));
}, 90_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

describe("the public listener", () => {
  it("is named in the start log line, and new certificates point at it with http:// URLs", async () => {
    expect(server.publicHttp).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(server.publicHttp).not.toBe(`http://127.0.0.1:${httpsPort}`);
    expect(server.revocationUrl).toBe(server.publicHttp);
    const listening = server
      .log()
      .split("\n")
      .find((l) => l.includes('"msg":"listening"'));
    expect(JSON.parse(listening as string)).toMatchObject({ url: server.url, publicHttp: server.publicHttp });

    const dev = await enrollDevice(server, work, "http-urls-1");
    const text = await x509Text(dev.cert);
    expect(text).toMatch(
      new RegExp(
        `X509v3 CRL Distribution Points:\\s*\\n\\s*Full Name:\\s*\\n\\s*URI:${server.publicHttp}/pki/crl/issuing-p256\\.crl\\s*\\n`,
      ),
    );
    expect(text).toMatch(
      new RegExp(`Authority Information Access:\\s*\\n\\s*OCSP - URI:${server.publicHttp}/pki/ocsp\\s*\\n`),
    );
    expect(text).not.toContain("URI:https://");
    const der = parsePem(await readFile(dev.cert, "utf8"))[0]?.der as Uint8Array;
    expect(readRevocationUrls(der)).toEqual({
      crl: [`${server.publicHttp}/pki/crl/issuing-p256.crl`],
      ocsp: [`${server.publicHttp}/pki/ocsp`],
    });
  });

  it("answers openssl ocsp over http:// (good, then revoked) and the CRL over http:// for openssl verify -crl_check", async () => {
    const dev = await enrollDevice(server, work, "http-ocsp-1");
    const other = await enrollDevice(server, work, "http-ocsp-2");
    const urls = readRevocationUrls(parsePem(await readFile(dev.cert, "utf8"))[0]?.der as Uint8Array);
    const ocspUrl = urls.ocsp[0] as string;
    const crlUrl = urls.crl[0] as string;
    expect(ocspUrl.startsWith("http://")).toBe(true);

    expect((await ocsp(ocspUrl, dev.cert)).status).toBe("good");
    const before = await fetchCrl(crlUrl);
    const clean = await run("openssl", [
      "verify",
      "-crl_check",
      "-CAfile",
      chainFile,
      "-CRLfile",
      before.pem,
      dev.cert,
    ]);
    expect(clean.stdout.trim()).toBe(`${dev.cert}: OK`);

    const r = await api("/devices/http-ocsp-1/revoke", { reason: "keyCompromise" });
    expect(r.status, r.text).toBe(200);
    const answer = await ocsp(ocspUrl, dev.cert);
    expect(answer.status).toBe("revoked");
    expect(answer.out).toContain("Reason: keyCompromise");
    expect((await ocsp(ocspUrl, other.cert)).status).toBe("good");

    // The CRL is re-signed just after the revocation (rebuilds are coalesced over 100 ms).
    const serial = (await x509Serial(dev.cert)).toUpperCase();
    const listed = `Serial Number: ${serial.length % 2 ? `0${serial}` : serial}`;
    const crl = await eventually(
      () => fetchCrl(crlUrl),
      (c) => c.text.includes(listed),
      5000,
    );
    const signed = await run("openssl", ["crl", "-in", crl.pem, "-CAfile", chainFile, "-noout"]);
    expect(`${signed.stdout}${signed.stderr}`).toContain("verify OK");
    const revoked = await run("openssl", ["verify", "-crl_check", "-CAfile", chainFile, "-CRLfile", crl.pem, dev.cert]);
    expect(revoked.code).not.toBe(0);
    expect(`${revoked.stdout}${revoked.stderr}`).toContain("certificate revoked");
    const fine = await run("openssl", ["verify", "-crl_check", "-CAfile", chainFile, "-CRLfile", crl.pem, other.cert]);
    expect(fine.stdout.trim()).toBe(`${other.cert}: OK`);

    // OCSP by GET (RFC 6960 §A.1) over plain HTTP too.
    const reqFile = join(work, "http-get-req.der");
    await openssl(["ocsp", "-issuer", issuingFile, "-cert", dev.cert, "-no_nonce", "-reqout", reqFile]);
    const encoded = encodeURIComponent((await readFile(reqFile)).toString("base64"));
    const get = await curl(work, `${ocspUrl}/${encoded}`);
    expect([get.status, get.headers["content-type"]]).toEqual([200, "application/ocsp-response"]);
    const respFile = join(work, "http-get-resp.der");
    await writeFile(respFile, get.body);
    const check = await run("openssl", [
      "ocsp",
      ...["-respin", respFile, "-reqin", reqFile, "-issuer", issuingFile, "-cert", dev.cert],
      ...["-CAfile", chainFile, "-no_nonce"],
    ]);
    expect(`${check.stdout}${check.stderr}`).toContain("Response verify OK");
    expect(check.stdout).toContain(`${dev.cert}: revoked`);
  });

  it("serves the issuing CA certificates: .crt (DER) and .p7c (the chain, certs-only), as over HTTPS", async () => {
    const chain = (await readFile(chainFile, "utf8")).match(
      /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g,
    );
    const crt = await curl(work, `${server.publicHttp}/pki/ca/issuing-p256.crt`);
    expect([crt.status, crt.headers["content-type"]]).toEqual([200, "application/pkix-cert"]);
    const crtPem = (await run("openssl", ["x509", "-inform", "DER", "-in", await writeBytes("issuing.crt", crt.body)]))
      .stdout;
    expect(crtPem).toBe(await readFile(issuingFile, "utf8"));

    const p7c = await curl(work, `${server.publicHttp}/pki/ca/issuing-p256.p7c`);
    expect([p7c.status, p7c.headers["content-type"]]).toEqual([200, "application/pkcs7-mime; smime-type=certs-only"]);
    const printed = await openssl([
      "pkcs7",
      "-inform",
      "DER",
      "-in",
      await writeBytes("chain.p7c", p7c.body),
      "-print_certs",
    ]);
    expect(printed.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)).toEqual(chain);
    expect(
      (await pkcs7ToPem(work, (await curl(work, `${server.est}/cacerts`, { cacert: server.rootPemFile })).body)).sort(),
    ).toEqual([...(chain ?? [])].sort());

    // The same bytes over HTTPS; unknown names are 404 on both.
    const overTls = await curl(work, `${server.url}/pki/ca/issuing-p256.crt`, { cacert: server.rootPemFile });
    expect(overTls.body.equals(crt.body)).toBe(true);
    for (const base of [server.publicHttp, server.url]) {
      const missing = await curl(work, `${base}/pki/ca/nope.crt`, { cacert: server.rootPemFile });
      expect(missing.status).toBe(404);
    }
  });

  it("keeps a certificate issued with https:// URLs checkable over HTTPS", async () => {
    const base = `https://127.0.0.1:${httpsPort}`;
    expect(server.url).toBe(base);
    const der = parsePem(await readFile(oldCert.cert, "utf8"))[0]?.der as Uint8Array;
    expect(readRevocationUrls(der)).toEqual({ crl: [`${base}/pki/crl/issuing-p256.crl`], ocsp: [`${base}/pki/ocsp`] });
    const text = await x509Text(oldCert.cert);
    expect(text).toContain(`URI:${base}/pki/crl/issuing-p256.crl`);
    expect(text).toContain(`OCSP - URI:${base}/pki/ocsp`);

    expect((await ocsp(`${base}/pki/ocsp`, oldCert.cert)).status).toBe("good");
    const crl = await fetchCrl(`${base}/pki/crl/issuing-p256.crl`, { cacert: server.rootPemFile });
    const ok = await run("openssl", ["verify", "-crl_check", "-CAfile", chainFile, "-CRLfile", crl.pem, oldCert.cert]);
    expect(ok.stdout.trim()).toBe(`${oldCert.cert}: OK`);
    // One responder behind both listeners: the plain one knows it too.
    expect((await ocsp(`${server.publicHttp}/pki/ocsp`, oldCert.cert)).status).toBe("good");

    // The device renews over mutual TLS; its new certificate names the http:// URLs.
    const next = await opensslCsrNewKeyP256(work, "before-http-1-renew", "/CN=before-http-1");
    const renewed = await estPost(server, work, "simplereenroll", next.base64, {
      cert: oldCert.cert,
      key: oldCert.key,
    });
    expect(renewed.status, renewed.text).toBe(200);
    const [pem] = await pkcs7ToPem(work, renewed.body);
    const renewedFile = await writePem(work, "before-http-1-renewed.pem", pem as string);
    expect(readRevocationUrls(parsePem(pem as string)[0]?.der as Uint8Array).ocsp).toEqual([
      `${server.publicHttp}/pki/ocsp`,
    ]);
    expect((await ocsp(`${server.publicHttp}/pki/ocsp`, renewedFile)).status).toBe("good");
  });

  it("answers 404 to everything that is not public, GET and POST, audits nothing, and never reads a credential", async () => {
    const { token } = await cliCreateToken(dataDir, "never-over-http");
    const csr = await opensslCsrNewKeyP256(work, "never-over-http");
    const auditBefore = newestAuditId();
    const paths = [
      "/",
      "/api/v1/devices",
      "/api/v1/openapi.json",
      "/.well-known/est/cacerts",
      "/.well-known/est/simpleenroll",
      "/.well-known/est/device/simpleenroll",
      "/.well-known/est/simplereenroll",
      "/dashboard",
      "/dashboard/login",
      "/metrics",
    ];
    for (const path of paths) {
      for (const method of ["GET", "POST"] as const) {
        const r = await curl(work, `${server.publicHttp}${path}`, {
          method,
          // What a client would send there: the device's token, an operator's bearer token.
          ...(path.includes("/est/")
            ? { basic: { user: "never-over-http", password: token } }
            : { bearer: adminToken }),
          ...(method === "POST" ? { body: csr.base64, contentType: "application/pkcs10" } : {}),
        });
        expect([path, method, r.status, r.text]).toEqual([path, method, 404, "not found\n"]);
      }
    }
    expect(newestAuditId()).toBe(auditBefore);
    // Each was logged as a request on the public listener, by its socket address. The
    // logger writes asynchronously (and a loop thread's lines go through the main
    // thread), so the last line can reach the log after curl has its answer: the lines
    // are waited for, then checked exactly (seen one short on Node 24 when read at once).
    const logged = () =>
      server
        .log()
        .split("\n")
        .filter((l) => l.includes('"msg":"request"') && l.includes('"listener":"public"'))
        .map((l) => JSON.parse(l) as { path: string; status: number; remote: string; client: boolean })
        .filter((e) => paths.includes(e.path));
    await expect
      .poll(() => logged().length, { timeout: 10_000, interval: 20 })
      .toBeGreaterThanOrEqual(2 * paths.length);
    const lines = logged();
    for (const path of paths) {
      const entries = lines.filter((e) => e.path === path);
      expect(entries.map((e) => [e.status, e.remote, e.client])).toEqual([
        [404, "127.0.0.1", false],
        [404, "127.0.0.1", false],
      ]);
    }
    // The token sent in clear was not consumed: it still enrolls over HTTPS.
    const enrolled = await estPost(server, work, "simpleenroll", csr.base64, {
      basic: { user: "never-over-http", password: token },
    });
    expect(enrolled.status, enrolled.text).toBe(200);
    // The health check, for a load balancer in front of the port.
    const health = await curl(work, `${server.publicHttp}/healthz`);
    expect([health.status, health.text]).toEqual([200, "ok\n"]);
  });

  it("applies limits.http as the HTTPS listener does: 431 to a header block over maxHeaderBytes", async () => {
    const big = await curl(work, `${server.publicHttp}/healthz`, {
      extraArgs: ["-H", `X-Padding: ${"a".repeat(20 * 1024)}`],
    });
    expect(big.status).toBe(431);
    expect((await curl(work, `${server.publicHttp}/healthz`)).status).toBe(200);
  });

  it("refuses a --public-http-url that is not an http:// base, and a --public-listen that is not HOST:PORT", async () => {
    for (const [flag, value, message] of [
      [
        "--public-http-url",
        "https://pki.example",
        '--public-http-url must be an http:// base URL (got "https://pki.example")',
      ],
      ["--public-listen", "8080", '--public-listen must be HOST:PORT (got "8080")'],
    ] as const) {
      const r = await run(process.execPath, [
        EDGEID_BIN,
        "serve",
        "--data",
        dataDir,
        "--listen",
        "127.0.0.1:0",
        flag,
        value,
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(message);
    }
  });

  it("with --public-listen off listens on the HTTPS port only", () => {
    expect(listeningWhenOff).toEqual([httpsPort]);
  });
});

async function writeBytes(name: string, bytes: Buffer): Promise<string> {
  const file = join(work, name);
  await writeFile(file, bytes);
  return file;
}
