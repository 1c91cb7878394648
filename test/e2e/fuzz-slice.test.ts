/**
 * A bounded slice of `npm run fuzz` in CI, with a fixed seed: 20,000 in-process parser
 * inputs and 2,000 requests and MQTT sessions against a real `edgeid serve` process
 * (fuzz/). The same properties as the full run: parsers throw only their documented
 * errors; the server answers no 5xx, never exits, logs no error or "unhandled" line,
 * and stays below the RSS ceiling. A finding fails with the input that caused it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runInProcess } from "../../fuzz/parsers.ts";
import { loadCorpus } from "../../fuzz/seeds.ts";
import { type FuzzServer, startFuzzServer } from "../../fuzz/server.ts";
import { runServerFuzz } from "../../fuzz/server-run.ts";

const SEED = 20_260_101;
const corpus = loadCorpus();

describe("fuzz slice", () => {
  let server: FuzzServer | undefined;

  beforeAll(async () => {
    server = await startFuzzServer({ tokens: 100 });
  }, 90_000);
  afterAll(async () => {
    await server?.stop();
  });

  it("20,000 in-process parser inputs: only documented errors", async () => {
    const r = await runInProcess({ seed: SEED, corpus, inputs: 20_000 });
    expect(r.inputs).toBe(20_000);
    expect(r.findings, JSON.stringify(r.findings, null, 1).slice(0, 4000)).toEqual([]);
  }, 60_000);

  it("2,000 requests and MQTT sessions against the server: no 5xx, no exit, no error log, RSS below 512 MiB", async () => {
    const s = server as FuzzServer;
    const r = await runServerFuzz(s, {
      seed: SEED,
      corpus,
      requests: 2_000,
      concurrency: 16,
      localAddress: "rotate",
      rssCeilingMiB: 512,
      mqttShare: 0.15,
    });
    expect(r.failures, JSON.stringify(r.failures, null, 1).slice(0, 4000)).toEqual([]);
    expect(r.requests).toBe(2_000);
    expect(r.exit).toBeUndefined();
    // The requests came from many loopback addresses, not one.
    expect(r.remoteAddresses).toBeGreaterThan(50);
    // Most HTTP requests were answered (a few time out by design: a body shorter than announced).
    const answered = Object.entries(r.statuses)
      .filter(([k]) => /^\d{3}$/.test(k))
      .reduce((n, [, v]) => n + v, 0);
    expect(answered).toBeGreaterThan(0.8 * (r.requests - (r.kinds.mqtt ?? 0)));
  }, 120_000);
});
