import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  X509Certificate,
} from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { pemBlocks, toPem } from "./keys.ts";

/** The agent's identity: its key and the certificate chain issued for it. */
export interface Identity {
  key: KeyObject;
  /** Leaf first, then intermediates as the server sent them. */
  chain: X509Certificate[];
}

/** Where a rotation can be interrupted; fault-injection tests stop the process at each. */
export type CrashStep =
  | "key-generated"
  | "previous-saved"
  | "response-received"
  | "identity-staged"
  | "identity-renamed"
  | "identity-synced"
  | "exported";

export interface AgentConfig {
  server: string;
  deviceId: string;
  /** EST label (profile), "" for the default path. */
  label: string;
  keyType: string;
  /** Renew when this fraction of the certificate's lifetime has passed. */
  renewFraction: number;
  /** Up to this fraction of the lifetime earlier, at random, so that a fleet does not renew at once. */
  jitter: number;
  /** A command run after each rotation (e.g. reload the services using the certificate). */
  hook?: string;
  mqtt?: string;
  /** How often to refresh /cacerts. */
  caRefreshMs: number;
  /**
   * The manufacturer certificate and key (paths) the device first enrolled with: what it
   * enrolls with again when its expired certificate can no longer be renewed.
   */
  idevid?: { cert: string; key: string };
  /** The SPIFFE Workload API's socket: the API is served when set (or `run --workload-socket`). */
  workloadSocket?: string;
  /** Its file mode, octal (default "0666"). */
  workloadSocketMode?: string;
  /** Where workload keys and SVIDs are kept (0600) across restarts; memory only without it. */
  workloadKeysDir?: string;
}

export interface AgentState {
  /** Wall-clock floor (ms): the agent never believes a clock that is behind it. */
  timeFloor: number;
  /** Increases at every start and every rotation (the MQTT contract's session). */
  session: number;
  /** When the current identity arrived (its lifetime is counted from here). */
  identityReceivedAt: number;
  nextRenewAt: number | null;
  lastRenew: { at: string; ok: boolean; error?: string } | null;
  lastError: string | null;
  /** Set when the verified EST server or the verified broker said this device is revoked. */
  revoked: { at: string; by: string } | null;
  /** A 4xx stopped renewal until an operator or `renew --now` starts it again. */
  stopped: string | null;
  /**
   * The certificate expired and the server would not renew it (past its renewal window,
   * or the device was re-enrolled elsewhere): only an operator brings this device back,
   * with `edgeid-agent enroll --token …` on this directory.
   */
  lostIdentity: { at: string; reason: string } | null;
  /**
   * The identity in `identity.pem` has not been used successfully yet (no CONNACK from the
   * verified broker, no answer to an EST request from the verified server): `previous.pem`
   * holds the one it replaced (serial `previous`) until it has. The slots on disk decide
   * (see `Agent.load`); this records them for the status and the logs.
   */
  unconfirmed: { serial: string; previous: string; since: string } | null;
  /**
   * The verified broker or EST server refused a new certificate (`refused`) at its first use,
   * and the agent went back to the previous one (`serial`). Cleared when a new certificate
   * is confirmed. `attempt` counts fallbacks since the last confirmation (the backoff);
   * no renewal before `retryAt`.
   */
  fallback: {
    at: string;
    by: "mqtt" | "est";
    reason: string;
    refused: string;
    serial: string;
    attempt: number;
    retryAt: number;
  } | null;
}

export const INITIAL_STATE: AgentState = {
  timeFloor: 0,
  session: 0,
  identityReceivedAt: 0,
  nextRenewAt: null,
  lastRenew: null,
  lastError: null,
  revoked: null,
  stopped: null,
  lostIdentity: null,
  unconfirmed: null,
  fallback: null,
};

export function fingerprint(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

/** O_EXCL: a name that exists (a planted symlink included, never followed) fails with EEXIST. */
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

/**
 * Why the agent may not keep its keys in `dir`, or undefined when it may: a directory
 * that others can write to (group or world writable) or that another user owns lets
 * them replace or plant files next to the key.
 */
export function directoryProblem(dir: string): string | undefined {
  const st = statSync(dir);
  if (!st.isDirectory()) return `${dir} is not a directory`;
  if (st.mode & 0o022) {
    return `${dir} is group or world writable (mode ${(st.mode & 0o7777).toString(8)}): refusing to keep keys there (chmod 700 it)`;
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) return `${dir} is owned by uid ${st.uid}, not by this agent's user (${uid})`;
  return undefined;
}

/**
 * The agent's directory. The identity (key and chain together, one file) is replaced
 * atomically: temp file, fsync, rename, directory fsync. A power cut at any point leaves
 * the old pair or the new one, never a mix and never nothing. `cert.pem`, `key.pem` and
 * `chain.pem` are exported copies for the services on the gateway, rewritten (also
 * atomically) from the identity after each rotation and at every start. `previous.pem`
 * (same format, 0600) is the identity a rotation replaced, kept until the new one has
 * been used once: never more than these two slots.
 */
export class AgentStore {
  readonly paths;

  constructor(
    readonly dir: string,
    private readonly crash: (step: CrashStep) => void = () => undefined,
    /** The random part of a temp file's name (tests fix it to plant a file there). */
    private readonly tempSuffix: () => string = () => randomBytes(12).toString("hex"),
  ) {
    this.paths = {
      identity: join(dir, "identity.pem"),
      previous: join(dir, "previous.pem"),
      trust: join(dir, "trust.pem"),
      config: join(dir, "config.json"),
      state: join(dir, "state.json"),
      events: join(dir, "events.jsonl"),
      pid: join(dir, "agent.pid"),
      cert: join(dir, "cert.pem"),
      key: join(dir, "key.pem"),
      chain: join(dir, "chain.pem"),
      /** The workload entries and SVIDs the running agent holds (no key), for `status`. */
      workloads: join(dir, "workloads.json"),
    };
  }

  /** The files that hold secrets (the key) or what the agent acts on: 0600, whatever they were. */
  private get privateFiles(): string[] {
    return [
      this.paths.identity,
      this.paths.previous,
      this.paths.key,
      this.paths.config,
      this.paths.state,
      this.paths.events,
    ];
  }

  /**
   * Creates the directory 0700, or refuses one that others may write to or that another
   * user owns; removes the temp files of an interrupted write; rewrites 0600 any private
   * file with another mode (restored from a backup, written by an older agent).
   */
  init(opts: { readOnly?: boolean } = {}): void {
    if (opts.readOnly) {
      // Beside a running agent (`edgeid-agent status`): check, change nothing. Deleting a
      // temp file here could pull one from under the agent's write in progress.
      const problem = directoryProblem(this.dir);
      if (problem) throw new Error(problem);
      return;
    }
    if (mkdirSync(this.dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(this.dir, 0o700);
    const problem = directoryProblem(this.dir);
    if (problem) throw new Error(problem);
    // Temp files of an interrupted write: the rename never happened, so they are not the identity.
    for (const name of readdirSync(this.dir)) if (name.includes(".tmp-")) rmSync(join(this.dir, name), { force: true });
    for (const file of this.privateFiles) {
      if (!existsSync(file)) continue;
      const st = lstatSync(file);
      if (st.isSymbolicLink() || (st.mode & 0o777) !== 0o600) this.writeAtomic(file, readFileSync(file, "utf8"), 0o600);
    }
  }

  /**
   * A new file with a random name, opened O_EXCL (never an existing file, never through
   * a symlink), given `mode` with fchmod before any data is in it (the umask does not
   * apply), fsynced, renamed over `file`, then the directory fsynced. `steps` name the
   * crash points of an identity write.
   */
  writeAtomic(file: string, data: string, mode: number, steps?: { staged: CrashStep; renamed: CrashStep }): void {
    const tmp = `${file}.tmp-${this.tempSuffix()}`;
    const fd = openSync(tmp, CREATE_NEW, mode);
    try {
      fchmodSync(fd, mode);
      writeSync(fd, data);
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw err;
    }
    closeSync(fd);
    if (steps) this.crash(steps.staged);
    renameSync(tmp, file);
    if (steps) this.crash(steps.renamed);
    const dirFd = openSync(this.dir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }

  hasIdentity(): boolean {
    return existsSync(this.paths.identity);
  }

  loadIdentity(): Identity {
    return readIdentity(this.paths.identity);
  }

  /** The previous identity (key and chain), kept until the current one has been used once; undefined when none. */
  loadPrevious(): Identity | undefined {
    return existsSync(this.paths.previous) ? readIdentity(this.paths.previous) : undefined;
  }

  /**
   * Keeps `identity` as the previous slot, before a new identity replaces it: the same
   * O_EXCL temp file, 0600 before any data, fsync and rename as the identity itself.
   */
  savePrevious(identity: Identity): void {
    this.writeAtomic(this.paths.previous, identityPem(identity), 0o600);
    this.crash("previous-saved");
  }

  /** Deletes the previous slot (its key with it), then syncs the directory so the removal survives a power cut. */
  removePrevious(): void {
    if (!existsSync(this.paths.previous) && !isSymlink(this.paths.previous)) return;
    rmSync(this.paths.previous, { force: true });
    const dirFd = openSync(this.dir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }

  /** Replaces the identity, then the exported copies. */
  saveIdentity(identity: Identity): void {
    this.writeAtomic(this.paths.identity, identityPem(identity), 0o600, {
      staged: "identity-staged",
      renamed: "identity-renamed",
    });
    this.crash("identity-synced");
    this.exportCopies(identity);
    this.crash("exported");
  }

  /** The files other services read, from the identity (so that they always match it). */
  exportCopies(identity: Identity): void {
    const keyPem = identity.key.export({ type: "pkcs8", format: "pem" }) as string;
    const leaf = (identity.chain[0] as X509Certificate).toString();
    const wanted: [string, string, number][] = [
      [this.paths.key, keyPem, 0o600],
      [this.paths.cert, leaf, 0o644],
      [this.paths.chain, identity.chain.map((c) => c.toString()).join(""), 0o644],
    ];
    for (const [file, data, mode] of wanted) {
      const current = existsSync(file) ? lstatSync(file) : undefined;
      const same = current?.isFile() && (current.mode & 0o777) === mode && readFileSync(file, "utf8") === data;
      if (!same) this.writeAtomic(file, data, mode);
    }
  }

  loadTrust(): X509Certificate[] {
    return pemBlocks(readFileSync(this.paths.trust, "utf8"), "CERTIFICATE").map((d) => new X509Certificate(d));
  }

  saveTrust(certs: X509Certificate[]): void {
    this.writeAtomic(this.paths.trust, certs.map((c) => c.toString()).join(""), 0o644);
  }

  loadConfig(): AgentConfig {
    return JSON.parse(readFileSync(this.paths.config, "utf8")) as AgentConfig;
  }

  saveConfig(config: AgentConfig): void {
    this.writeAtomic(this.paths.config, `${JSON.stringify(config, null, 2)}\n`, 0o600);
  }

  hasState(): boolean {
    return existsSync(this.paths.state);
  }

  loadState(): AgentState {
    if (!existsSync(this.paths.state)) return { ...INITIAL_STATE };
    return { ...INITIAL_STATE, ...(JSON.parse(readFileSync(this.paths.state, "utf8")) as Partial<AgentState>) };
  }

  saveState(state: AgentState): void {
    this.writeAtomic(this.paths.state, `${JSON.stringify(state)}\n`, 0o600);
  }
}

/** Key and chain in one PEM file: what `identity.pem` and `previous.pem` hold. */
function identityPem(identity: Identity): string {
  const keyPem = identity.key.export({ type: "pkcs8", format: "pem" }) as string;
  return keyPem + identity.chain.map((c) => c.toString()).join("");
}

function readIdentity(file: string): Identity {
  const text = readFileSync(file, "utf8");
  const keyDer = pemBlocks(text, "PRIVATE KEY")[0];
  const certs = pemBlocks(text, "CERTIFICATE").map((d) => new X509Certificate(d));
  if (!keyDer || !certs[0]) throw new Error(`${file} holds no key and certificate`);
  const key = createPrivateKey({ key: Buffer.from(keyDer), format: "der", type: "pkcs8" });
  if (!publicKeyMatches(key, certs[0])) throw new Error(`${file}: key and certificate do not match`);
  return { key, chain: certs };
}

function isSymlink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

export function publicKeyMatches(key: KeyObject, cert: X509Certificate): boolean {
  const mine = createPublicKey(key).export({ type: "spki", format: "der" });
  const theirs = cert.publicKey.export({ type: "spki", format: "der" });
  return Buffer.compare(mine, theirs) === 0;
}

export { toPem };
