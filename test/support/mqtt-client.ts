import { readFileSync } from "node:fs";
import { connect, type IClientSubscribeOptions, type MqttClient } from "mqtt";

/**
 * An MQTT client for the tests (mqtt.js, the same library the agent uses, but driven
 * by hand): it records every message and how its connection ended.
 */
export interface TestClient {
  client: MqttClient;
  messages: { topic: string; payload: string; retain: boolean; at: number }[];
  /** Resolves when the connection closes (with the time it did). */
  closed: Promise<number>;
  /** Waits for a message matching `pred` (already received or to come). */
  next(
    pred: (m: { topic: string; body: Record<string, unknown>; retain: boolean }) => boolean,
    ms?: number,
  ): Promise<{
    topic: string;
    body: Record<string, unknown>;
    retain: boolean;
    at: number;
  }>;
  /** SUBACK granted QoS per filter (128 = refused). */
  subscribe(filter: string | string[], opts?: IClientSubscribeOptions): Promise<number[]>;
  publish(topic: string, body: unknown, opts?: { retain?: boolean }): Promise<void>;
  end(): Promise<void>;
}

export type ConnectOutcome = { ok: true; c: TestClient } | { ok: false; error: string };

export async function mqttConnect(
  url: string,
  opts: { clientId: string; cert?: string; key?: string; ca: string; clean?: boolean; timeoutMs?: number },
): Promise<ConnectOutcome> {
  const client = connect(url, {
    clientId: opts.clientId,
    ...(opts.cert ? { cert: readFileSync(opts.cert) } : {}),
    ...(opts.key ? { key: readFileSync(opts.key) } : {}),
    ca: readFileSync(opts.ca),
    rejectUnauthorized: true,
    reconnectPeriod: 0,
    connectTimeout: opts.timeoutMs ?? 10_000,
    clean: opts.clean ?? true,
    protocolVersion: 4,
  });
  const messages: TestClient["messages"] = [];
  client.on("message", (topic, payload, packet) =>
    messages.push({ topic, payload: payload.toString("utf8"), retain: packet.retain, at: Date.now() }),
  );
  let closedAt: (t: number) => void = () => undefined;
  const closed = new Promise<number>((r) => {
    closedAt = r;
  });
  client.on("close", () => closedAt(Date.now()));
  const outcome = await new Promise<{ ok: true } | { ok: false; error: string }>((resolve) => {
    client.once("connect", () => resolve({ ok: true }));
    client.once("error", (err) => resolve({ ok: false, error: err.message }));
    client.once("close", () => resolve({ ok: false, error: "connection closed before CONNACK" }));
  });
  if (!outcome.ok) {
    client.end(true);
    return outcome;
  }
  const parse = (m: TestClient["messages"][number]) => {
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(m.payload) as Record<string, unknown>;
    } catch {
      // not JSON
    }
    return { topic: m.topic, body, retain: m.retain, at: m.at };
  };
  const c: TestClient = {
    client,
    messages,
    closed,
    next: (pred, ms = 10_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const hit = messages.map(parse).find(pred);
          if (hit) {
            clearInterval(timer);
            clearTimeout(deadline);
            resolve(hit);
          }
        };
        const timer = setInterval(check, 20);
        const deadline = setTimeout(() => {
          clearInterval(timer);
          reject(new Error(`no matching message within ${ms} ms; got ${JSON.stringify(messages.map((m) => m.topic))}`));
        }, ms);
        check();
      }),
    subscribe: (filter, o) =>
      new Promise((resolve, reject) =>
        client.subscribe(filter, { qos: 1, ...o }, (err, granted) => {
          // mqtt.js reports a refused filter (SUBACK 0x80) as an error carrying the SUBACK.
          const suback = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted;
          if (suback) resolve(suback);
          else if (err) reject(err);
          else resolve((granted ?? []).map((g) => g.qos));
        }),
      ),
    publish: (topic, body, o) =>
      new Promise((resolve, reject) =>
        client.publish(
          topic,
          typeof body === "string" ? body : JSON.stringify(body),
          { qos: 1, retain: o?.retain ?? false },
          (err) => (err ? reject(err) : resolve()),
        ),
      ),
    end: () => new Promise((resolve) => client.end(false, {}, () => resolve())),
  };
  return { ok: true, c };
}
