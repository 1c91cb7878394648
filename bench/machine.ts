/**
 * Yardsticks of the machine itself, printed beside OpenSSL's rate: what waking another
 * thread costs, and what a request to a bare Node HTTPS server costs. Every enrollment
 * crosses threads (event loop → signature worker → event loop → SQLite writer → event
 * loop) and processes (load generator ↔ server over loopback); on virtual machines a
 * wake-up of an idle CPU can cost more than an ECDSA signature.
 */

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { type Job, runLoad } from "./load.ts";
import { cpuSeconds, reapOnExit, run, serverRuntime } from "./server.ts";

export interface WakeupCost {
  /** µs the sender spends in postMessage when the receiving thread sleeps. */
  toSleepingThread: number;
  /** µs per postMessage in a burst (the receiver is awake: no wake-up). */
  burst: number;
  /** µs for a message to a sleeping thread and its answer back. */
  roundTrip: number;
}

const ECHO = `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (m) => { if (m === "ping") parentPort.postMessage("pong"); });`;

export async function threadWakeup(samples = 300): Promise<WakeupCost> {
  const worker = new Worker(ECHO, { eval: true });
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once("online", () => resolve());
      worker.once("error", reject);
    });
    const idle = () => new Promise((r) => setTimeout(r, 2));
    let sleeping = 0;
    let roundTrips = 0;
    for (let i = 0; i < samples; i++) {
      await idle();
      const t = performance.now();
      worker.postMessage(0);
      sleeping += performance.now() - t;
      await idle();
      const u = performance.now();
      await new Promise<void>((resolve) => {
        worker.once("message", () => resolve());
        worker.postMessage("ping");
      });
      roundTrips += performance.now() - u;
    }
    const burstCount = 20_000;
    const b = performance.now();
    for (let i = 0; i < burstCount; i++) worker.postMessage(0);
    const burst = performance.now() - b;
    return {
      toSleepingThread: (sleeping * 1000) / samples,
      burst: (burst * 1000) / burstCount,
      roundTrip: (roundTrips * 1000) / samples,
    };
  } finally {
    await worker.terminate();
  }
}

export function describeWakeup(w: WakeupCost): string {
  return (
    `thread wake-up: postMessage to a sleeping worker ${w.toSleepingThread.toFixed(1)} µs (sender side),` +
    ` ${w.burst.toFixed(1)} µs to an awake one · round trip from sleep ${w.roundTrip.toFixed(0)} µs`
  );
}

export interface BareHttpsCost {
  rate: number;
  /** µs of the bare server's CPU per request. */
  serverUs: number;
  /** µs of the load generator's CPU per request. */
  clientUs: number;
}

const BARE_SERVER = `
const { createServer } = require("node:https");
const { readFileSync } = require("node:fs");
const body = Buffer.alloc(Number(process.env.BARE_BYTES), 0x30);
const server = createServer({ key: readFileSync(process.env.BARE_KEY), cert: readFileSync(process.env.BARE_CERT) }, (req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 30000;
server.listen(0, "127.0.0.1", () => process.stdout.write(server.address().port + "\\n"));
`;

/**
 * The same load against a bare node:https server (one event loop, a P-256 certificate,
 * a fixed answer of `bytes`, no routing, logging or storage), on the server's Node:
 * what any Node HTTPS request costs on this machine, server and load generator.
 */
export async function bareHttps(
  work: string,
  jobs: readonly Job[],
  opts: { concurrency: number; seconds: number; bytes: number },
): Promise<BareHttpsCost> {
  const key = join(work, "bare.key");
  const cert = join(work, "bare.pem");
  await run("openssl", [
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"],
    ...["-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
  ]);
  const child = spawn(serverRuntime.node, ["-e", BARE_SERVER], {
    env: { ...process.env, BARE_KEY: key, BARE_CERT: cert, BARE_BYTES: String(opts.bytes) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  reapOnExit(child);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (code) => reject(new Error(`the bare HTTPS server exited (${code})`)));
      child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    });
    const serverCpu0 = cpuSeconds(child.pid as number);
    const clientCpu0 = process.cpuUsage();
    const r = await runLoad(jobs, {
      url: `https://127.0.0.1:${port}/`,
      ca: readFileSync(cert, "utf8"),
      concurrency: opts.concurrency,
      seconds: opts.seconds,
    });
    const serverSeconds = cpuSeconds(child.pid as number) - serverCpu0;
    const client = process.cpuUsage(clientCpu0);
    const ok = r.outcomes.filter((o) => o?.status === 200).length;
    if (ok === 0) throw new Error("the bare HTTPS server answered nothing");
    return {
      rate: ok / r.seconds,
      serverUs: (serverSeconds * 1e6) / ok,
      clientUs: (client.user + client.system) / ok,
    };
  } finally {
    child.kill("SIGKILL");
  }
}
