/**
 * The agent's SPIFFE Workload API in process: a real Unix socket, the real SO_PEERCRED
 * addon and /proc attestation of this very process, the SVID manager talking mutual TLS
 * to a real HTTPS server implementing the workload contract (real CA, real CSR
 * verification and signing), and a grpc-js client. The clock and the manager's timers are
 * the test's.
 */
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../device-client/src/agent.ts";
import { runCommand } from "../../device-client/src/commands.ts";
import type { Timers } from "../../device-client/src/deps.ts";
import { children } from "../../device-client/src/der.ts";
import { PROTO_PATH, WorkloadApi } from "../../device-client/src/workload-api.ts";
import {
  Attestor,
  loadPeerCred,
  matchesEntry,
  processStartTime,
  systemdUnit,
} from "../../device-client/src/workload-attestor.ts";
import { WorkloadHttpClient } from "../../device-client/src/workload-client.ts";
import { SvidManager } from "../../device-client/src/workload-svids.ts";
import { type ContractServer, startContractServer } from "../support/workload-contract-server.ts";
import { agentDir, pki } from "./support/pki.ts";

const proto = grpc.loadPackageDefinition(
  protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, defaults: true }),
) as unknown as { SpiffeWorkloadAPI: grpc.ServiceClientConstructor };

type Callback = (err: grpc.ServiceError | null, res: never) => void;
interface Client extends grpc.Client {
  FetchX509SVID(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchX509Bundles(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchJWTBundles(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  FetchJWTSVID(req: object, md: grpc.Metadata, cb: Callback): grpc.ClientUnaryCall;
  ValidateJWTSVID(req: object, md: grpc.Metadata, cb: Callback): grpc.ClientUnaryCall;
}

interface X509SvidMsg {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
}

const header = () => {
  const m = new grpc.Metadata();
  m.set("workload.spiffe.io", "true");
  return m;
};

/** The certificates of a DER concatenation. */
const certs = (der: Buffer) => children(new Uint8Array(der)).map((el) => new X509Certificate(el.raw));

/** Reads a server stream message by message. */
function reader(stream: grpc.ClientReadableStream<unknown>) {
  const queue: unknown[] = [];
  const waiters: ((v: unknown) => void)[] = [];
  let failure: grpc.ServiceError | undefined;
  const deliver = (v: unknown) => {
    const w = waiters.shift();
    if (w) w(v);
    else queue.push(v);
  };
  stream.on("data", deliver);
  stream.on("error", (e: grpc.ServiceError) => {
    failure = e;
    deliver(e);
  });
  return {
    next: () =>
      new Promise<unknown>((resolve) => {
        if (queue.length > 0) resolve(queue.shift());
        else waiters.push(resolve);
      }),
    get failure() {
      return failure;
    },
  };
}

const unary = <T>(fn: (cb: (err: grpc.ServiceError | null, res: T) => void) => void) =>
  new Promise<{ err: grpc.ServiceError | null; res: T }>((resolve) => fn((err, res) => resolve({ err, res })));

describe("SPIFFE Workload API (in process, real socket, real attestation)", () => {
  let t: number;
  let dir: string;
  let contract: ContractServer;
  let svids: SvidManager;
  let api: WorkloadApi;
  let client: Client;
  let timers: { at: number; run: () => void; id: number }[];
  const uid = process.getuid?.() ?? 0;
  const exe = realpathSync(process.execPath);

  const fakeTimers: Timers = {
    setTimeout: (run, ms) => {
      const id = Math.random();
      timers.push({ at: t + ms, run, id });
      return id;
    },
    clearTimeout: (id) => {
      timers = timers.filter((x) => x.id !== id);
    },
  };

  /** Moves the clock and fires the timers now due. */
  const advance = (ms: number) => {
    t += ms;
    const due = timers.filter((x) => x.at <= t);
    timers = timers.filter((x) => x.at > t);
    for (const d of due) d.run();
  };

  const entry = (id: string, selectors: string[], extra: { ttlSeconds?: number; jwtAudiences?: string[] } = {}) => ({
    id,
    spiffeId: `spiffe://example.org/device/gw-t/workload/${id}`,
    selectors,
    ttlSeconds: extra.ttlSeconds ?? 3600,
    jwtAudiences: extra.jwtAudiences ?? [],
  });

  async function startApi(attestor?: Attestor) {
    api = new WorkloadApi({
      socketPath: join(dir, "run", "workload.sock"),
      source: svids,
      log: () => undefined,
      now: () => t,
      ...(attestor ? { attestor } : {}),
    });
    await api.start();
    client = new proto.SpiffeWorkloadAPI(
      `unix:${join(dir, "run", "workload.sock")}`,
      grpc.credentials.createInsecure(),
    ) as unknown as Client;
  }

  beforeEach(async () => {
    t = Date.now();
    timers = [];
    dir = mkdtempSync(join(tmpdir(), "edgeid-wl-"));
    const p = await pki(t);
    contract = await startContractServer({ tls: { cert: p.server.pem, key: p.server.key }, now: () => t });
    const key = createPrivateKey(p.device.key);
    svids = new SvidManager({
      client: new WorkloadHttpClient(
        contract.url,
        () => ({ key, chain: [p.device.node] }),
        () => [p.root.node],
        () => t,
      ),
      deps: { timers: fakeTimers, log: () => undefined },
      now: () => t,
    });
  });

  afterEach(async () => {
    client?.close();
    svids.stop();
    await api?.stop();
    await contract.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a call without the workload.spiffe.io header (InvalidArgument)", async () => {
    contract.entries = [entry("web", [`unix:uid:${uid}`])];
    await svids.start();
    await startApi();
    const { err } = await unary((cb) => client.FetchJWTSVID({ audience: ["a"] }, new grpc.Metadata(), cb));
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const r = reader(client.FetchX509SVID({}, new grpc.Metadata()));
    expect(((await r.next()) as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    const wrong = new grpc.Metadata();
    wrong.set("workload.spiffe.io", "false");
    const r2 = reader(client.FetchX509Bundles({}, wrong));
    expect(((await r2.next()) as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("denies a caller whose uid matches no entry (PermissionDenied), on every method", async () => {
    contract.entries = [entry("other", [`unix:uid:${uid + 4242}`], { jwtAudiences: ["a"] })];
    await svids.start();
    expect(svids.svid("other")).toBeDefined();
    await startApi();
    const r = reader(client.FetchX509SVID({}, header()));
    expect(((await r.next()) as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    const b = reader(client.FetchJWTBundles({}, header()));
    expect(((await b.next()) as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    const { err } = await unary((cb) => client.FetchJWTSVID({ audience: ["a"] }, header(), cb));
    expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it("delivers the caller's X.509-SVID (one URI SAN, its key, chain to the bundle), pushes rotations and entry removals", async () => {
    const ttl = 3600;
    contract.entries = [
      entry("web", [`unix:uid:${uid}`, `unix:path:${exe}`], { ttlSeconds: ttl }),
      entry("db", [`unix:uid:${uid}`]),
      entry("not-me", [`unix:uid:${uid}`, "unix:gid:4242"]),
    ];
    await svids.start();
    await startApi();
    const stream = client.FetchX509SVID({}, header());
    const r = reader(stream);
    const first = (await r.next()) as { svids: X509SvidMsg[]; federated_bundles: Record<string, Buffer> };
    expect(first.svids.map((s) => s.spiffe_id).sort()).toEqual([
      "spiffe://example.org/device/gw-t/workload/db",
      "spiffe://example.org/device/gw-t/workload/web",
    ]);
    const web = first.svids.find((s) => s.spiffe_id.endsWith("/web")) as X509SvidMsg;
    const [leaf, issuing] = certs(web.x509_svid);
    const [anchor] = certs(web.bundle);
    expect(leaf?.subjectAltName).toBe(`URI:${web.spiffe_id}`);
    expect(leaf?.ca).toBe(false);
    expect(leaf?.checkPrivateKey(createPrivateKey({ key: web.x509_svid_key, format: "der", type: "pkcs8" }))).toBe(
      true,
    );
    expect(leaf?.verify(issuing?.publicKey as never)).toBe(true);
    expect(issuing?.verify(anchor?.publicKey as never)).toBe(true);
    expect(anchor?.toString()).toBe(new X509Certificate(contract.rootPem).toString());
    const firstSerial = leaf?.serialNumber;

    // Half the lifetime later the manager renews with a new key; the open stream gets it.
    advance((ttl / 2) * 1000 + 1000);
    const rotated = (await r.next()) as { svids: X509SvidMsg[] };
    const web2 = rotated.svids.find((s) => s.spiffe_id.endsWith("/web")) as X509SvidMsg;
    expect(certs(web2.x509_svid)[0]?.serialNumber).not.toBe(firstSerial);
    expect(web2.x509_svid_key.equals(web.x509_svid_key)).toBe(false);

    // An entry deleted on the server: the next message comes without it.
    contract.entries = contract.entries.filter((e) => e.id !== "db");
    contract.bumpRevision();
    await svids.workloadsChanged();
    const without = (await r.next()) as { svids: X509SvidMsg[] };
    expect(without.svids.map((s) => s.spiffe_id)).toEqual(["spiffe://example.org/device/gw-t/workload/web"]);
    expect(svids.svid("db")).toBeUndefined();

    // Nothing left for this caller: PermissionDenied ends the stream.
    contract.entries = [];
    contract.bumpRevision();
    await svids.workloadsChanged();
    expect(((await r.next()) as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it("stops serving at once when the device is revoked", async () => {
    contract.entries = [entry("web", [`unix:uid:${uid}`])];
    await svids.start();
    await startApi();
    const r = reader(client.FetchX509SVID({}, header()));
    expect(((await r.next()) as { svids: unknown[] }).svids).toHaveLength(1);
    svids.deviceRevoked();
    expect(((await r.next()) as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    expect(svids.svid("web")).toBeUndefined();
  });

  it("streams X.509 and JWT bundles keyed by trust domain, federated ones included", async () => {
    contract.entries = [entry("web", [`unix:uid:${uid}`])];
    contract.federated = {
      "other.org": { keys: [{ kty: "EC", crv: "P-256", x: "AA", y: "AA", use: "jwt-svid", kid: "o1" }] },
    };
    await svids.start();
    await startApi();
    const xb = (await reader(client.FetchX509Bundles({}, header())).next()) as { bundles: Record<string, Buffer> };
    expect(Object.keys(xb.bundles)).toEqual(["spiffe://example.org"]);
    expect(certs(xb.bundles["spiffe://example.org"] as Buffer)[0]?.toString()).toBe(
      new X509Certificate(contract.rootPem).toString(),
    );
    const jb = (await reader(client.FetchJWTBundles({}, header())).next()) as { bundles: Record<string, Buffer> };
    expect(Object.keys(jb.bundles).sort()).toEqual(["spiffe://example.org", "spiffe://other.org"]);
    const own = JSON.parse((jb.bundles["spiffe://example.org"] as Buffer).toString()) as { keys: { use: string }[] };
    expect(own.keys.map((k) => k.use)).toEqual(["jwt-svid"]);
  });

  it("fetches a JWT-SVID (cached per audience set) and validates it", async () => {
    contract.entries = [entry("web", [`unix:uid:${uid}`], { jwtAudiences: ["aud1", "aud2"] })];
    await svids.start();
    await startApi();
    const noAud = await unary((cb) => client.FetchJWTSVID({ audience: [] }, header(), cb));
    expect(noAud.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const denied = await unary((cb) => client.FetchJWTSVID({ audience: ["aud3"] }, header(), cb));
    expect(denied.err?.code).toBe(grpc.status.PERMISSION_DENIED);

    const a = await unary<{ svids: { spiffe_id: string; svid: string }[] }>((cb) =>
      client.FetchJWTSVID({ audience: ["aud1"] }, header(), cb),
    );
    expect(a.err).toBeNull();
    expect(a.res.svids).toHaveLength(1);
    const token = a.res.svids[0]?.svid as string;
    const again = await unary<{ svids: { svid: string }[] }>((cb) =>
      client.FetchJWTSVID({ audience: ["aud1"] }, header(), cb),
    );
    expect(again.res.svids[0]?.svid).toBe(token);
    expect(contract.requests.filter((q) => q.path === "/workload/v1/jwt-svids")).toHaveLength(1);

    const ok = await unary<{ spiffe_id: string; claims: { fields: Record<string, unknown> } }>((cb) =>
      client.ValidateJWTSVID({ audience: "aud1", svid: token }, header(), cb),
    );
    expect(ok.err).toBeNull();
    expect(ok.res.spiffe_id).toBe("spiffe://example.org/device/gw-t/workload/web");
    expect(ok.res.claims.fields.sub).toEqual(expect.objectContaining({ stringValue: ok.res.spiffe_id }));

    const wrongAud = await unary((cb) => client.ValidateJWTSVID({ audience: "aud2", svid: token }, header(), cb));
    expect(wrongAud.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const tampered = `${token.slice(0, -4)}AAAA`;
    const bad = await unary((cb) => client.ValidateJWTSVID({ audience: "aud1", svid: tampered }, header(), cb));
    expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    // Expired (the clock moves past exp): refused.
    t += 2 * 3600_000;
    const expired = await unary((cb) => client.ValidateJWTSVID({ audience: "aud1", svid: token }, header(), cb));
    expect(expired.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("refuses a call when the pid's start time changed since the connection was accepted (pid reused)", async () => {
    const proc = join(dir, "proc");
    const pidDir = join(proc, String(process.pid));
    mkdirSync(pidDir, { recursive: true });
    const stat = (start: number) =>
      `${process.pid} (node (x) y) S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 ${start} 1 1\n`;
    writeFileSync(join(pidDir, "stat"), stat(5000));
    symlinkSync(exe, join(pidDir, "exe"));
    writeFileSync(join(pidDir, "cgroup"), "0::/system.slice/web.service\n");
    contract.entries = [entry("web", [`unix:uid:${uid}`, "systemd:unit:web.service"])];
    await svids.start();
    await startApi(new Attestor({ procRoot: proc }));
    const r = reader(client.FetchX509SVID({}, header()));
    expect(((await r.next()) as { svids: unknown[] }).svids).toHaveLength(1);
    // Same pid, another process: the next call on this connection is refused.
    writeFileSync(join(pidDir, "stat"), stat(7000));
    const { err } = await unary((cb) => client.FetchJWTSVID({ audience: ["a"] }, header(), cb));
    expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err?.details).toMatch(/pid reused|changed/);
  });

  it("releases a connection's server when the client goes", async () => {
    contract.entries = [entry("web", [`unix:uid:${uid}`])];
    await svids.start();
    await startApi();
    const stream = client.FetchX509SVID({}, header());
    await reader(stream).next();
    expect(api.connectionCount).toBe(1);
    stream.cancel();
    client.close();
    await expect.poll(() => api.connectionCount).toBe(0);
  });
});

describe("Workload API in the agent", () => {
  let t: number;
  let dir: string;
  let contract: ContractServer;
  let client: Client | undefined;
  const uid = process.getuid?.() ?? 0;
  const never: Timers = { setTimeout: () => 0, clearTimeout: () => undefined };

  beforeEach(async () => {
    t = Date.now();
    dir = mkdtempSync(join(tmpdir(), "edgeid-wl-agent-"));
    const p = await pki(t);
    contract = await startContractServer({ tls: { cert: p.server.pem, key: p.server.key }, now: () => t });
    agentDir(join(dir, "agent"), p, t, { server: contract.url });
  });
  afterEach(async () => {
    client?.close();
    await contract.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses to start without the peer-credentials addon (fail closed), before listening", () => {
    const socketPath = join(dir, "run", "workload.sock");
    expect(
      () =>
        new WorkloadApi({
          socketPath,
          source: {} as never,
          log: () => undefined,
          now: () => t,
          peerCred: loadPeerCred(["/nonexistent/peercred.node"]),
        }),
    ).toThrow(/Workload API cannot start: .*not built: run npm install/);
    expect(existsSync(socketPath)).toBe(false);
  });

  it("refetches on the MQTT command workloads-changed, and drops every SVID when the device is revoked", async () => {
    contract.entries = [
      {
        id: "a",
        spiffeId: "spiffe://example.org/w/a",
        selectors: [`unix:uid:${uid}`],
        ttlSeconds: 3600,
        jwtAudiences: [],
      },
      {
        id: "b",
        spiffeId: "spiffe://example.org/w/b",
        selectors: [`unix:uid:${uid}`],
        ttlSeconds: 3600,
        jwtAudiences: [],
      },
    ];
    const socket = join(dir, "run", "workload.sock");
    const agent = new Agent(join(dir, "agent"), {
      now: () => t,
      random: () => 0.5,
      timers: never,
      log: () => undefined,
    });
    agent.start({ workload: { socket, socketMode: "0600" } });
    await expect.poll(() => contract.requests.some((r) => r.path === "/workload/v1/x509-svids")).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    client = new proto.SpiffeWorkloadAPI(`unix:${socket}`, grpc.credentials.createInsecure()) as unknown as Client;
    const r = reader(client.FetchX509SVID({}, header()));
    await expect.poll(async () => ((await r.next()) as { svids: unknown[] }).svids.length).toBe(2);

    contract.entries = contract.entries.filter((e) => e.id !== "b");
    contract.bumpRevision();
    const result = await runCommand(agent, "workloads-changed", { opId: "op1" }, () => undefined);
    expect(result).toEqual({ ok: true });
    expect(((await r.next()) as { svids: { spiffe_id: string }[] }).svids.map((x) => x.spiffe_id)).toEqual([
      "spiffe://example.org/w/a",
    ]);

    agent.enterRevoked("mqtt", "revoked by the operator");
    expect(((await r.next()) as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    await agent.stop();
    // Stopped: the socket is gone with the listener.
    expect(existsSync(socket)).toBe(false);
  });

  it("keeps keys and SVIDs 0600 in --workload-keys-dir and serves them after a restart without asking again", async () => {
    contract.entries = [
      {
        id: "a",
        spiffeId: "spiffe://example.org/w/a",
        selectors: [`unix:uid:${uid}`],
        ttlSeconds: 3600,
        jwtAudiences: [],
      },
    ];
    const p = await pki(t);
    const key = createPrivateKey(p.device.key);
    const keysDir = join(dir, "keys");
    const manager = () =>
      new SvidManager({
        client: new WorkloadHttpClient(
          contract.url,
          () => ({ key, chain: [p.device.node] }),
          () => [new X509Certificate(readFileSync(join(dir, "agent", "trust.pem")))],
          () => t,
        ),
        deps: { timers: never, log: () => undefined },
        now: () => t,
        keysDir,
      });
    const first = manager();
    await first.start();
    first.stop();
    const serial = first.svid("a")?.serial;
    expect(statSync(join(keysDir, "a.pem")).mode & 0o777).toBe(0o600);
    const second = manager();
    await second.start();
    second.stop();
    expect(second.svid("a")?.serial).toBe(serial);
    expect(contract.requests.filter((q) => q.path === "/workload/v1/x509-svids")).toHaveLength(1);
  });
});

describe("workload attestor", () => {
  let proc: string;
  beforeEach(() => {
    proc = mkdtempSync(join(tmpdir(), "edgeid-proc-"));
  });
  afterEach(() => rmSync(proc, { recursive: true, force: true }));

  const fakeProcess = (pid: number, start: string, exeFile: string, cgroup: string) => {
    const d = join(proc, String(pid));
    mkdirSync(d, { recursive: true });
    writeFileSync(
      join(d, "stat"),
      `${pid} (we ird) name) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 ${start} 99\n`,
    );
    symlinkSync(exeFile, join(d, "exe"));
    writeFileSync(join(d, "cgroup"), cgroup);
  };

  it("collects uid, gid, path, sha256 and systemd unit selectors", async () => {
    const bin = join(proc, "app");
    writeFileSync(bin, "#!/bin/sh\necho hello\n");
    fakeProcess(321, "4444", bin, "0::/system.slice/app.service\n");
    const a = new Attestor({ procRoot: proc });
    const start = await a.startTime(321);
    expect(start).toBe("4444");
    const caller = await a.attest({ pid: 321, uid: 1000, gid: 50 }, start);
    expect(caller.selectors).toEqual([
      "unix:uid:1000",
      "unix:gid:50",
      `unix:path:${bin}`,
      `unix:sha256:${createHash("sha256").update("#!/bin/sh\necho hello\n").digest("hex")}`,
      "systemd:unit:app.service",
    ]);
  });

  it("refuses when the start time differs from the one at accept, or the process is gone", async () => {
    const bin = join(proc, "app");
    writeFileSync(bin, "x");
    fakeProcess(321, "4444", bin, "");
    const a = new Attestor({ procRoot: proc });
    await expect(a.attest({ pid: 321, uid: 1, gid: 1 }, "4443")).rejects.toThrow(/pid reused/);
    expect(await a.stillSame(321, "4444")).toBe(true);
    rmSync(join(proc, "321"), { recursive: true });
    expect(await a.stillSame(321, "4444")).toBe(false);
    await expect(a.startTime(321)).rejects.toThrow(/gone/);
  });

  it("reads field 22 after a command name with spaces and parentheses; finds the unit in cgroup v1 and v2", async () => {
    writeFileSync(join(proc, "stat"), "");
    mkdirSync(join(proc, "9"));
    writeFileSync(join(proc, "9", "stat"), "9 (a) b (c) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n");
    expect(await processStartTime(proc, 9)).toBe("777");
    expect(systemdUnit("0::/system.slice/nginx.service\n")).toBe("nginx.service");
    expect(systemdUnit("0::/user.slice/user-1000.slice/session-3.scope\n")).toBe("session-3.scope");
    expect(systemdUnit("12:cpu:/x\n1:name=systemd:/system.slice/cron.service\n")).toBe("cron.service");
    expect(systemdUnit("0::/\n")).toBeUndefined();
  });

  it("matches an entry only when the caller has all its selectors", () => {
    expect(matchesEntry(["unix:uid:1", "unix:gid:2"], ["unix:uid:1"])).toBe(true);
    expect(matchesEntry(["unix:uid:1"], ["unix:uid:1", "unix:gid:2"])).toBe(false);
    expect(matchesEntry(["unix:uid:1"], [])).toBe(false);
  });
});
