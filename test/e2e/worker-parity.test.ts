/**
 * The same EST checks, with openssl and curl, against the Node server and against the
 * Worker under `wrangler dev` (workerd, a local D1 migrated with `wrangler d1
 * migrations apply`, CA material from `edgeid worker dev-vars`, the first admin from
 * `edgeid worker admin` through `wrangler d1 execute`): cacerts, enrollment with a
 * token from the operator API, a token used twice, revocation over the API, then OCSP
 * and the CRL. Mutual TLS is Cloudflare's on Workers, so re-enrollment is tested in
 * test/workers/ with `cf.tlsClientAuth`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgeid } from "./support/cli.ts";
import { curl } from "./support/curl.ts";
import { openssl, opensslCsrNewKeyP256, pkcs7ToPem, writePem, x509Serial } from "./support/openssl.ts";
import { freePort, makeWorkDir, ROOT, removeDir, run } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");
const OFFLINE = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", CI: "1" };

interface Target {
  name: string;
  url: string;
  admin: string;
  /** Trust for TLS (Node); the local Worker speaks plain HTTP. */
  cacert?: string;
  root: string;
  issuing: string;
  stop(): Promise<void>;
}

let work: string;
const targets: Target[] = [];

async function nodeTarget(): Promise<Target> {
  const dir = join(work, "node");
  await run("mkdir", ["-p", dir]);
  const init = await cliInitDataDir(dir, "parity.example");
  const server: TestServer = await startServer(init.dataDir, dir, 0, { mqtt: "off" });
  return {
    name: "node",
    url: server.url,
    admin: init.adminToken,
    cacert: server.rootPemFile,
    ...(await caFiles(dir, init.dataDir)),
    stop: () => server.stop(),
  };
}

async function caFiles(dir: string, dataDir: string): Promise<{ root: string; issuing: string }> {
  const root = join(dir, "root.pem");
  await writeFile(root, (await edgeid(["ca", "export", "--data", dataDir])).stdout);
  const issuing = join(dir, "issuing.pem");
  await writeFile(issuing, await readFile(join(dataDir, "ca", "issuing-p256.pem")));
  return { root, issuing };
}

async function workerTarget(): Promise<Target> {
  const dir = join(work, "worker");
  await run("mkdir", ["-p", dir]);
  const { dataDir } = await cliInitDataDir(dir, "parity.example");
  // A wrangler.toml of its own (the repository's Worker and migrations), so that the
  // local D1 and .dev.vars stay in the test's directory.
  await writeFile(
    join(dir, "wrangler.toml"),
    [
      'name = "edgeid-parity"',
      `main = "${join(ROOT, "server", "entry", "worker.ts")}"`,
      'compatibility_date = "2026-04-26"',
      'compatibility_flags = ["nodejs_compat"]',
      "[[d1_databases]]",
      'binding = "DB"',
      'database_name = "edgeid"',
      'database_id = "00000000-0000-0000-0000-000000000000"',
      `migrations_dir = "${join(ROOT, "migrations")}"`,
      "",
    ].join("\n"),
  );
  await edgeid(["worker", "dev-vars", "--data", dataDir, "--out", join(dir, ".dev.vars")]);
  const admin = JSON.parse((await edgeid(["worker", "admin", "--out", join(dir, "admin.sql"), "--json"])).stdout) as {
    token: string;
  };
  const common = ["--config", join(dir, "wrangler.toml"), "--persist-to", join(dir, "state")];
  const wr = async (args: string[]) => {
    const r = await run(WRANGLER, args, { env: OFFLINE, cwd: dir, timeoutMs: 120_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  };
  await wr(["d1", "migrations", "apply", "edgeid", "--local", ...common]);
  await wr(["d1", "execute", "edgeid", "--local", "--file", join(dir, "admin.sql"), ...common]);
  const port = await freePort();
  const child: ChildProcess = spawn(
    WRANGLER,
    ["dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--show-interactive-dev-session=false", ...common],
    { env: OFFLINE, cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`wrangler dev did not start within 60 s:\n${log}`)), 60_000);
    const onData = (c: Buffer) => {
      log += c.toString();
      if (log.includes("Ready on")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`wrangler dev exited (${code}):\n${log}`));
    });
  });
  return {
    name: "worker",
    url: `http://127.0.0.1:${port}`,
    admin: admin.token,
    ...(await caFiles(dir, dataDir)),
    stop: async () => {
      if (child.exitCode !== null) return;
      const done = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      await done;
    },
  };
}

beforeAll(async () => {
  work = await makeWorkDir("edgeid-parity-");
  targets.push(await nodeTarget(), await workerTarget());
}, 180_000);

afterAll(async () => {
  for (const t of targets) await t.stop();
  await removeDir(work);
});

const api = (t: Target, path: string, body?: unknown) =>
  curl(work, `${t.url}/api/v1${path}`, {
    bearer: t.admin,
    ...(t.cacert ? { cacert: t.cacert } : {}),
    ...(body === undefined ? {} : { method: "POST", body: JSON.stringify(body), contentType: "application/json" }),
  });

const est = (t: Target, op: string, body?: string, basic?: { user: string; password: string }) =>
  curl(work, `${t.url}/.well-known/est/${op}`, {
    ...(t.cacert ? { cacert: t.cacert } : {}),
    ...(body === undefined ? {} : { method: "POST", body, contentType: "application/pkcs10" }),
    ...(basic ? { basic } : {}),
  });

async function token(t: Target, deviceId: string): Promise<string> {
  const r = await api(t, "/tokens", { deviceId });
  expect(r.status, r.text).toBe(201);
  return (JSON.parse(r.text) as { tokens: { token: string }[] }).tokens[0]?.token as string;
}

/** certStatus from `openssl ocsp` (request by openssl, sent by curl, verified by openssl). */
async function ocsp(t: Target, certFile: string): Promise<string | undefined> {
  const req = `${certFile}.ocsp-req`;
  await openssl(["ocsp", "-issuer", t.issuing, "-cert", certFile, "-no_nonce", "-reqout", req]);
  const r = await curl(work, `${t.url}/pki/ocsp`, {
    method: "POST",
    body: await readFile(req),
    contentType: "application/ocsp-request",
    ...(t.cacert ? { cacert: t.cacert } : {}),
  });
  expect(r.status).toBe(200);
  await writeFile(`${req}.resp`, r.body);
  const check = await run("openssl", [
    "ocsp",
    "-respin",
    `${req}.resp`,
    "-reqin",
    req,
    "-issuer",
    t.issuing,
    "-cert",
    certFile,
    "-CAfile",
    t.root,
    "-no_nonce",
  ]);
  expect(`${check.stdout}${check.stderr}`).toContain("Response verify OK");
  return /: (good|revoked|unknown)\b/.exec(check.stdout)?.[1];
}

describe.each(["node", "worker"])("the same EST checks: %s", (name) => {
  const target = () => targets.find((t) => t.name === name) as Target;

  it("cacerts: the issuing CA and the root, certs-only PKCS#7", async () => {
    const r = await est(target(), "cacerts");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^application\/pkcs7-mime/);
    expect(await pkcs7ToPem(work, r.body)).toHaveLength(2);
  });

  it("enrolls an openssl CSR with a token once, and openssl verifies the certificate", async () => {
    const t = target();
    const id = `${name}-dev-1`;
    const secret = await token(t, id);
    const csr = await opensslCsrNewKeyP256(work, id);
    const r = await est(t, "simpleenroll", csr.base64, { user: id, password: secret });
    expect(r.status, r.text).toBe(200);
    const [pem] = await pkcs7ToPem(work, r.body);
    const cert = await writePem(work, `${id}.pem`, pem as string);
    const v = await run("openssl", ["verify", "-CAfile", t.root, "-untrusted", t.issuing, cert]);
    expect(v.stdout.trim(), v.stderr).toBe(`${cert}: OK`);
    const again = await est(t, "simpleenroll", csr.base64, { user: id, password: secret });
    expect(again.status).toBe(401);
    expect(again.text).toMatch(/already been used/);
  });

  it("revocation over the operator API reaches OCSP and the CRL", async () => {
    const t = target();
    const id = `${name}-dev-2`;
    const csr = await opensslCsrNewKeyP256(work, id);
    const r = await est(t, "simpleenroll", csr.base64, { user: id, password: await token(t, id) });
    const [pem] = await pkcs7ToPem(work, r.body);
    const cert = await writePem(work, `${id}.pem`, pem as string);
    expect(await ocsp(t, cert)).toBe("good");
    const revoked = await api(t, `/devices/${id}/revoke`, { reason: "keyCompromise" });
    expect(revoked.status, revoked.text).toBe(200);
    expect(await ocsp(t, cert)).toBe("revoked");
    const serial = await x509Serial(cert);
    let listed = false;
    for (let i = 0; i < 50 && !listed; i++) {
      const crl = await curl(work, `${t.url}/pki/crl/issuing-p256.crl`, t.cacert ? { cacert: t.cacert } : {});
      expect(crl.status).toBe(200);
      const file = join(work, `${id}-${i}.crl`);
      await writeFile(file, crl.body);
      const text = await run("openssl", [
        "crl",
        "-inform",
        "DER",
        "-in",
        file,
        "-CAfile",
        t.issuing,
        "-noout",
        "-text",
      ]);
      expect(text.stderr).toContain("verify OK");
      listed = text.stdout
        .replace(/Serial Number: 0*/g, "Serial Number: ")
        .toLowerCase()
        .includes(`serial number: ${serial}`);
      if (!listed) await new Promise((res) => setTimeout(res, 100));
    }
    expect(listed).toBe(true);
  });
});
