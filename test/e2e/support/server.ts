/**
 * A data directory made with `edgeid init`, its profiles, and `edgeid serve` as a child process.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, inject } from "vitest";
import { edgeid } from "./cli.ts";
import { EDGEID_BIN, runOk } from "./process.ts";

export interface CliInitResult {
  dataDir: string;
  adminToken: string;
  trustDomain: string;
}

/** `edgeid init --json` into `dir`: its admin token and trust domain. */
async function runInit(dataDir: string, trustDomain: string): Promise<{ adminToken: string; trustDomain: string }> {
  const r = await edgeid([
    "init",
    "--data",
    dataDir,
    "--trust-domain",
    trustDomain,
    "--hostname",
    "localhost",
    "--json",
  ]);
  const out = JSON.parse(r.stdout.trim()) as { adminToken: string; trustDomain: string };
  expect(out.adminToken).toBeTruthy();
  expect(out.trustDomain).toBe(trustDomain);
  return out;
}

/**
 * The data directory `edgeid init` made for this trust domain in this test run: made
 * once (its RSA-4096 and RSA-3072 CA keys take seconds of CPU, and ~35 suites start from
 * one), in a scratch directory renamed into place whole, so that suites racing for the
 * same trust domain use whichever finished first.
 */
async function initTemplate(trustDomain: string): Promise<{ dataDir: string; adminToken: string }> {
  const done = join(inject("initCache"), trustDomain);
  const made = async () => {
    const { adminToken } = JSON.parse(await readFile(join(done, "init.json"), "utf8")) as { adminToken: string };
    return { dataDir: join(done, "data"), adminToken };
  };
  try {
    return await made();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const scratch = await mkdtemp(`${done}-`);
  const out = await runInit(join(scratch, "data"), trustDomain);
  await writeFile(join(scratch, "init.json"), JSON.stringify(out));
  try {
    await rename(scratch, done);
  } catch (err) {
    // Another suite's is in place: use that one.
    if (!["EEXIST", "ENOTEMPTY"].includes((err as NodeJS.ErrnoException).code ?? "")) throw err;
    await rm(scratch, { recursive: true, force: true });
  }
  // Whichever is in place is whole (renamed in one step): read it, no second attempt.
  return made();
}

/**
 * A data directory as `edgeid init --json` makes it, at `<work>/data`: a copy (`cp -a`,
 * modes kept) of the one this run made for the trust domain, so its CA keys are shared
 * with the run's other suites of that trust domain. Tests of `init` itself run it.
 */
export async function cliInitDataDir(work: string, trustDomain: string): Promise<CliInitResult> {
  const dataDir = join(work, "data");
  const template = await initTemplate(trustDomain);
  // init makes the directories above its data directory: so does this.
  await mkdir(work, { recursive: true });
  await runOk("cp", ["-a", template.dataDir, dataDir]);
  return { dataDir, adminToken: template.adminToken, trustDomain };
}

/** Adds profiles to `<data>/edgeid.json` (before `serve`). */
export async function addProfiles(dataDir: string, profiles: Record<string, unknown>): Promise<void> {
  const file = join(dataDir, "edgeid.json");
  const config = JSON.parse(await readFile(file, "utf8")) as { profiles?: Record<string, unknown> };
  config.profiles = { device: {}, ...(config.profiles ?? {}), ...profiles };
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`);
}

/** Sets `limits` in `<data>/edgeid.json` (before `serve`), keeping what is not named. */
export async function setLimits(dataDir: string, limits: Record<string, unknown>): Promise<void> {
  const file = join(dataDir, "edgeid.json");
  const config = JSON.parse(await readFile(file, "utf8")) as { limits?: Record<string, unknown> };
  config.limits = { ...(config.limits ?? {}), ...limits };
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`);
}

export interface TestServer {
  url: string;
  /** The embedded broker, mqtts://127.0.0.1:PORT (unless started with mqtt: "off"). */
  mqttUrl?: string;
  /** https://127.0.0.1:PORT/.well-known/est */
  est: string;
  /** The plain HTTP public listener, http://127.0.0.1:PORT (unless started with publicListen: "off"). */
  publicHttp?: string;
  /** Base of the CRL and OCSP URLs the server writes into new certificates (its "listening" line). */
  revocationUrl: string;
  dataDir: string;
  /** Root CA PEM from `edgeid ca export`: the explicit trust anchor for TLS. */
  rootPemFile: string;
  process: ChildProcess;
  /** Everything the server logged so far (stdout and stderr). */
  log(): string;
  isRunning(): boolean;
  stop(): Promise<void>;
}

/**
 * Starts `edgeid serve --listen 127.0.0.1:0` and waits for its "listening" line. The
 * embedded broker and the public HTTP listener listen on free ports too (`mqtt`,
 * `publicListen`: a HOST:PORT, or "off"; port 0 lets the server pick and report it);
 * extra arguments go after; `startLimitMs` overrides how long the start may take.
 */
export async function startServer(
  dataDir: string,
  work: string,
  port = 0,
  opts: { mqtt?: string; publicListen?: string; args?: string[]; startLimitMs?: number } = {},
): Promise<TestServer> {
  const args = ["serve", "--data", dataDir, "--listen", `127.0.0.1:${port}`];
  if (opts.mqtt !== "external") args.push("--mqtt-listen", opts.mqtt ?? "127.0.0.1:0");
  args.push("--public-listen", opts.publicListen ?? "127.0.0.1:0");
  // EDGEID_E2E_LOOPS=N runs every suite against `serve --loops N` (Node 22.12+ / 23.1+).
  const loops = process.env.EDGEID_E2E_LOOPS;
  if (loops && !opts.args?.includes("--loops")) args.push("--loops", loops);
  // Each extra loop loads the server's modules again (through tsx when dist/ is not current)
  // before the server says "listening".
  const startLimit = opts.startLimitMs ?? (loops || opts.args?.includes("--loops") ? 60_000 : 20_000);
  const child = spawn(process.execPath, [EDGEID_BIN, ...args, ...(opts.args ?? [])], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let exited = false;
  child.on("exit", () => {
    exited = true;
  });
  let mqttUrl: string | undefined;
  let publicHttp: string | undefined;
  let revocationUrl = "";
  const url = await new Promise<string>((resolveUrl, reject) => {
    let pending = "";
    const timer = setTimeout(() => {
      // Nobody will stop a server whose start failed: it goes now, not at the end of the run.
      child.kill("SIGKILL");
      reject(new Error(`server did not report "listening" within ${startLimit / 1000} s:\n${output}`));
    }, startLimit);
    child.stdout?.setEncoding("utf8");
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      output += chunk;
    });
    child.stdout?.on("data", (chunk: string) => {
      output += chunk;
      pending += chunk;
      let nl = pending.indexOf("\n");
      while (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        nl = pending.indexOf("\n");
        try {
          const entry = JSON.parse(line) as {
            msg?: string;
            url?: string;
            mqtt?: string;
            publicHttp?: string;
            revocationUrl?: string;
          };
          if (entry.msg === "listening" && entry.url) {
            clearTimeout(timer);
            mqttUrl = entry.mqtt;
            publicHttp = entry.publicHttp === "off" ? undefined : entry.publicHttp;
            revocationUrl = entry.revocationUrl ?? "";
            resolveUrl(entry.url);
          }
        } catch {
          // not a JSON line
        }
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal}):\n${output}`));
    });
  });
  expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const rootPemFile = join(work, "trust-anchor.pem");
  await writeFile(rootPemFile, (await edgeid(["ca", "export", "--data", dataDir])).stdout);
  return {
    url,
    mqttUrl,
    est: `${url}/.well-known/est`,
    publicHttp,
    revocationUrl,
    dataDir,
    rootPemFile,
    process: child,
    log: () => output,
    isRunning: () => !exited && child.exitCode === null,
    stop: async () => {
      if (exited || child.exitCode !== null) return;
      const done = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await done;
      clearTimeout(timer);
    },
  };
}
