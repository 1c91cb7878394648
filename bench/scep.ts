/**
 * SCEP enrollments/s (part of `npm run bench`): PKCSReq messages for RSA-2048 keys,
 * built ahead (test/support/scep-client.ts: pkijs, AES-256-CBC, SHA-256), posted with
 * `--scep-concurrency` keep-alive clients to edgeid's /scep/legacy (a token as each
 * challenge, RA RSA-2048, RSA-3072 issuing CA, its plain-HTTP public listener) and, in the same run and with the
 * same keys, to the `scepserver` of Debian's scep package (micromdm: its own file
 * depot, one RSA-3072 CA key that decrypts and signs, a static challenge, plain HTTP).
 * Every answer is read: only SUCCESS CertReps count.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { join } from "node:path";
import * as pkijs from "pkijs";
import { envelope, MESSAGE, newScepDevice, pkiMessage, type ScepDevice, scepCsr } from "../test/support/scep-client.ts";
import { percentile } from "./load.ts";
import {
  benchWorkDir,
  cli,
  cpuSeconds,
  createTokens,
  freePort,
  logEntries,
  reapOnExit,
  run,
  say,
  startServerProcess,
} from "./server.ts";

interface Target {
  name: string;
  url: string;
  ca?: string;
  /** The certificate requests are encrypted to. */
  recipient: Uint8Array;
  /** The server process, for its CPU time. */
  pid: number;
}

interface Measured {
  rate: number;
  ok: number;
  failed: number;
  p50: number;
  p99: number;
  seconds: number;
  /** Server CPU (user + system) per successful enrollment: comparable on a shared machine. */
  cpuMs: number;
}

/** The pkiStatus of a CertRep (0 SUCCESS), read without opening the envelope. */
function pkiStatus(der: Buffer): number {
  try {
    const signed = new pkijs.SignedData({ schema: pkijs.ContentInfo.fromBER(new Uint8Array(der)).content });
    const attr = signed.signerInfos[0]?.signedAttrs?.attributes.find((a) => a.type === "2.16.840.1.113733.1.9.3");
    return Number(attr?.values[0]?.valueBlock.value);
  } catch {
    return -1;
  }
}

function post(
  target: Target,
  agent: HttpAgent | HttpsAgent,
  body: Uint8Array,
): Promise<{ status: number; ms: number }> {
  const url = new URL(`${target.url}?operation=PKIOperation`);
  const t0 = performance.now();
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    const req = send(
      url,
      {
        method: "POST",
        agent,
        ...(target.ca ? { ca: target.ca } : {}),
        headers: { "content-type": "application/x-pki-message", "content-length": String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode === 200 ? pkiStatus(Buffer.concat(chunks)) : -1,
            ms: performance.now() - t0,
          }),
        );
      },
    );
    req.on("error", () => resolve({ status: -1, ms: performance.now() - t0 }));
    req.end(body);
  });
}

async function load(target: Target, messages: Uint8Array[], concurrency: number): Promise<Measured> {
  const agent = target.url.startsWith("https:")
    ? new HttpsAgent({ keepAlive: true, maxSockets: concurrency, ...(target.ca ? { ca: target.ca } : {}) })
    : new HttpAgent({ keepAlive: true, maxSockets: concurrency });
  const times: number[] = [];
  let next = 0;
  let ok = 0;
  let failed = 0;
  const cpu0 = cpuSeconds(target.pid);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < messages.length) {
        const r = await post(target, agent, messages[next++] as Uint8Array);
        times.push(r.ms);
        if (r.status === 0) ok++;
        else failed++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpuMs = ((cpuSeconds(target.pid) - cpu0) * 1000) / Math.max(1, ok);
  agent.destroy();
  const sorted = Float64Array.from(times).sort();
  return { rate: ok / seconds, ok, failed, p50: percentile(sorted, 50), p99: percentile(sorted, 99), seconds, cpuMs };
}

/** `scepserver` with a fresh depot (RSA-3072 CA), on a free loopback port. */
async function startScepserver(
  work: string,
): Promise<{ url: string; ca: Uint8Array; pid: number; stop: () => Promise<void> }> {
  const depot = join(work, "depot");
  await run("scepserver", ["ca", "-init", "-depot", depot, "-keySize", "3072", "-organization", "bench"]);
  const port = await freePort();
  const child = spawn(
    "scepserver",
    ["-depot", depot, "-port", String(port), "-challenge", "bench-secret", "-allowrenew", "0"],
    { stdio: ["ignore", "ignore", "ignore"] },
  );
  reapOnExit(child);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const url = `http://127.0.0.1:${port}/scep`;
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      httpRequest(`${url}?operation=GetCACaps`, (res) => {
        res.resume();
        r(res.statusCode === 200);
      })
        .on("error", () => r(false))
        .end();
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const pem = readFileSync(join(depot, "ca.pem"), "utf8");
  const ca = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  return {
    url,
    ca: new Uint8Array(ca),
    pid: child.pid as number,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

const line = (name: string, m: Measured) =>
  `  ${name.padEnd(22)} ${m.rate.toFixed(1).padStart(7)} enrollments/s  (${m.ok} ok, ${m.failed} failed, ` +
  `${m.seconds.toFixed(1)} s; p50 ${m.p50.toFixed(0)} ms, p99 ${m.p99.toFixed(0)} ms; server CPU ${m.cpuMs.toFixed(1)} ms per enrollment)`;

export async function scepBench(o: { requests: number; concurrency: number; keep: boolean }): Promise<string> {
  say(
    `\nSCEP: ${o.requests} PKCSReq (RSA-2048, AES-256-CBC, SHA-256) at ${o.concurrency} clients, edgeid and scepserver`,
  );
  const work = await benchWorkDir("scep-", o.keep);
  const dataDir = join(work, "data");
  await cli(["init", "--data", dataDir, "--json"]);
  // `edgeid init` offers its legacy profile over SCEP (AES, SHA-256): used as written.
  const server = await startServerProcess(dataDir);
  const scepserver = await startScepserver(work);
  try {
    const tokens = await createTokens(dataDir, o.requests, "scep-bench-", "legacy");
    const ra = readFileSync(join(dataDir, "ca", "scep-ra.pem"), "utf8");
    const raDer = new Uint8Array(Buffer.from(ra.replace(/-----[^-]+-----|\s/g, ""), "base64"));
    const t0 = performance.now();
    const devices: ScepDevice[] = [];
    for (let i = 0; i < o.requests; i += 16) {
      const n = Math.min(16, o.requests - i);
      devices.push(...(await Promise.all(Array.from({ length: n }, () => newScepDevice()))));
    }
    const edgeidMessages: Uint8Array[] = [];
    const scepserverMessages: Uint8Array[] = [];
    for (const [i, device] of devices.entries()) {
      const token = tokens[i] as { deviceId: string; token: string };
      const build = async (recipient: Uint8Array, challenge: string) =>
        pkiMessage({
          messageType: MESSAGE.PKCSReq,
          content: envelope(await scepCsr(device, token.deviceId, challenge), recipient, "aes-256-cbc"),
          device,
        });
      edgeidMessages.push(await build(raDer, token.token));
      scepserverMessages.push(await build(scepserver.ca, "bench-secret"));
    }
    say(
      `  prepared ${devices.length} keys and ${2 * devices.length} messages in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    // Both over plain HTTP, as SCEP is designed: edgeid's public listener.
    const listening = logEntries<{ publicHttp?: string }>(server.log(), "listening").find((e) => e.publicHttp);
    if (!listening?.publicHttp) throw new Error("the server reported no public listener");
    const ours = await load(
      { name: "edgeid", url: `${listening.publicHttp}/scep/legacy`, recipient: raDer, pid: server.pid },
      edgeidMessages,
      o.concurrency,
    );
    say(line("edgeid", ours));
    const theirs = await load(
      { name: "scepserver", url: scepserver.url, recipient: scepserver.ca, pid: scepserver.pid },
      scepserverMessages,
      o.concurrency,
    );
    say(line("scepserver", theirs));
    const ratio = ours.rate / theirs.rate;
    say(`  ratio edgeid / scepserver: ${ratio.toFixed(2)}`);
    return (
      `scep ${ours.rate.toFixed(1)}/s (failed ${ours.failed}, ${ours.cpuMs.toFixed(1)} ms CPU each) · ` +
      `scepserver ${theirs.rate.toFixed(1)}/s (failed ${theirs.failed}, ${theirs.cpuMs.toFixed(1)} ms CPU each) · ratio ${ratio.toFixed(2)}`
    );
  } finally {
    await server.stop();
    await scepserver.stop();
    if (!o.keep) await rm(work, { recursive: true, force: true });
  }
}
