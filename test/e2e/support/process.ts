/**
 * Child processes, free ports and scratch directories for the end-to-end suite. The e2e support
 * modules drive the real `edgeid` CLI and the real `openssl`, `curl` and `mosquitto`
 * binaries as independent clients; nothing in them imports the server's own code.
 */
import { execFile } from "node:child_process";
import { randomInt } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
export const EDGEID_BIN = join(ROOT, "bin", "edgeid.mjs");

// ---------------------------------------------------------------------------------
// Processes

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The signal that ended the process, if one did (code is then -1). */
  signal?: string;
}

export interface RunOptions {
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Runs a command to completion; never throws on a non-zero exit status. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 30_000,
        maxBuffer: 16 * 1024 * 1024,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        if (err?.signal && !err.killed) {
          resolvePromise({ code: -1, stdout, stderr, signal: err.signal });
          return;
        }
        if (err && typeof err.code !== "number") {
          reject(new Error(`${cmd} ${args.join(" ")} failed to run: ${err.message}\n${stderr}`));
          return;
        }
        resolvePromise({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Runs a command and insists on exit status 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

// ---------------------------------------------------------------------------------
// Waiting

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Reads until `check` holds (polling every 100 ms); fails with the last value after `ms`. */
export async function eventually<T>(read: () => Promise<T>, check: (v: T) => boolean, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (check(v)) return v;
    if (Date.now() > until) throw new Error(`condition not met within ${ms} ms: ${JSON.stringify(v).slice(0, 600)}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------
// Ports and scratch directories

/** The lowest port handed out, and how many workers get a band of their own below the ephemeral range. */
const PORTS_FROM = 20_000;
const PORT_BANDS = 4;

/**
 * Where the kernel starts drawing the ports of connect() and listen(0) (Linux:
 * ip_local_port_range; 32768 by default). A machine whose range starts lower than the
 * bands need gets bands that overlap it, with the old odds of a collision.
 */
const EPHEMERAL_LOW = (() => {
  let low = 32_768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
  } catch {
    // not Linux: the usual range
  }
  return Number.isInteger(low) ? Math.max(low, PORTS_FROM + PORT_BANDS * 1024) : 32_768;
})();
const handedOut = new Set<number>();

function bindable(port: number): Promise<boolean> {
  const srv = createNetServer();
  return new Promise((r) => {
    srv.once("error", () => r(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => r(true)));
  });
}

/**
 * A TCP port free on 127.0.0.1 now, for a process that binds it later, or again after a
 * restart. Taken below the kernel's ephemeral range: a port there, once released, can be
 * handed to any outgoing connection or listen(0) on the machine before the server binds
 * it (seen: a restarted broker's port taken, EADDRINUSE). Below it only an explicit bind
 * takes a port; each vitest worker (VITEST_POOL_ID) draws from its own band, and a worker
 * never hands out a port twice.
 */
export async function freePort(): Promise<number> {
  const band = Math.floor((EPHEMERAL_LOW - PORTS_FROM) / PORT_BANDS);
  const worker = (Number(process.env.VITEST_POOL_ID ?? 1) - 1 + PORT_BANDS) % PORT_BANDS;
  const first = PORTS_FROM + worker * band;
  for (let tries = 0; tries < 200; tries++) {
    const port = first + randomInt(band);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port in ${first}-${first + band - 1} after 200 tries`);
}

export async function makeWorkDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `edgeid-e2e-${prefix}-`));
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true });
}

let fileSeq = 0;

/** A number for unique scratch file names within a work directory (shared by curl and openssl helpers). */
export function nextFileSeq(): number {
  return ++fileSeq;
}
