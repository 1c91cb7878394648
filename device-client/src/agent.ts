import { spawn } from "node:child_process";
import { type KeyObject, randomUUID, X509Certificate } from "node:crypto";
import { backoffDelay } from "./backoff.ts";
import { runCommand } from "./commands.ts";
import { type AgentDeps, BUILD_TIME, HOUR } from "./deps.ts";
import { idevidClient } from "./enrollment.ts";
import { type ClientTls, describeOutcome, EstClient } from "./est.ts";
import { generateKey, type KeyType, makeCsr } from "./keys.ts";
import { type AgentEvent, type AgentStateName, MqttReporter, type StatusDocument } from "./status.ts";
import { type AgentConfig, type AgentState, AgentStore, type Identity } from "./store.ts";
import { checkIssued, mergeCaBundle } from "./trust.ts";
import { DEFAULT_WORKLOAD_SOCKET, WorkloadApi } from "./workload-api.ts";
import { WorkloadHttpClient } from "./workload-client.ts";
import { SvidManager } from "./workload-svids.ts";

/** The SPIFFE Workload API's settings for `start`: served when `socket` is set. */
export interface WorkloadOptions {
  socket?: string;
  /** Octal file mode of the socket, "0666" by default. */
  socketMode?: string;
  keysDir?: string;
}

export const AGENT_VERSION = "0.1.0";

function keyAlg(key: KeyObject): string {
  if (key.asymmetricKeyType === "ec") return key.asymmetricKeyDetails?.namedCurve === "secp384r1" ? "P-384" : "P-256";
  if (key.asymmetricKeyType === "rsa") return `RSA-${key.asymmetricKeyDetails?.modulusLength}`;
  return key.asymmetricKeyType === "ed25519" ? "Ed25519" : String(key.asymmetricKeyType);
}

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);

const serialOf = (identity: Identity) => (identity.chain[0] as X509Certificate).serialNumber.toLowerCase();

/** Whether the identity's certificate is within its validity at `at`. */
const validAt = (identity: Identity, at: number) => {
  const leaf = identity.chain[0] as X509Certificate;
  return Date.parse(leaf.validFrom) <= at && at < Date.parse(leaf.validTo);
};

export type RenewResult = "renewed" | "waiting" | "stopped" | "revoked" | "lost-identity" | "cancelled";

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
  /** The identity the current one replaced, kept until the current one has been used once. */
  private previous: Identity | undefined;
  private renewing = false;
  private trust!: X509Certificate[];
  private reporter: MqttReporter | undefined;
  private running = false;
  private stopping = false;
  private wake: (() => void) | undefined;
  private forced = false;
  /**
   * Counts identities loaded from disk by `reload()` (an operator's `enroll` in place).
   * A renewal that began before the count changed drops its answer: it was made for an
   * identity the agent no longer holds, and must not overwrite the new one or stop it.
   */
  private generation = 0;
  private sleepHandle: unknown;
  private lastCaRefresh = 0;
  private loopDone: Promise<void> | undefined;
  /** The workload SVIDs and the Workload API, when served. */
  private svids: SvidManager | undefined;
  private workloadApi: WorkloadApi | undefined;

  constructor(
    dir: string,
    private readonly deps: AgentDeps,
  ) {
    this.store = new AgentStore(dir, deps.crash);
  }

  /**
   * Reads the directory; refreshes the exported copies from the identity. `inspect`
   * (`edgeid-agent status`, beside a running agent) writes and deletes nothing — no
   * slots, state, exported copies or temp files: only the process that rotates completes
   * what a power cut interrupted.
   */
  load(opts: { inspect?: boolean } = {}): void {
    this.store.init({ readOnly: opts.inspect === true });
    if (!this.store.hasIdentity())
      throw new Error(`${this.store.dir} holds no identity: run edgeid-agent enroll first`);
    this.config = this.store.loadConfig();
    this.trust = this.store.loadTrust();
    this.identity = this.store.loadIdentity();
    this.state = this.store.loadState();
    this.reconcileSlots(!opts.inspect);
    if (!opts.inspect) this.store.exportCopies(this.identity);
  }

  /**
   * Makes the state agree with the two slots on disk, whatever step a power cut stopped:
   * - a fallback decided (state saved) but not carried out: carried out now;
   * - `previous.pem` holding the current identity (cut before the new identity was
   *   renamed into place, or before a fallback removed the slot): removed;
   * - `previous.pem` holding another certificate: the current one is unconfirmed (cut
   *   after the rename, before the state was saved: the state is completed);
   * - no `previous.pem`: nothing unconfirmed (cut after a confirmation removed it).
   * An unreadable previous slot is removed: it cannot be fallen back to. Without `write`,
   * only the agent's view is made consistent, and nothing on disk changes.
   */
  private reconcileSlots(write = true): void {
    let previous: Identity | undefined;
    try {
      previous = this.store.loadPrevious();
    } catch (err) {
      this.deps.log("warn", "previous identity unreadable; removed", { error: (err as Error).message });
      if (write) this.store.removePrevious();
    }
    const fallback = this.state.fallback;
    if (
      previous &&
      fallback &&
      fallback.refused === serialOf(this.identity) &&
      fallback.serial === serialOf(previous) &&
      validAt(previous, this.now())
    ) {
      if (write) this.store.saveIdentity(previous);
      this.identity = previous;
    }
    if (previous && serialOf(previous) === serialOf(this.identity)) {
      if (write) this.store.removePrevious();
      previous = undefined;
    }
    this.previous = previous;
    const serial = serialOf(this.identity);
    const unconfirmed = previous
      ? {
          serial,
          previous: serialOf(previous),
          since:
            this.state.unconfirmed?.serial === serial
              ? this.state.unconfirmed.since
              : new Date(this.now()).toISOString(),
        }
      : null;
    if (JSON.stringify(unconfirmed) !== JSON.stringify(this.state.unconfirmed)) {
      this.state.unconfirmed = unconfirmed;
      if (write) this.saveState();
    }
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
      state:
        state ??
        (this.state.revoked
          ? "revoked"
          : this.state.lostIdentity
            ? "lost-identity"
            : this.state.stopped || this.state.fallback
              ? "degraded"
              : "online"),
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
      ...(this.state.fallback
        ? {
            fallback: {
              at: this.state.fallback.at,
              by: this.state.fallback.by,
              reason: this.state.fallback.reason,
              refused: this.state.fallback.refused,
              serial: this.state.fallback.serial,
            },
          }
        : {}),
    };
  }

  /** Starts the renewal loop and, if configured, MQTT reporting. Returns at once. */
  start(opts: { mqtt?: string; workload?: WorkloadOptions } = {}): void {
    this.load();
    // First: a Workload API that cannot attest its callers stops the start here.
    this.startWorkloads(opts.workload);
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
          serial: serialOf(this.identity),
          trust: this.trust,
        }),
        onConnected: (serial) => this.confirm("mqtt", serial),
        onRefused: (serial, code, message) => {
          this.fallBack("mqtt", serial, `CONNACK ${code}: ${message}`);
        },
        now: () => this.now(),
        queueFile: this.store.paths.events,
        writeFile: (file, data) => this.store.writeAtomic(file, data, 0o600),
        onCommand: (command, body) => runCommand(this, command, body, this.deps.log),
        log: (msg, fields) => this.deps.log("info", msg, fields),
        random: this.deps.random,
      });
      this.reporter.start(this.statusDocument());
    }
    this.running = true;
    // The bundle was current at enrollment or at the last run; the next refresh is due
    // one interval from now (an MQTT ca-update asks for one at once).
    this.lastCaRefresh = this.now();
    this.loopDone = this.loop();
  }

  /**
   * The SVID manager and the Workload API, when a socket is configured. Throws (before
   * anything listens) when the peer-credentials addon is missing: no attestation, no API.
   */
  private startWorkloads(opts: WorkloadOptions = {}): void {
    const socket = opts.socket ?? this.config.workloadSocket;
    if (!socket) return;
    const modeText = opts.socketMode ?? this.config.workloadSocketMode ?? "0666";
    if (!/^0?[0-7]{3}$/.test(modeText)) throw new Error(`workload socket mode ${modeText} is not octal like 0660`);
    const svids = new SvidManager({
      client: new WorkloadHttpClient(
        this.config.server,
        () => this.identity,
        () => this.trust,
        () => this.now(),
      ),
      deps: this.deps,
      now: () => this.now(),
      keysDir: opts.keysDir ?? this.config.workloadKeysDir,
      summaryFile: this.store.paths.workloads,
    });
    const api = new WorkloadApi({
      socketPath: socket === "default" ? DEFAULT_WORKLOAD_SOCKET : socket,
      socketMode: Number.parseInt(modeText, 8),
      source: svids,
      log: this.deps.log,
      now: () => this.now(),
    });
    this.svids = svids;
    this.workloadApi = api;
    if (this.state.revoked) svids.deviceRevoked();
    api.start().then(
      () => svids.start(),
      (err: Error) => this.deps.log("error", "the Workload API could not start", { error: err.message }),
    );
  }

  /** The MQTT command `workloads-changed`: refetch the entries now. */
  async workloadsChanged(): Promise<void> {
    await this.svids?.workloadsChanged();
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
    this.svids?.stop();
    await this.workloadApi?.stop();
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
        // Woken to renew now: that renewal is the probe (not one more request before it).
        if (!this.forced) await this.renewOnce(true);
        continue;
      }
      if (this.state.lostIdentity && !this.forced) {
        // Nothing this agent holds can bring the identity back: it waits for an operator's
        // `edgeid-agent enroll --token …` on this directory (which wakes it with SIGHUP).
        this.saveState();
        this.report();
        await this.sleep(HOUR);
        continue;
      }
      if (this.state.stopped && !this.forced) {
        this.saveState();
        await this.sleep(HOUR);
        continue;
      }
      // After a fallback, the next renewal waits out its backoff.
      const at = Math.max(this.renewAt(), this.state.fallback?.retryAt ?? 0);
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
   * current certificate; 202 → wait Retry-After (same request); network/5xx → backoff
   * (TLS alerts included, whatever they say); other 4xx from the verified server → stop
   * and report (one that says revoked → revoked state).
   */
  async renewOnce(probe: boolean): Promise<RenewResult> {
    this.renewing = true;
    try {
      return await this.renewAttempts(probe);
    } finally {
      this.renewing = false;
    }
  }

  private async renewAttempts(probe: boolean): Promise<RenewResult> {
    const est = new EstClient(this.config.server, this.config.label, this.trust, () => this.now());
    const key = generateKey(this.config.keyType as KeyType);
    const csr = makeCsr(key, this.config.deviceId);
    this.deps.crash?.("key-generated");
    this.report("rotating");
    const generation = this.generation;
    for (let attempt = 0; !this.stopping; attempt++) {
      const client: ClientTls = this.identity;
      const outcome = await est.simplereenroll(csr, client);
      this.raiseFloor(outcome.date);
      if (this.generation !== generation) return this.superseded(describeOutcome(outcome));
      // The verified server took the certificate (an answer, or 202 for a pending one): it
      // has been used successfully, so the previous slot can go (before a new one comes).
      if (outcome.kind === "issued" || outcome.kind === "wait") this.confirm("est", serialOf(client));
      if (outcome.kind === "issued") {
        let identity: Identity;
        try {
          identity = checkIssued(outcome.chain, key, this.trust);
        } catch (err) {
          return this.fail(`renewal answer rejected: ${(err as Error).message}`, attempt);
        }
        this.deps.crash?.("response-received");
        await this.adopt(identity, "renewal");
        return "renewed";
      }
      if (outcome.kind === "refused") {
        if (outcome.revoked) {
          // Revoking a device revokes all its certificates: the previous one is no way back.
          this.enterRevoked("est", outcome.message);
          return "revoked";
        }
        // The verified server refused a certificate that has never been used (401/403: its
        // authentication): back to the previous one, and renew with it after a backoff.
        // Also when the broker's refusal already did so while this request was under way:
        // the refusal was for a certificate the agent no longer holds.
        const fellBack =
          (outcome.status === 401 || outcome.status === 403) &&
          this.fallBack("est", serialOf(client), `HTTP ${outcome.status}: ${outcome.message}`);
        if (fellBack || serialOf(client) !== serialOf(this.identity)) {
          if (probe) return "waiting";
          await this.sleep((this.state.fallback?.retryAt ?? 0) - this.now());
          if (this.forced) this.forced = false;
          if (this.generation !== generation) return this.superseded("backing off after a fallback");
          continue;
        }
        // Refused with a certificate that has expired: renewal after expiry did not apply.
        // Next rung: the manufacturer certificate, where the device has one; else lost.
        const expired = Date.parse(this.leaf.validTo) <= this.now();
        if (expired && !this.config.idevid) {
          this.enterLostIdentity(`HTTP ${outcome.status}: ${outcome.message}`);
          return "lost-identity";
        }
        if (expired) {
          const viaIdevid = await this.enrollWithIdevid(`HTTP ${outcome.status}: ${outcome.message}`);
          if (viaIdevid) return viaIdevid;
          // The IDevID enrollment did not answer: back off, then the ladder again.
        } else {
          return this.stopRenewing(outcome.status, outcome.message);
        }
      }
      if (probe) return "waiting";
      const remaining = Date.parse(this.leaf.validTo) - this.now();
      const wait =
        outcome.kind === "wait"
          ? outcome.seconds * 1000
          : backoffDelay(attempt, remaining, this.deps.random, this.deps.backoff);
      this.state.lastError = describeOutcome(outcome);
      this.saveState();
      this.deps.log("warn", outcome.kind === "wait" ? "renewal pending" : "renewal failed; backing off", {
        attempt,
        waitMs: wait,
        detail: describeOutcome(outcome),
      });
      if (outcome.kind === "unavailable") this.report("degraded");
      await this.sleep(wait);
      if (this.forced) this.forced = false;
      if (this.generation !== generation) return this.superseded("backing off");
    }
    return "cancelled";
  }

  /** A renewal whose identity was replaced meanwhile (`reload()`): nothing of it is kept. */
  private superseded(detail: string): RenewResult {
    this.deps.log("info", "the identity was replaced while a renewal was in flight; its outcome is dropped", {
      detail,
    });
    return "cancelled";
  }

  /** A 4xx other than revocation, with a certificate still valid: stop until asked again. */
  private stopRenewing(status: number, message: string): RenewResult {
    this.state.stopped = `HTTP ${status}: ${message}`;
    this.state.lastRenew = { at: new Date(this.now()).toISOString(), ok: false, error: this.state.stopped };
    this.state.lastError = this.state.stopped;
    this.saveState();
    this.deps.log("error", "renewal refused; stopped until asked again", { error: this.state.stopped });
    this.emit("renewal-refused", { status, error: message });
    this.report("degraded");
    return "stopped";
  }

  private fail(message: string, attempt: number): RenewResult {
    this.state.lastError = message;
    this.state.lastRenew = { at: new Date(this.now()).toISOString(), ok: false, error: message };
    this.saveState();
    this.deps.log("error", message, { attempt });
    this.emit("renewal-failed", { error: message });
    return "stopped";
  }

  /**
   * Only an authenticated source may put the agent here: an HTTP 4xx from the verified
   * EST server, or a `cmd/revoked` from the verified broker. Never a transport error.
   */
  enterRevoked(by: string, message: string): void {
    if (this.state.revoked) {
      const what = by === "est" ? "renewal refused" : `told again over ${by}`;
      this.deps.log("warn", `${what}: this device's certificate is still revoked`, { by, message });
      return;
    }
    this.state.revoked = { at: new Date(this.now()).toISOString(), by };
    this.state.lastError = `revoked (${by}): ${message}`;
    this.saveState();
    this.deps.log("error", "this device's certificate is revoked; renewal stopped", { by, message });
    this.emit("revoked", { by, message: message.slice(0, 200) });
    // Revoking the device revokes its workloads' SVIDs: none is served a moment longer.
    this.svids?.deviceRevoked();
    this.report("revoked");
    this.wake?.();
  }

  /**
   * Takes a new identity (a renewal, or an enrollment with the IDevID): saved, reported,
   * hooked. The identity it replaces is kept as the previous slot while it is valid, until
   * the new one has been used once; an expired one (an IDevID enrollment, a renewal after
   * expiry) is not kept: it could not be fallen back to. Order on disk: previous.pem, then
   * identity.pem, then the state (`reconcileSlots` completes a cut anywhere in between).
   */
  private async adopt(identity: Identity, via: "renewal" | "idevid"): Promise<void> {
    const previous = this.leaf.serialNumber.toLowerCase();
    const keep = validAt(this.identity, this.now()) ? this.identity : undefined;
    if (keep) this.store.savePrevious(keep);
    else this.store.removePrevious();
    this.store.saveIdentity(identity);
    this.identity = identity;
    this.previous = keep;
    this.state.unconfirmed = keep
      ? { serial: serialOf(identity), previous, since: new Date(this.now()).toISOString() }
      : null;
    this.state.identityReceivedAt = this.now();
    this.state.session++;
    this.state.lastRenew = { at: new Date(this.now()).toISOString(), ok: true };
    this.state.lastError = null;
    this.state.revoked = null;
    this.state.stopped = null;
    this.state.lostIdentity = null;
    this.state.nextRenewAt = this.renewAt();
    this.saveState();
    this.deps.log("info", via === "renewal" ? "renewed" : "enrolled again with the IDevID", {
      serial: this.leaf.serialNumber.toLowerCase(),
      previous,
      notAfter: this.leaf.validTo,
    });
    this.emit("rotated", {
      previous,
      serial: this.leaf.serialNumber.toLowerCase(),
      notAfter: new Date(this.leaf.validTo).toISOString(),
      ...(via === "idevid" ? { via } : {}),
    });
    this.reporter?.reconnect();
    this.report();
    this.svids?.deviceReinstated();
    await this.runHook();
  }

  /**
   * The first successful use of the unconfirmed identity `serial` (a CONNACK from the
   * verified broker, an answer from the verified EST server): the previous slot, its key
   * with it, is deleted, and a fallback is over.
   */
  private confirm(by: "mqtt" | "est", serial: string): void {
    const unconfirmed = this.state.unconfirmed;
    if (!unconfirmed || unconfirmed.serial !== serial || serialOf(this.identity) !== serial) return;
    // The slot first: a cut before the state is saved finds no previous.pem, which is what decides.
    this.store.removePrevious();
    this.previous = undefined;
    const ended = this.state.fallback !== null;
    this.state.unconfirmed = null;
    this.state.fallback = null;
    this.saveState();
    this.deps.log("info", "new certificate confirmed; previous identity removed", {
      by,
      serial,
      previous: unconfirmed.previous,
    });
    // The status changes only when a fallback ends (on a CONNACK the reporter sends it next).
    if (ended) this.report();
  }

  /**
   * The verified broker (CONNACK 4/5/134/135) or the verified EST server (401/403 that does
   * not say revoked) refused the unconfirmed identity `serial`: back to the previous one,
   * if it is still valid at the agent's time, reported (status `fallback`, an
   * `identity-fallback` event, a log line) with a renewal after a backoff. False when
   * there is nothing to go back to: `serial` is not the unconfirmed identity (a
   * certificate already used once is not refused into a fallback), no previous slot, the
   * device is revoked, or the previous certificate is no longer valid (then removed).
   * Over MQTT 3.1.1 a CONNACK carries no reason: a revoked device's refusal may bring it
   * back to its previous certificate, which is revoked with it and refused in turn; no
   * second fallback follows (one slot back, never more).
   */
  private fallBack(by: "mqtt" | "est", serial: string, reason: string): boolean {
    const unconfirmed = this.state.unconfirmed;
    const previous = this.previous;
    if (!unconfirmed || unconfirmed.serial !== serial || serialOf(this.identity) !== serial || !previous) return false;
    if (this.state.revoked) return false;
    const now = this.now();
    const back = previous.chain[0] as X509Certificate;
    if (!validAt(previous, now)) {
      this.store.removePrevious();
      this.previous = undefined;
      this.state.unconfirmed = null;
      this.saveState();
      this.deps.log("warn", "new certificate refused; the previous one is not valid now and was removed, not used", {
        by,
        reason,
        refused: serial,
        previous: unconfirmed.previous,
        previousNotAfter: back.validTo,
      });
      return false;
    }
    const attempt = this.state.fallback ? this.state.fallback.attempt + 1 : 0;
    const remaining = Date.parse(back.validTo) - now;
    const retryAt = now + backoffDelay(attempt, remaining, this.deps.random, this.deps.backoff);
    this.state.fallback = {
      at: new Date(now).toISOString(),
      by,
      reason: reason.slice(0, 300),
      refused: serial,
      serial: serialOf(previous),
      attempt,
      retryAt,
    };
    this.state.unconfirmed = null;
    this.state.session++;
    // The previous certificate was due for renewal already: its lifetime is counted from
    // its notBefore again, so that the backoff (retryAt), not its schedule, says when.
    this.state.identityReceivedAt = 0;
    this.state.lastError = `new certificate ${serial} refused (${by}): ${reason}`.slice(0, 500);
    // The decision first (a cut after it is completed at the next start), then the slots.
    this.saveState();
    this.store.saveIdentity(previous);
    this.identity = previous;
    this.store.removePrevious();
    this.previous = undefined;
    this.state.nextRenewAt = Math.max(this.renewAt(), retryAt);
    this.saveState();
    this.deps.log("warn", "new certificate refused at its first use; back on the previous one", {
      by,
      reason,
      refused: serial,
      serial: serialOf(previous),
      notAfter: back.validTo,
      retryAt: new Date(retryAt).toISOString(),
    });
    this.emit("identity-fallback", {
      by,
      reason: reason.slice(0, 300),
      refused: serial,
      serial: serialOf(previous),
      notAfter: new Date(back.validTo).toISOString(),
      retryAt: new Date(retryAt).toISOString(),
    });
    this.reporter?.reconnect();
    this.report();
    void this.runHook();
    if (!this.renewing) this.wake?.();
    return true;
  }

  /**
   * The expired certificate was refused: enroll again with the manufacturer certificate
   * (simpleenroll over mutual TLS with the IDevID, a new key). Undefined when that does
   * not answer (network, 5xx: the loop backs off and tries the ladder again).
   */
  private async enrollWithIdevid(refusal: string): Promise<RenewResult | undefined> {
    const idevid = this.config.idevid as { cert: string; key: string };
    let auth: ReturnType<typeof idevidClient>;
    try {
      auth = idevidClient(idevid);
    } catch (err) {
      this.enterLostIdentity(`${refusal}; the IDevID could not be read: ${(err as Error).message}`);
      return "lost-identity";
    }
    const est = new EstClient(this.config.server, this.config.label, this.trust, () => this.now());
    const key = generateKey(this.config.keyType as KeyType);
    const generation = this.generation;
    const outcome = await est.simpleenroll(makeCsr(key, this.config.deviceId), auth);
    this.raiseFloor(outcome.date);
    if (this.generation !== generation) return this.superseded(describeOutcome(outcome));
    if (outcome.kind === "issued") {
      try {
        await this.adopt(checkIssued(outcome.chain, key, this.trust), "idevid");
      } catch (err) {
        this.enterLostIdentity(`${refusal}; the IDevID enrollment's answer was rejected: ${(err as Error).message}`);
        return "lost-identity";
      }
      return "renewed";
    }
    if (outcome.kind === "refused") {
      this.enterLostIdentity(`${refusal}; with the IDevID: HTTP ${outcome.status}: ${outcome.message}`);
      return "lost-identity";
    }
    this.deps.log("warn", "enrollment with the IDevID did not answer; backing off", {
      detail: describeOutcome(outcome),
    });
    return undefined;
  }

  /**
   * The certificate expired and the verified server refused to renew it: status
   * `lost-identity` and an event with the server's reason, then wait for an operator.
   */
  private enterLostIdentity(reason: string): void {
    this.state.lostIdentity = { at: new Date(this.now()).toISOString(), reason: reason.slice(0, 300) };
    this.state.lastError = `lost identity: ${reason}`;
    this.state.lastRenew = { at: new Date(this.now()).toISOString(), ok: false, error: reason };
    this.saveState();
    this.deps.log(
      "error",
      "identity lost: the expired certificate was not renewed; an operator must enroll this device again",
      {
        reason,
        notAfter: this.leaf.validTo,
      },
    );
    this.emit("lost-identity", { reason: reason.slice(0, 300), notAfter: new Date(this.leaf.validTo).toISOString() });
    this.report("lost-identity");
  }

  /**
   * Reads the directory again after `edgeid-agent enroll` replaced the identity in place
   * (SIGHUP): the new certificate, trust and configuration, and the state it wrote.
   */
  reload(): void {
    this.generation++;
    this.config = this.store.loadConfig();
    this.trust = this.store.loadTrust();
    this.identity = this.store.loadIdentity();
    this.state = this.store.loadState();
    this.reconcileSlots();
    this.store.exportCopies(this.identity);
    this.deps.log("info", "reloaded the identity from disk", { serial: this.leaf.serialNumber.toLowerCase() });
    if (!this.state.revoked) this.svids?.deviceReinstated();
    this.reporter?.reconnect();
    this.report();
    this.wake?.();
  }

  /** Fetches /cacerts over verified TLS; keeps old and new CAs (a rollover), drops expired ones. */
  async refreshCa(): Promise<{ added: number }> {
    this.lastCaRefresh = this.now();
    try {
      const { certs } = await new EstClient(this.config.server, this.config.label, this.trust, () =>
        this.now(),
      ).cacerts();
      const fresh = certs.map((d) => new X509Certificate(d));
      const { merged, added } = mergeCaBundle(this.trust, fresh, this.now());
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
