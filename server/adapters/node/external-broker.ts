import { readFileSync } from "node:fs";
import { connect, type IClientOptions, type MqttClient } from "mqtt";
import { DEVICE_TOPICS, parseDeviceTopic } from "../../authority/mqtt-contract.ts";
import type { FleetLink, InboundMessage } from "../../ports/fleet-link.ts";

/**
 * The fleet loop through an external broker (Mosquitto): the server is a client with
 * its service certificate, reads every device's status, events and command results,
 * and publishes commands. The broker's ACL makes a topic's device id the publisher's
 * identity, so the topic is what names the device here.
 */

export interface ExternalBrokerOptions {
  url: string;
  /** PEM file paths. */
  clientCert: string;
  clientKey: string;
  ca: string;
  /** The certificate's identity, e.g. "service:edgeid": the MQTT client id. */
  clientId: string;
  onMessage: (m: InboundMessage) => void;
  log: (level: "info" | "warn", msg: string, fields?: Record<string, unknown>) => void;
}

export interface ExternalBroker extends FleetLink {
  /** Reads the certificate and key files again and reconnects with them (after a renewal). */
  reloadCredentials(): void;
  close(): Promise<void>;
}

/**
 * How a service identity connects to an external broker (the server, the bridge): its
 * certificate, the broker verified against our CA, and a persistent session, so that
 * what devices publish while the service restarts waits at the broker.
 */
export function serviceClientOptions(o: {
  clientId: string;
  clientCert: string;
  clientKey: string;
  ca: string;
}): IClientOptions {
  return {
    clientId: o.clientId,
    key: readFileSync(o.clientKey),
    cert: readFileSync(o.clientCert),
    ca: readFileSync(o.ca),
    rejectUnauthorized: true,
    clean: false,
    reconnectPeriod: 2_000,
    connectTimeout: 10_000,
    keepalive: 30,
  };
}

/** Every device's status, events and command results. */
export const DEVICE_SUBSCRIPTIONS = [
  `${DEVICE_TOPICS}/+/status`,
  `${DEVICE_TOPICS}/+/events`,
  `${DEVICE_TOPICS}/+/cmd-result/+`,
];

export function connectExternalBroker(o: ExternalBrokerOptions): ExternalBroker {
  const client: MqttClient = connect(o.url, serviceClientOptions(o));
  client.on("connect", (ack) => {
    o.log("info", "connected to the external mqtt broker", { url: o.url, sessionPresent: ack.sessionPresent });
    client.subscribe(
      DEVICE_SUBSCRIPTIONS,
      { qos: 1 },
      (err) => err && o.log("warn", "mqtt subscribe failed", { error: err.message }),
    );
  });
  client.on("error", (err) => o.log("warn", "external mqtt broker error", { error: err.message }));
  client.on("message", (topic, payload) => {
    const t = parseDeviceTopic(topic);
    if (!t) return;
    o.onMessage({ deviceId: t.deviceId, topic, payload, currentConnection: true });
  });
  return {
    publish: (topic, payload, opts) =>
      new Promise<void>((resolve, reject) =>
        client.publish(topic, payload, { qos: 1, retain: opts.retain }, (err) => (err ? reject(err) : resolve())),
      ),
    // Mosquitto cannot be asked to drop one client from outside; it refuses the
    // certificate at the next connection once it has reloaded the CRL.
    disconnect: async () => 0,
    connectedDevices: () => undefined,
    reloadCredentials: () => {
      // mqtt.js builds each reconnection's TLS from its options.
      Object.assign(client.options, {
        key: readFileSync(o.clientKey),
        cert: readFileSync(o.clientCert),
        ca: readFileSync(o.ca),
      });
      client.stream?.destroy();
    },
    close: () => new Promise<void>((resolve) => client.end(false, {}, () => resolve())),
  };
}
