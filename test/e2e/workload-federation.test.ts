/**
 * Federation between two real `edgeid serve` processes, end to end with workloads. Server A
 * (trust domain a.example) and server B (b.example) each federate with the other's bundle
 * endpoint (https_web, trusting the other's root through `caFile`). One real
 * `edgeid-agent run --workload-socket` per server, each enrolled with a bootstrap token.
 * A workload on gateway A (Python's gRPC from Debian, running as its own uid through
 * setpriv, the project's workload.proto compiled at test time) fetches its X.509-SVID and a
 * JWT-SVID; a workload on gateway B validates them with what its own agent gave it: the
 * federated X.509 bundle of spiffe://a.example (`openssl verify` succeeds with it and fails
 * with B's own bundle), ValidateJWTSVID on B's agent, and the JWT bundles.
 */
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_BIN, AGENT_ENV, agentEnrollArgs } from "./support/agent.ts";
import { type RunningAgent, startAgent, until } from "./support/agent-harness.ts";
import { edgeid } from "./support/cli.ts";
import { eventually, freePort, makeWorkDir, ROOT, removeDir, run, runOk } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

const execFileAsync = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const UID_A = 41011;
const UID_B = 41012;
const AUDIENCE = "spiffe://b.example/service/ledger";

type Answer = Record<string, Record<string, unknown> & { error?: string; details?: string }>;

interface Gateway {
  server: TestServer;
  deviceId: string;
  socket: string;
  agent: RunningAgent;
}

let work: string;
let gen: string;
let a: TestServer;
let b: TestServer;
let gwA: Gateway;
let gwB: Gateway;

/** Splits a DER concatenation of certificates (the Workload API's bundle fields) into PEM. */
function pemsOf(b64: string): string[] {
  const der = Buffer.from(b64, "base64");
  const out: string[] = [];
  let i = 0;
  while (i < der.length) {
    // SEQUENCE, long-form length (certificates are longer than 127 bytes).
    const lenBytes = (der[i + 1] as number) & 0x7f;
    let len = 0;
    for (let k = 0; k < lenBytes; k++) len = len * 256 + (der[i + 2 + k] as number);
    const end = i + 2 + lenBytes + len;
    out.push(new X509Certificate(der.subarray(i, end)).toString());
    i = end;
  }
  return out;
}

/** Distinct TCP ports free on 127.0.0.1 right now. */
async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = await freePort();
    if (!out.includes(p)) out.push(p);
  }
  return out;
}

async function configureFederation(dataDir: string, trustDomain: string, peerPort: number, peerRoot: string) {
  const file = join(dataDir, "edgeid.json");
  const config = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  config.federation = [
    {
      trustDomain,
      bundleEndpointUrl: `https://127.0.0.1:${peerPort}/spiffe/bundle`,
      profile: "https_web",
      caFile: peerRoot,
    },
  ];
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`);
}

/** Enrolls an agent with a bootstrap token and runs it with the Workload API on a socket. */
async function startGateway(server: TestServer, name: string, deviceId: string): Promise<Gateway> {
  const fingerprint = new X509Certificate(readFileSync(server.rootPemFile)).fingerprint256
    .replace(/:/g, "")
    .toLowerCase();
  const tokenArgs = ["token", "create", "--data", server.dataDir, "--device", deviceId, "--json"];
  const { token } = JSON.parse((await edgeid(tokenArgs, { timeoutMs: 120_000 })).stdout.trim()) as { token: string };
  const dir = join(work, `agent-${name}`);
  const enrolled = await run(
    process.execPath,
    [AGENT_BIN, ...agentEnrollArgs(server, fingerprint, deviceId, token, dir, ["--mqtt", server.mqttUrl as string])],
    { env: AGENT_ENV, timeoutMs: 60_000 },
  );
  expect(enrolled.code, enrolled.stderr).toBe(0);
  const socket = join(work, `run-${name}`, "workload.sock");
  const agent = startAgent(dir, ["--workload-socket", socket]);
  try {
    await until(
      `agent ${name}'s Workload API socket`,
      () => {
        if (agent.child.exitCode !== null) throw new Error(`agent ${name} exited:\n${agent.log()}`);
        return existsSync(socket);
      },
      90_000,
    );
  } catch (err) {
    agent.child.kill("SIGKILL");
    throw err;
  }
  return { server, deviceId, socket, agent };
}

async function stopGateway(g: Gateway | undefined): Promise<void> {
  await g?.agent.stop();
}

/** `edgeid workloads register` on the server's data directory. */
async function register(g: Gateway, name: string, uid: number, audiences: string[] = []) {
  const args = ["workloads", "register", "--data", g.server.dataDir, "--device", g.deviceId, "--name", name];
  args.push("--selector", `unix:uid:${uid}`, "--selector", `unix:gid:${uid}`, "--json");
  for (const aud of audiences) args.push("--jwt-audience", aud);
  return JSON.parse((await edgeid(args, { timeoutMs: 120_000 })).stdout.trim()) as { id: string; spiffeId: string };
}

/** The Python client as `uid` (gid = uid, no supplementary groups), against a gateway's socket. */
async function asWorkload(uid: number, g: Gateway, ...args: string[]): Promise<Answer> {
  const { stdout } = await execFileAsync(
    "setpriv",
    [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      "--clear-groups",
      PYTHON,
      join(gen, "federation_client.py"),
      gen,
      g.socket,
      ...args,
    ],
    {
      encoding: "utf8",
      env: { PATH: "/usr/bin:/bin", HOME: "/nonexistent", PYTHONDONTWRITEBYTECODE: "1" },
      timeout: 60_000,
    },
  );
  return JSON.parse(stdout) as Answer;
}

beforeAll(async () => {
  work = await makeWorkDir("workload-federation");
  chmodSync(work, 0o755);

  // The project's .proto compiled for Python, readable by the workloads' uids.
  gen = join(work, "gen");
  mkdirSync(gen, { mode: 0o755 });
  const protoInclude = (
    await runOk(PYTHON, [
      "-c",
      "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))",
    ])
  ).stdout.trim();
  await runOk(PYTHON, [
    "-m",
    "grpc_tools.protoc",
    `-I${join(ROOT, "device-client/proto")}`,
    `-I${protoInclude}`,
    `--python_out=${gen}`,
    `--grpc_python_out=${gen}`,
    "workload.proto",
  ]);
  copyFileSync(join(ROOT, "test/e2e/support/federation_client.py"), join(gen, "federation_client.py"));
  for (const f of ["workload_pb2.py", "workload_pb2_grpc.py", "federation_client.py"]) chmodSync(join(gen, f), 0o644);

  // Both configured before either starts, on ports chosen now: A federates with B, B with
  // A. A starts first (its first fetch of B's bundle fails and is retried 30 s later), then
  // B, whose first fetch of A's bundle succeeds at once.
  const initA = await cliInitDataDir(join(work, "a"), "a.example");
  const initB = await cliInitDataDir(join(work, "b"), "b.example");
  const ports = { a: await freePorts(3), b: await freePorts(3) };
  // Two servers, two agents and Python on two cores: starts may be slow.
  const listen = (p: number[]) => ({
    mqtt: `127.0.0.1:${p[1]}`,
    publicListen: `127.0.0.1:${p[2]}`,
    startLimitMs: 60_000,
  });
  await configureFederation(initA.dataDir, "b.example", ports.b[0] as number, join(initB.dataDir, "ca", "root-ca.pem"));
  await configureFederation(initB.dataDir, "a.example", ports.a[0] as number, join(initA.dataDir, "ca", "root-ca.pem"));
  a = await startServer(initA.dataDir, join(work, "a"), ports.a[0], listen(ports.a));
  b = await startServer(initB.dataDir, join(work, "b"), ports.b[0], listen(ports.b));

  gwA = await startGateway(a, "a", "gw-a");
  gwB = await startGateway(b, "b", "gw-b");
}, 400_000);

afterAll(async () => {
  await Promise.allSettled([stopGateway(gwA), stopGateway(gwB)]);
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await removeDir(work);
});

describe("two trust domains federating, workloads on a gateway of each", () => {
  it("B's workload validates A's X.509-SVID and JWT-SVID with the federated bundles from B's agent", async () => {
    const payments = await register(gwA, "payments", UID_A, [AUDIENCE]);
    expect(payments.spiffeId).toBe("spiffe://a.example/device/gw-a/workload/payments");
    const ledger = await register(gwB, "ledger", UID_B);
    expect(ledger.spiffeId).toBe("spiffe://b.example/device/gw-b/workload/ledger");

    // The agents learn their entries at their next poll, or at once over MQTT.
    const fromA = await eventually(
      () => asWorkload(UID_A, gwA, "fetch", AUDIENCE),
      (r) => Array.isArray(r.FetchX509SVID?.svids) && Array.isArray(r.FetchJWTSVID?.svids),
      60_000,
    );
    const svid = (fromA.FetchX509SVID as { svids: { spiffe_id: string; x509_svid: string; bundle: string }[] })
      .svids[0] as { spiffe_id: string; x509_svid: string; bundle: string };
    expect(svid.spiffe_id).toBe(payments.spiffeId);
    const jwt = (fromA.FetchJWTSVID as { svids: { spiffe_id: string; svid: string }[] }).svids[0] as {
      spiffe_id: string;
      svid: string;
    };
    expect(jwt.spiffe_id).toBe(payments.spiffeId);
    // A federates the other way too: B's trust anchors reach A's workloads (A's first fetch
    // of B's bundle, before B was up, failed; its retry and A's agent's next poll bring them).
    const aFederated = (
      await eventually(
        () => asWorkload(UID_A, gwA, "fetch", AUDIENCE),
        (r) => "spiffe://b.example" in ((r.FetchX509SVID?.federated_bundles as object | undefined) ?? {}),
        120_000,
      )
    ).FetchX509SVID?.federated_bundles as Record<string, string>;
    expect(Object.keys(aFederated)).toEqual(["spiffe://b.example"]);
    expect(pemsOf(aFederated["spiffe://b.example"] as string)).toEqual([readFileSync(b.rootPemFile, "utf8")]);

    const fromB = await eventually(
      () => asWorkload(UID_B, gwB, "validate", AUDIENCE, jwt.svid),
      (r) => "spiffe://a.example" in ((r.FetchX509Bundles?.bundles as object | undefined) ?? {}),
      90_000,
    );

    // (1) B's X.509 bundles include a.example: A's SVID verifies against it, not against B's own.
    const x509Bundles = (fromB.FetchX509Bundles as { bundles: Record<string, string> }).bundles;
    expect(Object.keys(x509Bundles).sort()).toEqual(["spiffe://a.example", "spiffe://b.example"]);
    const [leaf, ...chain] = pemsOf(svid.x509_svid);
    const files = join(work, "verify");
    mkdirSync(files, { recursive: true });
    writeFileSync(join(files, "leaf.pem"), leaf as string);
    writeFileSync(join(files, "chain.pem"), chain.join(""));
    writeFileSync(join(files, "a-from-b.pem"), pemsOf(x509Bundles["spiffe://a.example"] as string).join(""));
    writeFileSync(join(files, "b-own.pem"), pemsOf(x509Bundles["spiffe://b.example"] as string).join(""));
    const verify = (anchors: string) =>
      run("openssl", [
        "verify",
        "-CAfile",
        join(files, anchors),
        "-untrusted",
        join(files, "chain.pem"),
        "-purpose",
        "any",
        join(files, "leaf.pem"),
      ]);
    const good = await verify("a-from-b.pem");
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout.trim()).toBe(`${join(files, "leaf.pem")}: OK`);
    const bad = await verify("b-own.pem");
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toContain("unable to get local issuer certificate");
    // What B delivered for a.example is A's root, as A's own CLI exports it.
    expect(pemsOf(x509Bundles["spiffe://a.example"] as string)).toEqual([readFileSync(a.rootPemFile, "utf8")]);

    // (2) B's agent accepts A's JWT-SVID for the allowed audience and reports A's SPIFFE ID.
    const validated = fromB.ValidateJWTSVID as { spiffe_id: string; claims: { sub: string; aud: string[] } };
    expect(fromB.ValidateJWTSVID?.error, JSON.stringify(validated)).toBeUndefined();
    expect(validated.spiffe_id).toBe(payments.spiffeId);
    expect(validated.claims.sub).toBe(payments.spiffeId);
    expect(validated.claims.aud).toEqual([AUDIENCE]);
    // ... and not for another audience.
    const otherAudience = await asWorkload(UID_B, gwB, "validate", "spiffe://b.example/service/other", jwt.svid);
    expect(otherAudience.ValidateJWTSVID?.error).toBe("INVALID_ARGUMENT");

    // (3) B's JWT bundles include a.example: the key that signed A's token, as A publishes it.
    const jwtBundles = (fromB.FetchJWTBundles as { bundles: Record<string, { keys: Record<string, unknown>[] }> })
      .bundles;
    expect(Object.keys(jwtBundles).sort()).toEqual(["spiffe://a.example", "spiffe://b.example"]);
    const kid = JSON.parse(Buffer.from(jwt.svid.split(".")[0] as string, "base64url").toString()).kid as string;
    const published = JSON.parse((await run("curl", ["-sf", `${a.publicHttp}/spiffe/bundle`])).stdout) as {
      keys: Record<string, unknown>[];
    };
    const signer = published.keys.find((k) => k.kid === kid);
    expect(signer?.use).toBe("jwt-svid");
    expect(jwtBundles["spiffe://a.example"]?.keys).toContainEqual(signer);
    expect(jwtBundles["spiffe://b.example"]?.keys.some((k) => k.kid === kid)).toBe(false);
  }, 300_000);
});
