import { spawn } from "node:child_process";
import { createPrivateKey, type KeyObject, randomUUID, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { type BackoffOptions, backoffDelay } from "./backoff.ts";
import { type ClientTls, type EnrollAuth, EstClient, type EstOutcome } from "./est.ts";
import { generateKey, type KeyType, makeCsr, pemBlocks } from "./keys.ts";
import { type AgentEvent, type AgentStateName, type Command, MqttReporter, type StatusDocument } from "./status.ts";
import {
  type AgentConfig,
  type AgentState,
  AgentStore,
  type CrashStep,
  fingerprint,
  type Identity,
  INITIAL_STATE,
  publicKeyMatches,
} from "./store.ts";
import { chainPath } from "./tls-check.ts";

export const AGENT_VERSION = "0.1.0";
/**
 * No clock on a gateway can be earlier than this build: the first floor of the time
 * the agent trusts (then the last saved time and the server's Date header raise it).
 */
export const BUILD_TIME = Date.parse("2026-11-24T00:00:00Z");

export interface Timers {
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Time, randomness, timers and side effects are parameters, so tests control them. */
export interface AgentDeps {
  now: () => number;
  random: () => number;
  timers: Timers;
  log: (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;
  /** Fault injection: called at each step of a rotation (tests stop the process there). */
  crash?: (step: CrashStep) => void;
  backoff?: BackoffOptions;
  buildTime?: number;
  /** Runs the post-rotation hook; by default a shell command with the file paths in its environment. */
  runHook?: (command: string, env: Record<string, string>) => Promise<void>;
}

export const nodeDeps = (overrides: Partial<AgentDeps> = {}): AgentDeps => ({
  now: () => Date.now(),
  random: Math.random,
  timers: {
    setTimeout: (run, ms) => setTimeout(run, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  },
  log: (level, msg, fields) =>
    process.stderr.write(`${JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields })}\n`),
  ...overrides,
});

const HOUR = 3_600_000;

/** The verifying chain of `leaf` up to one of `trust`, through `intermediates`; throws if there is none. */
export function verifyChain(leaf: X509Certificate, intermediates: X509Certificate[], trust: X509Certificate[]): void {
  if (!chainPath(leaf, intermediates, trust)) {
    throw new Error(`certificate ${leaf.subject.replace(/\n/g, ", ")} does not chain to the trusted CA`);
  }
}

/** The certificates of a /cacerts answer that are, or chain to, the pinned anchor. */
export function acceptCaBundle(certs: X509Certificate[], anchors: X509Certificate[]): X509Certificate[] {
  const accepted = [...anchors];
  let grew = true;
  while (grew) {
    grew = false;
    for (const c of certs) {
      if (accepted.some((a) => a.fingerprint256 === c.fingerprint256)) continue;
      if (accepted.some((a) => c.checkIssued(a) && c.verify(a.publicKey))) {
        accepted.push(c);
        grew = true;
      }
    }
  }
  return accepted;
}

function keyAlg(key: KeyObject): string {
  if (key.asymmetricKeyType === "ec") return key.asymmetricKeyDetails?.namedCurve === "secp384r1" ? "P-384" : "P-256";
  if (key.asymmetricKeyType === "rsa") return `RSA-${key.asymmetricKeyDetails?.modulusLength}`;
  return key.asymmetricKeyType === "ed25519" ? "Ed25519" : String(key.asymmetricKeyType);
}

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);

export interface EnrollOptions {
  dir: string;
  server: string;
  deviceId: string;
  /** "sha256:<hex>" of a CA certificate in the server's /cacerts (the root, from `edgeid ca export`). */
  caFingerprint?: string;
  /** Or: a PEM file with the trust anchors. */
  caFile?: string;
  token?: string;
  idevid?: { cert: string; key: string };
  label?: string;
  keyType?: KeyType;
  renewFraction?: number;
  jitter?: number;
  hook?: string;
  mqtt?: string;
  caRefreshMs?: number;
  /** Give up waiting (202, network) after this long. */
  timeoutMs?: number;
}

/**
 * First boot: fetch /cacerts and accept it only against the pinned fingerprint (or an
 * explicit CA file), generate a key, enroll with a token or the IDevID (waiting out
 * 202 Retry-After and network errors), store trust bundle, identity and configuration.
 */
export async function enroll(o: EnrollOptions, deps: AgentDeps): Promise<Identity> {
  const store = new AgentStore(o.dir, deps.crash);
  store.init();
  const bootstrap = await new EstClient(o.server, o.label ?? "", "bootstrap").cacerts();
  const offered = bootstrap.certs.map((d) => new X509Certificate(d));
  let anchors: X509Certificate[];
  if (o.caFile) {
    anchors = pemBlocks(readFileSync(o.caFile, "utf8"), "CERTIFICATE").map((d) => new X509Certificate(d));
  } else if (o.caFingerprint) {
    const want = o.caFingerprint
      .replace(/^sha256:/i, "")
      .replace(/:/g, "")
      .toLowerCase();
    anchors = offered.filter((c) => fingerprint(c.raw) === want);
    if (anchors.length === 0) {
      throw new Error(`the server's CA certificates do not match the pinned fingerprint sha256:${want}; not enrolling`);
    }
  } else {
    throw new Error("give --ca-fingerprint sha256:… or --ca-file: the server's CA must be pinned");
  }
  const trust = acceptCaBundle(offered, anchors);
  let floor = Math.max(deps.buildTime ?? BUILD_TIME, bootstrap.date ?? 0);
  const est = new EstClient(o.server, o.label ?? "", trust, () => Math.max(deps.now(), floor));
  const keyType = o.keyType ?? "P-256";
  const key = generateKey(keyType);
  const csr = makeCsr(key, o.deviceId);
  let auth: EnrollAuth;
  if (o.token) auth = { basic: { user: o.deviceId, password: o.token } };
  else if (o.idevid) {
    const idKey = createPrivateKey(readFileSync(o.idevid.key));
    const idChain = pemBlocks(readFileSync(o.idevid.cert, "utf8"), "CERTIFICATE").map((d) => new X509Certificate(d));
    auth = { client: { key: idKey, chain: idChain } };
  } else throw new Error("give --token (or --token-file) or --idevid-cert with --idevid-key");

  const deadline = deps.now() + (o.timeoutMs ?? 24 * HOUR);
  for (let attempt = 0; ; attempt++) {
    const outcome = await est.simpleenroll(csr, auth);
    if (outcome.date) floor = Math.max(floor, outcome.date);
    if (outcome.kind === "issued") {
      const identity = checkIssued(outcome.chain, key, trust);
      const now = Math.max(deps.now(), floor);
      store.saveTrust(trust);
      store.saveIdentity(identity);
      const config: AgentConfig = {
        server: o.server,
        deviceId: o.deviceId,
        label: o.label ?? "",
        keyType,
        renewFraction: o.renewFraction ?? 2 / 3,
        jitter: o.jitter ?? 0.05,
        ...(o.hook ? { hook: o.hook } : {}),
        ...(o.mqtt ? { mqtt: o.mqtt } : {}),
        caRefreshMs: o.caRefreshMs ?? 24 * HOUR,
      };
      store.saveConfig(config);
      store.saveState({ ...INITIAL_STATE, timeFloor: now, session: 1, identityReceivedAt: now });
      deps.log("info", "enrolled", { deviceId: o.deviceId, serial: identity.chain[0]?.serialNumber });
      return identity;
    }
    if (outcome.kind === "refused") throw new Error(`enrollment refused (HTTP ${outcome.status}): ${outcome.message}`);
    const wait =
      outcome.kind === "wait" ? outcome.seconds * 1000 : backoffDelay(attempt, 4 * HOUR, deps.random, deps.backoff);
    if (deps.now() + wait > deadline) throw new Error(`enrollment did not complete in time: ${describe(outcome)}`);
    deps.log("info", outcome.kind === "wait" ? "enrollment pending approval" : "enrollment retry", {
      waitMs: wait,
      detail: describe(outcome),
    });
    await new Promise<void>((resolve) => deps.timers.setTimeout(resolve, wait));
  }
}

function describe(o: EstOutcome): string {
  switch (o.kind) {
    case "issued":
      return "issued";
    case "wait":
      return `202, retry after ${o.seconds} s`;
    case "refused":
      return `HTTP ${o.status}: ${o.message}`;
    case "unavailable":
      return o.status ? `HTTP ${o.status}: ${o.message}` : o.message;
  }
}

/** The issued chain must certify our new key and chain to our trust bundle. */
function checkIssued(chainDer: Uint8Array[], key: KeyObject, trust: X509Certificate[]): Identity {
  const chain = chainDer.map((d) => new X509Certificate(d));
  const leaf = chain[0];
  if (!leaf) throw new Error("the server answered without a certificate");
  if (!publicKeyMatches(key, leaf)) throw new Error("the issued certificate is not for the key this agent generated");
  verifyChain(leaf, [...chain.slice(1), ...trust], trust);
  // Kept with the key: the leaf and the intermediate CAs above it (not self-signed), so a
  // TLS peer that knows only the root can build the path.
  const intermediates: X509Certificate[] = [];
  for (let c = leaf; intermediates.length < 4; ) {
    const issuer = [...chain.slice(1), ...trust].find((i) => c.checkIssued(i) && c.verify(i.publicKey));
    if (!issuer || issuer.checkIssued(issuer)) break;
    intermediates.push(issuer);
    c = issuer;
  }
  return { key, chain: [leaf, ...intermediates] };
}

export type RenewResult = "renewed" | "waiting" | "stopped" | "revoked" | "cancelled";

/**
 * The long-lived agent: renews at a fraction of the lifetime with a new key, backs off
 * on network errors and 5xx, waits out 202, stops on other 4xx, reacts to revocation,
 * refreshes the CA bundle, and reports over MQTT without ever waiting for the broker.
 */
export class Agent {
  readonly store: AgentStore;
  private config!: AgentConfig;
  private state!: AgentState;
  private identity!: Identity;
  private trust!: X509Certificate[];
  private reporter: MqttReporter | undefined;
  private running = false;
  private stopping = false;
  private wake: (() => void) | undefined;
  private forced = false;
  private sleepHandle: unknown;
  private lastCaRefresh = 0;
  private loopDone: Promise<void> | undefined;

  constructor(
    dir: string,
    private readonly deps: AgentDeps,
  ) {
    this.store = new AgentStore(dir, deps.crash);
  }

  /** Reads the directory; refreshes the exported copies from the identity. */
  load(): void {
    this.store.init();
    if (!this.store.hasIdentity())
      throw new Error(`${this.store.dir} holds no identity: run edgeid-agent enroll first`);
    this.config = this.store.loadConfig();
    this.trust = this.store.loadTrust();
    this.identity = this.store.loadIdentity();
    this.state = this.store.loadState();
    this.store.exportCopies(this.identity);
  }

  /** The clock the agent believes: the system clock, but never behind the floor. */
  now(): number {
    return Math.max(this.deps.now(), this.state.timeFloor, this.deps.buildTime ?? BUILD_TIME);
  }

  /** The floor rises with the clock, the build time and the server's Date header; it never falls. */
  private raiseFloor(serverDate?: number): void {
    this.state.timeFloor = Math.max(
      this.state.timeFloor,
      this.deps.buildTime ?? BUILD_TIME,
      serverDate ?? 0,
      this.deps.now(),
    );
  }

  get leaf(): X509Certificate {
    return this.identity.chain[0] as X509Certificate;
  }

  /** When the current certificate should be renewed (lifetime counted from its arrival). */
  renewAt(): number {
    const notBefore = Date.parse(this.leaf.validFrom);
    const notAfter = Date.parse(this.leaf.validTo);
    const start = Math.max(notBefore, Math.min(this.state.identityReceivedAt || notBefore, notAfter));
    const life = notAfter - start;
    const jitter = this.config.jitter * life * this.deps.random();
    return start + this.config.renewFraction * life - jitter;
  }

  statusDocument(state?: AgentStateName): StatusDocument {
    return {
      v: 1,
      state: state ?? (this.state.revoked ? "revoked" : this.state.stopped ? "degraded" : "online"),
      session: this.state.session,
      ts: new Date(this.now()).toISOString(),
      cert: {
        serial: this.leaf.serialNumber.toLowerCase(),
        notAfter: new Date(this.leaf.validTo).toISOString(),
        keyAlg: keyAlg(this.identity.key),
      },
      nextRenewAt: iso(this.state.nextRenewAt),
      lastRenew: this.state.lastRenew,
      agent: { version: AGENT_VERSION },
    };
  }

  /** Starts the renewal loop and, if configured, MQTT reporting. Returns at once. */
  start(opts: { mqtt?: string } = {}): void {
    this.load();
    this.state.session++;
    this.raiseFloor();
    this.saveState();
    const mqttUrl = opts.mqtt ?? this.config.mqtt;
    if (mqttUrl) {
      this.reporter = new MqttReporter({
        url: mqttUrl,
        deviceId: this.config.deviceId,
        tls: () => ({
          key: this.identity.key.export({ type: "pkcs8", format: "pem" }) as string,
          cert: this.identity.chain.map((c) => c.toString()).join(""),
          trust: this.trust,
        }),
        now: () => this.now(),
        queueFile: this.store.paths.events,
        writeFile: (file, data) => this.store.writeAtomic(file, data, 0o600),
        onCommand: (command, body) => this.command(command, body),
        onRevoked: (message) => this.enterRevoked("mqtt-tls", message),
        log: (msg, fields) => this.deps.log("info", msg, fields),
      });
      this.reporter.start(this.statusDocument());
    }
    this.running = true;
    // The bundle was current at enrollment or at the last run; the next refresh is due
    // one interval from now (an MQTT ca-update asks for one at once).
    this.lastCaRefresh = this.now();
    this.loopDone = this.loop();
  }

  /** Renew now (SIGUSR1, `renew --now`, the MQTT rotate command); also restarts a stopped agent. */
  renewNow(): void {
    this.forced = true;
    this.state.stopped = null;
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stopping = true;
    this.wake?.();
    await this.loopDone;
    this.saveState();
    await this.reporter?.stop(this.statusDocument("offline"));
  }

  private saveState(): void {
    this.store.saveState(this.state);
  }

  private emit(type: string, fields: Record<string, unknown> = {}): void {
    const e: AgentEvent = {
      id: randomUUID(),
      type,
      at: new Date(this.now()).toISOString(),
      session: this.state.session,
      ...fields,
    };
    this.reporter?.event(e);
  }

  private report(state?: AgentStateName): void {
    this.reporter?.status(this.statusDocument(state));
  }

  /** Sleeps up to `ms`, or until woken (renew now, stop). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.deps.timers.clearTimeout(this.sleepHandle);
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
      this.sleepHandle = this.deps.timers.setTimeout(done, Math.max(0, ms));
    });
  }

  private async loop(): Promise<void> {
    while (this.running) {
      // Persist the time floor at least hourly: a reboot without a clock starts from here.
      this.raiseFloor();
      if (this.now() - this.lastCaRefresh >= this.config.caRefreshMs) await this.refreshCa();
      if (this.state.revoked && !this.forced) {
        // Revoked: no renewals; probe at most hourly whether an operator reinstated us.
        this.saveState();
        await this.sleep(HOUR);
        if (!this.running) break;
        await this.renewOnce(true);
        continue;
      }
      if (this.state.stopped && !this.forced) {
        this.saveState();
        await this.sleep(HOUR);
        continue;
      }
      const at = this.renewAt();
      this.state.nextRenewAt = at;
      const wait = at - this.now();
      if (wait > 0 && !this.forced) {
        this.saveState();
        this.report();
        await this.sleep(Math.min(wait, HOUR, this.config.caRefreshMs));
        continue;
      }
      this.forced = false;
      await this.renewOnce(false);
    }
  }

  /**
   * One renewal with its retries: a new key, simplereenroll over mutual TLS with the
   * current certificate; 202 → wait Retry-After (same request); network/5xx → backoff;
   * other 4xx → stop and report (revoked → revoked state).
   */
  async renewOnce(probe: boolean): Promise<RenewResult> {
    const est = new EstClient(this.config.server, this.config.label, this.trust, () => this.now());
    const key = generateKey(this.config.keyType as KeyType);
    const csr = makeCsr(key, this.config.deviceId);
    this.deps.crash?.("key-generated");
    this.report("rotating");
    for (let attempt = 0; !this.stopping; attempt++) {
      const client: ClientTls = this.identity;
      const outcome = await est.simplereenroll(csr, client);
      this.raiseFloor(outcome.date);
      if (outcome.kind === "issued") {
        let identity: Identity;
        try {
          identity = checkIssued(outcome.chain, key, this.trust);
        } catch (err) {
          return this.fail(`renewal answer rejected: ${(err as Error).message}`, attempt);
        }
        this.deps.crash?.("response-received");
        const previous = this.leaf.serialNumber.toLowerCase();
        this.store.saveIdentity(identity);
        this.identity = identity;
        this.state.identityReceivedAt = this.now();
        this.state.session++;
        this.state.lastRenew = { at: new Date(this.now()).toISOString(), ok: true };
        this.state.lastError = null;
        this.state.revoked = null;
        this.state.stopped = null;
        this.state.nextRenewAt = this.renewAt();
        this.saveState();
        this.deps.log("info", "renewed", {
          serial: this.leaf.serialNumber.toLowerCase(),
          previous,
          notAfter: this.leaf.validTo,
        });
        this.emit("rotated", {
          previous,
          serial: this.leaf.serialNumber.toLowerCase(),
          notAfter: new Date(this.leaf.validTo).toISOString(),
        });
        this.reporter?.reconnect();
        this.report();
        await this.runHook();
        return "renewed";
      }
      if (outcome.kind === "refused") {
        if (outcome.revoked) {
          this.enterRevoked("est", outcome.message);
          return "revoked";
        }
        this.state.stopped = `HTTP ${outcome.status}: ${outcome.message}`;
        this.state.lastRenew = { at: new Date(this.now()).toISOString(), ok: false, error: this.state.stopped };
        this.state.lastError = this.state.stopped;
        this.saveState();
        this.deps.log("error", "renewal refused; stopped until asked again", { error: this.state.stopped });
        this.emit("renewal-refused", { status: outcome.status, error: outcome.message });
        this.report("degraded");
        return "stopped";
      }
      if (probe) return "waiting";
      const remaining = Date.parse(this.leaf.validTo) - this.now();
      const wait =
        outcome.kind === "wait"
          ? outcome.seconds * 1000
          : backoffDelay(attempt, remaining, this.deps.random, this.deps.backoff);
      this.state.lastError = describe(outcome);
      this.saveState();
      this.deps.log("warn", outcome.kind === "wait" ? "renewal pending" : "renewal failed; backing off", {
        attempt,
        waitMs: wait,
        detail: describe(outcome),
      });
      if (outcome.kind === "unavailable") this.report("degraded");
      await this.sleep(wait);
      if (this.forced) this.forced = false;
    }
    return "cancelled";
  }

  private fail(message: string, attempt: number): RenewResult {
    this.state.lastError = message;
    this.state.lastRenew = { at: new Date(this.now()).toISOString(), ok: false, error: message };
    this.saveState();
    this.deps.log("error", message, { attempt });
    this.emit("renewal-failed", { error: message });
    return "stopped";
  }

  enterRevoked(by: string, message: string): void {
    if (this.state.revoked) return;
    this.state.revoked = { at: new Date(this.now()).toISOString(), by };
    this.state.lastError = `revoked (${by}): ${message}`;
    this.saveState();
    this.deps.log("error", "this device's certificate is revoked; renewal stopped", { by, message });
    this.emit("revoked", { by, message: message.slice(0, 200) });
    this.report("revoked");
    this.wake?.();
  }

  /** Fetches /cacerts over verified TLS; keeps old and new CAs (a rollover), drops expired ones. */
  async refreshCa(): Promise<{ added: number }> {
    this.lastCaRefresh = this.now();
    try {
      const { certs } = await new EstClient(this.config.server, this.config.label, this.trust, () =>
        this.now(),
      ).cacerts();
      const now = this.now();
      const fresh = certs.map((d) => new X509Certificate(d));
      const merged = [...this.trust, ...fresh].filter(
        (c, i, all) => all.findIndex((o) => o.fingerprint256 === c.fingerprint256) === i && Date.parse(c.validTo) > now,
      );
      const added = merged.length - this.trust.filter((c) => Date.parse(c.validTo) > now).length;
      if (merged.length !== this.trust.length || added > 0) {
        this.trust = merged;
        this.store.saveTrust(merged);
        if (added > 0) this.emit("ca-updated", { added });
      }
      return { added };
    } catch (err) {
      this.deps.log("warn", "CA refresh failed", { error: (err as Error).message });
      return { added: 0 };
    }
  }

  private async command(command: Command, body: Record<string, unknown>): Promise<{ ok: boolean; error?: string }> {
    this.deps.log("info", "command", { command, opId: body.opId });
    if (command === "rotate") {
      this.renewNow();
      return { ok: true };
    }
    if (command === "revoked") {
      this.enterRevoked("mqtt", typeof body.reason === "string" ? body.reason : "revoked by the operator");
      return { ok: true };
    }
    await this.refreshCa();
    return { ok: true };
  }

  private async runHook(): Promise<void> {
    if (!this.config.hook) return;
    const env = {
      EDGEID_CERT: this.store.paths.cert,
      EDGEID_KEY: this.store.paths.key,
      EDGEID_CHAIN: this.store.paths.chain,
      EDGEID_DEVICE: this.config.deviceId,
    };
    try {
      await (this.deps.runHook ?? runShell)(this.config.hook, env);
    } catch (err) {
      this.deps.log("warn", "rotation hook failed", { error: (err as Error).message });
      this.emit("hook-failed", { error: (err as Error).message });
    }
  }
}

function runShell(command: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], { stdio: "ignore", env: { ...process.env, ...env } });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`hook exited with ${code}`));
    });
  });
}

export { INITIAL_STATE };
