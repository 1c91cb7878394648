/**
 * Shared helpers for the end-to-end suite. Everything here drives the real `edgeid`
 * CLI and the real `openssl` and `curl` binaries as independent clients; nothing
 * imports the server's own code.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect as connectTcp, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const EDGEID_BIN = join(ROOT, "bin", "edgeid.mjs");

// ---------------------------------------------------------------------------------
// Processes

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The signal that ended the process, if one did (code is then -1). */
  signal?: string;
}

export interface RunOptions {
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Runs a command to completion; never throws on a non-zero exit status. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 30_000,
        maxBuffer: 16 * 1024 * 1024,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        if (err?.signal && !err.killed) {
          resolvePromise({ code: -1, stdout, stderr, signal: err.signal });
          return;
        }
        if (err && typeof err.code !== "number") {
          reject(new Error(`${cmd} ${args.join(" ")} failed to run: ${err.message}\n${stderr}`));
          return;
        }
        resolvePromise({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Runs a command and insists on exit status 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

export const openssl = (args: readonly string[], opts?: RunOptions) => runOk("openssl", args, opts);

/** The edgeid CLI (bin/edgeid.mjs, TypeScript through tsx). */
export const edgeid = (args: readonly string[], opts?: RunOptions) =>
  runOk(process.execPath, [EDGEID_BIN, ...args], opts);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------
// Data directory, configuration, server

export async function makeWorkDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `edgeid-e2e-${prefix}-`));
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true });
}

export interface InitResult {
  dataDir: string;
  adminToken: string;
  trustDomain: string;
}

/** `edgeid init --json` into `<work>/data`. */
export async function initDataDir(work: string, trustDomain: string): Promise<InitResult> {
  const dataDir = join(work, "data");
  const r = await edgeid([
    "init",
    "--data",
    dataDir,
    "--trust-domain",
    trustDomain,
    "--hostname",
    "localhost",
    "--json",
  ]);
  const out = JSON.parse(r.stdout.trim()) as { adminToken: string; trustDomain: string };
  expect(out.adminToken).toBeTruthy();
  expect(out.trustDomain).toBe(trustDomain);
  return { dataDir, adminToken: out.adminToken, trustDomain };
}

/** Adds profiles to `<data>/edgeid.json` (before `serve`). */
export async function addProfiles(dataDir: string, profiles: Record<string, unknown>): Promise<void> {
  const file = join(dataDir, "edgeid.json");
  const config = JSON.parse(await readFile(file, "utf8")) as { profiles?: Record<string, unknown> };
  config.profiles = { device: {}, ...(config.profiles ?? {}), ...profiles };
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`);
}

export interface TestServer {
  url: string;
  /** The embedded broker, mqtts://127.0.0.1:PORT (unless started with mqtt: "off"). */
  mqttUrl?: string;
  /** https://127.0.0.1:PORT/.well-known/est */
  est: string;
  dataDir: string;
  /** Root CA PEM from `edgeid ca export`: the explicit trust anchor for TLS. */
  rootPemFile: string;
  process: ChildProcess;
  /** Everything the server logged so far (stdout and stderr). */
  log(): string;
  isRunning(): boolean;
  stop(): Promise<void>;
}

/**
 * Starts `edgeid serve --listen 127.0.0.1:0` and waits for its "listening" line. The
 * embedded broker listens on a free port too (`mqtt`: a HOST:PORT, or "off"); extra
 * arguments go after.
 */
export async function startServer(
  dataDir: string,
  work: string,
  port = 0,
  opts: { mqtt?: string; args?: string[] } = {},
): Promise<TestServer> {
  const args = ["serve", "--data", dataDir, "--listen", `127.0.0.1:${port}`];
  if (opts.mqtt !== "external") args.push("--mqtt-listen", opts.mqtt ?? "127.0.0.1:0");
  const child = spawn(process.execPath, [EDGEID_BIN, ...args, ...(opts.args ?? [])], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let exited = false;
  child.on("exit", () => {
    exited = true;
  });
  let mqttUrl: string | undefined;
  const url = await new Promise<string>((resolveUrl, reject) => {
    let pending = "";
    const timer = setTimeout(() => {
      reject(new Error(`server did not report "listening" within 20 s:\n${output}`));
    }, 20_000);
    child.stdout?.setEncoding("utf8");
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      output += chunk;
    });
    child.stdout?.on("data", (chunk: string) => {
      output += chunk;
      pending += chunk;
      let nl = pending.indexOf("\n");
      while (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        nl = pending.indexOf("\n");
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string; mqtt?: string };
          if (entry.msg === "listening" && entry.url) {
            clearTimeout(timer);
            mqttUrl = entry.mqtt;
            resolveUrl(entry.url);
          }
        } catch {
          // not a JSON line
        }
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal}):\n${output}`));
    });
  });
  expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const rootPemFile = join(work, "trust-anchor.pem");
  await writeFile(rootPemFile, (await edgeid(["ca", "export", "--data", dataDir])).stdout);
  return {
    url,
    mqttUrl,
    est: `${url}/.well-known/est`,
    dataDir,
    rootPemFile,
    process: child,
    log: () => output,
    isRunning: () => !exited && child.exitCode === null,
    stop: async () => {
      if (exited || child.exitCode !== null) return;
      const done = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await done;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------------------------
// CLI views

export interface TokenRow {
  deviceId: string;
  profile: string;
  tokenId: string;
  token: string;
  expiresAt: string;
}

function jsonLines<T>(text: string): T[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}

export async function createToken(
  dataDir: string,
  deviceId: string,
  opts: { profile?: string; ttl?: string } = {},
): Promise<TokenRow> {
  const args = ["token", "create", "--data", dataDir, "--device", deviceId, "--json"];
  if (opts.profile) args.push("--profile", opts.profile);
  if (opts.ttl) args.push("--ttl", opts.ttl);
  const rows = jsonLines<TokenRow>((await edgeid(args)).stdout);
  expect(rows).toHaveLength(1);
  return rows[0] as TokenRow;
}

export async function createTokenBatch(dataDir: string, prefix: string, count: number): Promise<TokenRow[]> {
  const r = await edgeid([
    "token",
    "create",
    "--data",
    dataDir,
    "--count",
    String(count),
    "--device-prefix",
    prefix,
    "--json",
  ]);
  return jsonLines<TokenRow>(r.stdout);
}

export interface AuditView {
  id: number | string;
  at: string;
  actor: string;
  action: string;
  outcome: string;
  serial: string | null;
  detail: { reason?: string; [k: string]: unknown } | null;
}

export interface DeviceView {
  id: string;
  profile: string;
  status: string;
  currentSerial: string | null;
  identity: string;
  lastEnrolledAt: string | null;
  certificates: {
    serial: string;
    status: string;
    profile: string;
    keyType: string;
    notBefore: string;
    notAfter: string;
    fingerprint: string;
    method: string;
    replacesSerial: string | null;
  }[];
  tokens: { id: string; profile: string; usedAt: string | null; usedSerial: string | null; expiresAt: string }[];
  audit: AuditView[];
}

export async function showDevice(dataDir: string, id: string): Promise<DeviceView> {
  const r = await edgeid(["devices", "show", id, "--data", dataDir, "--json"]);
  return JSON.parse(r.stdout.trim()) as DeviceView;
}

export async function listDevices(dataDir: string): Promise<{ id: string; status: string; profile: string }[]> {
  return jsonLines((await edgeid(["devices", "list", "--data", dataDir, "--json"])).stdout);
}

/** The device's audit trail has a denied record for `action` with this reason. */
export async function expectDeniedAudit(dataDir: string, deviceId: string, action: string, reason: string) {
  const device = await showDevice(dataDir, deviceId);
  const denied = device.audit.filter((a) => a.outcome === "denied" && a.action === action);
  expect(
    denied.map((a) => a.detail?.reason),
    `audit of ${deviceId}: ${JSON.stringify(device.audit)}`,
  ).toContain(reason);
  return device;
}

// ---------------------------------------------------------------------------------
// Keys and CSRs (openssl)

export type KeyAlg = "P-256" | "P-384" | "P-192" | "Ed25519" | "RSA-1024" | "RSA-2048";

/** Generates a private key with openssl genpkey; returns the PEM file path. */
export async function generateKey(dir: string, name: string, alg: KeyAlg): Promise<string> {
  const keyFile = join(dir, `${name}.key`);
  const algArgs: Record<KeyAlg, string[]> = {
    "P-256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "P-384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "P-192": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-192"],
    Ed25519: ["-algorithm", "ed25519"],
    "RSA-1024": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "RSA-2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
  };
  await openssl(["genpkey", ...algArgs[alg], "-out", keyFile]);
  return keyFile;
}

export interface Csr {
  keyFile: string;
  derFile: string;
  der: Buffer;
  /** The request body: base64 of the DER, wrapped at 64 columns like `openssl base64`. */
  base64: string;
}

export interface CsrOptions {
  /** openssl -subj, e.g. "/CN=dev1"; default "/CN=<name>". */
  subject?: string;
  /** Existing key to sign with; default a fresh one of `alg`. */
  keyFile?: string;
  alg?: KeyAlg;
  /** -addext values, e.g. "subjectAltName=URI:spiffe://x/device/y". */
  addext?: string[];
}

/** A PKCS#10 request made by `openssl req`, with a new or given key. */
export async function makeCsr(dir: string, name: string, opts: CsrOptions = {}): Promise<Csr> {
  const keyFile = opts.keyFile ?? (await generateKey(dir, name, opts.alg ?? "P-256"));
  const derFile = join(dir, `${name}.csr.der`);
  const args = ["req", "-new", "-key", keyFile, "-subj", opts.subject ?? `/CN=${name}`, "-outform", "DER"];
  for (const e of opts.addext ?? []) args.push("-addext", e);
  args.push("-out", derFile);
  await openssl(args);
  return finishCsr(dir, name, keyFile, derFile);
}

/**
 * The brief's recipe: `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256`
 * (key and request in one step).
 */
export async function makeCsrNewKeyP256(dir: string, name: string, subject = `/CN=${name}`): Promise<Csr> {
  const keyFile = join(dir, `${name}.key`);
  const derFile = join(dir, `${name}.csr.der`);
  await openssl([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyFile,
    "-subj",
    subject,
    "-outform",
    "DER",
    "-out",
    derFile,
  ]);
  return finishCsr(dir, name, keyFile, derFile);
}

async function finishCsr(dir: string, name: string, keyFile: string, derFile: string): Promise<Csr> {
  // The request body is produced by openssl too (base64 with 64-column lines).
  const b64File = join(dir, `${name}.csr.b64`);
  await openssl(["base64", "-e", "-in", derFile, "-out", b64File]);
  // Self-check: openssl itself accepts the request's signature.
  await openssl(["req", "-inform", "DER", "-in", derFile, "-noout", "-verify"]);
  return { keyFile, derFile, der: await readFile(derFile), base64: await readFile(b64File, "utf8") };
}

// ---------------------------------------------------------------------------------
// HTTP (curl)

export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  /** Header blocks of every response curl saw (several with --anyauth). */
  rawHeaders: string;
  body: Buffer;
  text: string;
  /** curl's -v trace (stderr). */
  trace: string;
}

export interface CurlOptions {
  method?: "GET" | "POST";
  /** Request body (string or bytes); sent with --data-binary. */
  body?: string | Buffer;
  contentType?: string | null;
  basic?: { user: string; password: string };
  /** curl --anyauth instead of --basic: credentials only after a 401 challenge. */
  anyauth?: boolean;
  bearer?: string;
  cert?: string;
  key?: string;
  cacert?: string;
  extraArgs?: string[];
}

let curlSeq = 0;

/** One HTTPS request with the curl CLI; trusts only the given CA file. */
export async function curl(work: string, url: string, opts: CurlOptions = {}): Promise<HttpResponse> {
  const n = ++curlSeq;
  const headerFile = join(work, `curl-${n}.headers`);
  const bodyFile = join(work, `curl-${n}.body`);
  const args = ["-sS", "-v", "--max-time", "20", "-D", headerFile, "-o", bodyFile, "-w", "%{http_code}"];
  if (opts.cacert) args.push("--cacert", opts.cacert);
  if (opts.basic) {
    args.push(opts.anyauth ? "--anyauth" : "--basic", "-u", `${opts.basic.user}:${opts.basic.password}`);
  }
  if (opts.bearer) args.push("--oauth2-bearer", opts.bearer);
  if (opts.cert) args.push("--cert", opts.cert);
  if (opts.key) args.push("--key", opts.key);
  if (opts.body !== undefined) {
    const reqFile = join(work, `curl-${n}.request`);
    await writeFile(reqFile, opts.body);
    args.push("--data-binary", `@${reqFile}`);
    // Large bodies: no "Expect: 100-continue" round trip.
    args.push("-H", "Expect:");
  }
  if (opts.contentType !== undefined)
    args.push("-H", `Content-Type:${opts.contentType === null ? "" : ` ${opts.contentType}`}`);
  if (opts.method) args.push("-X", opts.method);
  args.push(...(opts.extraArgs ?? []), url);
  const r = await run("curl", args);
  if (r.code !== 0) throw new Error(`curl ${url} failed (exit ${r.code}): ${r.stderr}`);
  const rawHeaders = await readFile(headerFile, "utf8");
  const body = await readFile(bodyFile).catch(() => Buffer.alloc(0));
  return {
    status: Number(r.stdout.trim()),
    headers: lastHeaderBlock(rawHeaders),
    rawHeaders,
    body,
    text: body.toString("utf8"),
    trace: r.stderr,
  };
}

function lastHeaderBlock(raw: string): Record<string, string> {
  const blocks = raw.split(/\r?\n\r?\n/).filter((b) => b.trim() !== "");
  const last = blocks[blocks.length - 1] ?? "";
  const headers: Record<string, string> = {};
  for (const line of last.split(/\r?\n/).slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

export interface EstPostOptions extends Omit<CurlOptions, "method" | "cacert"> {
  /** EST label (profile); default none. */
  label?: string;
}

/** POST to an EST operation with a PKCS#10 body (Content-Type application/pkcs10 unless given). */
export function estPost(
  server: TestServer,
  work: string,
  op: "simpleenroll" | "simplereenroll" | "serverkeygen",
  body: string | Buffer,
  opts: EstPostOptions = {},
): Promise<HttpResponse> {
  const { label, ...rest } = opts;
  const url = `${server.est}/${label ? `${label}/` : ""}${op}`;
  return curl(work, url, {
    contentType: "application/pkcs10",
    ...rest,
    body,
    method: "POST",
    cacert: server.rootPemFile,
  });
}

export function estGet(server: TestServer, work: string, path: string): Promise<HttpResponse> {
  return curl(work, `${server.est}/${path}`, { cacert: server.rootPemFile });
}

/** A refusal: the status, text/plain, and exactly one line of text. */
export function expectOneLineError(r: HttpResponse, status: number): void {
  expect(r.status, `body: ${r.text}`).toBe(status);
  expect(r.headers["content-type"]).toMatch(/^text\/plain/);
  expect(r.text.endsWith("\n")).toBe(true);
  const line = r.text.slice(0, -1);
  expect(line.length).toBeGreaterThan(0);
  expect(line).not.toMatch(/[\r\n]/);
}

// ---------------------------------------------------------------------------------
// PKCS#7 and certificates (openssl)

/** base64 PKCS#7 certs-only → PEM certificates, via `openssl base64 -d` and `openssl pkcs7 -print_certs`. */
export async function pkcs7ToPem(work: string, base64Body: string | Buffer): Promise<string[]> {
  const n = ++curlSeq;
  const b64File = join(work, `p7-${n}.b64`);
  const derFile = join(work, `p7-${n}.der`);
  // openssl base64 -d wants lines of at most 64 (76) characters and LF line ends.
  const text = (typeof base64Body === "string" ? base64Body : base64Body.toString("latin1")).replace(/\r/g, "");
  await writeFile(b64File, text.endsWith("\n") ? text : `${text}\n`);
  await openssl(["base64", "-d", "-in", b64File, "-out", derFile]);
  const r = await openssl(["pkcs7", "-inform", "DER", "-in", derFile, "-print_certs"]);
  return splitPem(r.stdout);
}

export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

export async function writePem(work: string, name: string, pems: string | string[]): Promise<string> {
  const file = join(work, name);
  const list = Array.isArray(pems) ? pems : [pems];
  await writeFile(file, list.map((p) => (p.endsWith("\n") ? p : `${p}\n`)).join(""));
  return file;
}

export async function x509Text(certFile: string): Promise<string> {
  return (await openssl(["x509", "-in", certFile, "-noout", "-text"])).stdout;
}

/** `openssl x509 -noout -serial` as lowercase hex without leading zeros. */
export async function x509Serial(certFile: string): Promise<string> {
  const out = (await openssl(["x509", "-in", certFile, "-noout", "-serial"])).stdout.trim();
  return normalizeSerial(out.replace(/^serial=/, "")) as string;
}

/**
 * Serials compared as numbers: lowercase hex without leading zeros (openssl prints
 * whole octets, the inventory may keep a leading zero nibble).
 */
export function normalizeSerial<T extends string | null | undefined>(hex: T): T {
  return (typeof hex === "string" ? hex.toLowerCase().replace(/^0+(?=.)/, "") : hex) as T;
}

export async function x509PublicKey(certFile: string): Promise<string> {
  return (await openssl(["x509", "-in", certFile, "-noout", "-pubkey"])).stdout;
}

export async function keyPublicKey(keyFile: string): Promise<string> {
  return (await openssl(["pkey", "-in", keyFile, "-pubout"])).stdout;
}

export async function x509Subject(certFile: string): Promise<string> {
  return (await openssl(["x509", "-in", certFile, "-noout", "-subject", "-nameopt", "RFC2253"])).stdout.trim();
}

/** `openssl verify` of a leaf against a CA file; returns the combined output. */
export function opensslVerify(caFile: string, certFile: string, extra: string[] = []): Promise<RunResult> {
  return run("openssl", ["verify", ...extra, "-CAfile", caFile, certFile]);
}

// ---------------------------------------------------------------------------------
// A throwaway CA made with openssl

export interface TestCa {
  certFile: string;
  keyFile: string;
}

export async function makeCa(dir: string, name: string, subject: string): Promise<TestCa> {
  const keyFile = await generateKey(dir, name, "P-256");
  const certFile = join(dir, `${name}.pem`);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    keyFile,
    "-subj",
    subject,
    "-days",
    "3650",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-addext",
    "subjectKeyIdentifier=hash",
    "-out",
    certFile,
  ]);
  return { certFile, keyFile };
}

/** A clientAuth end-entity certificate issued by `ca` with `openssl x509 -req`. */
export async function issueClientCert(
  dir: string,
  ca: TestCa,
  name: string,
  subject: string,
  opts: { keyFile?: string; days?: number } = {},
): Promise<{ certFile: string; keyFile: string }> {
  const csr = await makeCsr(dir, name, { subject, ...(opts.keyFile ? { keyFile: opts.keyFile } : {}) });
  const extFile = join(dir, `${name}.ext`);
  await writeFile(
    extFile,
    [
      "[ leaf ]",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature",
      "extendedKeyUsage = clientAuth",
      "subjectKeyIdentifier = hash",
      "authorityKeyIdentifier = keyid",
      "",
    ].join("\n"),
  );
  const certFile = join(dir, `${name}.pem`);
  await openssl([
    "x509",
    "-req",
    "-inform",
    "DER",
    "-in",
    csr.derFile,
    "-CA",
    ca.certFile,
    "-CAkey",
    ca.keyFile,
    "-set_serial",
    `0x7${randomBytes(8).toString("hex")}`,
    "-days",
    String(opts.days ?? 365),
    "-extfile",
    extFile,
    "-extensions",
    "leaf",
    "-out",
    certFile,
  ]);
  return { certFile, keyFile: csr.keyFile };
}

/** Token enrollment with openssl and curl: the device's certificate and key files. */
export async function enrollDevice(
  server: TestServer,
  work: string,
  deviceId: string,
): Promise<{ cert: string; key: string; token: string; serial: string }> {
  const { token } = await createToken(server.dataDir, deviceId);
  const csr = await makeCsrNewKeyP256(work, deviceId);
  const r = await estPost(server, work, "simpleenroll", csr.base64, { basic: { user: deviceId, password: token } });
  expect(r.status, `body: ${r.text}`).toBe(200);
  const [pem] = await pkcs7ToPem(work, r.body);
  const cert = await writePem(work, `${deviceId}.pem`, pem as string);
  return { cert, key: csr.keyFile, token, serial: await x509Serial(cert) };
}

/** Reads until `check` holds (polling every 100 ms); fails with the last value after `ms`. */
export async function eventually<T>(read: () => Promise<T>, check: (v: T) => boolean, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (check(v)) return v;
    if (Date.now() > until) throw new Error(`condition not met within ${ms} ms: ${JSON.stringify(v).slice(0, 600)}`);
    await sleep(100);
  }
}

/** `edgeid mqtt service-cert`: a service identity's certificate and key files. */
export async function serviceCert(
  dataDir: string,
  name: string,
  out: string,
): Promise<{ cert: string; key: string; identity: string }> {
  const r = await edgeid(["mqtt", "service-cert", "--name", name, "--out", out, "--data", dataDir, "--json"]);
  return JSON.parse(r.stdout) as { cert: string; key: string; identity: string };
}

// ---------------------------------------------------------------------------------
// Ports and Mosquitto

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export interface RunningMosquitto {
  url: string;
  /** The files `edgeid mqtt mosquitto-config` wrote (config, ca, crl, …). */
  files: Record<string, string>;
  process: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/**
 * A real `mosquitto` on a free port with the configuration `edgeid mqtt
 * mosquitto-config` writes for the data directory (into `<work>/broker`), ready when its
 * TLS port accepts connections. `readers`: service identities with read access.
 */
export async function startMosquitto(dataDir: string, work: string, readers: string[] = []): Promise<RunningMosquitto> {
  const port = await freePort();
  const out = await edgeid([
    "mqtt",
    "mosquitto-config",
    "--data",
    dataDir,
    "--out",
    join(work, "broker"),
    "--listen",
    `127.0.0.1:${port}`,
    ...readers.flatMap((r) => ["--reader", r]),
    "--json",
  ]);
  const { url, files } = JSON.parse(out.stdout) as { url: string; files: Record<string, string> };
  const child = spawn("mosquitto", ["-c", files.config as string], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout?.on("data", (c: Buffer) => {
    log += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    log += c.toString();
  });
  await eventually(
    () =>
      new Promise<boolean>((resolve) => {
        const socket = connectTcp(port, "127.0.0.1");
        socket.once("connect", () => {
          socket.destroy();
          resolve(true);
        });
        socket.once("error", () => resolve(child.exitCode !== null));
      }),
    (ready) => ready,
  );
  expect(child.exitCode, log).toBeNull();
  return {
    url,
    files,
    process: child,
    log: () => log,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------
// The device agent and the CA files its tests use

/** The agent's command line, run from its TypeScript sources. */
export const AGENT_BIN = join(ROOT, "device-client/bin/edgeid-agent.mjs");
export const AGENT_ENV = { ...process.env, EDGEID_AGENT_FROM_SOURCE: "1" };

/** `edgeid-agent enroll` arguments: a device with a token, pinned to the root's SHA-256, into `dir`. */
export function agentEnrollArgs(
  server: TestServer,
  rootFingerprint: string,
  deviceId: string,
  token: string,
  dir: string,
  extra: string[] = [],
): string[] {
  return [
    "enroll",
    "--server",
    server.url,
    "--ca-fingerprint",
    `sha256:${rootFingerprint}`,
    "--device",
    deviceId,
    "--token",
    token,
    "--dir",
    dir,
    ...extra,
  ];
}

/** The chain from /cacerts as one PEM file, and the issuing CA (the one not self-issued) alone, for openssl ocsp. */
export async function caFiles(server: TestServer, work: string): Promise<{ chainFile: string; issuingFile: string }> {
  const chain = await pkcs7ToPem(work, (await estGet(server, work, "cacerts")).body);
  const chainFile = await writePem(work, "chain.pem", chain);
  let issuingFile: string | undefined;
  for (const [i, pem] of chain.entries()) {
    const file = await writePem(work, `ca-${i}.pem`, pem);
    if ((await x509Subject(file)).includes("Issuing")) issuingFile = file;
  }
  expect(issuingFile).toBeTruthy();
  return { chainFile, issuingFile: issuingFile as string };
}
