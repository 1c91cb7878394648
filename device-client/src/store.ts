import { createHash, createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
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
  /** Set when the server, the broker or the TLS layer said this device is revoked. */
  revoked: { at: string; by: string } | null;
  /** A 4xx stopped renewal until an operator or `renew --now` starts it again. */
  stopped: string | null;
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
};

export function fingerprint(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex");
}

/**
 * The agent's directory. The identity (key and chain together, one file) is replaced
 * atomically: temp file, fsync, rename, directory fsync. A power cut at any point leaves
 * the old pair or the new one, never a mix and never nothing. `cert.pem`, `key.pem` and
 * `chain.pem` are exported copies for the services on the gateway, rewritten (also
 * atomically) from the identity after each rotation and at every start.
 */
export class AgentStore {
  readonly paths;

  constructor(
    readonly dir: string,
    private readonly crash: (step: CrashStep) => void = () => undefined,
  ) {
    this.paths = {
      identity: join(dir, "identity.pem"),
      trust: join(dir, "trust.pem"),
      config: join(dir, "config.json"),
      state: join(dir, "state.json"),
      events: join(dir, "events.jsonl"),
      pid: join(dir, "agent.pid"),
      cert: join(dir, "cert.pem"),
      key: join(dir, "key.pem"),
      chain: join(dir, "chain.pem"),
    };
  }

  init(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // Temp files of an interrupted write: the rename never happened, so they are not the identity.
    for (const name of readdirSync(this.dir)) if (name.includes(".tmp-")) rmSync(join(this.dir, name), { force: true });
  }

  /** temp + fsync + rename + directory fsync; `steps` name the crash points of an identity write. */
  writeAtomic(file: string, data: string, mode: number, steps?: { staged: CrashStep; renamed: CrashStep }): void {
    const tmp = `${file}.tmp-${process.pid}`;
    const fd = openSync(tmp, "w", mode);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
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
    const text = readFileSync(this.paths.identity, "utf8");
    const keyDer = pemBlocks(text, "PRIVATE KEY")[0];
    const certs = pemBlocks(text, "CERTIFICATE").map((d) => new X509Certificate(d));
    if (!keyDer || !certs[0]) throw new Error(`${this.paths.identity} holds no key and certificate`);
    const key = createPrivateKey({ key: Buffer.from(keyDer), format: "der", type: "pkcs8" });
    if (!publicKeyMatches(key, certs[0])) throw new Error(`${this.paths.identity}: key and certificate do not match`);
    return { key, chain: certs };
  }

  /** Replaces the identity, then the exported copies. */
  saveIdentity(identity: Identity): void {
    const keyPem = identity.key.export({ type: "pkcs8", format: "pem" }) as string;
    const chainPem = identity.chain.map((c) => c.toString()).join("");
    this.writeAtomic(this.paths.identity, keyPem + chainPem, 0o600, {
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
      if (!existsSync(file) || readFileSync(file, "utf8") !== data) this.writeAtomic(file, data, mode);
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

  loadState(): AgentState {
    if (!existsSync(this.paths.state)) return { ...INITIAL_STATE };
    return { ...INITIAL_STATE, ...(JSON.parse(readFileSync(this.paths.state, "utf8")) as Partial<AgentState>) };
  }

  saveState(state: AgentState): void {
    this.writeAtomic(this.paths.state, `${JSON.stringify(state)}\n`, 0o600);
  }
}

export function publicKeyMatches(key: KeyObject, cert: X509Certificate): boolean {
  const mine = createPublicKey(key).export({ type: "spki", format: "der" });
  const theirs = cert.publicKey.export({ type: "spki", format: "der" });
  return Buffer.compare(mine, theirs) === 0;
}

export { toPem };
