/**
 * Workload identity on one gateway (part of `npm run bench`, `--workload-entries N`, 0 to
 * skip): the real server with N registration entries for one device, enrolled by the
 * compiled agent with a bootstrap token.
 *
 * 1. X.509-SVIDs issued per second by the server for that gateway: batches of N CSRs
 *    (`POST /workload/v1/x509-svids`) over mutual TLS with the device certificate, made by
 *    the agent's own HTTP client (a new connection per request, as the agent makes them),
 *    keys and CSRs prepared beforehand; and the agent's own end-to-end refresh of N (its
 *    SvidManager: entries, bundles, N new keys and CSRs, one batch, every SVID checked).
 * 2. The time from an entry change (the operator API call returns) to the update seen by a
 *    gRPC client (@grpc/grpc-js) on a FetchX509SVID stream of the running agent: an entry
 *    registered, then deleted, alternately, delivered by the MQTT command
 *    `workloads-changed`. Every entry's selector is this process's uid (attestation reads
 *    the caller's peer credentials; another uid would need root), so each stream carries
 *    all N SVIDs.
 * 3. The agent's RSS with N workloads attached: N FetchX509SVID streams open, each on its
 *    own connection.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { generateKey, makeCsr } from "../device-client/src/keys.ts";
import { AgentStore } from "../device-client/src/store.ts";
import { WorkloadHttpClient } from "../device-client/src/workload-client.ts";
import { SvidManager } from "../device-client/src/workload-svids.ts";
import { AGENT_NODE_FLAGS } from "./agent.ts";
import { percentile } from "./load.ts";
import {
  benchWorkDir,
  cli,
  cpuSeconds,
  createTokens,
  ROOT,
  reapOnExit,
  run,
  say,
  startServerProcess,
} from "./server.ts";

const AGENT = join(ROOT, "device-client", "bin", "edgeid-agent.mjs");
const PROTO = join(ROOT, "device-client", "proto", "workload.proto");

export interface Yardstick {
  sign: number;
  verify: number;
  version: string;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

const sorted = (xs: number[]) => Float64Array.from(xs).sort();
const ms = (x: number) => `${x.toFixed(x < 10 ? 1 : 0)} ms`;
const stats = (xs: number[]) => {
  const s = sorted(xs);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s.at(-1) ?? Number.NaN };
};

/** One operator API call (keep-alive): status and parsed body. */
function api(
  base: string,
  agent: HttpsAgent,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${base}/api/v1${path}`,
      {
        method,
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(text ? { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) } : {}),
        },
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8").on("data", (c: string) => {
          data += c;
        });
        res.on("end", () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(data) as Record<string, unknown>;
          } catch {
            parsed = { text: data };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

interface WorkloadClient extends grpc.Client {
  FetchX509SVID(req: object, md: grpc.Metadata): grpc.ClientReadableStream<{ svids: { spiffe_id: string }[] }>;
}

/** A FetchX509SVID stream on its own connection; `messages` records the SVID count of each message and when it came. */
function openStream(ctor: grpc.ServiceClientConstructor, socket: string) {
  // A local subchannel pool: this client's connection is its own, not shared with the others.
  const client = new ctor(`unix:${socket}`, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  }) as unknown as WorkloadClient;
  const md = new grpc.Metadata();
  md.set("workload.spiffe.io", "true");
  const stream = client.FetchX509SVID({}, md);
  const messages: { at: number; count: number }[] = [];
  const waiters = new Set<() => void>();
  let failed: Error | undefined;
  stream.on("data", (m) => {
    messages.push({ at: performance.now(), count: m.svids.length });
    for (const w of [...waiters]) w();
  });
  stream.on("error", (e: grpc.ServiceError) => {
    if (e.code !== grpc.status.CANCELLED) failed = e;
    for (const w of [...waiters]) w();
  });
  return {
    messages,
    /** When the first message from index `from` on carrying `count` SVIDs came. */
    next(count: number, from = 0, timeoutMs = 120_000): Promise<number> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no stream update with ${count} SVIDs within ${timeoutMs} ms`));
        }, timeoutMs);
        function check() {
          const m = messages.slice(from).find((x) => x.count === count);
          if (!m && !failed) return;
          clearTimeout(timer);
          waiters.delete(check);
          if (m) resolve(m.at);
          else reject(failed);
        }
        waiters.add(check);
        check();
      });
    },
    close() {
      stream.cancel();
      client.close();
    },
  };
}

export async function workloadsBench(o: {
  entries: number;
  changes: number;
  batches: number;
  refreshes: number;
  keep: boolean;
  yardstick: Yardstick;
}): Promise<string> {
  const n = o.entries;
  if (n > 100) throw new Error("--workload-entries: at most 100 (one batch request of the contract)");
  const pairRate = 1 / (1 / o.yardstick.sign + 1 / o.yardstick.verify);
  say(`\nworkloads: one gateway with ${n} entries (selector unix:uid:${process.getuid?.()})`);
  say(
    `${o.yardstick.version}: P-256 sign ${o.yardstick.sign.toFixed(0)}/s, verify ${o.yardstick.verify.toFixed(0)}/s (one core)` +
      ` → pair-rate ${pairRate.toFixed(0)}/s`,
  );
  await run("npm", ["run", "build", "-w", "device-client"], { cwd: ROOT });
  const work = await benchWorkDir("workloads-", o.keep);
  const dataDir = join(work, "data");
  const init = JSON.parse((await cli(["init", "--data", dataDir, "--json"])).stdout) as {
    adminToken: string;
  };
  const server = await startServerProcess(dataDir);
  let agentProcess: ChildProcess | undefined;
  const streams: ReturnType<typeof openStream>[] = [];
  const keepAlive = new HttpsAgent({ keepAlive: true, ca: server.ca });
  try {
    const [token] = await createTokens(dataDir, 1, "gw-wl-");
    const deviceId = token?.deviceId as string;
    const dir = join(work, "agent");
    const fp = new X509Certificate(server.ca).fingerprint256.replace(/:/g, "");
    await run(process.execPath, [
      AGENT,
      "enroll",
      "--server",
      server.url,
      "--ca-fingerprint",
      `sha256:${fp}`,
      "--device",
      deviceId,
      "--token",
      token?.token as string,
      "--dir",
      dir,
      "--mqtt",
      server.mqttUrl,
    ]);
    const selector = `unix:uid:${process.getuid?.() ?? 0}`;
    const call = (method: string, path: string, body?: unknown) =>
      api(server.url, keepAlive, init.adminToken, method, path, body);
    const tReg = performance.now();
    for (let i = 0; i < n; i++) {
      const r = await call("POST", "/workloads", {
        device: deviceId,
        name: `w${String(i + 1).padStart(3, "0")}`,
        selectors: [selector],
      });
      if (r.status !== 201) throw new Error(`register answered ${r.status}: ${JSON.stringify(r.body)}`);
    }
    say(`registered ${n} entries over the operator API in ${((performance.now() - tReg) / 1000).toFixed(1)} s`);

    // 1a. The server: batches of N CSRs over mutual TLS with the device certificate.
    const store = new AgentStore(dir);
    const identity = store.loadIdentity();
    const trust = store.loadTrust();
    const client = new WorkloadHttpClient(
      server.url,
      () => identity,
      () => trust,
      () => Date.now(),
    );
    const entriesAnswer = await client.get("/workload/v1/entries");
    if ("error" in entriesAnswer || entriesAnswer.status !== 200) throw new Error("entries not served");
    const entries = (JSON.parse(entriesAnswer.body) as { entries: { id: string; spiffeId: string }[] }).entries;
    if (entries.length !== n) throw new Error(`the device has ${entries.length} entries, not ${n}`);
    const batches = Array.from({ length: o.batches }, () => ({
      requests: entries.map((e) => ({
        entryId: e.id,
        csr: Buffer.from(makeCsr(generateKey("P-256"), e.spiffeId)).toString("base64"),
      })),
    }));
    const latencies: number[] = [];
    const cpu0 = process.cpuUsage();
    const serverCpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    for (const batch of batches) {
      const t = performance.now();
      const a = await client.post("/workload/v1/x509-svids", batch);
      if ("error" in a || a.status !== 200) throw new Error(`batch refused: ${JSON.stringify(a).slice(0, 300)}`);
      const svids = (JSON.parse(a.body) as { svids: unknown[] }).svids;
      if (svids.length !== n) throw new Error(`a batch of ${n} gave ${svids.length} SVIDs`);
      latencies.push(performance.now() - t);
    }
    const seconds = (performance.now() - t0) / 1000;
    const issueRate = (o.batches * n) / seconds;
    const lat = stats(latencies);
    const clientCpu = process.cpuUsage(cpu0);
    const serverCores = (cpuSeconds(server.pid) - serverCpu0) / seconds;
    say(
      `server issuance: ${o.batches} batches of ${n} in ${seconds.toFixed(2)} s → ${issueRate.toFixed(0)} X.509-SVIDs/s` +
        ` (ratio to the P-256 pair-rate ${(issueRate / pairRate).toFixed(3)}) · batch p50 ${ms(lat.p50)}, p99 ${ms(lat.p99)}` +
        ` · CPU: server ${serverCores.toFixed(2)} cores, bench process ${((clientCpu.user + clientCpu.system) / 1e6 / seconds).toFixed(2)} cores`,
    );

    // 1b. The agent's end-to-end refresh of N: entries, bundles, N keys and CSRs, one batch, checks.
    const refreshTimes: number[] = [];
    for (let i = 0; i < o.refreshes; i++) {
      const manager = new SvidManager({
        client,
        deps: {
          timers: { setTimeout: (f, d) => setTimeout(f, d), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) },
          log: (level, msg, fields) => {
            if (level !== "info") say(`  agent ${level}: ${msg} ${JSON.stringify(fields ?? {})}`);
          },
        },
        now: () => Date.now(),
      });
      const t = performance.now();
      await manager.start();
      refreshTimes.push(performance.now() - t);
      manager.stop();
      const held = entries.filter((e) => manager.svid(e.id)).length;
      if (held !== n) throw new Error(`the agent's refresh holds ${held} SVIDs, not ${n}`);
    }
    const refresh = stats(refreshTimes);
    say(
      `agent refresh of ${n} (entries, bundles, ${n} keys + CSRs, one batch, checks): p50 ${ms(refresh.p50)}, max ${ms(refresh.max)}` +
        ` over ${o.refreshes} → ${((n * 1000) / refresh.p50).toFixed(0)} SVIDs/s end to end`,
    );

    // The running agent, as a gateway runs it (compiled, the unit's V8 flags), with the Workload API.
    const socket = join(work, "run", "workload.sock");
    agentProcess = spawn(
      process.execPath,
      [...AGENT_NODE_FLAGS, AGENT, "run", "--dir", dir, "--workload-socket", socket],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    reapOnExit(agentProcess);
    let agentLog = "";
    agentProcess.stderr?.setEncoding("utf8").on("data", (c: string) => {
      agentLog += c;
    });
    const pid = agentProcess.pid as number;
    const ctor = grpc.loadPackageDefinition(
      protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true }),
    ) as unknown as { SpiffeWorkloadAPI: grpc.ServiceClientConstructor };
    const tStart = performance.now();
    for (;;) {
      try {
        readFileSync(`/proc/${pid}/status`);
      } catch {
        throw new Error(`the agent exited:\n${agentLog}`);
      }
      if (existsSync(socket)) break;
      if (performance.now() - tStart > 60_000) throw new Error(`no workload socket after 60 s:\n${agentLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const first = openStream(ctor.SpiffeWorkloadAPI, socket);
    streams.push(first);
    await first.next(n);
    say(`agent started and served ${n} SVIDs on a stream in ${((performance.now() - tStart) / 1000).toFixed(1)} s`);
    const rssOne = rssMiB(pid);

    // 3. N workloads attached: N streams, each on its own connection.
    for (let i = 1; i < n; i++) streams.push(openStream(ctor.SpiffeWorkloadAPI, socket));
    await Promise.all(streams.map((s) => s.next(n)));
    const rssSamples: number[] = [];
    for (let i = 0; i < 10; i++) {
      rssSamples.push(rssMiB(pid));
      await new Promise((r) => setTimeout(r, 200));
    }
    const rssAttached = Math.max(...rssSamples);
    say(
      `agent RSS: ${rssOne.toFixed(1)} MiB with one stream · ${rssAttached.toFixed(1)} MiB with ${n} streams on ${n} connections` +
        ` (+${((rssAttached - rssOne) / Math.max(1, n - 1)).toFixed(2)} MiB each)`,
    );

    // 2. Entry change (API call returns) → update on the streams.
    const toFirst: number[] = [];
    const toAll: number[] = [];
    const kinds: { register: number[]; remove: number[] } = { register: [], remove: [] };
    let extra: string | undefined;
    for (let i = 0; i < o.changes; i++) {
      const adding = extra === undefined;
      const want = adding ? n + 1 : n;
      const before = streams.map((s) => s.messages.length);
      const r = adding
        ? await call("POST", "/workloads", { device: deviceId, name: `change-${i}`, selectors: [selector] })
        : await call("DELETE", `/workloads/${extra}`);
      const returned = performance.now();
      if (r.status !== (adding ? 201 : 200)) throw new Error(`entry change answered ${r.status}`);
      extra = adding ? (r.body.id as string) : undefined;
      const seen = await Promise.all(streams.map((s, k) => s.next(want, before[k])));
      const firstSeen = (seen[0] as number) - returned;
      toFirst.push(firstSeen);
      toAll.push(Math.max(...seen) - returned);
      (adding ? kinds.register : kinds.remove).push(firstSeen);
    }
    const change = stats(toFirst);
    const all = stats(toAll);
    const reg = stats(kinds.register);
    const del = stats(kinds.remove);
    say(
      `entry change → stream update (${o.changes} changes, MQTT workloads-changed): p50 ${ms(change.p50)}, p99 ${ms(change.p99)}` +
        ` · all ${n} streams updated: p50 ${ms(all.p50)}, p99 ${ms(all.p99)}` +
        ` · register (new SVID issued) p50 ${ms(reg.p50)}, delete p50 ${ms(del.p50)}`,
    );
    const warnings = agentLog.split("\n").filter((l) => /"level":"(warn|error)"/.test(l)).length;
    say(`agent warnings/errors during the run: ${warnings}`);
    return (
      `workloads ${n} entries: server ${issueRate.toFixed(0)} SVIDs/s (batches of ${n}), agent refresh p50 ${ms(refresh.p50)},` +
      ` change→stream p50 ${ms(change.p50)} p99 ${ms(change.p99)}, agent RSS ${rssAttached.toFixed(1)} MiB with ${n} streams`
    );
  } finally {
    for (const s of streams) s.close();
    keepAlive.destroy();
    if (agentProcess && agentProcess.exitCode === null) {
      const exited = new Promise((r) => agentProcess?.once("exit", r));
      agentProcess.kill("SIGTERM");
      await exited;
    }
    await server.stop();
    if (!o.keep) await rm(work, { recursive: true, force: true });
    else say(`workloads bench directory kept: ${work}`);
  }
}
