/**
 * Fleet operations against a real `edgeid serve`, with openssl and curl as the
 * independent clients: OCSP (good, revoked, unknown; with and without a nonce), the
 * CRL (openssl crl, openssl verify -crl_check), revocation through the operator API
 * and through the CLI on the running server's database, the 202 → approve → retry
 * flow, and `edgeid audit verify` finding a record edited in the database.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { caFiles } from "./support/ca.ts";
import { cliCreateToken, edgeid } from "./support/cli.ts";
import { curl, estPost, type HttpResponse } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import {
  openssl,
  opensslCsr,
  opensslCsrNewKeyP256,
  pkcs7ToPem,
  writePem,
  x509Serial,
  x509Subject,
  x509Text,
} from "./support/openssl.ts";
import { makeWorkDir, removeDir, run, sleep } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let adminToken: string;
let server: TestServer;
let chainFile: string;
let issuingFile: string;

async function issuedCert(r: HttpResponse, name: string): Promise<string> {
  expect(r.status, `body: ${r.text}`).toBe(200);
  const [pem] = await pkcs7ToPem(work, r.body);
  return writePem(work, `${name}.pem`, pem as string);
}

const enroll = (deviceId: string) => enrollDevice(server, work, deviceId);

/** `openssl ocsp` against the URL in the certificate: its status line and the whole output. */
async function ocsp(target: { cert?: string; serial?: string }, nonce = true) {
  const args = ["ocsp", "-issuer", issuingFile, "-url", `${server.url}/pki/ocsp`, "-CAfile", chainFile];
  if (target.cert) args.push("-cert", target.cert);
  if (target.serial) args.push("-serial", target.serial);
  if (!nonce) args.push("-no_nonce");
  const r = await run("openssl", args);
  const out = `${r.stdout}${r.stderr}`;
  expect(out, out).toContain("Response verify OK");
  expect(out).not.toMatch(/nonce/i); // openssl warns on a missing or mismatched nonce
  const status = /: (good|revoked|unknown)\b/.exec(r.stdout)?.[1];
  return { status, out, code: r.code };
}

const api = (path: string, opts: { method?: "GET" | "POST"; body?: unknown; token?: string } = {}) =>
  curl(work, `${server.url}/api/v1${path}`, {
    cacert: server.rootPemFile,
    bearer: opts.token ?? adminToken,
    ...(opts.body !== undefined
      ? { method: "POST", body: JSON.stringify(opts.body), contentType: "application/json" }
      : { method: opts.method ?? "GET" }),
  });

async function fetchCrl(certFile: string): Promise<string> {
  // The URL in the certificate: plain HTTP, at the public listener.
  const url = /URI:(http:\S+\.crl)/.exec(await x509Text(certFile))?.[1];
  expect(url).toBe(`${server.publicHttp}/pki/crl/issuing-p256.crl`);
  const r = await curl(work, url as string);
  expect(r.status).toBe(200);
  expect(r.headers["content-type"]).toBe("application/pkix-crl");
  const der = join(work, `crl-${Date.now()}.der`);
  await writeFile(der, r.body);
  const pem = `${der}.pem`;
  await openssl(["crl", "-inform", "DER", "-in", der, "-out", pem]);
  return pem;
}

/** Fetches the CRL (from the URL in `certFile`) until it lists that certificate, for up to 5 s. */
async function crlListing(certFile: string): Promise<{ crl: string; text: string }> {
  const serial = (await x509Serial(certFile)).toUpperCase();
  const deadline = Date.now() + 5000;
  for (;;) {
    const crl = await fetchCrl(certFile);
    const text = (await openssl(["crl", "-in", crl, "-noout", "-text"])).stdout;
    if (text.includes(`Serial Number: ${serial.length % 2 ? `0${serial}` : serial}`)) return { crl, text };
    if (Date.now() > deadline) throw new Error(`the CRL does not list ${serial}:\n${text}`);
    await sleep(50);
  }
}

beforeAll(async () => {
  work = await makeWorkDir("edgeid-revocation-");
  const init = await cliInitDataDir(work, "example.org");
  dataDir = init.dataDir;
  adminToken = init.adminToken;
  await addProfiles(dataDir, { vetted: { approval: "manual", retryAfter: "2s" } });
  server = await startServer(dataDir, work);
  ({ chainFile, issuingFile } = await caFiles(server, work));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

describe("OCSP and the CRL", () => {
  it("answers good, revoked (with reason) and unknown to openssl ocsp, with and without a nonce", async () => {
    const good = await enroll("ocsp-good");
    const bad = await enroll("ocsp-bad");
    expect((await ocsp({ cert: good.cert })).status).toBe("good");
    expect((await ocsp({ cert: good.cert }, false)).status).toBe("good");
    expect((await ocsp({ serial: "0x0123456789abcdef" })).status).toBe("unknown");

    // The first OCSP answer after the API call returns already says revoked (the cached
    // "good" answers were dropped); how fast that is, `npm run bench` measures.
    const r = await api("/devices/ocsp-bad/revoke", { body: { reason: "keyCompromise" } });
    expect(r.status, r.text).toBe(200);
    const answer = await ocsp({ cert: bad.cert });
    expect(answer.status).toBe("revoked");
    expect(answer.out).toContain("Reason: keyCompromise");
    expect((await ocsp({ cert: bad.cert }, false)).status).toBe("revoked");
    expect((await ocsp({ cert: good.cert })).status).toBe("good");

    // The CRL from the URL in the certificate: parsed, signed, listing the serial with its reason.
    // The CRL is re-signed just after the revocation (rebuilds are coalesced over 100 ms).
    const { crl, text } = await crlListing(bad.cert);
    expect(text).toMatch(/CRL Reason Code:\s*\n\s*Key Compromise/);
    expect(text).toMatch(/X509v3 CRL Number:\s*\n\s*\d+/);
    const signed = await run("openssl", ["crl", "-in", crl, "-CAfile", chainFile, "-noout"]);
    expect(`${signed.stdout}${signed.stderr}`).toContain("verify OK");
    // openssl verify with the CRL: the revoked certificate fails, the good one passes.
    const revoked = await run("openssl", ["verify", "-crl_check", "-CAfile", chainFile, "-CRLfile", crl, bad.cert]);
    expect(revoked.code).not.toBe(0);
    expect(`${revoked.stdout}${revoked.stderr}`).toContain("certificate revoked");
    const fine = await run("openssl", ["verify", "-crl_check", "-CAfile", chainFile, "-CRLfile", crl, good.cert]);
    expect(fine.stdout.trim()).toBe(`${good.cert}: OK`);
  });

  it("answers GET requests (RFC 6960 §A.1) and SHA-256 CertIDs, verified by openssl", async () => {
    const dev = await enroll("ocsp-get");
    // A SHA-256 CertID request made by openssl, sent with curl as GET /pki/ocsp/<url-encoded base64>.
    const reqFile = join(work, "get-req.der");
    await openssl(["ocsp", "-issuer", issuingFile, "-sha256", "-cert", dev.cert, "-no_nonce", "-reqout", reqFile]);
    const encoded = encodeURIComponent((await readFile(reqFile)).toString("base64"));
    const r = await curl(work, `${server.url}/pki/ocsp/${encoded}`, { cacert: server.rootPemFile });
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("application/ocsp-response");
    const respFile = join(work, "get-resp.der");
    await writeFile(respFile, r.body);
    const check = await run("openssl", [
      "ocsp",
      "-respin",
      respFile,
      "-reqin",
      reqFile,
      "-issuer",
      issuingFile,
      "-sha256",
      "-cert",
      dev.cert,
      "-CAfile",
      chainFile,
      "-no_nonce",
    ]);
    expect(`${check.stdout}${check.stderr}`).toContain("Response verify OK");
    expect(check.stdout).toContain(`${dev.cert}: good`);
    // Garbage on either method: HTTP 400 with the OCSP malformedRequest status.
    const bad = await curl(work, `${server.url}/pki/ocsp/bm90IGFuIG9jc3AgcmVxdWVzdA%3D%3D`, {
      cacert: server.rootPemFile,
    });
    expect([bad.status, bad.body.toString("hex")]).toEqual([400, "30030a0101"]);
    const wrongType = await curl(work, `${server.url}/pki/ocsp`, {
      cacert: server.rootPemFile,
      method: "POST",
      body: await readFile(reqFile),
      contentType: "application/octet-stream",
    });
    expect(wrongType.status).toBe(415);
  });

  it("refuses a revoked device everywhere, and says so in its audit trail", async () => {
    const dev = await enroll("gone-1");
    const spare = await cliCreateToken(dataDir, "gone-1");
    expect((await api("/devices/gone-1/revoke", { body: { reason: "keyCompromise" } })).status).toBe(200);
    const renew = await opensslCsrNewKeyP256(work, "gone-1-renew");
    const reenroll = await estPost(server, work, "simplereenroll", renew.base64, { cert: dev.cert, key: dev.key });
    expect([reenroll.status, reenroll.text]).toEqual([403, "client certificate is revoked\n"]);
    const again = await estPost(server, work, "simpleenroll", (await opensslCsr(work, "gone-1-again")).base64, {
      basic: { user: "gone-1", password: spare.token },
    });
    expect([again.status, again.text]).toEqual([401, "bootstrap token has been revoked\n"]);
    const shown = JSON.parse((await api("/devices/gone-1")).text) as {
      status: string;
      certificates: { status: string; revocationReason: string }[];
      audit: { action: string; outcome: string; detail: { reason?: string } }[];
    };
    expect(shown.status).toBe("revoked");
    expect(shown.certificates.map((c) => [c.status, c.revocationReason])).toEqual([["revoked", "keyCompromise"]]);
    expect(shown.audit.map((a) => [a.action, a.outcome, a.detail.reason])).toEqual(
      expect.arrayContaining([
        ["device.revoke", "success", "keyCompromise"],
        ["est.simplereenroll", "denied", "client_certificate_revoked"],
        ["est.simpleenroll", "denied", "token_revoked"],
      ]),
    );
  });

  it("picks up a revocation made with the CLI on the running server's database", async () => {
    const dev = await enroll("cli-revoke");
    expect((await ocsp({ cert: dev.cert }, false)).status).toBe("good");
    const out = await edgeid([
      "devices",
      "revoke",
      "cli-revoke",
      "--reason",
      "keyCompromise",
      "--data",
      dataDir,
      "--json",
    ]);
    const done = Date.now();
    expect((JSON.parse(out.stdout) as { revokedSerials: string[] }).revokedSerials).toHaveLength(1);
    // The server polls the revocation feed every 500 ms; the deadline is generous for a
    // loaded CI machine (the bench measures the delay).
    let status: string | undefined;
    while (Date.now() - done < 5000) {
      status = (await ocsp({ cert: dev.cert }, false)).status;
      if (status === "revoked") break;
      await sleep(50);
    }
    expect(status).toBe("revoked");
    await crlListing(dev.cert);
  });

  it("answers bad input on the operator API with a 4xx and a JSON error (curl)", async () => {
    const post = (body: string | Buffer, contentType = "application/json") =>
      curl(work, `${server.url}/api/v1/tokens`, {
        cacert: server.rootPemFile,
        bearer: adminToken,
        method: "POST",
        body,
        contentType,
      });
    const cases: [HttpResponse, number, string][] = [
      [await post("{not json"), 400, "malformed_json"],
      [await post(JSON.stringify({ deviceId: "x-1", colour: "red" })), 400, "invalid_request"],
      [await post(JSON.stringify({ deviceId: "x-1" }), "text/plain"), 415, "wrong_content_type"],
      [await post(Buffer.alloc(70_000, 0x20)), 413, "payload_too_large"],
      [await post(JSON.stringify({ deviceId: "../etc" })), 400, "bad_device_id"],
    ];
    for (const [r, status, code] of cases) {
      expect(r.headers["content-type"]).toMatch(/^application\/json/);
      expect([r.status, JSON.parse(r.text).error.code]).toEqual([status, code]);
    }
    expect(server.isRunning()).toBe(true);
  });

  it("gives operators' errors as JSON: unknown device, auditor revoking, no token", async () => {
    const unknown = await api("/devices/nobody/revoke", { body: { reason: "keyCompromise" } });
    expect([unknown.status, JSON.parse(unknown.text).error.code]).toEqual([404, "unknown_device"]);
    const auditor = JSON.parse(
      (await api("/operators", { body: { name: "night-shift", role: "auditor", ttl: "1d" } })).text,
    ) as { token: string };
    await enroll("audited-1");
    const denied = await api("/devices/audited-1/revoke", { body: { reason: "keyCompromise" }, token: auditor.token });
    expect([denied.status, JSON.parse(denied.text).error.code]).toEqual([403, "role_forbidden"]);
    expect((await api("/devices/audited-1", { token: auditor.token })).status).toBe(200);
    const anonymous = await curl(work, `${server.url}/api/v1/devices`, { cacert: server.rootPemFile });
    expect([anonymous.status, anonymous.headers["www-authenticate"]]).toEqual([
      401,
      'Bearer realm="edgeid operator API"',
    ]);
  });
});

describe("the CLI against a server's operator API (--server, an operator token)", () => {
  const remote = (args: string[], token: string) =>
    run(process.execPath, [join(import.meta.dirname, "../../bin/edgeid.mjs"), ...args, "--server", server.url], {
      env: { ...process.env, EDGEID_OPERATOR_TOKEN: token, EDGEID_CACERT: server.rootPemFile },
    });

  it("runs the same commands remotely, with the token's role", async () => {
    const made = await edgeid([
      "operators",
      "create",
      "--name",
      "remote-ops",
      "--role",
      "operator",
      "--data",
      dataDir,
      "--json",
    ]);
    const operator = (JSON.parse(made.stdout) as { token: string }).token;
    const auditorMade = await remote(
      ["operators", "create", "--name", "remote-aud", "--role", "auditor", "--json"],
      adminToken,
    );
    expect(auditorMade.code, auditorMade.stderr).toBe(0);
    const auditor = (JSON.parse(auditorMade.stdout) as { token: string }).token;

    const created = await remote(["token", "create", "--device", "remote-1", "--json"], operator);
    expect(created.code, created.stderr).toBe(0);
    const { token } = JSON.parse(created.stdout) as { token: string };
    const csr = await opensslCsrNewKeyP256(work, "remote-1");
    const cert = await issuedCert(
      await estPost(server, work, "simpleenroll", csr.base64, { basic: { user: "remote-1", password: token } }),
      "remote-1",
    );

    const listed = await remote(["devices", "list", "--status", "active", "--json", "--limit", "1000"], auditor);
    expect(
      listed.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { id: string }).id),
    ).toContain("remote-1");
    const denied = await remote(["devices", "revoke", "remote-1", "--reason", "keyCompromise"], auditor);
    expect([denied.code, denied.stderr]).toEqual([1, "edgeid: this needs the operator role (token has auditor)\n"]);
    const revoked = await remote(["devices", "revoke", "remote-1", "--reason", "keyCompromise", "--json"], operator);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((JSON.parse(revoked.stdout) as { device: { status: string } }).device.status).toBe("revoked");
    expect((await ocsp({ cert }, false)).status).toBe("revoked");

    const shown = await remote(["devices", "show", "remote-1", "--json"], auditor);
    const audit = (JSON.parse(shown.stdout) as { audit: { action: string; actor: string; outcome: string }[] }).audit;
    expect(audit.find((a) => a.action === "device.revoke" && a.outcome === "success")?.actor).toMatch(/^operator:op_/);
    expect(audit.find((a) => a.action === "device.revoke" && a.outcome === "denied")?.actor).toMatch(/^operator:op_/);
    const verified = await remote(["audit", "verify", "--json"], auditor);
    expect((JSON.parse(verified.stdout) as { ok: boolean }).ok).toBe(true);
    const wrong = await remote(["devices", "list"], "edo_not-a-token");
    expect([wrong.code, wrong.stderr]).toEqual([1, "edgeid: operator token is not valid\n"]);
  }, 60_000); // eleven CLI processes (each loads the server's TypeScript through tsx, ~1-2 s) and EST/OCSP requests
});

describe("manual approval (RFC 7030 §4.2.3)", () => {
  it("answers 202 with Retry-After, then issues on the retry after an operator approves", async () => {
    const { token } = await cliCreateToken(dataDir, "vet-001", { profile: "vetted" });
    const csr = await opensslCsrNewKeyP256(work, "vet-001");
    const ask = () =>
      estPost(server, work, "simpleenroll", csr.base64, {
        label: "vetted",
        basic: { user: "vet-001", password: token },
      });
    const first = await ask();
    expect([first.status, first.headers["retry-after"]]).toEqual([202, "2"]);
    const pending = JSON.parse((await api("/enrollments?status=pending")).text) as {
      items: { id: string; deviceId: string }[];
    };
    const request = pending.items.find((p) => p.deviceId === "vet-001");
    expect(request).toBeDefined();
    expect((await ask()).status).toBe(202);
    const approved = await api(`/enrollments/${request?.id}/approve`, { body: { reason: "on the manifest" } });
    expect(approved.status, approved.text).toBe(200);
    const cert = await issuedCert(await ask(), "vet-001");
    expect(await x509Subject(cert)).toBe("subject=CN=vet-001");
    const verify = await run("openssl", ["verify", "-CAfile", chainFile, cert]);
    expect(verify.stdout.trim()).toBe(`${cert}: OK`);
  });
});

describe("edgeid audit verify", () => {
  it("proves the chain intact, then points at a record edited directly in the database", async () => {
    const ok = await edgeid(["audit", "verify", "--data", dataDir, "--json"]);
    const report = JSON.parse(ok.stdout) as { ok: boolean; records: number; lastId: number };
    expect(report.ok).toBe(true);
    expect(report.records).toBeGreaterThan(10);
    const victim = Math.floor(report.lastId / 2);
    const db = new Database(join(dataDir, "edgeid.db"));
    try {
      expect(() => db.prepare("DELETE FROM audit_events WHERE id = ?").run(victim)).toThrow(/append-only/);
      db.exec("DROP TRIGGER audit_events_no_update");
      // Someone rewrites who did it.
      db.prepare("UPDATE audit_events SET actor = actor || '-not-me' WHERE id = ?").run(victim);
    } finally {
      db.close();
    }
    const broken = await run(process.execPath, [
      join(import.meta.dirname, "../../bin/edgeid.mjs"),
      "audit",
      "verify",
      "--data",
      dataDir,
    ]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain(`audit chain BROKEN at record ${victim}: content changed`);
  }, 60_000); // CLI processes that open and walk the database, one per step
});
