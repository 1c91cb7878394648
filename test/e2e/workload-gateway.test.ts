/**
 * Workload identity end to end: a real `edgeid serve` (its embedded MQTT broker and its
 * public listener), a real `edgeid-agent run --workload-socket` enrolled with a bootstrap
 * token, entries registered with the real CLI through the operator API (and the changes
 * whose push is timed made on the operator API with curl), and as the workload Python's gRPC (Debian's python3-grpcio, the project's .proto compiled
 * at test time with grpc_tools.protoc) running as other users (setpriv).
 *
 * - The matching uid gets its X.509-SVID from the server: `openssl verify` against the
 *   bundle it was given and against the server's root; `openssl x509 -text` shows one
 *   URI SAN (the entry's SPIFFE ID), CA:FALSE, digitalSignature; its key is the
 *   certificate's. Another uid gets PermissionDenied, a call without the security
 *   header InvalidArgument, on every method.
 * - Its JWT-SVID is accepted by the agent's ValidateJWTSVID and by python3-jwt against
 *   the JWKS fetched with curl from the server's `GET /spiffe/bundle` on the public
 *   listener; both refuse it for another audience. Expired: the server has no clock to
 *   inject and its shortest SVID lifetime is a minute, so the expired token is signed,
 *   with PyJWT, by the trust domain's own current JWT key (decrypted from the data
 *   directory with openssl and the CA passphrase), exp an hour ago; the same key signs a
 *   control token that is not expired, which both accept, so the refusal is the expiry's.
 * - On an open FetchX509SVID stream: a second entry for the same uid brings a message
 *   with two SVIDs, its deletion one with one again, each within seconds (the MQTT
 *   command `workloads-changed`; the agent polls only every 30 s), and the latency is
 *   printed. The deleted entry's SVID is revoked (`openssl ocsp`).
 * - Revoking the device ends the open stream with PermissionDenied, new calls get
 *   PermissionDenied, and `openssl ocsp` on the public listener says the SVID is revoked.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_BIN, AGENT_ENV, agentEnrollArgs } from "./support/agent.ts";
import { cliCreateToken, edgeid } from "./support/cli.ts";
import { curl } from "./support/curl.ts";
import { normalizeSerial, openssl, x509Text } from "./support/openssl.ts";
import { eventually, makeWorkDir, nextFileSeq, ROOT, removeDir, run, runOk, sleep } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

const PYTHON = "/usr/bin/python3";
const UID_OK = 41001;
const UID_OTHER = 41002;
const AUDIENCE = "billing";
const DEVICE = "gw-wl";
const METHODS = ["FetchX509SVID", "FetchX509Bundles", "FetchJWTBundles", "FetchJWTSVID", "ValidateJWTSVID"];
/** The agent polls its entries every 30 s: a change seen sooner came by MQTT. */
const PUSH_WITHIN_MS = 10_000;

let work: string;
let dataDir: string;
let adminToken: string;
let server: TestServer;
let gen: string;
let socket: string;
let jwksFile: string;
let agent: ChildProcess | undefined;
let agentLog = "";
const streams = new Set<ChildProcess>();
/** The entry every test's workload (uid UID_OK running Debian's python3) matches. */
let billing: EntryView;

interface EntryView {
  id: string;
  spiffeId: string;
}
type Answer = Record<string, Record<string, unknown> & { error?: string; details?: string }>;
interface StreamLine {
  at: number;
  svids?: { spiffe_id: string; x509_svid: string }[];
  error?: string;
  details?: string;
  end?: boolean;
}

const pem = (der: Uint8Array) =>
  `-----BEGIN CERTIFICATE-----\n${Buffer.from(der)
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "")}\n-----END CERTIFICATE-----\n`;

/** Concatenated DER certificates (the Workload API's x509_svid and bundle fields), one by one. */
function splitDer(b64: string): Buffer[] {
  const buf = Buffer.from(b64, "base64");
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; ) {
    if (buf[i] !== 0x30) throw new Error(`not a DER SEQUENCE at ${i}`);
    let len = buf[i + 1] as number;
    let header = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + (buf[i + 2 + k] as number);
      header += n;
    }
    out.push(buf.subarray(i, i + header + len));
    i += header + len;
  }
  return out;
}

/**
 * The operator API with curl (for the changes whose push is timed: a CLI run costs a
 * Node start and its exit is seen after the push arrived).
 */
const api = (method: "POST" | "DELETE", path: string, body?: unknown) =>
  curl(work, `${server.url}/api/v1${path}`, {
    cacert: server.rootPemFile,
    bearer: adminToken,
    ...(body !== undefined ? { body: JSON.stringify(body), contentType: "application/json" } : {}),
    extraArgs: ["-X", method],
  });

/** The real CLI through the operator API of the running server (not on its data directory). */
const operator = (args: string[]) =>
  edgeid([...args, "--server", server.url, "--cacert", server.rootPemFile], {
    env: { ...process.env, EDGEID_OPERATOR_TOKEN: adminToken },
  });

const PY_ENV = { PATH: "/usr/bin:/bin", HOME: "/nonexistent", PYTHONDONTWRITEBYTECODE: "1" };
const asUserArgs = (uid: number, extra: string[]) => [
  `--reuid=${uid}`,
  `--regid=${uid}`,
  "--clear-groups",
  PYTHON,
  join(gen, "workload_client.py"),
  gen,
  socket,
  AUDIENCE,
  ...extra,
];

/** The Python client, run once as `uid` (gid = uid, no supplementary groups). */
async function asUser(uid: number, ...extra: string[]): Promise<Answer> {
  const r = await runOk("setpriv", asUserArgs(uid, extra), { env: PY_ENV, timeoutMs: 60_000 });
  return JSON.parse(r.stdout) as Answer;
}

/** The Python client keeping FetchX509SVID open as `uid`: every message it got, as they come. */
function streamAs(uid: number) {
  const child = spawn("setpriv", asUserArgs(uid, ["--stream"]), { env: PY_ENV, stdio: ["ignore", "pipe", "pipe"] });
  streams.add(child);
  const lines: StreamLine[] = [];
  let pending = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (c: string) => {
    pending += c;
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      lines.push(JSON.parse(pending.slice(0, nl)) as StreamLine);
      pending = pending.slice(nl + 1);
    }
  });
  child.stderr?.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return {
    lines,
    /** The first message from index `from` on that satisfies `check`, within `ms`. */
    async next(from: number, check: (l: StreamLine) => boolean, ms = 20_000): Promise<StreamLine & { index: number }> {
      const deadline = Date.now() + ms;
      for (;;) {
        const i = lines.findIndex((l, k) => k >= from && check(l));
        if (i >= 0) return { ...(lines[i] as StreamLine), index: i };
        if (Date.now() > deadline)
          throw new Error(`no such stream message within ${ms} ms: ${JSON.stringify(lines)}\n${stderr}\n${agentLog}`);
        await sleep(20);
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      streams.delete(child);
    },
  };
}

const spiffeIds = (l: StreamLine) => (l.svids ?? []).map((s) => s.spiffe_id).sort();

/** Leaf and issuing CA of an x509_svid field as PEM files; the leaf's serial as openssl prints it. */
async function svidFiles(x509Svid: string) {
  const [leaf, ...intermediates] = splitDer(x509Svid);
  const dir = join(work, `svid-${nextFileSeq()}`);
  mkdirSync(dir);
  const files = { leaf: join(dir, "leaf.pem"), chain: join(dir, "chain.pem") };
  writeFileSync(files.leaf, pem(leaf as Buffer));
  writeFileSync(files.chain, intermediates.map(pem).join(""));
  const serial = (await openssl(["x509", "-in", files.leaf, "-noout", "-serial"])).stdout
    .trim()
    .replace(/^serial=/, "");
  return { ...files, dir, serial: normalizeSerial(serial.toLowerCase()) };
}

/** `openssl ocsp` for a workload SVID at the OCSP URL written in it (the public listener). */
async function ocspStatus(files: { leaf: string; chain: string }): Promise<string | undefined> {
  const url = (await openssl(["x509", "-in", files.leaf, "-noout", "-ocsp_uri"])).stdout.trim();
  expect(url).toBe(`${server.publicHttp}/pki/ocsp`);
  const o = await run("openssl", [
    "ocsp",
    "-issuer",
    files.chain,
    "-cert",
    files.leaf,
    "-url",
    url,
    "-CAfile",
    server.rootPemFile,
  ]);
  return /: (good|revoked|unknown)\b/.exec(o.stdout)?.[1];
}

beforeAll(async () => {
  work = await makeWorkDir("workload-gateway");
  // Other users reach the compiled client, the JWKS file and the socket under it.
  chmodSync(work, 0o755);
  gen = join(work, "gen");
  mkdirSync(gen, { mode: 0o755 });
  const protoIncludes = (
    await runOk(PYTHON, [
      "-c",
      "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))",
    ])
  ).stdout.trim();
  const compiled = runOk(PYTHON, [
    "-m",
    "grpc_tools.protoc",
    `-I${join(ROOT, "device-client/proto")}`,
    `-I${protoIncludes}`,
    `--python_out=${gen}`,
    `--grpc_python_out=${gen}`,
    "workload.proto",
  ]);
  const init = await cliInitDataDir(work, "example.org");
  dataDir = init.dataDir;
  adminToken = init.adminToken;
  server = await startServer(dataDir, work);
  expect(server.mqttUrl).toBeTruthy();
  expect(server.publicHttp).toBeTruthy();
  await compiled;
  writeFileSync(join(gen, "workload_client.py"), readFileSync(join(ROOT, "test/support/workload_client.py")));
  for (const f of ["workload_pb2.py", "workload_pb2_grpc.py", "workload_client.py"]) chmodSync(join(gen, f), 0o644);

  // The device, enrolled by the agent with a bootstrap token, pinned to the root.
  const fingerprint = new X509Certificate(readFileSync(server.rootPemFile)).fingerprint256
    .replace(/:/g, "")
    .toLowerCase();
  const { token } = await cliCreateToken(dataDir, DEVICE);
  const agentHome = join(work, "agent");
  const enrolled = run(
    process.execPath,
    [
      AGENT_BIN,
      ...agentEnrollArgs(server, fingerprint, DEVICE, token, agentHome, ["--mqtt", server.mqttUrl as string]),
    ],
    { env: AGENT_ENV, timeoutMs: 60_000 },
  );

  // The workload: uid and gid UID_OK running Debian's python3, as the kernel shows its
  // executable (/proc/PID/exe); registered with the CLI while the agent enrolls. Another
  // entry (on the operator API) names UID_OTHER but another program.
  const python = realpathSync(PYTHON);
  const pythonSha = createHash("sha256").update(readFileSync(python)).digest("hex");
  const [registered, other] = await Promise.all([
    operator([
      "workloads",
      "register",
      "--device",
      DEVICE,
      "--name",
      "billing",
      "--selector",
      `unix:uid:${UID_OK}`,
      "--selector",
      `unix:gid:${UID_OK}`,
      "--selector",
      `unix:path:${python}`,
      "--selector",
      `unix:sha256:${pythonSha}`,
      "--jwt-audience",
      AUDIENCE,
      "--json",
    ]),
    api("POST", "/workloads", {
      device: DEVICE,
      name: "other",
      selectors: [`unix:uid:${UID_OTHER}`, "unix:path:/usr/bin/not-python"],
    }),
  ]);
  billing = JSON.parse(registered.stdout) as EntryView;
  expect(billing.spiffeId).toBe(`spiffe://example.org/device/${DEVICE}/workload/billing`);
  expect(other.status, other.text).toBe(201);
  const enrollment = await enrolled;
  expect(enrollment.code, enrollment.stderr).toBe(0);

  socket = join(work, "run", "workload.sock");
  agent = spawn(process.execPath, [AGENT_BIN, "run", "--dir", agentHome, "--workload-socket", socket], {
    env: AGENT_ENV,
    stdio: ["ignore", "pipe", "pipe"],
  });
  for (const s of [agent.stdout, agent.stderr])
    s?.setEncoding("utf8").on("data", (c: string) => {
      agentLog += c;
    });
  // Ready: the socket listens and the broker granted the agent's command subscription.
  const deadline = Date.now() + 30_000;
  while (!(existsSync(socket) && agentLog.includes("mqtt subscribed"))) {
    if (Date.now() > deadline || agent.exitCode !== null) throw new Error(`agent not ready:\n${agentLog}`);
    await sleep(50);
  }

  // The trust domain's bundle as any relying party gets it: curl, plain HTTP, public listener.
  const bundle = await curl(work, `${server.publicHttp}/spiffe/bundle`);
  expect(bundle.status, bundle.text).toBe(200);
  jwksFile = join(work, "spiffe-bundle.json");
  writeFileSync(jwksFile, bundle.body, { mode: 0o644 });
}, 120_000);

afterAll(async () => {
  for (const s of streams) s.kill("SIGKILL");
  if (agent && agent.exitCode === null && agent.signalCode === null) {
    const gone = new Promise((r) => agent?.once("exit", r));
    agent.kill("SIGTERM");
    await gone;
  }
  await server?.stop();
  await removeDir(work);
});

describe("workload identity on the gateway (real server, real agent, Python's gRPC as the workload)", () => {
  it("gives the matching uid its X.509-SVID from the server: verified by openssl, one URI SAN, not a CA, its key", async () => {
    const a = await asUser(UID_OK);
    const x = a.FetchX509SVID as {
      svids: { spiffe_id: string; x509_svid: string; x509_svid_key: string; bundle: string }[];
    };
    expect(x.svids, JSON.stringify(a)).toHaveLength(1);
    const svid = x.svids[0] as (typeof x.svids)[number];
    expect(svid.spiffe_id).toBe(billing.spiffeId);
    const files = await svidFiles(svid.x509_svid);
    const bundleFile = join(files.dir, "bundle.pem");
    writeFileSync(bundleFile, splitDer(svid.bundle).map(pem).join(""));
    for (const anchors of [bundleFile, server.rootPemFile]) {
      const v = await run("openssl", ["verify", "-CAfile", anchors, "-untrusted", files.chain, files.leaf]);
      expect(v.stdout.trim(), v.stderr).toBe(`${files.leaf}: OK`);
    }
    const text = await x509Text(files.leaf);
    // The whole SAN extension is that one URI (no other name, no comma).
    expect(/Subject Alternative Name:.*\n\s*(.*)\n/.exec(text)?.[1]?.trim()).toBe(`URI:${billing.spiffeId}`);
    expect(text).toMatch(/Basic Constraints: critical\s*\n\s*CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    // x509_svid_key is the certificate's key (openssl reads the PKCS#8 DER).
    const keyFile = join(files.dir, "key.der");
    writeFileSync(keyFile, Buffer.from(svid.x509_svid_key, "base64"));
    const keyPub = (await openssl(["pkey", "-inform", "DER", "-in", keyFile, "-pubout"])).stdout;
    const certPub = (await openssl(["x509", "-in", files.leaf, "-noout", "-pubkey"])).stdout;
    expect(keyPub).toBe(certPub);
    expect((await ocspStatus(files)) ?? "").toBe("good");

    const xb = a.FetchX509Bundles as { bundles: Record<string, string> };
    expect(Object.keys(xb.bundles)).toEqual(["spiffe://example.org"]);
    expect(xb.bundles["spiffe://example.org"]).toBe(svid.bundle);
    const jb = a.FetchJWTBundles as { bundles: Record<string, { keys: { use: string }[] }> };
    expect(jb.bundles["spiffe://example.org"]?.keys.map((k) => k.use)).toContain("jwt-svid");
  }, 60_000);

  it("denies another uid on every method (PermissionDenied)", async () => {
    const a = await asUser(UID_OTHER);
    for (const method of METHODS) expect(a[method]?.error, method).toBe("PERMISSION_DENIED");
  }, 60_000);

  it("refuses calls without the workload.spiffe.io header (InvalidArgument)", async () => {
    const a = await asUser(UID_OK, "--no-header");
    for (const method of METHODS) expect(a[method]?.error, method).toBe("INVALID_ARGUMENT");
  }, 60_000);

  it("gives a JWT-SVID that ValidateJWTSVID and PyJWT (the server's public JWKS) accept, refuse for another audience and when expired", async () => {
    const a = await asUser(UID_OK, "--jwks", jwksFile, "--wrong-audience", "not-billing");
    const j = a.FetchJWTSVID as { svids: { spiffe_id: string; svid: string }[] };
    expect(
      j.svids?.map((s) => s.spiffe_id),
      JSON.stringify(a),
    ).toEqual([billing.spiffeId]);
    const v = a.ValidateJWTSVID as { spiffe_id: string; claims: { sub: string; aud: string[]; exp: number } };
    expect(v.spiffe_id).toBe(billing.spiffeId);
    expect(v.claims.aud).toEqual([AUDIENCE]);
    const py = a.pyjwt as { sub: string; aud: string[]; exp: number; kid: string };
    expect(py).toMatchObject({ sub: billing.spiffeId, aud: [AUDIENCE] });
    expect(py.exp).toBe(v.claims.exp);
    // At most an hour (the JWT-SVID maximum), the entry's TTL being the default hour.
    expect(py.exp * 1000 - Date.now()).toBeLessThanOrEqual(3600_000);
    expect(py.exp * 1000 - Date.now()).toBeGreaterThan(3000_000);
    // The signing key is one of the public bundle's jwt-svid keys.
    const jwks = JSON.parse(readFileSync(jwksFile, "utf8")) as { keys: { use: string; kid?: string }[] };
    expect(jwks.keys.filter((k) => k.use === "jwt-svid").map((k) => k.kid)).toContain(py.kid);
    // Another audience: refused by both.
    expect(a.ValidateJWTSVID_wrong_audience?.error).toBe("INVALID_ARGUMENT");
    expect(a.pyjwt_wrong_audience?.error).toBe("InvalidAudienceError");

    // Tokens signed with PyJWT by the trust domain's own key (decrypted by openssl with the
    // CA passphrase): exp an hour ago, and a control that is not expired; then the same
    // claims under a key that is not in the bundle.
    const keyFile = join(work, "jwt-signing-key.pem");
    await openssl([
      "pkey",
      "-in",
      join(dataDir, "jwt", `${py.kid}.key`),
      "-passin",
      `file:${join(dataDir, "secrets", "ca-passphrase")}`,
      "-out",
      keyFile,
    ]);
    const foreignKey = join(work, "foreign-key.pem");
    await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", foreignKey]);
    const now = Math.floor(Date.now() / 1000);
    const sign = async (name: string, key: string, iat: number, exp: number) => {
      const r = await runOk(PYTHON, [
        "-c",
        "import jwt, sys; print(jwt.encode({'sub': sys.argv[3], 'aud': [sys.argv[4]], 'iat': int(sys.argv[5]), 'exp': int(sys.argv[6])}, open(sys.argv[1]).read(), algorithm='ES256', headers={'kid': sys.argv[2], 'typ': 'JWT'}))",
        key,
        py.kid,
        billing.spiffeId,
        AUDIENCE,
        String(iat),
        String(exp),
      ]);
      const file = join(work, `${name}.jwt`);
      writeFileSync(file, r.stdout.trim(), { mode: 0o644 });
      return `${name}=${file}`;
    };
    const b = await asUser(
      UID_OK,
      "--jwks",
      jwksFile,
      "--token",
      await sign("expired", keyFile, now - 7200, now - 3600),
      "--token",
      await sign("control", keyFile, now, now + 600),
      "--token",
      await sign("foreign", foreignKey, now, now + 600),
    );
    const t = b.tokens as Record<string, { agent: Record<string, unknown>; pyjwt: Record<string, unknown> }>;
    expect(t.control?.agent.spiffe_id, JSON.stringify(t)).toBe(billing.spiffeId);
    expect(t.control?.pyjwt.sub).toBe(billing.spiffeId);
    expect(t.expired?.agent).toMatchObject({ error: "INVALID_ARGUMENT" });
    expect(t.expired?.agent.details).toMatch(/"exp"/);
    expect(t.expired?.pyjwt.error).toBe("ExpiredSignatureError");
    expect(t.foreign?.agent).toMatchObject({ error: "INVALID_ARGUMENT" });
    expect(t.foreign?.pyjwt.error).toBe("InvalidSignatureError");
  }, 90_000);

  it("pushes an entry added for the uid, then its deletion, on the open FetchX509SVID stream within seconds", async () => {
    const s = streamAs(UID_OK);
    try {
      const first = await s.next(0, (l) => (l.svids?.length ?? 0) > 0);
      expect(spiffeIds(first)).toEqual([billing.spiffeId]);
      const billingSvid = first.svids?.[0]?.x509_svid;

      const started = Date.now();
      const r = await api("POST", "/workloads", { device: DEVICE, name: "reports", selectors: [`unix:uid:${UID_OK}`] });
      const returned = Date.now();
      expect(r.status, r.text).toBe(201);
      const added = JSON.parse(r.text) as EntryView;
      const two = await s.next(first.index + 1, (l) => spiffeIds(l).length === 2, PUSH_WITHIN_MS);
      expect(spiffeIds(two)).toEqual([billing.spiffeId, added.spiffeId].sort());
      // The first SVID is the same certificate, not reissued.
      expect(two.svids?.find((x) => x.spiffe_id === billing.spiffeId)?.x509_svid).toBe(billingSvid);
      // Nothing else came between (no empty or partial message).
      expect(s.lines.slice(first.index + 1, two.index).map(spiffeIds)).toEqual(
        s.lines.slice(first.index + 1, two.index).map(() => [billing.spiffeId]),
      );
      const addLatency = { sinceCallStart: two.at - started, sinceCallReturned: two.at - returned };
      const reports = await svidFiles(two.svids?.find((x) => x.spiffe_id === added.spiffeId)?.x509_svid as string);

      const started2 = Date.now();
      const d = await api("DELETE", `/workloads/${added.id}`);
      const returned2 = Date.now();
      expect(d.status, d.text).toBe(200);
      const one = await s.next(two.index + 1, () => true, PUSH_WITHIN_MS);
      expect(one.error, JSON.stringify(one)).toBeUndefined();
      expect(spiffeIds(one)).toEqual([billing.spiffeId]);
      const deleteLatency = { sinceCallStart: one.at - started2, sinceCallReturned: one.at - returned2 };
      // The figures, for the record (the assertions are the test): ms from the operator
      // API call's start and return to the Python process reading the stream message.
      process.stdout.write(
        `${JSON.stringify({ measure: "workload entry change → open FetchX509SVID stream (ms)", added: addLatency, deleted: deleteLatency })}\n`,
      );
      expect(addLatency.sinceCallStart).toBeLessThan(PUSH_WITHIN_MS);
      expect(deleteLatency.sinceCallStart).toBeLessThan(PUSH_WITHIN_MS);
      // Deleting the entry revoked its SVID.
      expect(
        await eventually(
          () => ocspStatus(reports),
          (st) => st === "revoked",
        ),
      ).toBe("revoked");
    } finally {
      await s.stop();
    }
  }, 90_000);

  it("ends the open stream with PermissionDenied when the device is revoked; new calls are denied; OCSP says revoked", async () => {
    const s = streamAs(UID_OK);
    try {
      const first = await s.next(0, (l) => (l.svids?.length ?? 0) > 0);
      expect(spiffeIds(first)).toEqual([billing.spiffeId]);
      const files = await svidFiles(first.svids?.[0]?.x509_svid as string);
      expect(await ocspStatus(files)).toBe("good");

      const started = Date.now();
      const r = await api("POST", `/devices/${DEVICE}/revoke`, { reason: "keyCompromise" });
      const returned = Date.now();
      expect(r.status, r.text).toBe(200);
      const revoked = JSON.parse(r.text) as { revokedSerials: string[] };
      expect(revoked.revokedSerials.map((x) => normalizeSerial(x.toLowerCase()))).toContain(files.serial);
      const last = await s.next(first.index + 1, (l) => l.error !== undefined || l.end === true, PUSH_WITHIN_MS);
      expect(last.error, JSON.stringify(last)).toBe("PERMISSION_DENIED");
      // Nothing after the first message carried an SVID.
      for (const l of s.lines.slice(first.index + 1)) expect(l.svids ?? []).toEqual([]);
      process.stdout.write(
        `${JSON.stringify({ measure: "device revoked → open FetchX509SVID stream ended (ms)", sinceCallStart: last.at - started, sinceCallReturned: last.at - returned })}\n`,
      );

      const a = await asUser(UID_OK);
      for (const method of METHODS) expect(a[method]?.error, method).toBe("PERMISSION_DENIED");
      expect(
        await eventually(
          () => ocspStatus(files),
          (st) => st === "revoked",
        ),
      ).toBe("revoked");
    } finally {
      await s.stop();
    }
  }, 90_000);
});
