/**
 * The server half: HTTP cases and MQTT sessions against the real process, a fixed number
 * of them in flight, each from the next loopback source address. The run fails on any
 * 5xx, on the process exiting, on an error-level or "unhandled" log line, and on RSS
 * above the ceiling at any sample.
 */
import { performance } from "node:perf_hooks";
import { certificateFromResponse, certificatePem } from "../bench/requests.ts";
import { readCertificate } from "../server/pki/certificate.ts";
import { bytesEqual } from "../server/pki/der.ts";
import { type HttpContext, httpCase } from "./http-cases.ts";
import { mqttPackets } from "./mqtt-cases.ts";
import { inputRng } from "./rng.ts";
import type { SeedCorpus } from "./seeds.ts";
import { type FuzzServer, rssMiB } from "./server.ts";
import { addressRotation, type Endpoint, exchange, mqttSession } from "./wire.ts";

export interface ServerFailure {
  index: number;
  kind: string;
  what: string;
  /** The request's first bytes (latin1, JSON-quoted). */
  request?: string;
}

export interface ServerResult {
  requests: number;
  seconds: number;
  statuses: Record<string, number>;
  kinds: Record<string, number>;
  failures: ServerFailure[];
  peakRssMiB: number;
  startRssMiB: number;
  slowest: { index: number; kind: string; ms: number; request: string } | undefined;
  /** Re-enrollments that succeeded (the client certificate then moves to the new one). */
  reenrolled: number;
  /** Distinct source addresses the server saw. */
  remoteAddresses: number;
  exit: string | undefined;
  badLogLines: string[];
}

export async function runServerFuzz(
  server: FuzzServer,
  opts: {
    seed: number;
    corpus: SeedCorpus;
    requests: number;
    seconds?: number;
    concurrency: number;
    localAddress: string;
    rssCeilingMiB: number;
    /** Share of the requests that are MQTT sessions. */
    mqttShare: number;
    timeoutMs?: number;
    progress?: (done: number, rss: number) => void;
  },
): Promise<ServerResult> {
  const ctx: HttpContext = { server, corpus: opts.corpus };
  const address = addressRotation(opts.localAddress);
  const statuses: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  const failures: ServerFailure[] = [];
  const timeoutMs = opts.timeoutMs ?? 3_000;
  let slowest: ServerResult["slowest"];
  let reenrolled = 0;
  const startRss = rssMiB(server.pid);
  let peak = startRss;
  const fail = (f: ServerFailure) => {
    if (failures.length < 50) failures.push(f);
  };
  const sampler = setInterval(() => {
    const rss = rssMiB(server.pid);
    if (rss > peak) peak = rss;
    if (rss > opts.rssCeilingMiB && !failures.some((f) => f.kind === "rss")) {
      fail({
        index: next,
        kind: "rss",
        what: `server RSS ${rss.toFixed(0)} MiB above the ceiling of ${opts.rssCeilingMiB} MiB`,
      });
    }
  }, 100);

  const start = performance.now();
  const deadline = opts.seconds ? start + opts.seconds * 1000 : Number.POSITIVE_INFINITY;
  let next = 0;
  let done = 0;
  const one = async (index: number) => {
    const rng = inputRng(opts.seed, index, 1);
    const ep: Endpoint = { host: server.host, port: server.port, ca: server.ca, localAddress: address(index) };
    if (rng.chance(opts.mqttShare)) {
      const packets = mqttPackets(rng, server.device.deviceId);
      const withCert = rng.chance(0.95);
      const r = await mqttSession(
        { ...ep, port: server.mqttPort, ...(withCert ? { cert: server.device.cert, key: server.device.key } : {}) },
        packets,
        rng.range(5, 60),
        timeoutMs,
      );
      kinds.mqtt = (kinds.mqtt ?? 0) + 1;
      const key = r.closedByServer ? "mqtt closed" : r.error ? `mqtt ${r.error}` : "mqtt open";
      statuses[key] = (statuses[key] ?? 0) + 1;
      if (!slowest || r.ms > slowest.ms)
        slowest = {
          index,
          kind: "mqtt",
          ms: r.ms,
          request: JSON.stringify(Buffer.concat(packets).subarray(0, 200).toString("latin1")),
        };
      return;
    }
    const c = httpCase(rng, ctx);
    kinds[c.kind] = (kinds[c.kind] ?? 0) + 1;
    const mtls = c.mtls ? { cert: server.device.cert, key: server.device.key } : {};
    const r = await exchange({ ...ep, ...mtls }, c.chunks, timeoutMs);
    const key = r.status !== undefined ? String(r.status) : `no status (${r.error ?? "closed"})`;
    statuses[key] = (statuses[key] ?? 0) + 1;
    const head = () =>
      JSON.stringify(
        Buffer.from(c.chunks[0] ?? [])
          .subarray(0, 600)
          .toString("latin1"),
      );
    if (r.status !== undefined && r.status >= 500) {
      fail({
        index,
        kind: c.kind,
        what: `HTTP ${r.status}: ${r.response.subarray(0, 300).toString("latin1")}`,
        request: head(),
      });
    }
    // A request that announced more body than it sent waits for the client's timeout by
    // design: the slowest answered request is the figure.
    if (r.error !== "timeout" && (!slowest || r.ms > slowest.ms)) {
      slowest = { index, kind: c.kind, ms: r.ms, request: head().slice(0, 300) };
    }
    if (c.kind === "est.simplereenroll" && r.status === 200) {
      // The device re-enrolled with one of the new keys: later mutual-TLS cases and MQTT
      // sessions present its new certificate and key.
      const text = r.response.toString("latin1");
      const der = certificateFromResponse(text.slice(text.indexOf("\r\n\r\n") + 4));
      const spki = readCertificate(der).spki;
      const key = server.reenrollKeys.find((k) => bytesEqual(k.spki, spki));
      if (key) {
        server.device.cert = certificatePem(der);
        server.device.key = key.key;
        reenrolled++;
      }
    }
  };
  const worker = async () => {
    while (next < opts.requests && performance.now() < deadline && server.exit() === undefined) {
      const index = next++;
      try {
        await one(index);
      } catch (e) {
        // The harness's own bug: reported as a failure, and the run goes on.
        fail({ index, kind: "harness", what: e instanceof Error ? (e.stack ?? e.message) : String(e) });
      }
      done++;
      if (opts.progress && done % 1000 === 0) opts.progress(done, rssMiB(server.pid));
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  const seconds = (performance.now() - start) / 1000;
  clearInterval(sampler);
  // Still there, still answering.
  if (server.exit() === undefined) {
    const health = await exchange(
      { host: server.host, port: server.port, ca: server.ca },
      [Buffer.from("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")],
      timeoutMs,
    );
    if (health.status !== 200)
      fail({ index: -1, kind: "health", what: `/healthz answered ${health.status ?? health.error} after the run` });
  }
  const exit = server.exit();
  if (exit !== undefined) fail({ index: next, kind: "crash", what: `the server process ended: ${exit}` });
  const badLogLines = server.badLogLines();
  for (const line of badLogLines.slice(0, 10)) fail({ index: -1, kind: "log", what: line });
  return {
    requests: done,
    seconds,
    statuses,
    kinds,
    failures,
    peakRssMiB: peak,
    startRssMiB: startRss,
    slowest,
    reenrolled,
    remoteAddresses: server.remoteAddresses(),
    exit,
    badLogLines,
  };
}
