/**
 * Child processes, free ports and scratch directories for the end-to-end suite. The e2e support
 * modules drive the real `edgeid` CLI and the real `openssl`, `curl` and `mosquitto`
 * binaries as independent clients; nothing in them imports the server's own code.
 */
import { execFile } from "node:child_process";
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

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
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
