/**
 * What a strict EST client sees on the wire, against a real `edgeid serve`:
 * - raw TLS 1.2 (node:tls, no HTTP library) trusting only the P-256 root: the exact
 *   status line, header names compared case-sensitively, Content-Length framing (never
 *   chunked), media types as RFC 7030 spells them, base64 bodies in CRLF lines, the
 *   401 challenge, 202 + Retry-After, and the refusals;
 * - openssl s_client at TLS 1.2: the default cipher list gets the P-256 chain, an
 *   ECDHE-RSA-only client the RSA chain, on HTTPS and on the embedded broker;
 * - curl pinned to TLS 1.2 running the README's enrollment.
 */

import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliCreateToken, edgeid } from "./support/cli.ts";
import { enrollDevice } from "./support/enroll.ts";
import { openssl, opensslCsrNewKeyP256 } from "./support/openssl.ts";
import { EDGEID_BIN, makeWorkDir, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let server: TestServer;
let port: number;
let rootPem: string;
let rsaRootPem: string;

beforeAll(async () => {
  work = await makeWorkDir("est-wire");
  ({ dataDir } = await cliInitDataDir(work, "wire.example"));
  await addProfiles(dataDir, { held: { approval: "manual", retryAfter: "2m" } });
  server = await startServer(dataDir, work);
  port = Number(new URL(server.url).port);
  rootPem = await readFile(server.rootPemFile, "utf8");
  rsaRootPem = join(work, "rsa-root.pem");
  await writeFile(rsaRootPem, (await edgeid(["ca", "export", "--rsa", "--data", dataDir])).stdout);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

interface WireResponse {
  statusLine: string;
  /** Header names exactly as sent, in order. */
  headers: [string, string][];
  body: Buffer;
  /** Looks a header up by its exact, case-sensitive name. */
  header(name: string): string | undefined;
}

/**
 * One HTTP/1.1 exchange over TLS 1.2 with node:tls, written and read byte for byte,
 * trusting only the P-256 root (as a device does). Node's default client cipher list
 * offers ECDHE-ECDSA and ECDHE-RSA suites, like OpenSSL's.
 */
function exchange(
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string; cert?: string; key?: string } = {},
): Promise<WireResponse> {
  const body = Buffer.from(opts.body ?? "");
  const lines = [`${method} ${path} HTTP/1.1`, `Host: localhost:${port}`, "Connection: close"];
  for (const [k, v] of Object.entries(opts.headers ?? {})) lines.push(`${k}: ${v}`);
  if (opts.body !== undefined) lines.push(`Content-Length: ${body.length}`);
  const request = Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`), body]);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: "127.0.0.1",
      port,
      servername: "localhost",
      ca: rootPem,
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.2",
      ...(opts.cert && opts.key ? { cert: opts.cert, key: opts.key } : {}),
    });
    const chunks: Buffer[] = [];
    // Not end(): a client that half-closes aborts its request (as with any HTTP/1.1 server);
    // "Connection: close" makes the server close once it has answered.
    socket.on("secureConnect", () => socket.write(request));
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => {
      const raw = Buffer.concat(chunks);
      const end = raw.indexOf("\r\n\r\n");
      if (end < 0) return reject(new Error(`no complete head in ${JSON.stringify(raw.toString("latin1"))}`));
      const [statusLine = "", ...headerLines] = raw.subarray(0, end).toString("latin1").split("\r\n");
      const headers = headerLines.map((l): [string, string] => {
        const colon = l.indexOf(":");
        return [l.slice(0, colon), l.slice(colon + 1).trim()];
      });
      resolve({
        statusLine,
        headers,
        body: raw.subarray(end + 4),
        header: (name) => headers.find(([n]) => n === name)?.[1],
      });
    });
  });
}

/** Every header name in its conventional spelling; the body framed by Content-Length alone. */
function expectStrictFraming(r: WireResponse): void {
  for (const [name] of r.headers) {
    expect(name, `header name ${name}`).toMatch(/^(WWW-Authenticate|ETag|[A-Z][a-z0-9]*(-[A-Z][a-z0-9]*)*)$/);
  }
  expect(r.headers.filter(([n]) => n.toLowerCase() === "transfer-encoding")).toEqual([]);
  expect(r.header("Content-Length"), "Content-Length").toBe(String(r.body.length));
}

/** A base64 body as RFC 7030 §4 sends it: lines of at most 76 characters, each ending in CRLF. */
function expectBase64Body(r: WireResponse): Buffer {
  const text = r.body.toString("latin1");
  expect(text.endsWith("\r\n")).toBe(true);
  const lines = text.slice(0, -2).split("\r\n");
  for (const line of lines) expect(line).toMatch(/^[A-Za-z0-9+/=]{1,76}$/);
  return Buffer.from(lines.join(""), "base64");
}

const est = (op: string, label?: string) => `/.well-known/est/${label ? `${label}/` : ""}${op}`;
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

describe("EST on the wire, byte for byte (raw TLS 1.2, only the P-256 root trusted)", () => {
  it("cacerts: 200, application/pkcs7-mime, base64 in CRLF lines", async () => {
    const r = await exchange("GET", est("cacerts"));
    expect(r.statusLine).toBe("HTTP/1.1 200 OK");
    expectStrictFraming(r);
    expect(r.header("Content-Type")).toBe("application/pkcs7-mime");
    expect(r.header("Content-Transfer-Encoding")).toBe("base64");
    const der = expectBase64Body(r);
    const certs = await openssl(["pkcs7", "-inform", "DER", "-print_certs", "-noout"], { input: der });
    expect(certs.stdout).toContain("edgeid Issuing CA P-256");
  });

  it("csrattrs: application/csrattrs, per label (P-256 for devices, RSA of the profile's size for legacy)", async () => {
    const device = await exchange("GET", est("csrattrs"));
    expect(device.statusLine).toBe("HTTP/1.1 200 OK");
    expectStrictFraming(device);
    expect(device.header("Content-Type")).toBe("application/csrattrs");
    expect(device.header("Content-Transfer-Encoding")).toBe("base64");
    const deviceAttrs = await openssl(["asn1parse", "-inform", "DER"], { input: expectBase64Body(device) });
    expect(deviceAttrs.stdout).toMatch(/id-ecPublicKey[\s\S]*prime256v1[\s\S]*ecdsa-with-SHA256/);
    expect(deviceAttrs.stdout).not.toContain("rsaEncryption");

    const legacy = await exchange("GET", est("csrattrs", "legacy"));
    expectStrictFraming(legacy);
    const legacyAttrs = await openssl(["asn1parse", "-inform", "DER"], { input: expectBase64Body(legacy) });
    // rsaEncryption { INTEGER 2048 } (0x0800) first: the legacy profile prefers RSA from 2048 bits.
    expect(legacyAttrs.stdout).toMatch(/:rsaEncryption\n.*SET\s*\n.*INTEGER\s+:0800\n/);
    expect(legacyAttrs.stdout).toMatch(/sha256WithRSAEncryption/);
  });

  it("simpleenroll: 401 with the Basic challenge, then 200 certs-only with the credentials", async () => {
    const { token } = await cliCreateToken(dataDir, "wire-01");
    const csr = await opensslCsrNewKeyP256(work, "wire-01");
    const headers = { "Content-Type": "application/pkcs10" };
    const challenge = await exchange("POST", est("simpleenroll"), { headers, body: csr.base64 });
    expect(challenge.statusLine).toBe("HTTP/1.1 401 Unauthorized");
    expectStrictFraming(challenge);
    expect(challenge.header("WWW-Authenticate")).toMatch(/^Basic realm="[^"]+"/);
    expect(challenge.header("Content-Type")).toBe("text/plain; charset=utf-8");

    const enrolled = await exchange("POST", est("simpleenroll"), {
      headers: { ...headers, Authorization: basic("wire-01", token) },
      body: csr.base64,
    });
    expect(enrolled.statusLine).toBe("HTTP/1.1 200 OK");
    expectStrictFraming(enrolled);
    expect(enrolled.header("Content-Type")).toBe("application/pkcs7-mime; smime-type=certs-only");
    expect(enrolled.header("Content-Transfer-Encoding")).toBe("base64");
    const p7 = expectBase64Body(enrolled);
    const pem = (await openssl(["pkcs7", "-inform", "DER", "-print_certs"], { input: p7 })).stdout;
    expect(pem).toMatch(/subject=CN ?= ?wire-01/);
  });

  it("simplereenroll over mutual TLS, and serverkeygen's multipart body", async () => {
    const device = await enrollDevice(server, work, "wire-02");
    const csr = await opensslCsrNewKeyP256(work, "wire-02-next", "/CN=wire-02");
    const renewed = await exchange("POST", est("simplereenroll"), {
      headers: { "Content-Type": "application/pkcs10" },
      body: csr.base64,
      cert: await readFile(device.cert, "utf8"),
      key: await readFile(device.key, "utf8"),
    });
    expect(renewed.statusLine).toBe("HTTP/1.1 200 OK");
    expectStrictFraming(renewed);
    expect(renewed.header("Content-Type")).toBe("application/pkcs7-mime; smime-type=certs-only");
    expectBase64Body(renewed);

    const { token } = await cliCreateToken(dataDir, "wire-03", { profile: "legacy" });
    const keygenCsr = await opensslCsrNewKeyP256(work, "wire-03");
    const keygen = await exchange("POST", est("serverkeygen", "legacy"), {
      headers: { "Content-Type": "application/pkcs10", Authorization: basic("wire-03", token) },
      body: keygenCsr.base64,
    });
    expect(keygen.statusLine).toBe("HTTP/1.1 200 OK");
    expectStrictFraming(keygen);
    const boundary = /^multipart\/mixed; boundary=([A-Za-z0-9'()+_,./:=?-]{1,70})$/.exec(
      keygen.header("Content-Type") ?? "",
    )?.[1];
    expect(boundary, keygen.header("Content-Type")).toBeDefined();
    const text = keygen.body.toString("latin1");
    expect(text.endsWith(`\r\n--${boundary}--\r\n`)).toBe(true);
    const parts = text.split(`--${boundary}`).slice(1, -1);
    expect(parts).toHaveLength(2);
    const heads = parts.map((p) => p.slice(2, p.indexOf("\r\n\r\n")).split("\r\n"));
    expect(heads).toEqual([
      ["Content-Type: application/pkcs8", "Content-Transfer-Encoding: base64"],
      ["Content-Type: application/pkcs7-mime; smime-type=certs-only", "Content-Transfer-Encoding: base64"],
    ]);
    for (const p of parts) {
      const content = p.slice(p.indexOf("\r\n\r\n") + 4);
      expect(content.endsWith("\r\n")).toBe(true);
      for (const line of content.slice(0, -2).split("\r\n")) expect(line).toMatch(/^[A-Za-z0-9+/=]{1,76}$/);
    }
  });

  it("a request waiting for approval: 202 with Retry-After in seconds", async () => {
    const { token } = await cliCreateToken(dataDir, "wire-held", { profile: "held" });
    const csr = await opensslCsrNewKeyP256(work, "wire-held");
    const r = await exchange("POST", est("simpleenroll", "held"), {
      headers: { "Content-Type": "application/pkcs10", Authorization: basic("wire-held", token) },
      body: csr.base64,
    });
    expect(r.statusLine).toBe("HTTP/1.1 202 Accepted");
    expectStrictFraming(r);
    expect(r.header("Retry-After")).toBe("120");
  });

  it("refusals: the precise 4xx, framed the same way", async () => {
    const cases: [string, string, Parameters<typeof exchange>[2], string][] = [
      [
        "POST",
        est("simpleenroll"),
        { headers: { "Content-Type": "text/plain" }, body: "x" },
        "415 Unsupported Media Type",
      ],
      [
        "POST",
        est("simpleenroll"),
        { headers: { "Content-Type": "application/pkcs10", Authorization: basic("x", "y") }, body: "***" },
        "400 Bad Request",
      ],
      // A declared length over the limit is refused from the head (no body is sent here).
      [
        "POST",
        est("simpleenroll"),
        { headers: { "Content-Type": "application/pkcs10", "Content-Length": String(1024 * 1024) } },
        "413 Payload Too Large",
      ],
      [
        "POST",
        est("simplereenroll"),
        { headers: { "Content-Type": "application/pkcs10" }, body: "AAAA" },
        "403 Forbidden",
      ],
      ["GET", est("simpleenroll"), {}, "405 Method Not Allowed"],
      ["GET", est("fullcmc"), {}, "404 Not Found"],
      ["GET", est("cacerts", "no-such-label"), {}, "404 Not Found"],
    ];
    for (const [method, path, opts, status] of cases) {
      const r = await exchange(method, path, opts);
      expect(r.statusLine, `${method} ${path}`).toBe(`HTTP/1.1 ${status}`);
      expectStrictFraming(r);
      expect(r.header("Content-Type")).toBe("text/plain; charset=utf-8");
      expect(r.body.toString()).toMatch(/^[^\r\n]+\n$/);
    }
  });

  it("the CRL and OCSP responders on the same listener", async () => {
    const crl = await exchange("GET", "/pki/crl/issuing-p256.crl");
    expect(crl.statusLine).toBe("HTTP/1.1 200 OK");
    expectStrictFraming(crl);
    expect(crl.header("Content-Type")).toBe("application/pkix-crl");
    expect(crl.header("ETag")).toMatch(/^"\d+"$/);
    const ocsp = await exchange("POST", "/pki/ocsp", {
      headers: { "Content-Type": "application/ocsp-request" },
      body: "not DER",
    });
    expect(ocsp.statusLine).toBe("HTTP/1.1 400 Bad Request");
    expectStrictFraming(ocsp);
    expect(ocsp.header("Content-Type")).toBe("application/ocsp-response");
  });
});

describe("which chain a TLS 1.2 client gets", () => {
  /** `openssl s_client` at TLS 1.2 against HOST:PORT; the chain's issuers and the verify result. */
  async function sClient(target: string, caFile: string, extra: string[] = []) {
    const r = await run(
      "openssl",
      ["s_client", "-connect", target, "-servername", "localhost", "-tls1_2", "-CAfile", caFile, ...extra],
      { input: "" },
    );
    return {
      issuers: [...r.stdout.matchAll(/^\s+i:.*CN ?= ?(.+)$/gm)].map((m) => m[1]?.trim()),
      cipher: /Cipher is (\S+)/.exec(r.stdout)?.[1],
      verify: /Verify return code: (\d+)/.exec(r.stdout)?.[1],
      output: r.stdout + r.stderr,
    };
  }

  it("HTTPS and the broker: OpenSSL's default list verifies with only the P-256 root; ECDHE-RSA only gets the RSA chain", async () => {
    const device = await enrollDevice(server, work, "wire-tls");
    const mqttTarget = (server.mqttUrl as string).replace("mqtts://", "");
    for (const [target, clientCert] of [
      [`127.0.0.1:${port}`, []],
      // The broker requires a client certificate: the device's own.
      [mqttTarget, ["-cert", device.cert, "-key", device.key]],
    ] as const) {
      const ecdsa = await sClient(target, server.rootPemFile, [...clientCert]);
      expect(ecdsa.verify, ecdsa.output).toBe("0");
      expect(ecdsa.cipher).toMatch(/^ECDHE-ECDSA-/);
      expect(ecdsa.issuers).toEqual(["edgeid Issuing CA P-256", "edgeid Root CA"]);

      const rsa = await sClient(target, rsaRootPem, [
        ...clientCert,
        "-cipher",
        "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
      ]);
      expect(rsa.verify, rsa.output).toBe("0");
      expect(rsa.cipher).toMatch(/^ECDHE-RSA-/);
      expect(rsa.issuers).toEqual(["edgeid Issuing CA RSA", "edgeid Root CA RSA"]);
    }
  });

  it("curl pinned to TLS 1.2 runs the README's enrollment with only the P-256 root", async () => {
    const dir = join(work, "readme-tls12");
    await run("mkdir", ["-p", dir]);
    // The README's commands, with --tlsv1.2 --tls-max 1.2 added to every curl.
    const script = `
      set -euo pipefail
      cd "${dir}"
      edgeid() { "${process.execPath}" "${EDGEID_BIN}" "$@" --data "${dataDir}"; }
      TOKEN=$(edgeid token create --device dev-001 --json | sed -E 's/.*"token":"([^"]+)".*/\\1/')
      edgeid ca export > root.pem
      T12="--tlsv1.2 --tls-max 1.2"
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
        -keyout dev.key -subj /CN=dev-001 -outform DER 2>/dev/null | openssl base64 > csr.b64
      curl -sS $T12 --cacert root.pem --anyauth -u "dev-001:$TOKEN" \\
        -H 'Content-Type: application/pkcs10' --data-binary @csr.b64 \\
        ${server.est}/simpleenroll \\
        | openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out dev.pem
      curl -sS $T12 --cacert root.pem ${server.est}/cacerts \\
        | openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out chain.pem
      openssl verify -CAfile chain.pem dev.pem
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
        -keyout dev2.key -subj /CN=dev-001 -outform DER 2>/dev/null | openssl base64 > csr2.b64
      curl -sS -v $T12 --cacert root.pem --cert dev.pem --key dev.key \\
        -H 'Content-Type: application/pkcs10' --data-binary @csr2.b64 \\
        ${server.est}/simplereenroll 2>trace.txt \\
        | openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out dev2.pem
      openssl x509 -in dev2.pem -noout -subject
      grep -o 'SSL connection using [^ ]* / [^ ]*' trace.txt
    `;
    const r = await run("bash", ["-c", script]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("dev.pem: OK");
    expect(r.stdout).toMatch(/subject=CN ?= ?dev-001/);
    expect(r.stdout).toMatch(/SSL connection using TLSv1\.2 \/ ECDHE-ECDSA-/);
  });
});
