/**
 * `npm run fuzz`: the fuzzing harness (issue "Bounded under abuse").
 *
 * 1. In process: mutants of real inputs (fuzz/corpus.json) through every parser in
 *    server/pki that reads untrusted bytes; a parser may throw only its documented
 *    error type (fuzz/parsers.ts).
 * 2. Against the real server: `edgeid serve` as a child process on a fresh data
 *    directory; mutated EST, OCSP, CRL, operator API and dashboard requests over TLS
 *    (re-enrollment over mutual TLS with a real device certificate), and MQTT sessions
 *    to the embedded broker. No 5xx, no exit, no error-level or "unhandled" log line,
 *    RSS below the ceiling throughout.
 *
 * Seeded (--seed), bounded (--inputs, --requests, --seconds), one summary line per part
 * and a final one; exit status 1 on any finding. `--only <i>` prints in-process input i.
 */
import { Command, InvalidArgumentError } from "commander";
import { describeInput, type InProcessResult, inProcessInput, runInProcess } from "./parsers.ts";
import { loadCorpus } from "./seeds.ts";
import { startFuzzServer } from "./server.ts";
import { runServerFuzz, type ServerResult } from "./server-run.ts";

const say = (line: string) => process.stdout.write(`${line}\n`);

const count = (v: string) => {
  const n = Number(v.replace(/_/g, ""));
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be a whole number ≥ 0");
  return n;
};

const opts = new Command("fuzz")
  .description("structure-aware fuzzing of the parsers in process and of a real edgeid server process")
  .option("--seed <n>", "seed of the run (inputs are derived from it and their index)", count, 1)
  .option("--inputs <n>", "in-process parser inputs (0 to skip)", count, 200_000)
  .option("--requests <n>", "requests and MQTT sessions against the server (0 to skip)", count, 5_000)
  .option("--seconds <s>", "stop each part after this many seconds (0: no limit)", count, 0)
  .option("--concurrency <n>", "requests in flight", count, 16)
  .option("--mqtt-share <p>", "share of the requests that are MQTT sessions", Number, 0.15)
  .option("--rss-ceiling <MiB>", "the server's RSS must stay below this", count, 512)
  .option(
    "--local-address <spec>",
    '"rotate" (127.0.0.2-254 in turn), "none", or a comma-separated list of source addresses',
    "rotate",
  )
  .option("--tokens <n>", "bootstrap tokens the requests may use", count, 300)
  .option("--only <i>", "print in-process input i of --seed and what its parser throws, then stop", count)
  .parse()
  .opts<{
    seed: number;
    inputs: number;
    requests: number;
    seconds: number;
    concurrency: number;
    mqttShare: number;
    rssCeiling: number;
    localAddress: string;
    tokens: number;
    only?: number;
  }>();

const corpus = loadCorpus();

if (opts.only !== undefined) {
  const { target, input } = inProcessInput(opts.seed, opts.only, corpus);
  let outcome = "returned";
  try {
    target.run(input);
  } catch (e) {
    outcome = e instanceof Error ? `threw ${e.name}: ${e.message}` : `threw ${String(e)}`;
  }
  say(`input ${opts.only} (seed ${opts.seed}) for ${target.name}: ${outcome}\n${describeInput(input)}`);
  process.exit(0);
}

let findings = 0;
let local: InProcessResult | undefined;
if (opts.inputs > 0) {
  local = await runInProcess({
    seed: opts.seed,
    corpus,
    inputs: opts.inputs,
    seconds: opts.seconds || undefined,
    progress: (n) => {
      if (n > 0 && n % 100_000 === 0) say(`  … ${n} inputs`);
    },
  });
  findings += local.findings.length;
  for (const f of local.findings) {
    say(`FINDING in ${f.where} (input ${f.index}, ${f.count}×): ${f.error}\n  input: ${f.input.slice(0, 4000)}`);
  }
  const s = local.slowest;
  say(
    `in-process: ${local.inputs} inputs in ${local.seconds.toFixed(1)} s = ${(local.inputs / local.seconds).toFixed(0)} inputs/s` +
      ` · ${local.verified} CSR signatures verified · findings ${local.findings.length}` +
      (s ? ` · slowest: ${s.where} input ${s.index} (${s.size} bytes) ${s.ms.toFixed(1)} ms` : ""),
  );
}

let remote: ServerResult | undefined;
if (opts.requests > 0) {
  const server = await startFuzzServer({ tokens: opts.tokens, log: (l) => say(`  ${l}`) });
  try {
    say(`  server pid ${server.pid} at ${server.url}, MQTT on ${server.mqttPort}; device ${server.device.deviceId}`);
    remote = await runServerFuzz(server, {
      seed: opts.seed,
      corpus,
      requests: opts.requests,
      seconds: opts.seconds || undefined,
      concurrency: opts.concurrency,
      localAddress: opts.localAddress,
      rssCeilingMiB: opts.rssCeiling,
      mqttShare: opts.mqttShare,
      progress: (n, rss) => {
        if (n % 10_000 === 0) say(`  … ${n} requests, server RSS ${rss.toFixed(0)} MiB`);
      },
    });
  } finally {
    await server.stop();
  }
  findings += remote.failures.length;
  for (const f of remote.failures)
    say(`FAILURE ${f.kind} (request ${f.index}): ${f.what}${f.request ? `\n  request: ${f.request}` : ""}`);
  const top = Object.entries(remote.statuses)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ×${v}`)
    .join(", ");
  say(`  answers: ${top}`);
  say(
    `  kinds: ${Object.entries(remote.kinds)
      .map(([k, v]) => `${k} ×${v}`)
      .join(", ")}`,
  );
  const s = remote.slowest;
  say(
    `server: ${remote.requests} requests in ${remote.seconds.toFixed(1)} s = ${(remote.requests / remote.seconds).toFixed(0)} requests/s` +
      ` · RSS ${remote.startRssMiB.toFixed(0)} → peak ${remote.peakRssMiB.toFixed(0)} MiB (ceiling ${opts.rssCeiling})` +
      ` · ${remote.remoteAddresses} source addresses · re-enrolled ${remote.reenrolled} · failures ${remote.failures.length}` +
      (s ? ` · slowest: ${s.kind} request ${s.index} ${s.ms.toFixed(0)} ms` : ""),
  );
  if (s) say(`  slowest request: ${s.request}`);
}

say(
  `fuzz seed ${opts.seed}: ${local?.inputs ?? 0} inputs, ${remote?.requests ?? 0} requests, ${findings} findings — ${findings === 0 ? "PASS" : "FAIL"}`,
);
process.exit(findings === 0 ? 0 : 1);
