/**
 * Workload attestation on Linux: who is calling the Workload API, in selectors.
 *
 * The kernel's record of the peer (SO_PEERCRED: pid, uid, gid at connect time) is read
 * when the connection is accepted. From the pid, /proc gives the executable
 * (`unix:path`, `unix:sha256`) and the systemd unit (`systemd:unit`). A pid can be reused
 * by another process between the check and the use: the process start time (field 22 of
 * /proc/PID/stat) is read at accept and compared again after the selectors are collected
 * and just before an answer goes out (`Attestor.stillSame`); a different start time or a
 * vanished process refuses the call.
 */
import { createHash } from "node:crypto";
import { createReadStream, promises as fsp } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** A caller as attested: its peer credentials, its start time and its selectors. */
export interface Caller extends PeerCred {
  startTime: string;
  selectors: string[];
}

/** The SO_PEERCRED addon (native/peercred.c), or an error saying why it cannot load. */
export function loadPeerCred(
  candidates: readonly string[] = ["../build/Release/peercred.node", "../../build/Release/peercred.node"],
): ((fd: number) => PeerCred) | Error {
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const candidate of candidates) {
    try {
      const mod = require(candidate) as { peerCred: (fd: number) => PeerCred };
      if (typeof mod.peerCred === "function") return mod.peerCred;
    } catch (err) {
      errors.push((err as Error).message.split("\n")[0] ?? "");
    }
  }
  return new Error(
    `the peer-credentials addon (device-client/build/Release/peercred.node) is not built: run npm install (or npx node-gyp rebuild in device-client); ${errors.join("; ")}`,
  );
}

/** The process start time in clock ticks since boot (field 22 of /proc/PID/stat), or undefined if gone. */
export async function processStartTime(procRoot: string, pid: number): Promise<string | undefined> {
  let stat: string;
  try {
    stat = await fsp.readFile(join(procRoot, String(pid), "stat"), "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces and ')': fields
  // after it are counted from the last ')'.
  const close = stat.lastIndexOf(")");
  if (close < 0) return undefined;
  const rest = stat.slice(close + 2).split(" ");
  // rest[0] is field 3 (state): field 22 is rest[19].
  const start = rest[19];
  return start && /^\d+$/.test(start) ? start : undefined;
}

/** The systemd unit (`*.service` / `*.scope`) of a unified-hierarchy cgroup path in /proc/PID/cgroup. */
export function systemdUnit(cgroupFile: string): string | undefined {
  for (const line of cgroupFile.split("\n")) {
    // cgroup v2: "0::/system.slice/foo.service"; v1 systemd: "1:name=systemd:/system.slice/foo.service".
    const m = /^\d+:(?:name=systemd)?:(.*)$/.exec(line.trim());
    if (!m) continue;
    const parts = (m[1] as string).split("/").filter(Boolean);
    for (let i = parts.length - 1; i >= 0; i--) {
      const part = parts[i] as string;
      if (/\.(service|scope)$/.test(part)) return part;
    }
  }
  return undefined;
}

interface HashEntry {
  key: string;
  sha256: string;
}

export interface AttestorOptions {
  /** /proc, or a directory laid out like it (tests). */
  procRoot?: string;
}

export class Attestor {
  private readonly procRoot: string;
  /** sha256 of executables by path, valid while (dev, inode, mtime, size) are unchanged. */
  private readonly hashes = new Map<string, HashEntry>();

  constructor(opts: AttestorOptions = {}) {
    this.procRoot = opts.procRoot ?? "/proc";
  }

  /** The start time at accept: the process's identity for the life of the connection. */
  async startTime(pid: number): Promise<string> {
    const start = await processStartTime(this.procRoot, pid);
    if (!start) throw new Error(`process ${pid} is gone`);
    return start;
  }

  /** Whether `pid` is still the process that started at `startTime` (not gone, not reused). */
  async stillSame(pid: number, startTime: string): Promise<boolean> {
    return (await processStartTime(this.procRoot, pid)) === startTime;
  }

  /**
   * The caller's selectors. Throws when the process is gone or its pid now belongs to
   * another process (its start time changed since `startTime`).
   */
  async attest(cred: PeerCred, startTime: string): Promise<Caller> {
    const selectors = [`unix:uid:${cred.uid}`, `unix:gid:${cred.gid}`];
    const procDir = join(this.procRoot, String(cred.pid));
    const exeLink = join(procDir, "exe");
    let exePath: string | undefined;
    try {
      exePath = await fsp.readlink(exeLink);
    } catch {
      // A kernel thread, or a process of another user without ptrace access: no path.
    }
    if (exePath) {
      // "/usr/bin/x (deleted)": the executable was replaced since the process started.
      selectors.push(`unix:path:${exePath}`);
      const sha = await this.sha256(exeLink).catch(() => undefined);
      if (sha) selectors.push(`unix:sha256:${sha}`);
    }
    try {
      const unit = systemdUnit(await fsp.readFile(join(procDir, "cgroup"), "utf8"));
      if (unit) selectors.push(`systemd:unit:${unit}`);
    } catch {
      // No cgroup file: no unit selector.
    }
    if (!(await this.stillSame(cred.pid, startTime))) {
      throw new Error(`process ${cred.pid} changed while it was attested (pid reused or exited)`);
    }
    return { ...cred, startTime, selectors };
  }

  /** sha256 of the file behind /proc/PID/exe (read through the link: the running image). */
  private async sha256(exeLink: string): Promise<string> {
    const st = await fsp.stat(exeLink, { bigint: true });
    const key = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.size}`;
    const cached = this.hashes.get(key);
    if (cached) return cached.sha256;
    const hash = createHash("sha256");
    await new Promise<void>((resolve, reject) => {
      const s = createReadStream(exeLink);
      s.on("data", (c) => hash.update(c));
      s.on("end", () => resolve());
      s.on("error", reject);
    });
    const sha256 = hash.digest("hex");
    if (this.hashes.size > 1024) this.hashes.clear();
    this.hashes.set(key, { key, sha256 });
    return sha256;
  }
}

/** Whether a caller with `selectors` has every one of an entry's selectors. */
export const matchesEntry = (callerSelectors: readonly string[], entrySelectors: readonly string[]) => {
  if (entrySelectors.length === 0) return false;
  const have = new Set(callerSelectors);
  return entrySelectors.every((s) => have.has(s));
};
