/**
 * `npm run bench`: the enrollment benchmark. Starts the real server as a separate
 * process on loopback (fresh data directory, SQLite file), creates bootstrap tokens in
 * bulk with the real CLI, pre-generates P-256 CSRs, then drives simpleenroll over
 * HTTPS keep-alive and simplereenroll over mutual TLS, and prints the figures next to
 * `openssl speed` measured in the same run. Afterwards it checks the database: no
 * duplicate serials, every certificate recorded once, every token used once.
 */

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { availableParallelism, cpus } from "node:os";
import { join, resolve } from "node:path";
import { createSecureContext } from "node:tls";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { Command, InvalidArgumentError, Option } from "commander";
import { abuseBench } from "./abuse.ts";
import { agentBench } from "./agent.ts";
import { cpuBudget, describeBudget, ENROLL_TARGET_RATIO, REENROLL_TARGET_RATE } from "./cpu-budget.ts";
import { fleetBench } from "./fleet.ts";
import { inventoryBench } from "./inventory.ts";
import { type Job, runLoad, windowRates } from "./load.ts";
import { describeWakeup, threadWakeup } from "./machine.ts";
import { certificateFromResponse, certificatePem, type DeviceRequest, makeRequest } from "./requests.ts";
import { revocationBench } from "./revocation.ts";
import { revocationRaceBench } from "./revocation-race.ts";
import { scepBench } from "./scep.ts";
import {
  basic,
  benchWorkDir,
  cli,
  cpuSeconds,
  createTokens,
  EDGEID,
  freePort,
  loopThreads,
  peakRssMiB,
  reapOnExit,
  run,
  say,
  serveCommand,
  serverRuntime,
  summarize,
  type Token,
  threadCpu,
  threadName,
  threadUse,
  waitReady,
  writtenBytes,
} from "./server.ts";
import { workloadsBench } from "./workloads.ts";

const positive = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a positive number");
  return n;
};

const count = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be a whole number, 0 or more");
  return n;
};

const opts = new Command("bench")
  .description("enrollment benchmark against a real edgeid server process")
  .option("--duration <s>", "seconds of measured simpleenroll load", positive, 30)
  // 128 devices in flight: a site coming back after a power cut has thousands waiting.
  .option("--concurrency <n>", "concurrent keep-alive clients", positive, 128)
  .option("--warmup <n>", "simpleenroll requests before measuring", positive, 3000)
  .option(
    "--max-rate <n>",
    "prepared requests per second of --duration (the run stops early if they run out)",
    positive,
    4000,
  )
  .addOption(
    new Option(
      "--enroll-order <order>",
      "the order devices enroll in: as their tokens were created (ids in order), or shuffled (seeded)",
    )
      .choices(["created", "shuffled"])
      .default("created"),
  )
  .option("--reenroll-duration <s>", "seconds of simplereenroll load (0 to skip)", Number, 10)
  .option("--reenroll-concurrency <n>", "concurrent mutual-TLS clients", positive, 16)
  .option(
    "--legacy-duration <s>",
    "seconds of simpleenroll load at the legacy label (RSA-3072 issuing CA; 0 to skip)",
    Number,
    10,
  )
  .option("--openssl-seconds <s>", "seconds per `openssl speed` measurement", positive, 3)
  .option("--revoked <n>", "certificates already revoked in the revocation benchmark (0 to skip it)", Number, 100_000)
  .option("--revocation-samples <n>", "revocations measured with none and with --revoked already revoked", positive, 50)
  .option("--race-rounds <n>", "rounds of the revocation race (0 to skip it)", Number, 50)
  .option("--race-concurrency <n>", "concurrent renewals per round of the revocation race", positive, 8)
  .option("--ocsp-duration <s>", "seconds of each OCSP load run", positive, 10)
  .option("--ocsp-concurrency <n>", "concurrent keep-alive OCSP clients", positive, 64)
  .option("--inventory-devices <n>", "devices in the inventory benchmark (0 to skip it)", Number, 1_000_000)
  .option("--only-fleet", "skip the enrollment benchmark (run only the revocation and inventory benchmarks)")
  .option(
    "--fleet-devices <n>",
    "devices on the embedded broker in the fleet-loop benchmark (0 to skip it)",
    Number,
    500,
  )
  .option("--fleet-messages <n>", "status reports per device in the fleet-loop benchmark", positive, 20)
  .option("--agent-minutes <n>", "minutes of the device agent footprint run (0 to skip it)", Number, 10)
  .option(
    "--workload-entries <n>",
    "workload entries on one gateway in the workload benchmark (issuance, change to stream, agent RSS; 0 to skip it)",
    count,
    50,
  )
  .option("--workload-changes <n>", "entry changes timed to the agent's stream update", positive, 20)
  .option("--workload-batches <n>", "batch requests of --workload-entries CSRs sent to the server", positive, 20)
  .option("--workload-refreshes <n>", "end-to-end refreshes of every SVID by the agent's SvidManager", positive, 10)
  .option(
    "--abuse-duration <s>",
    "seconds of flood in the abuse benchmark (EST, OCSP and MQTT attackers while devices enroll; 0 to skip it)",
    Number,
    60,
  )
  .option(
    "--abuse-quiet <s>",
    "seconds of the same device load without the flood (default: half of --abuse-duration)",
    positive,
  )
  .option("--abuse-concurrency <n>", "devices enrolling at once in the abuse benchmark (keep-alive)", positive, 32)
  .option("--abuse-renew-concurrency <n>", "devices renewing at once in the abuse benchmark (mutual TLS)", positive, 4)
  .option("--abuse-est-connections <n>", "connections of the refused-EST flood (0: no such attacker)", count, 32)
  .option("--abuse-ocsp-connections <n>", "connections of the OCSP flood (0: no such attacker)", count, 32)
  .option("--abuse-mqtt-connections <n>", "connections streaming oversized MQTT CONNECTs (0: none)", count, 4)
  .option("--abuse-max-rate <n>", "most enrollments prepared per second of an abuse phase", positive, 3000)
  .option(
    "--abuse-rss-cap <MiB>",
    "stop the MQTT attack when the server's RSS passes this (the machine is shared)",
    positive,
    2048,
  )
  .option(
    "--abuse-attacker-nice <n>",
    "niceness of the attacker process (on one machine its CPU is taken from the server's)",
    Number,
    0,
  )
  .option(
    "--scep-requests <n>",
    "RSA-2048 PKCSReq sent to edgeid and to Debian's scepserver each (0 to skip the SCEP benchmark)",
    Number,
    600,
  )
  .option("--scep-concurrency <n>", "concurrent keep-alive clients of the SCEP benchmark", positive, 16)
  .option(
    "--node <path[@checkout]>",
    "Node binary of the server (repeatable: each scenario runs once per binary); @checkout: a checkout whose node_modules are built for it",
    (v: string, all: string[]) => [...all, v],
    [] as string[],
  )
  .option(
    "--loops <list>",
    'event loops of the server, comma-separated (each scenario runs once per count; "auto": one per core, the server default)',
    "auto",
  )
  .option("--keep", "keep the data directory")
  .option("--cpu-prof <dir>", "write V8 CPU profiles of every server process the benchmarks start into this directory")
  .addOption(new Option("--table-line-to <file>", "(internal) where one scenario's side-by-side line goes").hideHelp())
  .parse()
  .opts<{
    duration: number;
    concurrency: number;
    warmup: number;
    maxRate: number;
    enrollOrder: "created" | "shuffled";
    reenrollDuration: number;
    reenrollConcurrency: number;
    legacyDuration: number;
    opensslSeconds: number;
    revoked: number;
    revocationSamples: number;
    raceRounds: number;
    raceConcurrency: number;
    ocspDuration: number;
    ocspConcurrency: number;
    onlyFleet?: boolean;
    scepRequests: number;
    scepConcurrency: number;
    inventoryDevices: number;
    agentMinutes: number;
    workloadEntries: number;
    workloadChanges: number;
    workloadBatches: number;
    workloadRefreshes: number;
    abuseDuration: number;
    abuseQuiet?: number;
    abuseConcurrency: number;
    abuseRenewConcurrency: number;
    abuseEstConnections: number;
    abuseOcspConnections: number;
    abuseMqttConnections: number;
    abuseMaxRate: number;
    abuseRssCap: number;
    abuseAttackerNice: number;
    fleetDevices: number;
    fleetMessages: number;
    node: string[];
    loops: string;
    keep?: boolean;
    cpuProf?: string;
    tableLineTo?: string;
  }>();

async function opensslSpeed(seconds: number): Promise<{ sign: number; verify: number; version: string }> {
  const { stdout } = await run("openssl", ["speed", "-seconds", String(seconds), "ecdsap256"], {
    maxBuffer: 1 << 20,
  });
  const m = /256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/.exec(stdout);
  if (!m) throw new Error(`could not read openssl speed output:\n${stdout}`);
  const version = (await run("openssl", ["version"])).stdout.trim();
  return { sign: Number(m[1]), verify: Number(m[2]), version };
}

/**
 * TLS handshakes against the server by an independent client (`openssl s_time -new`):
 * what a new connection costs the server and the cheapest client, before any request.
 */
async function opensslHandshakes(
  hostPort: string,
  caFile: string,
  serverPid: number,
): Promise<{ clientUs: number; serverUs: number }> {
  const before = cpuSeconds(serverPid);
  // bash's `times` prints the children's user and system CPU (s_time itself reports only user time).
  const { stdout } = await run(
    "bash",
    ["-c", 'openssl s_time -connect "$1" -new -time 3 -CAfile "$2" && times', "s_time", hostPort, caFile],
    { maxBuffer: 1 << 20 },
  );
  const serverSeconds = cpuSeconds(serverPid) - before;
  const m = /(\d+) connections in [\d.]+s; [\d.]+ connections\/user sec/.exec(stdout);
  const times = [...stdout.matchAll(/(\d+)m([\d.]+)s/g)].map((t) => Number(t[1]) * 60 + Number(t[2]));
  if (!m || times.length < 4) throw new Error(`could not read openssl s_time output:\n${stdout}`);
  const connections = Number(m[1]);
  // times: shell user, shell system, children user, children system
  return {
    clientUs: (((times[2] as number) + (times[3] as number)) * 1e6) / connections,
    serverUs: (serverSeconds * 1e6) / connections,
  };
}

/** RSA-3072 private-key operations per second on one core (`openssl speed rsa3072`). */
async function opensslRsaSign(seconds: number): Promise<number> {
  const { stdout } = await run("openssl", ["speed", "-seconds", String(seconds), "rsa3072"], { maxBuffer: 1 << 20 });
  const m = /rsa 3072 bits\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)/.exec(stdout);
  if (!m) throw new Error(`could not read openssl speed output:\n${stdout}`);
  return Number(m[1]);
}

interface EnrollFigures {
  rate: number;
  ratio: number;
  p50: number;
  p99: number;
  errors: number;
  serverCores: number;
  clientCores: number;
  perLoop: string;
  peakRss: number;
  reenroll?: number;
  reenrollServerCores?: number;
  reenrollClientCores?: number;
  /** KiB the server wrote to storage per enrollment, per renewal. */
  diskPerEnroll: number;
  diskPerRenewal?: number;
  checksOk: boolean;
}

/**
 * The indices 0..n-1 in the order their devices enroll: as created, or shuffled by a
 * seeded generator (mulberry32, Fisher–Yates), the same order in every run and variant.
 */
function enrollmentOrder(n: number, how: "created" | "shuffled"): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  if (how === "created") return order;
  let seed = 0x5eed_1d5;
  const next = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}

async function main(): Promise<EnrollFigures> {
  const work = await benchWorkDir("", opts.keep === true);
  const dataDir = join(work, "data");
  say(`edgeid enrollment benchmark · ${new Date().toISOString()}`);
  say(`machine: nproc ${availableParallelism()} · ${cpus()[0]?.model ?? "?"} · node ${process.version}`);

  const speed = await opensslSpeed(opts.opensslSeconds);
  const pairRate = 1 / (1 / speed.sign + 1 / speed.verify);
  say(
    `${speed.version}: P-256 sign ${speed.sign.toFixed(0)}/s, verify ${speed.verify.toFixed(0)}/s (one core)` +
      ` → pair-rate ${pairRate.toFixed(0)}/s`,
  );
  say(describeWakeup(await threadWakeup()));

  await cli(["init", "--data", dataDir, "--json"]);
  const measured = Math.ceil(opts.duration * opts.maxRate);
  const reenrollCount = Math.ceil(opts.reenrollDuration * 800);
  const total = opts.warmup + measured + 1;
  const t = performance.now();
  const tokensPromise = createTokens(dataDir, total);
  const requests: DeviceRequest[] = [];
  const width = Math.max(4, String(total).length);
  const idOf = (i: number) => `bench-${String(i + 1).padStart(width, "0")}`;
  for (let i = 0; i < total; i++) {
    requests.push(makeRequest(idOf(i)));
    if (i % 2000 === 0) await new Promise((r) => setImmediate(r));
  }
  // Which device enrolls k-th (the last token is kept for the race below). In creation
  // order, the devices of one commit are neighbours in id order and share the pages of
  // every index on the id; shuffled, they are spread over it, as when a fleet comes online.
  const order = enrollmentOrder(total - 1, opts.enrollOrder);
  say(`enrollment order: ${opts.enrollOrder}`);
  // Renewals for the devices that enroll first (the warm-up's are certain to).
  const renewals = Array.from({ length: Math.min(reenrollCount, total - 1) }, (_, k) =>
    makeRequest(idOf(order[k] as number)),
  );
  const tokens = await tokensPromise;
  if (tokens.length !== total || tokens[0]?.deviceId !== idOf(0)) throw new Error("token batch does not line up");
  say(
    `prepared ${total} tokens and ${total + renewals.length} CSRs in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );

  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  // The server writes its log straight into the file: the load generator is not its sink.
  const logFile = join(work, "server.log");
  const logFd = openSync(logFile, "a");
  const serve = serveCommand();
  const server = spawn(
    serve.command,
    [...serve.args, "--data", dataDir, "--listen", `127.0.0.1:${port}`, "--public-listen", "127.0.0.1:0"],
    { stdio: ["ignore", logFd, logFd] },
  );
  reapOnExit(server);
  closeSync(logFd);
  const exited = new Promise<void>((r) => server.once("exit", () => r()));
  const ca = readFileSync(join(dataDir, "ca", "root-ca.pem"), "utf8");
  await waitReady(`${url}/healthz`, ca, () => server.exitCode !== null);

  const enrollUrl = `${url}/.well-known/est/simpleenroll`;
  const jobs: Job[] = order.map((i) => ({
    headers: basic(tokens[i] as Token),
    body: (requests[i] as DeviceRequest).body,
  }));
  const warm = await runLoad(jobs.slice(0, opts.warmup), {
    url: enrollUrl,
    ca,
    concurrency: opts.concurrency,
    seconds: 600,
  });
  summarize("warm-up   simpleenroll", warm);

  const serverCpu0 = cpuSeconds(server.pid as number);
  const threads0 = threadCpu(server.pid as number);
  const written0 = writtenBytes(server.pid as number);
  const clientCpu0 = process.cpuUsage();
  const main = await runLoad(jobs.slice(opts.warmup, opts.warmup + measured), {
    url: enrollUrl,
    ca,
    concurrency: opts.concurrency,
    seconds: opts.duration,
  });
  const written = writtenBytes(server.pid as number) - written0;
  const enrollRss = peakRssMiB(server.pid as number);
  const serverCores = (cpuSeconds(server.pid as number) - serverCpu0) / main.seconds;
  const clientUsage = process.cpuUsage(clientCpu0);
  const clientCores = (clientUsage.user + clientUsage.system) / 1e6 / main.seconds;
  const enrolled = summarize(`measured  simpleenroll (concurrency ${opts.concurrency}, keep-alive)`, main);
  if (main.started >= measured) say(`  ran out of prepared requests before ${opts.duration} s: raise --max-rate`);
  const windows = windowRates(main, 5);
  if (windows.length > 1) {
    say(`  per 5 s: ${windows.map((w) => w.toFixed(0)).join(", ")} /s (slowest ${Math.min(...windows).toFixed(0)}/s)`);
  }
  say(
    `  ratio to the OpenSSL pair-rate: ${(enrolled.rate / pairRate).toFixed(3)}` +
      ` · server peak RSS ${enrollRss.toFixed(0)} MiB`,
  );
  say(`  CPU in use: server ${serverCores.toFixed(2)} cores, load generator ${clientCores.toFixed(2)} cores`);
  // Whatever the server wrote while the measured requests ran (its group commits, the
  // checkpoints that fell in the window, its log), per enrollment answered.
  const diskPerEnroll = written / 1024 / Math.max(1, enrolled.ok);
  say(`  disk: ${diskPerEnroll.toFixed(1)} KiB written by the server per enrollment (/proc write_bytes)`);
  const busiest = [...threadCpu(server.pid as number)]
    .map(([tid, s]) => ({ tid, share: (s - (threads0.get(tid) ?? 0)) / main.seconds }))
    .sort((a, b) => b.share - a.share)
    .slice(0, 8);
  const loopTids = loopThreads(readFileSync(logFile, "utf8"), server.pid as number);
  const threadsNow = threadCpu(server.pid as number);
  const perLoop = [...loopTids]
    .map(
      ([loop, tid]) =>
        `loop ${loop} ${(((threadsNow.get(tid) ?? 0) - (threads0.get(tid) ?? 0)) / main.seconds).toFixed(2)}`,
    )
    .join(", ");
  say(`  event loops: ${loopTids.size} · CPU per loop (cores): ${perLoop}`);
  const serverCpu = serverCores * main.seconds;
  for (const line of describeBudget(
    cpuBudget({
      threads: threadUse(server.pid as number, threads0, threadsNow, new Set(loopTids.values())),
      serverSeconds: serverCpu,
      clientSeconds: clientCores * main.seconds,
      operations: enrolled.ok,
      cores: availableParallelism(),
      targetRate: ENROLL_TARGET_RATIO * pairRate,
    }),
    "enrollment",
    `the target (${ENROLL_TARGET_RATIO} × the pair-rate, ${(ENROLL_TARGET_RATIO * pairRate).toFixed(0)}/s)`,
    availableParallelism(),
  )) {
    say(line);
  }
  say(
    `  server threads: ${busiest
      .map(
        (t) =>
          `${t.tid === server.pid ? "event loop" : `thread ${t.tid} (${threadName(server.pid as number, t.tid)})`} ${(t.share * 100).toFixed(0)}%`,
      )
      .join(", ")} (of one core)`,
  );

  // The same token from 16 connections at once: exactly one certificate.
  const raceToken = tokens[total - 1] as Token;
  const race = await runLoad(
    Array.from({ length: 16 }, () => ({
      headers: basic(raceToken),
      body: (requests[total - 1] as DeviceRequest).body,
      tls: undefined,
    })),
    { url: enrollUrl, ca, concurrency: 16, seconds: 60 },
  );
  const raceOk = race.outcomes.filter((o) => o?.status === 200).length;
  say(
    `same token from 16 clients at once: ${raceOk} accepted, ${16 - raceOk} refused (${[...race.statuses].join(" ")})`,
  );

  // simplereenroll: each renewal is a new TLS connection with the device's certificate.
  let reenroll: { rate: number; ok: number; errors: number } | undefined;
  let reenrollServerCores: number | undefined;
  let reenrollClientCores: number | undefined;
  let diskPerRenewal: number | undefined;
  const issued = new Map<string, Uint8Array>();
  const allOutcomes = [...warm.outcomes, ...main.outcomes];
  for (let i = 0; i < allOutcomes.length; i++) {
    const o = allOutcomes[i];
    if (o?.status === 200) issued.set(idOf(order[i] as number), certificateFromResponse(o.body));
  }
  if (opts.reenrollDuration > 0) {
    const renewJobs: Job[] = [];
    for (const r of renewals) {
      const cert = issued.get(r.deviceId);
      const key = requests[Number(r.deviceId.slice(6)) - 1]?.key;
      if (!cert || !key) continue;
      renewJobs.push({
        headers: {},
        body: r.body,
        tls: createSecureContext({
          ca,
          cert: certificatePem(cert),
          key: key.export({ type: "pkcs8", format: "pem" }) as string,
        }),
      });
    }
    const handshake = await opensslHandshakes(
      `127.0.0.1:${port}`,
      join(dataDir, "ca", "root-ca.pem"),
      server.pid as number,
    );
    const ceiling = (availableParallelism() * 1e6) / (handshake.clientUs + handshake.serverUs);
    say(
      `  yardstick: openssl s_time (a new TLS connection each, no client certificate, no request): openssl` +
        ` ${handshake.clientUs.toFixed(0)} µs and the server ${handshake.serverUs.toFixed(0)} µs of CPU per handshake` +
        ` → at most ${ceiling.toFixed(0)} handshakes/s on ${availableParallelism()} cores`,
    );
    const renewCpu0 = cpuSeconds(server.pid as number);
    const renewThreads0 = threadCpu(server.pid as number);
    const renewWritten0 = writtenBytes(server.pid as number);
    const renewClient0 = process.cpuUsage();
    const renew = await runLoad(renewJobs, {
      url: `${url}/.well-known/est/simplereenroll`,
      ca,
      concurrency: opts.reenrollConcurrency,
      seconds: opts.reenrollDuration,
    });
    reenroll = summarize(
      `measured  simplereenroll (concurrency ${opts.reenrollConcurrency}, new mTLS connection each)`,
      renew,
    );
    if (renew.started >= renewJobs.length) say("  ran out of prepared renewals: lower --reenroll-duration");
    const renewClient = process.cpuUsage(renewClient0);
    const renewThreads = threadCpu(server.pid as number);
    reenrollServerCores = (cpuSeconds(server.pid as number) - renewCpu0) / renew.seconds;
    reenrollClientCores = (renewClient.user + renewClient.system) / 1e6 / renew.seconds;
    say(
      `  CPU in use: server ${reenrollServerCores.toFixed(2)} cores,` +
        ` load generator ${reenrollClientCores.toFixed(2)} cores`,
    );
    for (const line of describeBudget(
      cpuBudget({
        threads: threadUse(
          server.pid as number,
          renewThreads0,
          renewThreads,
          new Set(loopThreads(readFileSync(logFile, "utf8"), server.pid as number).values()),
        ),
        serverSeconds: reenrollServerCores * renew.seconds,
        clientSeconds: reenrollClientCores * renew.seconds,
        operations: reenroll.ok,
        cores: availableParallelism(),
        targetRate: REENROLL_TARGET_RATE,
      }),
      "renewal",
      `the target (${REENROLL_TARGET_RATE}/s)`,
      availableParallelism(),
    )) {
      say(line);
    }
    diskPerRenewal = (writtenBytes(server.pid as number) - renewWritten0) / 1024 / Math.max(1, reenroll.ok);
    say(`  disk: ${diskPerRenewal.toFixed(1)} KiB written by the server per renewal (/proc write_bytes)`);
  }
  // The legacy label: the same path, signed by the RSA-3072 issuing CA (P-256 device keys,
  // so that the figure is the CA's signature, not the load generator's RSA key generation).
  let legacy: { rate: number; ok: number; errors: number } | undefined;
  if (opts.legacyDuration > 0) {
    const n = Math.ceil(opts.legacyDuration * 1000);
    const legacyTokens = await createTokens(dataDir, n, "legacy-", "legacy");
    const legacyJobs: Job[] = legacyTokens.map((tk) => ({ headers: basic(tk), body: makeRequest(tk.deviceId).body }));
    const rsaSign = await opensslRsaSign(opts.opensslSeconds);
    const legacyCpu0 = cpuSeconds(server.pid as number);
    const legacyRun = await runLoad(legacyJobs, {
      url: `${url}/.well-known/est/legacy/simpleenroll`,
      ca,
      concurrency: opts.concurrency,
      seconds: opts.legacyDuration,
    });
    legacy = summarize(`measured  simpleenroll at /legacy (RSA-3072 CA, concurrency ${opts.concurrency})`, legacyRun);
    if (legacyRun.started >= legacyJobs.length) say("  ran out of prepared legacy requests: lower --legacy-duration");
    say(
      `  server ${((cpuSeconds(server.pid as number) - legacyCpu0) / legacyRun.seconds).toFixed(2)} cores;` +
        ` openssl speed rsa3072 sign ${rsaSign.toFixed(0)}/s on one core (ratio ${(legacy.rate / rsaSign).toFixed(2)})`,
    );
  }
  const peakRss = peakRssMiB(server.pid as number);
  server.kill("SIGTERM");
  await exited;

  // What the database says, after the server stopped.
  const db = new Database(join(dataDir, "edgeid.db"), { readonly: true });
  const one = <T>(sql: string) => db.prepare(sql).pluck().get() as T;
  const certs = one<number>("select count(*) from certificates");
  const distinctSerials = one<number>("select count(distinct serial) from certificates");
  const tokenCerts = one<number>("select count(*) from certificates where method = 'token'");
  const usedTokens = one<number>("select count(*) from bootstrap_tokens where used_at is not null");
  const dangling = one<number>(
    "select count(*) from bootstrap_tokens t where used_at is not null and not exists " +
      "(select 1 from certificates c where c.serial = t.used_serial and c.bootstrap_token_id = t.id)",
  );
  const fingerprints = new Set(
    db.prepare("select fingerprint from certificates where method = 'token'").pluck().all() as string[],
  );
  db.close();
  let unrecorded = 0;
  for (const der of issued.values()) {
    if (!fingerprints.has(createHash("sha256").update(der).digest("hex"))) unrecorded++;
  }
  const tokenOk = issued.size + raceOk + (legacy?.ok ?? 0);
  const checks = [
    [`serials unique (${distinctSerials} of ${certs})`, distinctSerials === certs],
    [`token enrollments answered 200 = certificates recorded (${tokenOk} = ${tokenCerts})`, tokenOk === tokenCerts],
    [`every certificate a client received is in the database (${unrecorded} missing)`, unrecorded === 0],
    [
      `tokens used = token certificates (${usedTokens} = ${tokenCerts}), none dangling (${dangling})`,
      usedTokens === tokenCerts && dangling === 0,
    ],
    ["the raced token was accepted exactly once", raceOk === 1],
  ] as const;
  for (const [what, ok] of checks) say(`check ${ok ? "ok  " : "FAIL"} ${what}`);
  say(`server peak RSS over the whole run: ${peakRss.toFixed(0)} MiB · log: ${opts.keep ? logFile : "(removed)"}`);
  say(
    `RESULT enroll ${enrolled.rate.toFixed(0)}/s errors ${enrolled.errors} ratio ${(enrolled.rate / pairRate).toFixed(3)}` +
      (reenroll ? ` · reenroll ${reenroll.rate.toFixed(0)}/s errors ${reenroll.errors}` : "") +
      (legacy ? ` · legacy ${legacy.rate.toFixed(0)}/s errors ${legacy.errors}` : ""),
  );
  if (!opts.keep) await rm(work, { recursive: true, force: true });
  else say(`data directory kept: ${dataDir}`);
  if (checks.some(([, ok]) => !ok)) process.exitCode = 1;
  return {
    rate: enrolled.rate,
    ratio: enrolled.rate / pairRate,
    p50: enrolled.p50,
    p99: enrolled.p99,
    errors: enrolled.errors,
    serverCores,
    clientCores,
    perLoop,
    peakRss,
    reenroll: reenroll?.rate,
    reenrollServerCores,
    reenrollClientCores,
    diskPerEnroll,
    diskPerRenewal,
    checksOk: checks.every(([, ok]) => ok),
  };
}

/** One server variant: a Node binary (and checkout) and a loop count. */
async function variant(): Promise<{ enroll?: EnrollFigures; revocation?: string }> {
  const out: { enroll?: EnrollFigures; revocation?: string } = {};
  if (!opts.onlyFleet) out.enroll = await main();
  if (opts.scepRequests > 0) {
    const summary = await scepBench({
      requests: opts.scepRequests,
      concurrency: opts.scepConcurrency,
      keep: Boolean(opts.keep),
    });
    say(`RESULT ${summary}`);
  }
  if (opts.revoked > 0) {
    const summary = await revocationBench({
      revoked: opts.revoked,
      samples: opts.revocationSamples,
      ocspDuration: opts.ocspDuration,
      ocspConcurrency: opts.ocspConcurrency,
      keep: Boolean(opts.keep),
    });
    say(`RESULT revocation ${summary}`);
    out.revocation = summary;
  }
  if (opts.raceRounds > 0) {
    const summary = await revocationRaceBench({
      rounds: opts.raceRounds,
      concurrency: opts.raceConcurrency,
      keep: Boolean(opts.keep),
    });
    say(`RESULT revocation race ${summary}`);
  }
  if (opts.fleetDevices > 0) {
    const summary = await fleetBench({
      devices: opts.fleetDevices,
      messages: opts.fleetMessages,
      revocations: Math.min(20, opts.fleetDevices),
      keep: Boolean(opts.keep),
    });
    say(`RESULT fleet ${summary}`);
  }
  if (opts.agentMinutes > 0) {
    say(`RESULT agent ${await agentBench({ minutes: opts.agentMinutes, keep: Boolean(opts.keep) })}`);
  }
  if (opts.workloadEntries > 0) {
    const summary = await workloadsBench({
      entries: opts.workloadEntries,
      changes: opts.workloadChanges,
      batches: opts.workloadBatches,
      refreshes: opts.workloadRefreshes,
      keep: Boolean(opts.keep),
      yardstick: await opensslSpeed(opts.opensslSeconds),
    });
    say(`RESULT ${summary}`);
  }
  if (opts.inventoryDevices > 0) {
    say(`RESULT inventory ${await inventoryBench({ devices: opts.inventoryDevices, keep: Boolean(opts.keep) })}`);
  }
  if (opts.abuseDuration > 0) {
    const summary = await abuseBench({
      duration: opts.abuseDuration,
      quiet: opts.abuseQuiet ?? opts.abuseDuration / 2,
      concurrency: opts.abuseConcurrency,
      renewConcurrency: opts.abuseRenewConcurrency,
      estConnections: opts.abuseEstConnections,
      ocspConnections: opts.abuseOcspConnections,
      mqttConnections: opts.abuseMqttConnections,
      maxRate: opts.abuseMaxRate,
      rssCapMiB: opts.abuseRssCap,
      attackerNice: opts.abuseAttackerNice,
      keep: Boolean(opts.keep),
    });
    say(`RESULT abuse ${summary}`);
  }
  return out;
}

if (opts.cpuProf) serverRuntime.cpuProfDir = resolve(opts.cpuProf);
const nodes = opts.node.length > 0 ? opts.node : [process.execPath];
const loopCounts = opts.loops.split(",").map((l) => l.trim());
const scenarios = nodes.flatMap((spec) => loopCounts.map((loops) => ({ spec, loops })));

/** One scenario in this process: the server on `spec`'s Node with `loops` loops. Its side-by-side line. */
async function scenario(spec: string, loops: string): Promise<string> {
  const at = spec.indexOf("@");
  const node = at < 0 ? spec : spec.slice(0, at);
  serverRuntime.node = node;
  serverRuntime.bin = at < 0 ? EDGEID : join(resolve(spec.slice(at + 1)), "bin", "edgeid.mjs");
  serverRuntime.loops = loops;
  const version = (await run(node, ["--version"])).stdout.trim();
  say(`\n=== server: node ${version} (${node}) · --loops ${loops} ===`);
  const r = await variant();
  const e = r.enroll;
  return (
    `node ${version} · loops ${loops}: ` +
    (e
      ? `enroll ${e.rate.toFixed(0)}/s ratio ${e.ratio.toFixed(3)} p50 ${e.p50.toFixed(1)} ms p99 ${e.p99.toFixed(1)} ms errors ${e.errors}` +
        ` · server ${e.serverCores.toFixed(2)} cores (${e.perLoop}) · load generator ${e.clientCores.toFixed(2)} cores` +
        ` · peak RSS ${e.peakRss.toFixed(0)} MiB · disk ${e.diskPerEnroll.toFixed(1)} KiB/enrollment` +
        (e.reenroll !== undefined
          ? ` · reenroll ${e.reenroll.toFixed(0)}/s (server ${e.reenrollServerCores?.toFixed(2)}, load generator ${e.reenrollClientCores?.toFixed(2)} cores, disk ${e.diskPerRenewal?.toFixed(1)} KiB/renewal)`
          : "") +
        ` · checks ${e.checksOk ? "ok" : "FAIL"}`
      : "") +
    (r.revocation ? ` · ${r.revocation}` : "")
  );
}

/**
 * One scenario in a new process of this benchmark, so that every scenario starts from
 * the same load generator: run in one process, the later ones ran beside what the
 * earlier ones left (tens of thousands of keys and TLS contexts, a grown heap), and
 * the same build measured ~18 % fewer renewals/s second than first.
 */
async function scenarioInChild(spec: string, loops: string, lineFile: string): Promise<string> {
  const args: string[] = [];
  const given = process.argv.slice(2);
  for (let i = 0; i < given.length; i++) {
    const a = given[i] as string;
    if (a === "--node" || a === "--loops") i++;
    else if (!a.startsWith("--node=") && !a.startsWith("--loops=")) args.push(a);
  }
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      ...args,
      "--node",
      spec,
      "--loops",
      loops,
      "--table-line-to",
      lineFile,
    ],
    { stdio: "inherit" },
  );
  // SIGTERM, so that the variant's process ends its own servers before it exits.
  reapOnExit(child, "SIGTERM");
  const code = await new Promise<number | null>((done) => child.on("exit", (c) => done(c)));
  if (code !== 0) process.exitCode = 1;
  try {
    return readFileSync(lineFile, "utf8");
  } catch {
    return `${spec} · loops ${loops}: the scenario's process ended with ${code} and no figures`;
  }
}

const table: string[] = [];
if (scenarios.length === 1) {
  const [only] = scenarios as [{ spec: string; loops: string }];
  const line = await scenario(only.spec, only.loops);
  if (opts.tableLineTo) writeFileSync(opts.tableLineTo, line);
  table.push(line);
} else {
  const lines = await benchWorkDir("lines-", false);
  for (const [i, s] of scenarios.entries()) table.push(await scenarioInChild(s.spec, s.loops, join(lines, `${i}.txt`)));
  await rm(lines, { recursive: true, force: true });
}
if (!opts.tableLineTo && (table.length > 1 || opts.node.length > 0)) {
  say("\n=== side by side ===");
  for (const line of table) say(line);
}
