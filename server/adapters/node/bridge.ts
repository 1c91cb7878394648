import { request } from "node:https";
import { connect, type MqttClient } from "mqtt";
import { DEVICE_SUBSCRIPTIONS, serviceClientOptions } from "./external-broker.ts";

/**
 * The bridge from an MQTT broker to a deployment with no broker of its own (Cloudflare
 * Workers): a client with a reader service certificate takes every device's status,
 * events and command results and posts them in batches to the operator API
 * (`POST /api/v1/fleet/messages`).
 *
 * Delivery is at least once: a message is acknowledged to the broker (PUBACK) only
 * after the API took the batch that holds it. While the API is unreachable nothing is
 * acknowledged, so the broker keeps the messages in the bridge's persistent session
 * (and stops sending at its in-flight limit); after a crash it sends them again. The
 * server's ingestion is idempotent (events by id, status by the session rule).
 */
export interface BridgeOptions {
  mqttUrl: string;
  /** PEM file paths: the bridge's service certificate and key, and the broker's CA. */
  clientCert: string;
  clientKey: string;
  ca: string;
  /** The MQTT client id: the certificate's identity, e.g. "service:bridge". */
  clientId: string;
  /** The deployment's base URL and an operator token. */
  server: string;
  token: string;
  /** PEM trust anchor for the server's TLS certificate (default: the system's). */
  serverCa?: string;
  /** Most messages per POST (the API takes up to 500). */
  batch: number;
  /** Longest a message waits for its batch to fill. */
  flushMs: number;
  log: (level: "info" | "warn", msg: string, fields?: Record<string, unknown>) => void;
}

interface Pending {
  topic: string;
  payload: string;
  ack: () => void;
}

export interface Bridge {
  /** Messages relayed and acknowledged so far. */
  relayed(): number;
  close(): Promise<void>;
}

export function startBridge(o: BridgeOptions): Bridge {
  let queue: Pending[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sending = false;
  let relayed = 0;
  let failures = 0;
  let closed = false;

  const post = (messages: { topic: string; payload: string }[]): Promise<void> =>
    new Promise((resolve, reject) => {
      const body = Buffer.from(JSON.stringify({ messages }));
      const req = request(
        new URL("/api/v1/fleet/messages", o.server),
        {
          method: "POST",
          ...(o.serverCa ? { ca: o.serverCa } : {}),
          timeout: 30_000,
          headers: {
            authorization: `Bearer ${o.token}`,
            "content-type": "application/json",
            "content-length": String(body.length),
          },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8").on("data", (c: string) => {
            text += c;
          });
          res.on("end", () =>
            res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`)),
          );
        },
      );
      req.on("timeout", () => req.destroy(new Error("no answer within 30 s")));
      req.on("error", reject);
      req.end(body);
    });

  const schedule = (ms: number) => {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, ms);
  };

  const flush = async (): Promise<void> => {
    if (sending || queue.length === 0) return;
    sending = true;
    const batch = queue.slice(0, o.batch);
    try {
      await post(batch.map(({ topic, payload }) => ({ topic, payload })));
      queue = queue.slice(batch.length);
      for (const m of batch) m.ack();
      relayed += batch.length;
      failures = 0;
    } catch (err) {
      failures++;
      o.log("warn", "bridge: the server did not take the batch; retrying", {
        messages: batch.length,
        error: (err as Error).message,
      });
    } finally {
      sending = false;
    }
    // More waiting, or a retry after a failure (backing off to 30 s).
    if (queue.length > 0) schedule(failures === 0 ? 0 : Math.min(30_000, 500 * 2 ** Math.min(failures, 6)));
  };

  const client: MqttClient = connect(o.mqttUrl, serviceClientOptions(o));
  // The PUBACK of a message goes out when its batch was taken, not on receipt.
  client.handleMessage = (packet, done) => {
    const topic = packet.topic;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload.toString("utf8") : String(packet.payload);
    queue.push({ topic, payload, ack: () => done() });
    if (queue.length >= o.batch) void flush();
    else schedule(o.flushMs);
  };
  client.on("connect", (ack) => {
    o.log("info", "bridge connected to the mqtt broker", { url: o.mqttUrl, sessionPresent: ack.sessionPresent });
    client.subscribe(
      DEVICE_SUBSCRIPTIONS,
      { qos: 1 },
      (err) => err && o.log("warn", "bridge: subscribe failed", { error: err.message }),
    );
  });
  client.on("error", (err) => o.log("warn", "bridge: mqtt error", { error: err.message }));

  return {
    relayed: () => relayed,
    close: async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      await new Promise<void>((r) => client.end(false, {}, () => r()));
    },
  };
}
