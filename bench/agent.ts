/**
 * The agent's footprint (part of `npm run bench`): the compiled agent (device-client/dist,
 * what a gateway runs) enrolled against the real server with a 2-minute certificate
 * lifetime, running for --agent-minutes (default 10: ~7 rotations) with MQTT status to the
 * server's embedded broker. It samples the agent's RSS every 10 s and measures its CPU time.
 */
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
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

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/**
 * The V8 flags of the shipped unit (edgeid-agent.service): V8's lite mode (no optimizing
 * compiler; the agent's work is TLS and signatures in OpenSSL) and a small young
 * generation. Measured at start: 65 MB RSS without them, 51 MB with them.
 */
export const AGENT_NODE_FLAGS = ["--lite-mode", "--max-semi-space-size=1"];

export async function agentBench(o: { minutes: number; keep: boolean; nodeFlags?: string[] }): Promise<string> {
  const flags = o.nodeFlags ?? AGENT_NODE_FLAGS;
  say(`\nagent footprint: ${o.minutes} min, certificate lifetime 2 min (renewal at 2/3), MQTT status on`);
  await run("npm", ["run", "build", "-w", "device-client"], { cwd: ROOT });
  const work = await benchWorkDir("agent-", o.keep);
  const dataDir = join(work, "data");
  await cli(["init", "--data", dataDir, "--json"]);
  const configFile = join(dataDir, "edgeid.json");
  const config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
  config.profiles = { device: { validity: "2m", backdate: "0s" } };
  writeFileSync(configFile, JSON.stringify(config));
  const server = await startServerProcess(dataDir);
  const [token] = await createTokens(dataDir, 1, "gw-");
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
    token?.deviceId as string,
    "--token",
    token?.token as string,
    "--dir",
    dir,
    "--mqtt",
    server.mqttUrl,
  ]);
  say(`agent node flags: ${flags.join(" ") || "(none)"}`);
  const child = spawn(process.execPath, [...flags, AGENT, "run", "--dir", dir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  reapOnExit(child);
  let log = "";
  child.stderr.setEncoding("utf8").on("data", (c: string) => {
    log += c;
  });
  const pid = child.pid as number;
  const samples: { at: number; rss: number }[] = [];
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, Math.min(30_000, (o.minutes * 60_000) / 4))); // start-up, first connection
  const cpu0 = cpuSeconds(pid);
  const tCpu = Date.now();
  while (Date.now() - t0 < o.minutes * 60_000) {
    samples.push({ at: (Date.now() - t0) / 1000, rss: rssMiB(pid) });
    await new Promise((r) => setTimeout(r, 10_000));
  }
  const cpu = (cpuSeconds(pid) - cpu0) / ((Date.now() - tCpu) / 1000);
  const rotations = log.split("\n").filter((l) => l.includes('"msg":"renewed"')).length;
  const failures = log.split("\n").filter((l) => /"level":"(warn|error)"/.test(l)).length;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  await server.stop();
  const rss = Float64Array.from(samples.map((s) => s.rss)).sort();
  const steady = Float64Array.from(samples.filter((s) => s.at >= 120).map((s) => s.rss)).sort();
  say(
    `agent RSS over ${samples.length} samples: p50 ${percentile(rss, 50).toFixed(1)} MiB, max ${(rss.at(-1) ?? 0).toFixed(1)} MiB` +
      ` (after the first 2 min: p50 ${percentile(steady, 50).toFixed(1)}, max ${(steady.at(-1) ?? 0).toFixed(1)} MiB)`,
  );
  say(
    `agent CPU: ${(cpu * 100).toFixed(2)} % of one core on average, rotations included · rotations ${rotations} · warnings/errors ${failures}`,
  );
  if (!o.keep) await rm(work, { recursive: true, force: true });
  return `agent RSS max ${(rss.at(-1) ?? 0).toFixed(1)} MiB, CPU ${(cpu * 100).toFixed(2)} %, ${rotations} rotations in ${o.minutes} min`;
}
