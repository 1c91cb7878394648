/**
 * The abuse benchmark (part of `npm run bench`): what a flood from a few addresses
 * costs the devices that are enrolling and renewing at the same time. Against the real
 * server process and its SQLite file:
 *
 * 1. quiet: devices enroll (simpleenroll with a bootstrap token, keep-alive) and renew
 *    (simplereenroll over mutual TLS, a new connection each, each device renewing with
 *    the certificate its previous renewal got), from 127.0.0.1;
 * 2. flood: the same load, while bench/abuse-attackers.ts floods from other loopback
 *    addresses: refused EST from 127.0.0.2, OCSP spellings and malformed OCSP from
 *    127.0.0.3, MQTT CONNECTs announcing 256 MB with revoked certificates from 127.0.0.4.
 *
 * It prints the server's peak RSS per phase (VmRSS sampled every 100 ms), the database
 * growth during the flood, the devices' rates and latencies quiet versus flood, the
 * attackers' answers by status, and one PASS/FAIL line per goal (RSS under 400 MiB,
 * growth due to the attack under 1 MiB, the devices' rates at least 80 % of quiet).
 * Figures, not assertions: a missed goal is printed, not thrown.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { rm } from "node:fs/promises";
import { Agent } from "node:https";
import { availableParallelism, loadavg, setPriority } from "node:os";
import { join } from "node:path";
import { createSecureContext } from "node:tls";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { nodeDigest } from "../server/adapters/node/node-digest.ts";
import { toHex } from "../server/pki/der.ts";
import { issuerHashes } from "../server/pki/ocsp.ts";
import { pemCertificates } from "../server/pki/pem.ts";
import { ATTACKER_ADDRESSES, type AttackConfig, type AttackResult, type Tally } from "./abuse-attackers.ts";
import { type Job, type Outcome, percentile, runLoad } from "./load.ts";
import { certificateFromResponse, certificatePem, makeRequest } from "./requests.ts";
import {
  basic,
  benchWorkDir,
  cli,
  cpuSeconds,
  createTokens,
  type EnrolledDevice,
  enrollDevices,
  reapOnExit,
  revokeOverApi,
  type ServerProcess,
  say,
  startServerProcess,
} from "./server.ts";

export interface AbuseBenchOptions {
  /** Seconds of flood. */
  duration: number;
  /** Seconds of the same legitimate load without the flood, before it. */
  quiet: number;
  /** Concurrent keep-alive enrollment clients. */
  concurrency: number;
  /** Devices renewing at once, one mutual-TLS connection per renewal. */
  renewConcurrency: number;
  estConnections: number;
  ocspConnections: number;
  mqttConnections: number;
  /** Most prepared enrollments per second of a phase (the run says when they ran out). */
  maxRate: number;
  /** The MQTT attack stops when the server's RSS passes this (MiB): the machine is shared. */
  rssCapMiB: number;
  /**
   * Niceness of the attacker process (0: as the rest). On one machine the attacker's own
   * CPU is taken from the server and the devices; where it is elsewhere it is not.
   */
  attackerNice: number;
  keep: boolean;
}

const LEGIT_ADDRESS = "127.0.0.1";
const RSS_GOAL_MIB = 400;
const DB_GOAL_BYTES = 1 << 20;
const RATE_GOAL = 0.8;
/** Devices enrolled to be attacked with: most revoked (MQTT), two left valid (OCSP "good"). */
const ATTACK_DEVICES = 8;
const REVOKED_DEVICES = 6;
const WARMUP = 1500;

/** The server's resident memory, sampled every 100 ms; the peak per phase. */
class RssSampler {
  readonly peaks = new Map<string, number>();
  phase = "setup";
  last = 0;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly pid: number,
    private readonly onSample: (mib: number) => void,
  ) {
    this.timer = setInterval(() => this.sample(), 100);
  }

  sample(): number {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      this.last = m ? Number(m[1]) / 1024 : Number.NaN;
    } catch {
      this.last = Number.NaN; // the server is gone
    }
    if (this.last > (this.peaks.get(this.phase) ?? 0)) this.peaks.set(this.phase, this.last);
    this.onSample(this.last);
    return this.last;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

interface DbSize {
  /** The file and its -wal on disk. */
  files: number;
  /** page_count × page_size as a reader sees it (WAL included): the file's size after a checkpoint. */
  pages: number;
  maxAuditId: number;
}

function dbSize(dbFile: string): DbSize {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const pragma = (name: string) => db.pragma(name, { simple: true }) as number;
    const wal = `${dbFile}-wal`;
    return {
      files: statSync(dbFile).size + (existsSync(wal) ? statSync(wal).size : 0),
      pages: pragma("page_count") * pragma("page_size"),
      maxAuditId: (db.prepare("SELECT ifnull(max(id), 0) FROM audit_events").pluck().get() as number) ?? 0,
    };
  } finally {
    db.close();
  }
}

/** Audit records written between two ids, by source address (port stripped): rows and their text bytes. */
function auditByAddress(dbFile: string, after: number, upTo: number): Map<string, { rows: number; bytes: number }> {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  const out = new Map<string, { rows: number; bytes: number }>();
  try {
    const rows = db
      .prepare(
        "SELECT remote, count(*) AS n, sum(8 + length(actor) + length(action) + length(outcome) + ifnull(length(device_id), 0) + ifnull(length(serial), 0) + ifnull(length(remote), 0) + ifnull(length(detail), 0) + ifnull(length(prev_hash), 0) + ifnull(length(hash), 0)) AS bytes FROM audit_events WHERE id > ? AND id <= ? GROUP BY remote",
      )
      .all(after, upTo) as { remote: string | null; n: number; bytes: number }[];
    for (const r of rows) {
      const address = (r.remote ?? "(none)").replace(/^::ffff:/, "").replace(/:\d+$/, "");
      const a = out.get(address) ?? { rows: 0, bytes: 0 };
      a.rows += r.n;
      a.bytes += r.bytes;
      out.set(address, a);
    }
  } finally {
    db.close();
  }
  return out;
}

interface Figures {
  ok: number;
  rate: number;
  p50: number;
  p99: number;
  errors: Tally;
}

function figures(outcomes: readonly (Outcome | undefined)[], seconds: number): Figures {
  const done = outcomes.filter((o): o is Outcome => o !== undefined);
  const ok = done.filter((o) => o.status === 200).length;
  const lat = Float64Array.from(done.map((o) => o.ms)).sort();
  const errors: Tally = {};
  for (const o of done) {
    if (o.status === 200) continue;
    const key = o.status === 0 ? `network error: ${o.body.slice(0, 60)}` : String(o.status);
    errors[key] = (errors[key] ?? 0) + 1;
  }
  return { ok, rate: ok / seconds, p50: percentile(lat, 50), p99: percentile(lat, 99), errors };
}

const tally = (t: Tally) =>
  Object.entries(t)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ×${v}`)
    .join(", ");
const mib = (bytes: number) => `${(bytes / (1 << 20)).toFixed(2)} MiB`;
const line = (name: string, f: Figures, seconds: number) =>
  `${name}: ${f.ok} ok in ${seconds.toFixed(1)} s = ${f.rate.toFixed(1)}/s · p50 ${f.p50.toFixed(1)} ms · p99 ${f.p99.toFixed(1)} ms` +
  (Object.keys(f.errors).length ? ` · not ok: ${tally(f.errors)}` : "");

interface Renewer {
  deviceId: string;
  cert: string;
  key: string;
}

/**
 * Each renewer renews again and again until the deadline, each time with the
 * certificate and key its previous renewal got (the server supersedes the old one).
 */
async function renewLoop(
  server: ServerProcess,
  renewers: Renewer[],
  seconds: number,
): Promise<{ outcomes: Outcome[]; seconds: number }> {
  const url = `${server.url}/.well-known/est/simplereenroll`;
  const outcomes: Outcome[] = [];
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    renewers.map(async (r) => {
      while (performance.now() < deadline) {
        const request = makeRequest(r.deviceId);
        const tls = createSecureContext({ ca: server.ca, cert: r.cert, key: r.key });
        const result = await runLoad([{ headers: {}, body: request.body, tls }], {
          url,
          ca: server.ca,
          concurrency: 1,
          seconds: 600,
          localAddress: LEGIT_ADDRESS,
        });
        const out = result.outcomes[0] ?? { status: 0, body: "not sent", ms: 0 };
        outcomes.push(out);
        if (out.status === 200) {
          r.cert = certificatePem(certificateFromResponse(out.body));
          r.key = request.key.export({ type: "pkcs8", format: "pem" }) as string;
        } else if (out.status === 0) {
          await new Promise((res) => setTimeout(res, 50));
        }
      }
    }),
  );
  return { outcomes, seconds: (performance.now() - t0) / 1000 };
}

interface PhaseResult {
  enroll: Figures;
  renew: Figures;
  seconds: number;
  ranOut: boolean;
  serverCores: number;
  /** This process (the devices' load generator), cores. */
  clientCores: number;
  /** The machine's 1-minute load average at the end (it may be shared). */
  load: number;
}

/** The legitimate load for `seconds`: token enrollments and chained renewals, from 127.0.0.1. */
async function legitimate(
  server: ServerProcess,
  jobs: Job[],
  renewers: Renewer[],
  o: AbuseBenchOptions,
  seconds: number,
): Promise<PhaseResult> {
  const cpu0 = cpuSeconds(server.pid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const [enroll, renew] = await Promise.all([
    runLoad(jobs, {
      url: `${server.url}/.well-known/est/simpleenroll`,
      ca: server.ca,
      concurrency: o.concurrency,
      seconds,
      localAddress: LEGIT_ADDRESS,
    }),
    renewLoop(server, renewers, seconds),
  ]);
  const elapsed = (performance.now() - t0) / 1000;
  const client = process.cpuUsage(client0);
  let serverCores = Number.NaN;
  try {
    serverCores = (cpuSeconds(server.pid) - cpu0) / elapsed;
  } catch {
    // the server is gone
  }
  return {
    enroll: figures(enroll.outcomes, enroll.seconds),
    renew: figures(renew.outcomes, renew.seconds),
    seconds: elapsed,
    ranOut: enroll.started >= jobs.length,
    serverCores,
    clientCores: (client.user + client.system) / 1e6 / elapsed,
    load: loadavg()[0] ?? Number.NaN,
  };
}

function startAttackers(nice: number): { child: ChildProcess; message: (type: string) => Promise<unknown> } {
  const file = fileURLToPath(new URL("./abuse-attackers.ts", import.meta.url));
  // execArgv carries tsx's loader, so that the child runs TypeScript as this process does.
  const child = spawn(process.execPath, [...process.execArgv, file], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: { ...process.env, EDGEID_BENCH_ATTACKER: "1" },
  });
  reapOnExit(child);
  if (nice !== 0 && child.pid !== undefined) setPriority(child.pid, nice);
  const waiting = new Map<string, (m: unknown) => void>();
  child.on("message", (m: { type: string; result?: unknown }) => waiting.get(m.type)?.(m.result));
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`the attacker process exited (${code})`))),
  );
  exited.catch(() => undefined);
  return {
    child,
    message: (type) => Promise.race([new Promise((r) => waiting.set(type, r)), exited]),
  };
}

export async function abuseBench(o: AbuseBenchOptions): Promise<string> {
  const work = await benchWorkDir("abuse-", o.keep);
  const dataDir = join(work, "data");
  const dbFile = join(dataDir, "edgeid.db");
  say(
    `\nabuse benchmark: ${o.quiet} s quiet, then ${o.duration} s of flood — refused EST from ${ATTACKER_ADDRESSES.est} (${o.estConnections} connections),` +
      ` OCSP spellings from ${ATTACKER_ADDRESSES.ocsp} (${o.ocspConnections}), 256 MB MQTT CONNECTs with revoked certificates from ${ATTACKER_ADDRESSES.mqtt} (${o.mqttConnections})` +
      ` — while devices enroll (${o.concurrency} keep-alive clients) and renew (${o.renewConcurrency} at once, mutual TLS) from ${LEGIT_ADDRESS}`,
  );
  const init = JSON.parse((await cli(["init", "--data", dataDir, "--json"])).stdout) as {
    adminToken: string;
  };
  const setupTokens = await createTokens(dataDir, ATTACK_DEVICES + o.renewConcurrency + WARMUP, "ab-");
  const server = await startServerProcess(dataDir, [], join(work, "server.log"));
  let capped = false;
  let attackers: ReturnType<typeof startAttackers> | undefined;
  const sampler = new RssSampler(server.pid, (rss) => {
    if (!capped && attackers && rss > o.rssCapMiB) {
      capped = true;
      attackers.child.send({ type: "stop-mqtt" });
    }
  });
  try {
    // Devices to attack with (revoked) and to ask OCSP about, and the renewers.
    const setup = await enrollDevices(server, setupTokens.slice(0, ATTACK_DEVICES + o.renewConcurrency));
    const attackDevices = setup.slice(0, ATTACK_DEVICES);
    const renewers: Renewer[] = setup.slice(ATTACK_DEVICES).map((d) => ({ ...d }));
    const agent = new Agent({ keepAlive: true, ca: server.ca, maxSockets: 1 });
    for (const d of attackDevices.slice(0, REVOKED_DEVICES)) {
      const status = await revokeOverApi(server, agent, init.adminToken, d.deviceId);
      if (status !== 200) throw new Error(`revoking ${d.deviceId} answered ${status}`);
    }
    agent.destroy();

    // Warm-up, and how many enrollments to prepare per phase.
    const warmJobs = setupTokens.slice(ATTACK_DEVICES + o.renewConcurrency).map((t) => ({
      headers: basic(t),
      body: makeRequest(t.deviceId).body,
    }));
    const warm = await runLoad(warmJobs, {
      url: `${server.url}/.well-known/est/simpleenroll`,
      ca: server.ca,
      concurrency: o.concurrency,
      seconds: 10,
      localAddress: LEGIT_ADDRESS,
    });
    const warmRate = figures(warm.outcomes, warm.seconds).rate;
    const perSecond = Math.min(o.maxRate, Math.max(100, Math.ceil(warmRate * 2)));
    const quietCount = Math.ceil(perSecond * o.quiet);
    const floodCount = Math.ceil(perSecond * o.duration);
    const t = performance.now();
    const tokens = await createTokens(dataDir, quietCount + floodCount, "lg-");
    const jobs: Job[] = tokens.map((tk) => ({ headers: basic(tk), body: makeRequest(tk.deviceId).body }));
    say(
      `setup: ${ATTACK_DEVICES} devices enrolled (${REVOKED_DEVICES} revoked over the API), ${renewers.length} renewers;` +
        ` warm-up ${warmRate.toFixed(0)} enrollments/s → ${perSecond}/s prepared per phase` +
        ` (${quietCount + floodCount} tokens and CSRs in ${((performance.now() - t) / 1000).toFixed(1)} s)`,
    );

    // Quiet.
    sampler.phase = "quiet";
    const quietStart = dbSize(dbFile);
    const quiet = await legitimate(server, jobs.slice(0, quietCount), renewers, o, o.quiet);
    const quietEnd = dbSize(dbFile);
    const quietOps = quiet.enroll.ok + quiet.renew.ok;
    const bytesPerOp = quietOps > 0 ? (quietEnd.pages - quietStart.pages) / quietOps : 0;

    // Flood: the attackers first (their connections up), then the same legitimate load.
    const issuing = pemCertificates(readFileSync(join(dataDir, "ca", "issuing-p256.pem"), "utf8"))[0] as Uint8Array;
    const hashes = await issuerHashes(issuing, nodeDigest);
    const hex = (h: { name: Uint8Array; key: Uint8Array }) => ({ name: toHex(h.name), key: toHex(h.key) });
    const config: AttackConfig = {
      url: server.url,
      mqttPort: Number(new URL(server.mqttUrl.replace(/^mqtts:/, "https:")).port),
      ca: server.ca,
      estConnections: o.estConnections,
      ocspConnections: o.ocspConnections,
      mqttConnections: o.mqttConnections,
      issuer: { "SHA-1": hex(hashes["SHA-1"]), "SHA-256": hex(hashes["SHA-256"]) },
      serials: attackDevices.map((d) => serialOf(d)),
      revoked: attackDevices.slice(0, REVOKED_DEVICES).map((d) => ({ cert: d.cert, key: d.key })),
      deviceIds: attackDevices.map((d) => d.deviceId),
      csrs: attackDevices.map((d) => makeRequest(d.deviceId).body),
    };
    const floodStart = dbSize(dbFile);
    sampler.phase = "flood";
    attackers = startAttackers(o.attackerNice);
    attackers.child.send({ type: "start", config });
    await attackers.message("ready");
    const floodCpu0 = cpuSeconds(server.pid);
    const tFlood = performance.now();
    const flood = await legitimate(server, jobs.slice(quietCount), renewers, o, o.duration);
    const resultPromise = attackers.message("result");
    attackers.child.send({ type: "stop" });
    const attack = (await resultPromise) as AttackResult;
    let floodCores = Number.NaN;
    try {
      floodCores = (cpuSeconds(server.pid) - floodCpu0) / ((performance.now() - tFlood) / 1000);
    } catch {
      // the server is gone
    }
    // Writes the server had queued when the flood stopped land before the measurement.
    await new Promise((r) => setTimeout(r, 1000));
    sampler.phase = "after";
    const floodEnd = dbSize(dbFile);
    await new Promise((r) => setTimeout(r, 2000));
    const rssAfter = sampler.sample();

    // The report.
    say(line("quiet  enroll", quiet.enroll, quiet.seconds) + (quiet.ranOut ? " (ran out of prepared requests)" : ""));
    say(line("quiet  renew ", quiet.renew, quiet.seconds));
    say(
      `quiet  server: peak RSS ${(sampler.peaks.get("quiet") ?? Number.NaN).toFixed(0)} MiB · CPU ${quiet.serverCores.toFixed(2)} cores` +
        ` · load generator ${quiet.clientCores.toFixed(2)} cores · load average ${quiet.load.toFixed(1)} on ${availableParallelism()} cores`,
    );
    say(line("flood  enroll", flood.enroll, flood.seconds) + (flood.ranOut ? " (ran out of prepared requests)" : ""));
    say(line("flood  renew ", flood.renew, flood.seconds));
    const floodPeak = sampler.peaks.get("flood") ?? Number.NaN;
    say(
      `flood  server: peak RSS ${floodPeak.toFixed(0)} MiB · CPU ${floodCores.toFixed(2)} cores` +
        ` · load generator ${flood.clientCores.toFixed(2)} cores · load average ${flood.load.toFixed(1)}` +
        ` · RSS 3 s after the flood ${rssAfter.toFixed(0)} MiB` +
        (Number.isNaN(rssAfter) ? " (THE SERVER IS GONE)" : ""),
    );
    const enrollRatio = flood.enroll.rate / quiet.enroll.rate;
    const renewRatio = flood.renew.rate / quiet.renew.rate;
    say(
      `flood vs quiet: enroll rate ×${enrollRatio.toFixed(2)}, p99 ×${(flood.enroll.p99 / quiet.enroll.p99).toFixed(1)}` +
        ` · renew rate ×${renewRatio.toFixed(2)}, p99 ×${(flood.renew.p99 / quiet.renew.p99).toFixed(1)}`,
    );
    for (const [name, address, kinds] of [
      ["EST  ", ATTACKER_ADDRESSES.est, attack.est],
      ["OCSP ", ATTACKER_ADDRESSES.ocsp, attack.ocsp],
    ] as const) {
      const all: Tally = {};
      for (const t of Object.values(kinds)) for (const [k, v] of Object.entries(t)) all[k] = (all[k] ?? 0) + v;
      const n = Object.values(all).reduce((a, b) => a + b, 0);
      say(`attack ${name} from ${address}: ${n} requests (${(n / attack.seconds).toFixed(0)}/s): ${tally(all)}`);
      for (const [kind, t] of Object.entries(kinds).sort()) say(`  ${kind}: ${tally(t)}`);
    }
    const m = attack.mqtt;
    say(
      `attack MQTT  from ${ATTACKER_ADDRESSES.mqtt}: ${m.connections} connections, ${m.handshakes} TLS handshakes accepted,` +
        ` ${mib(m.bytesSent)} of CONNECT payload sent (${mib(m.bytesSent / attack.seconds)}/s), most on one connection ${mib(m.maxBytesOneConnection)},` +
        ` longest open ${m.longestSeconds.toFixed(1)} s · ended: ${tally(m.ends)}`,
    );
    if (m.stoppedAt !== undefined) {
      say(
        `  STOPPED at ${m.stoppedAt.toFixed(1)} s: the server's RSS passed the safety cap of ${o.rssCapMiB} MiB (--abuse-rss-cap)`,
      );
    }
    say(`  attacker process CPU ${(attack.cpuSeconds / attack.seconds).toFixed(2)} cores`);

    const floodOps = flood.enroll.ok + flood.renew.ok;
    const legitBytes = floodOps * bytesPerOp;
    const growth = floodEnd.pages - floodStart.pages;
    const attributable = growth - legitBytes;
    say(
      `database during the flood: ${growth} bytes after a checkpoint (page_count; ${floodEnd.files - floodStart.files} bytes of db + wal on disk);` +
        ` the devices' ${floodOps} enrollments and renewals account for ≈${legitBytes.toFixed(0)} (${bytesPerOp.toFixed(0)} bytes each, measured quiet)` +
        ` → ≈${attributable.toFixed(0)} bytes (${mib(attributable)}) due to the attack`,
    );
    const audit = auditByAddress(dbFile, floodStart.maxAuditId, floodEnd.maxAuditId);
    say(
      `  audit records written during the flood, by source address: ${
        [...audit]
          .sort((a, b) => b[1].rows - a[1].rows)
          .map(([a, v]) => `${a} ${v.rows} (≈${mib(v.bytes)} of row data)`)
          .join(", ") || "none"
      }`,
    );
    const peak = Math.max(...[...sampler.peaks.values()].filter((v) => !Number.isNaN(v)));
    const goals = [
      [
        `server peak RSS < ${RSS_GOAL_MIB} MiB: ${peak.toFixed(0)} MiB` +
          (m.stoppedAt === undefined ? "" : ` (and more: the MQTT attack was stopped at ${o.rssCapMiB} MiB)`),
        peak < RSS_GOAL_MIB && m.stoppedAt === undefined,
      ],
      [`database growth due to the attack < 1 MiB: ≈${mib(attributable)}`, attributable < DB_GOAL_BYTES],
      [
        `legitimate enroll rate ≥ ${RATE_GOAL * 100} % of quiet: ${(enrollRatio * 100).toFixed(0)} % (${flood.enroll.rate.toFixed(1)} vs ${quiet.enroll.rate.toFixed(1)}/s)`,
        enrollRatio >= RATE_GOAL,
      ],
      [
        `legitimate renew rate ≥ ${RATE_GOAL * 100} % of quiet: ${(renewRatio * 100).toFixed(0)} % (${flood.renew.rate.toFixed(1)} vs ${quiet.renew.rate.toFixed(1)}/s)`,
        renewRatio >= RATE_GOAL,
      ],
    ] as const;
    for (const [what, ok] of goals) say(`goal ${ok ? "PASS" : "FAIL"} ${what}`);
    return (
      `peak RSS ${peak.toFixed(0)} MiB · db growth ≈${mib(attributable)} · enroll ${flood.enroll.rate.toFixed(1)} vs ${quiet.enroll.rate.toFixed(1)}/s` +
      ` (${(enrollRatio * 100).toFixed(0)} %, p99 ${flood.enroll.p99.toFixed(0)} vs ${quiet.enroll.p99.toFixed(0)} ms)` +
      ` · renew ${(renewRatio * 100).toFixed(0)} % · goals ${goals.filter(([, ok]) => ok).length}/${goals.length} met`
    );
  } finally {
    sampler.stop();
    attackers?.child.kill();
    await server.stop();
    if (!o.keep) await rm(work, { recursive: true, force: true });
    else say(`data directory and server log kept: ${work}`);
  }
}

/** The serial of an issued certificate, as the inventory stores it (hex, no sign octet). */
function serialOf(d: EnrolledDevice): string {
  // Certificate → TBSCertificate → [0] version → INTEGER serial; short lengths here.
  const hex = Buffer.from(d.der).toString("hex");
  const m = /a003020102(02)([0-9a-f]{2})/.exec(hex);
  if (!m) throw new Error("no serial");
  const start = (m.index ?? 0) + m[0].length;
  return hex.slice(start, start + Number.parseInt(m[2] as string, 16) * 2).replace(/^00/, "");
}
