import type { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { MqttClient } from "mqtt";
import { type Command, type CommandResult, isCommand } from "./commands.ts";
import { bareHost, peerProblem, sigalgsFor } from "./tls-check.ts";
import { VerifiedTlsStream } from "./verified-tls.ts";

export type AgentStateName = "online" | "offline" | "rotating" | "degraded" | "revoked" | "lost" | "lost-identity";

/** The retained status document of the MQTT contract (docs/mqtt-contract.md). */
export interface StatusDocument {
  v: 1;
  state: AgentStateName;
  session: number;
  ts: string;
  cert: { serial: string; notAfter: string; keyAlg: string };
  nextRenewAt: string | null;
  lastRenew: { at: string; ok: boolean; error?: string } | null;
  agent: { version: string };
  /**
   * Present after the verified broker or EST server refused a new certificate at its
   * first use and the agent went back to the previous one (`serial`), until a new
   * certificate has been used successfully.
   */
  fallback?: { at: string; by: "mqtt" | "est"; reason: string; refused: string; serial: string };
}

/**
 * CONNACK codes that refuse the client's credentials (here: its certificate): MQTT 3.1.1
 * §3.2.2.3 return codes 4 (bad user name or password) and 5 (not authorized), MQTT 5
 * §3.2.2.2 reason codes 134 and 135. Others (server unavailable, busy, …) are not about
 * the certificate.
 */
export const CONNACK_AUTH_REFUSALS: readonly number[] = [4, 5, 134, 135];

export interface AgentEvent {
  id: string;
  type: string;
  at: string;
  [field: string]: unknown;
}

/** The reconnect delay after a lost connection, and the bound after repeated CONNACK refusals. */
const RECONNECT_MS = 5_000;
const MAX_RECONNECT_MS = 600_000;

export interface ReporterOptions {
  url: string;
  deviceId: string;
  /** The device's TLS identity (with its leaf's serial) and the trust bundle, read at each (re)connection. */
  tls: () => { key: string; cert: string; serial: string; trust: X509Certificate[] };
  /** The verified broker accepted a connection made with the certificate `serial` (CONNACK 0). */
  onConnected?: (serial: string) => void;
  /**
   * The verified broker refused the certificate `serial` in its CONNACK (a code of
   * CONNACK_AUTH_REFUSALS). Only a CONNACK parsed after the broker passed the agent's
   * check reaches here; transport errors never do.
   */
  onRefused?: (serial: string, code: number, message: string) => void;
  /** The agent's time, for checking the broker's certificate (see tls-check.ts). */
  now: () => number;
  /** Where queued events survive a restart. */
  queueFile: string;
  maxQueue?: number;
  writeFile: (file: string, data: string) => void;
  /** A command from the verified broker (nothing reaches here from any other peer). */
  onCommand: (command: Command, body: Record<string, unknown>) => Promise<CommandResult>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Randomness for the reconnect jitter (default Math.random). */
  random?: () => number;
  /**
   * The reconnect delay after a lost connection (default 5 s). After a CONNACK that
   * refuses the connection it doubles at each refusal, up to `maxReconnectMs` (default
   * 10 min), with jitter, and is back to this after a CONNACK 0.
   */
  reconnectMs?: number;
  maxReconnectMs?: number;
}

/**
 * Status over MQTT with the device certificate. Never in the way of renewal: every call
 * returns at once, and what cannot be sent waits — the latest status in memory, events
 * in a bounded queue on disk, delivered in order once the broker is back.
 */
export class MqttReporter {
  private client: MqttClient | undefined;
  private latest: StatusDocument | undefined;
  private queue: AgentEvent[] = [];
  private flushing = false;
  private generation = 0;
  private stopped = false;
  private readonly base: string;

  constructor(private readonly o: ReporterOptions) {
    this.base = `edgeid/v1/devices/${o.deviceId}`;
    if (existsSync(o.queueFile)) {
      this.queue = readFileSync(o.queueFile, "utf8")
        .split("\n")
        .filter(Boolean)
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as AgentEvent];
          } catch {
            return [];
          }
        });
    }
  }

  get queued(): number {
    return this.queue.length;
  }

  start(initial: StatusDocument): void {
    this.latest = initial;
    this.connect();
  }

  /** mqtt is loaded on first use: an agent without a broker does not carry it (~13 MB). */
  private connect(): void {
    // Only the latest call opens a client: a reconnect (a rotation, a fallback) while mqtt
    // is still loading for an earlier one would otherwise leave two clients connecting.
    const generation = ++this.generation;
    void import("mqtt").then(({ MqttClient }) => {
      if (generation === this.generation) this.open(MqttClient);
    });
  }

  /**
   * The TLS connection to the broker, verified at the agent's time before anything is
   * written or read (VerifiedTlsStream): the CONNECT packet waits for the verdict, and
   * an unverified peer's CONNACK or PUBLISH is never parsed.
   */
  private transport(tls: ReturnType<ReporterOptions["tls"]>): VerifiedTlsStream {
    const url = new URL(this.o.url);
    const host = bareHost(url.hostname);
    const sigalgs = sigalgsFor(tls.trust);
    return new VerifiedTlsStream(
      {
        host,
        port: Number(url.port || 8883),
        ...(isIP(host) ? {} : { servername: host }),
        key: tls.key,
        cert: tls.cert,
        ...(sigalgs ? { sigalgs } : {}),
      },
      (socket) => {
        const problem = peerProblem(socket, host, tls.trust, this.o.now());
        if (problem) this.o.log("mqtt broker refused", { error: problem });
        return problem;
      },
    );
  }

  private open(MqttClientClass: typeof import("mqtt").MqttClient): void {
    if (this.stopped) return;
    if (!/^(mqtts|ssl|tls):$/.test(new URL(this.o.url).protocol)) {
      this.o.log("mqtt broker refused", { error: `${this.o.url}: only mqtts:// is supported` });
      return;
    }
    const lost: StatusDocument | undefined = this.latest && { ...this.latest, state: "lost" };
    // The certificate of the latest connection attempt (mqtt.js builds one stream at a time).
    let serial = "";
    const client = new MqttClientClass(
      () => {
        const tls = this.o.tls();
        serial = tls.serial;
        return this.transport(tls);
      },
      {
        clientId: this.o.deviceId,
        // A persistent session: commands (QoS 1) sent while the agent reconnects — after a
        // rotation, or through a short outage — wait at the broker instead of being dropped.
        clean: false,
        reconnectPeriod: this.o.reconnectMs ?? RECONNECT_MS,
        // A broker that refuses a connection (restarting, over a budget, or refusing the
        // certificate) is asked again, later each time: without this mqtt.js would stay
        // disconnected until the next rotation or restart.
        reconnectOnConnackError: true,
        connectTimeout: 15_000,
        keepalive: 60,
        ...(lost
          ? { will: { topic: `${this.base}/status`, payload: Buffer.from(JSON.stringify(lost)), qos: 1, retain: true } }
          : {}),
      },
    );
    this.client = client;
    let refusals = 0;
    client.on("connect", () => {
      if (this.client !== client) return;
      refusals = 0;
      client.options.reconnectPeriod = this.o.reconnectMs ?? RECONNECT_MS;
      this.o.log("mqtt connected", { url: this.o.url, serial });
      this.o.onConnected?.(serial);
      const commands = `${this.base}/cmd/+`;
      client.subscribe(commands, { qos: 1 }, (err, granted) => {
        if (this.client !== client) return;
        // A refused subscription (granted QoS 128) leaves the device deaf to its commands.
        if (err || !granted?.length || granted.some((g) => g.qos === 128)) {
          const error = err?.message ?? "granted QoS 128";
          this.o.log("mqtt subscription refused", { topic: commands, error });
        } else this.o.log("mqtt subscribed", { topic: commands });
      });
      if (this.latest) this.publish(`${this.base}/status`, this.latest, true);
      void this.flush();
    });
    client.on("message", (topic, payload) => {
      if (this.client === client) void this.command(topic, payload);
    });
    // Connection errors (TLS alerts, resets) are network errors: they never change the
    // agent's state; mqtt.js reconnects after reconnectPeriod. A CONNACK that refuses the
    // certificate comes from the verified broker (nothing unverified is parsed): the agent
    // decides whether it means going back to the previous certificate.
    client.on("error", (err) => {
      this.o.log("mqtt error", { error: err.message });
      const used = serial;
      const code = (err as { code?: unknown }).code;
      if (typeof code === "number" && err.message.startsWith("Connection refused")) {
        // mqtt.js schedules the next attempt right after this handler, with this period.
        refusals++;
        const base = this.o.reconnectMs ?? RECONNECT_MS;
        const bound = Math.min(this.o.maxReconnectMs ?? MAX_RECONNECT_MS, base * 2 ** Math.min(refusals, 20));
        const delay = Math.round(bound / 2 + (bound / 2) * (this.o.random ?? Math.random)());
        client.options.reconnectPeriod = delay;
        this.o.log("mqtt connection refused; asking again later", { code, refusals, delayMs: delay });
      }
      if (
        this.client === client &&
        typeof code === "number" &&
        CONNACK_AUTH_REFUSALS.includes(code) &&
        err.message.startsWith("Connection refused")
      )
        // After mqtt.js has finished with the refused connection.
        queueMicrotask(() => this.o.onRefused?.(used, code, err.message));
    });
  }

  status(doc: StatusDocument): void {
    this.latest = doc;
    if (this.client?.connected) this.publish(`${this.base}/status`, doc, true);
  }

  event(e: AgentEvent): void {
    this.queue.push(e);
    const max = this.o.maxQueue ?? 500;
    if (this.queue.length > max) this.queue.splice(0, this.queue.length - max);
    this.save();
    void this.flush();
  }

  /** After a rotation: a new session with the new certificate. */
  reconnect(): void {
    const old = this.client;
    this.client = undefined;
    // A flush on the old connection may never hear back; the new one flushes afresh.
    this.flushing = false;
    old?.end(true);
    this.connect();
  }

  /** An explicit `offline`, then a clean disconnect (the last will is not sent). */
  async stop(offline?: StatusDocument): Promise<void> {
    this.stopped = true;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    if (offline && client.connected) {
      await new Promise<void>((resolve) => {
        client.publish(`${this.base}/status`, JSON.stringify(offline), { qos: 1, retain: true }, () => resolve());
        setTimeout(resolve, 3_000).unref();
      });
    }
    // Without a connection nothing in flight can be acknowledged: do not wait for it.
    await new Promise<void>((resolve) => client.end(!client.connected, {}, () => resolve()));
  }

  private publish(topic: string, body: unknown, retain = false): void {
    this.client?.publish(topic, JSON.stringify(body), { qos: 1, retain });
  }

  private async flush(): Promise<void> {
    const client = this.client;
    if (this.flushing || !client?.connected) return;
    this.flushing = true;
    try {
      while (this.queue.length > 0 && client.connected && this.client === client && this.flushing) {
        const e = this.queue[0] as AgentEvent;
        const ok = await new Promise<boolean>((resolve) =>
          client.publish(`${this.base}/events`, JSON.stringify(e), { qos: 1 }, (err) => resolve(!err)),
        );
        if (!ok) break;
        // Only if still at the head: a newer flush may have delivered it meanwhile.
        if (this.queue[0]?.id === e.id) {
          this.queue.shift();
          this.save();
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private save(): void {
    this.o.writeFile(this.o.queueFile, this.queue.map((e) => `${JSON.stringify(e)}\n`).join(""));
  }

  private async command(topic: string, payload: Buffer): Promise<void> {
    const name = topic.slice(`${this.base}/cmd/`.length);
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(payload.toString("utf8")) as Record<string, unknown>;
    } catch {
      // a command without a body is still a command
    }
    const opId = typeof body.opId === "string" ? body.opId.slice(0, 64) : undefined;
    const result = isCommand(name)
      ? await this.o.onCommand(name, body).catch((e: Error) => ({ ok: false, error: e.message }))
      : { ok: false, error: `unknown command ${name.slice(0, 32)}` };
    if (opId && /^[\w.-]+$/.test(opId)) {
      this.publish(`${this.base}/cmd-result/${opId}`, { opId, command: name, ...result, at: new Date().toISOString() });
    }
  }
}
