/** Shared by the benchmarks: the server as a child process, its CPU and memory, tokens. */

import { type ChildProcess, execFile } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { type Agent, get, request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { ThreadUse } from "./cpu-budget.ts";
import { type LoadResult, percentile, runLoad } from "./load.ts";
import { certificateFromResponse, certificatePem, makeRequest } from "./requests.ts";

export const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
export const EDGEID = join(ROOT, "bin", "edgeid.mjs");
export const run = promisify(execFile);
export const say = (line: string) => process.stdout.write(`${line}\n`);

/**
 * How the server process is started (`npm run bench -- --node PATH[@CHECKOUT] --loops N`):
 * which Node binary, which checkout's bin/edgeid.mjs (its node_modules built for that
 * Node's ABI), and `--loops`. The CLI steps of the benchmarks run on the same (`cli`).
 */
export const serverRuntime: { node: string; bin: string; loops?: string; cpuProfDir?: string } = {
  node: process.execPath,
  bin: EDGEID,
};

/**
 * The edgeid CLI of the build under test, on its Node. `init` and the token batches
 * migrate the data directory to that build's schema, so a variant with a migration of
 * its own is measured on its own schema (with the bench's CLI, an older build would
 * serve a database the newer migrations had already changed).
 */
export function cli(args: string[], options: { maxBuffer?: number } = {}) {
  return run(serverRuntime.node, [serverRuntime.bin, ...args], options);
}

/** The node binary and arguments before `serve`'s own options (`--cpu-prof` for every server the bench starts). */
export function serveCommand(nodeArgs: string[] = []): { command: string; args: string[] } {
  const loops = serverRuntime.loops ? ["--loops", serverRuntime.loops] : [];
  const profiling = serverRuntime.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", serverRuntime.cpuProfDir] : [];
  return { command: serverRuntime.node, args: [...profiling, ...nodeArgs, serverRuntime.bin, "serve", ...loops] };
}

/** The public listener's URL from the server's "listening" line (which may reach the log just after /healthz answers). */
async function publicListener(log: () => string): Promise<string> {
  const until = performance.now() + 10_000;
  while (performance.now() < until) {
    for (const line of log().split("\n")) {
      if (!line.includes('"msg":"listening"')) continue;
      const url = (JSON.parse(line) as { publicHttp?: string }).publicHttp;
      if (url?.startsWith("http://")) return url;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("the server did not log its public listener");
}

/** The event loops a server reported (its "event loop" lines): loop number → thread id (Linux). */
export function loopThreads(log: string, pid: number): Map<number, number> {
  const out = new Map<number, number>([[1, pid]]);
  for (const line of log.split("\n")) {
    if (!line.includes('"msg":"event loop listening"')) continue;
    try {
      const e = JSON.parse(line) as { loop?: number; tid?: number };
      if (e.loop && e.tid) out.set(e.loop, e.tid);
    } catch {
      // not a JSON line
    }
  }
  return out;
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

export interface Token {
  deviceId: string;
  token: string;
}

export async function waitReady(url: string, ca: string, exited: () => boolean): Promise<void> {
  for (let tries = 0; tries < 200; tries++) {
    if (exited()) throw new Error("the server exited during start; see its log");
    const status = await new Promise<number>((r) => {
      get(url, { ca }, (res) => {
        res.resume();
        r(res.statusCode ?? 0);
      }).on("error", () => r(0));
    });
    if (status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server did not answer ${url} within 20 s`);
}

export async function createTokens(
  dataDir: string,
  count: number,
  prefix = "bench-",
  profile = "device",
): Promise<Token[]> {
  const out: Token[] = [];
  for (let start = 1; start <= count; start += 100_000) {
    const n = Math.min(100_000, count - start + 1);
    const { stdout } = await cli(
      ["token", "create", "--data", dataDir, "--count", String(n), "--start", String(start)].concat([
        "--device-prefix",
        prefix,
        "--ttl",
        "2h",
        "--profile",
        profile,
        "--json",
      ]),
      { maxBuffer: 256 << 20 },
    );
    for (const line of stdout.split("\n")) if (line) out.push(JSON.parse(line) as Token);
  }
  return out;
}

export function basic(t: Token): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${t.deviceId}:${t.token}`).toString("base64")}` };
}

/** User+system CPU seconds a process has used so far (Linux /proc). */
export function cpuSeconds(pid: number, tid?: number): number {
  const file = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
  const fields = readFileSync(file, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds per thread of a process (Linux /proc), by thread id. */
export function threadCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.set(Number(tid), cpuSeconds(pid, Number(tid)));
    } catch {
      // the thread ended
    }
  }
  return out;
}

/**
 * Each live thread's CPU seconds between two `threadCpu` readings, with its name and
 * whether it is one of the event loops the server logged (for `cpuBudget`).
 */
export function threadUse(
  pid: number,
  before: Map<number, number>,
  after: Map<number, number>,
  loops: Set<number>,
): ThreadUse[] {
  return [...after].map(([tid, s]) => ({
    name: threadName(pid, tid),
    isLoop: loops.has(tid),
    seconds: s - (before.get(tid) ?? 0),
  }));
}

/** A thread's name as the kernel has it (Node names its libuv, V8 and worker threads; "?" once it ended). */
export function threadName(pid: number, tid: number): string {
  try {
    return readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
  } catch {
    return "?";
  }
}

/**
 * Bytes a process has caused to be written to storage so far (Linux /proc/<pid>/io
 * `write_bytes`, every thread): for the server, its WAL frames, the checkpoints' pages,
 * and its log file.
 */
export function writtenBytes(pid: number): number {
  const m = /^write_bytes:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
}

export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

export function summarize(
  name: string,
  r: LoadResult,
): { rate: number; ok: number; errors: number; p50: number; p99: number } {
  const done = r.outcomes.filter((o) => o !== undefined);
  const ok = done.filter((o) => o.status === 200).length;
  const lat = Float64Array.from(done.map((o) => o.ms)).sort();
  const rate = ok / r.seconds;
  say(
    `${name}: ${ok} ok in ${r.seconds.toFixed(1)} s = ${rate.toFixed(0)}/s · p50 ${percentile(lat, 50).toFixed(1)} ms` +
      ` · p99 ${percentile(lat, 99).toFixed(1)} ms · errors ${done.length - ok}`,
  );
  const other = [...r.statuses].filter(([k]) => k !== "200");
  if (other.length) say(`  non-200: ${other.map(([k, v]) => `${k} ×${v}`).join(", ")}`);
  return { rate, ok, errors: done.length - ok, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

export interface ServerProcess {
  url: string;
  /** The plain HTTP public listener (CRL, OCSP: the URLs in certificates), as the server logged it. */
  publicHttp: string;
  /** The embedded MQTT broker, on a free port. */
  mqttUrl: string;
  /** The root CA PEM, the trust anchor for TLS. */
  ca: string;
  pid: number;
  /** Everything the server logged so far. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Child processes started and not yet exited (servers, agents, the attacker process,
 * scepserver, the bare HTTPS yardstick, a variant's own bench process), with the signal
 * that ends each: ended with the benchmark, however it ends.
 */
const liveChildren = new Map<ChildProcess, NodeJS.Signals>();
/** Work directories to remove should the benchmark be stopped by a signal (not under --keep). */
const workDirs = new Set<string>();
let reaperInstalled = false;

/** How long a stopped benchmark waits for its children to exit before it removes their directories. */
const CHILDREN_EXIT_WAIT_MS = 10_000;

/**
 * Ends `child` when the benchmark process ends: on a normal exit, on an exception that
 * ends it (a scenario that throws after starting its server), and on SIGTERM, SIGINT or
 * SIGHUP (`timeout`, Ctrl-C, a closed terminal). Without this a failed run left its
 * servers listening, using memory and CPU under the next runs. SIGKILL by default; a
 * child that must end its own children first (a variant's bench process) is sent SIGTERM.
 */
export function reapOnExit(child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  liveChildren.set(child, signal);
  child.once("exit", () => liveChildren.delete(child));
  installReaper();
}

/**
 * A fresh work directory under the system's temporary directory (`edgeid-bench-<name>…`).
 * Unless `keep`, it is also removed if the benchmark is stopped by a signal, once the
 * children have exited: each scenario removes its own when it ends, and a stopped one
 * left ~100 MiB (a data directory, its database and logs) per run. After an exception
 * it stays, for the server's log.
 */
export async function benchWorkDir(name: string, keep: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `edgeid-bench-${name}`));
  if (!keep) workDirs.add(dir);
  installReaper();
  return dir;
}

function installReaper(): void {
  if (reaperInstalled) return;
  reaperInstalled = true;
  const killAll = () => {
    for (const [c, sig] of liveChildren) c.kill(sig);
  };
  process.once("exit", killAll);
  for (const [sig, number] of [
    ["SIGTERM", 15],
    ["SIGINT", 2],
    ["SIGHUP", 1],
  ] as const) {
    process.once(sig, () => {
      const exited = [...liveChildren.keys()].map((c) => new Promise((r) => c.once("exit", r)));
      killAll();
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise((r) => {
        timer = setTimeout(r, CHILDREN_EXIT_WAIT_MS);
      });
      void Promise.race([Promise.all(exited), waited]).then(() => {
        clearTimeout(timer);
        for (const dir of workDirs) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
        process.exit(128 + number);
      });
    });
  }
}

/**
 * `edgeid serve` on a free loopback port, logging straight into a file (`logFile`, or
 * `server-<port>.log` beside the data directory): the server writes its log to the file
 * itself, so that the benchmark process, which is also the load generator, neither
 * copies the log nor is woken for each line. Resolves once /healthz answers.
 */
export async function startServerProcess(
  dataDir: string,
  extraNodeArgs: string[] = [],
  logFile?: string,
): Promise<ServerProcess> {
  const { spawn } = await import("node:child_process");
  const port = await freePort();
  const mqttPort = await freePort();
  const file = logFile ?? join(dirname(dataDir), `server-${port}.log`);
  const logFd = openSync(file, "a");
  const url = `https://127.0.0.1:${port}`;
  const serve = serveCommand(extraNodeArgs);
  const child = spawn(
    serve.command,
    [
      ...serve.args,
      "--data",
      dataDir,
      "--listen",
      `127.0.0.1:${port}`,
      "--mqtt-listen",
      `127.0.0.1:${mqttPort}`,
      "--public-listen",
      "127.0.0.1:0",
    ],
    { stdio: ["ignore", logFd, logFd] },
  );
  reapOnExit(child);
  closeSync(logFd);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const ca = readFileSync(join(dataDir, "ca", "root-ca.pem"), "utf8");
  const log = () => readFileSync(file, "utf8");
  await waitReady(`${url}/healthz`, ca, () => child.exitCode !== null);
  return {
    url,
    publicHttp: await publicListener(log),
    mqttUrl: `mqtts://127.0.0.1:${mqttPort}`,
    ca,
    pid: child.pid as number,
    log,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** The server's JSON log lines with this message. */
export function logEntries<T>(log: string, msg: string): T[] {
  const out: T[] = [];
  for (const line of log.split("\n")) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // a partial line
    }
  }
  return out;
}

/** POST /api/v1/devices/{id}/revoke with an operator token; the HTTP status. */
export function revokeOverApi(server: ServerProcess, agent: Agent, token: string, id: string) {
  const body = JSON.stringify({ reason: "keyCompromise" });
  return new Promise<number>((resolve, reject) => {
    const req = httpsRequest(
      `${server.url}/api/v1/devices/${id}/revoke`,
      {
        method: "POST",
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          "content-length": String(body.length),
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

export interface EnrolledDevice {
  deviceId: string;
  /** The certificate issued, DER and PEM. */
  der: Uint8Array;
  cert: string;
  /** Its private key, PKCS#8 PEM. */
  key: string;
}

/** Enrolls each token's device over EST (simpleenroll, a new P-256 key each); throws on a refusal. */
export async function enrollDevices(
  server: ServerProcess,
  tokens: Token[],
  concurrency = 32,
): Promise<EnrolledDevice[]> {
  const requests = tokens.map((t) => makeRequest(t.deviceId));
  const enrolled = await runLoad(
    requests.map((r, i) => ({ headers: basic(tokens[i] as Token), body: r.body })),
    { url: `${server.url}/.well-known/est/simpleenroll`, ca: server.ca, concurrency, seconds: 600 },
  );
  return enrolled.outcomes.map((out, i) => {
    if (out?.status !== 200) throw new Error(`enrollment ${i} answered ${out?.status}: ${out?.body}`);
    const req = requests[i] as (typeof requests)[number];
    const der = certificateFromResponse(out.body);
    return {
      deviceId: req.deviceId,
      der,
      cert: certificatePem(der),
      key: req.key.export({ type: "pkcs8", format: "pem" }) as string,
    };
  });
}
