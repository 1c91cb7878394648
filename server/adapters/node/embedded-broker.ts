import { randomUUID } from "node:crypto";
import type { Socket } from "node:net";
import { createServer, type Server, type TLSSocket } from "node:tls";
import { Aedes, type Client } from "aedes";
import type { AuthorityDeps } from "../../authority/deps.ts";
import {
  admitMqttClient,
  type MqttIdentity,
  mqttSessionClosed,
  mqttSessionOpened,
} from "../../authority/device-reports.ts";
import { AuthorityError } from "../../authority/errors.ts";
import { mayPublish, maySubscribe } from "../../authority/mqtt-contract.ts";
import type { Refusals } from "../../authority/refusals.ts";
import type { FleetLink, InboundMessage } from "../../ports/fleet-link.ts";
import { boundOutgoingQueues, type OutgoingQueues } from "./bounded-outgoing-queue.ts";
import { LISTENER_TLS } from "./listener-tls.ts";
import { GuardedConnection, type PacketRefusal } from "./mqtt-packet-guard.ts";

/**
 * The embedded MQTT broker (aedes) behind TLS with a client certificate from our CA.
 * Who a connection is comes from the live database at CONNECT (admitMqttClient);
 * topics are authorized per identity (authority/mqtt-contract.ts); revocation closes
 * the connections that use the revoked certificate.
 */

export interface BrokerTls {
  /** One key and certificate per issuing CA (the client gets one it can verify: LISTENER_TLS), or one. */
  key: Buffer | { pem: Buffer; passphrase?: string }[];
  passphrase?: string;
  cert: Buffer | Buffer[];
  /** Our CA certificates: client certificates must chain to them. */
  ca: Buffer[];
}

export type RefusalReason =
  | "tls"
  | "unknown_certificate"
  | "certificate_revoked"
  | "certificate_expired"
  | "certificate_not_yet_valid"
  | "device_not_active"
  | "client_id_mismatch"
  /** The client's address spent its refused-request budget (limits.refusals). */
  | "rate_limited"
  | "publish_denied"
  | "subscribe_denied"
  | PacketRefusal
  /** mqtt.maxConnections reached: the TCP connection was dropped before TLS. */
  | "too_many_connections"
  /** mqtt.maxConnectionsPerCertificate reached for this certificate. */
  | "too_many_connections_per_certificate"
  /** A client's outgoing queue is full (mqtt.maxQueuedMessages): a message for it was dropped. */
  | "queue_full"
  | "internal";

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  tls: BrokerTls;
  deps: Pick<AuthorityDeps, "storage" | "clock" | "digest">;
  /** Refused CONNECTs are audited within a budget per client address, and dropped past it. */
  refusals: Refusals;
  maxMessageBytes: number;
  /** The bounds of mqtt.* in the configuration (schema.ts says what each is). */
  limits: BrokerLimits;
  onMessage: (m: InboundMessage) => void;
  onRefused: (reason: RefusalReason) => void;
  log: (level: "info" | "warn", msg: string, fields?: Record<string, unknown>) => void;
}

export interface BrokerLimits {
  maxPacketBytes: number;
  maxConnectBytes: number;
  connectTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerCertificate: number;
  maxInflightMessages: number;
  maxQueuedMessages: number;
}

interface Connection {
  identity: MqttIdentity;
  sessionId: string;
  /** Replaced by a newer connection with the same client id: its last will is not current. */
  replaced: boolean;
  /** Its certificate was revoked: nothing more from it is accepted, not even its last will. */
  revoked: boolean;
  /** The first refused publish or subscribe is logged; the rest are only counted. */
  warned: boolean;
  /** Its certificate expired while it was connected: the broker closed it. */
  expired: boolean;
  /** Closes the connection when its certificate expires. */
  expiry?: ReturnType<typeof setTimeout>;
}

/** The error a connection dropped before TLS for its address's refusal budget is destroyed with. */
const DROPPED_OVER_BUDGET = "EDGEID_OVER_REFUSAL_BUDGET";

/** setTimeout's longest delay; longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface EmbeddedBroker extends FleetLink {
  port: number;
  url: string;
  /** Swaps the listener certificate (renewal) for new connections. */
  setTls(tls: BrokerTls): void;
  close(): Promise<void>;
}

/** aedes keeps its connected clients by id; its types do not say so. */
function clientsOf(aedes: Aedes): Record<string, Client> {
  return (aedes as unknown as { clients: Record<string, Client> }).clients;
}

/** The TLS socket under a client's guarded connection. */
function socketOf(client: Client): TLSSocket {
  return (client.conn as unknown as GuardedConnection).socket;
}

function remoteOf(socket: TLSSocket | undefined): string | null {
  if (!socket?.remoteAddress) return null;
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

export async function startEmbeddedBroker(o: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const aedes = await Aedes.createBroker({
    // Device ids are up to 64 characters; MQTT 3.1 caps client ids at 23 by default.
    maxClientsIdLength: 128,
    // Counted from the TLS handshake's end: a connection that sends no CONNECT is closed.
    connectTimeout: o.limits.connectTimeoutMs,
    heartbeatInterval: 60_000,
    // A client that does not read what it is sent is closed rather than buffered for.
    drainTimeout: 30_000,
    // Packets a client may send before its CONNACK (they wait for the database check).
    queueLimit: 16,
    maxInflightInbound: o.limits.maxInflightMessages,
  });
  const connections = new WeakMap<Client, Connection>();

  const refuse = (reason: RefusalReason) => o.onRefused(reason);
  /** Refusals with no audit record of their own (packets, handshakes) still spend the address's budget. */
  const spendBudget = (address: string | undefined, reason: string) =>
    void o.refusals
      .count({ action: "mqtt.connect", remote: address ?? null }, reason)
      .catch((err: unknown) => o.log("warn", "refusal aggregate not written", { error: String(err) }));
  const persistence = (aedes as unknown as { persistence: OutgoingQueues }).persistence;
  boundOutgoingQueues(persistence, o.limits.maxQueuedMessages, () => refuse("queue_full"));

  aedes.authenticate = (client, _username, _password, done) => {
    const socket = socketOf(client);
    const der = socket.getPeerCertificate?.(false)?.raw;
    if (!socket.authorized || !der) {
      refuse("tls");
      const err = Object.assign(new Error("a client certificate from this CA is required"), { returnCode: 5 as const });
      done(err, false);
      return;
    }
    admitMqttClient(o.deps, o.refusals, {
      certificate: new Uint8Array(der),
      clientId: client.id,
      remote: remoteOf(socket),
      address: socket.remoteAddress ?? null,
    }).then(
      (identity) => {
        // A connection with the same client id that is still open is taken over
        // (MQTT-3.1.4-2). With the same certificate that is either a reconnect the
        // broker has not noticed yet, or two holders of one identity.
        const previous = clientsOf(aedes)[client.id];
        const before = previous ? connections.get(previous) : undefined;
        if (before) before.replaced = true;
        const conn: Connection = {
          identity,
          sessionId: randomUUID(),
          replaced: false,
          revoked: false,
          warned: false,
          expired: false,
        };
        connections.set(client, conn);
        // A connection lives no longer than its certificate: a device that rotated
        // reconnects with the new one; one that did not is closed at expiry.
        const watchExpiry = () => {
          const left = identity.notAfter.getTime() - o.deps.clock.now().getTime();
          if (left > 0) {
            conn.expiry = setTimeout(watchExpiry, Math.min(left, MAX_TIMER_MS));
            conn.expiry.unref();
            return;
          }
          conn.expired = true;
          client.close();
        };
        watchExpiry();
        const tookOver =
          before && !previous?.closed && before.identity.serial === identity.serial ? before.sessionId : null;
        mqttSessionOpened(o.deps, {
          id: conn.sessionId,
          deviceId: identity.kind === "device" ? identity.deviceId : `service:${identity.name}`,
          serial: identity.serial,
          remote: remoteOf(socket),
          connectedAt: o.deps.clock.now(),
          disconnectedAt: null,
          closeReason: null,
          tookOver,
        }).then(
          () => done(null, true),
          (err: unknown) => {
            clearTimeout(conn.expiry);
            refuse("internal");
            done(Object.assign(new Error(String(err)), { returnCode: 3 as const }), false);
          },
        );
      },
      (err: unknown) => {
        const reason = (err instanceof AuthorityError ? err.reason : "internal") as RefusalReason;
        refuse(reason);
        // Past its refusal budget a client is only counted: no line per attempt.
        if (reason !== "rate_limited")
          o.log("info", "mqtt connection refused", {
            reason,
            clientId: client.id?.slice(0, 64),
            remote: remoteOf(socket),
          });
        done(
          Object.assign(new Error(reason), { returnCode: reason === "internal" ? (3 as const) : (5 as const) }),
          false,
        );
      },
    );
  };

  const denied = (client: Client, conn: Connection | undefined, reason: RefusalReason, topic: string) => {
    refuse(reason);
    if (conn && !conn.warned) {
      conn.warned = true;
      o.log("warn", "mqtt topic refused", { reason, clientId: client.id, topic: topic.slice(0, 200) });
    }
  };

  aedes.authorizePublish = (client, packet, done) => {
    if (!client) return done(null); // a will of a broker that is gone: nobody to check
    const conn = connections.get(client);
    const ok =
      conn !== undefined &&
      !conn.revoked &&
      mayPublish(conn.identity, packet.topic) &&
      packet.payload.length <= o.maxMessageBytes &&
      // Only a device's status is retained (the contract): nothing else may be.
      (!packet.retain || packet.topic.endsWith("/status"));
    if (!ok) {
      if (!conn?.revoked) denied(client, conn, "publish_denied", packet.topic);
      return done(new Error("not authorized"));
    }
    done(null);
  };

  aedes.authorizeSubscribe = (client, sub, done) => {
    const conn = connections.get(client);
    if (!conn || conn.revoked || !maySubscribe(conn.identity, sub.topic)) {
      denied(client, conn, "subscribe_denied", sub.topic);
      return done(null, null); // SUBACK 0x80 for this filter
    }
    done(null, sub);
  };

  aedes.on("publish", (packet, client) => {
    if (!client) return;
    const conn = connections.get(client);
    if (conn?.identity.kind !== "device") return;
    o.onMessage({
      deviceId: conn.identity.deviceId,
      topic: packet.topic,
      payload: packet.payload as Buffer,
      currentConnection: !conn.replaced,
    });
  });

  /** Open connections by client certificate serial. */
  const perCertificate = new Map<string, number>();
  const server: Server = createServer(
    {
      ...LISTENER_TLS,
      ...o.tls,
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: o.limits.connectTimeoutMs,
    },
    (socket) => {
      const serial = socket.getPeerCertificate(false)?.serialNumber ?? "";
      const open = perCertificate.get(serial) ?? 0;
      if (open >= o.limits.maxConnectionsPerCertificate) {
        refuse("too_many_connections_per_certificate");
        o.log("info", "mqtt connection refused", {
          reason: "too_many_connections_per_certificate",
          serial,
          remote: remoteOf(socket),
        });
        socket.destroy();
        return;
      }
      perCertificate.set(serial, open + 1);
      socket.once("close", () => {
        const n = (perCertificate.get(serial) ?? 1) - 1;
        if (n > 0) perCertificate.set(serial, n);
        else perCertificate.delete(serial);
      });
      const conn = new GuardedConnection(socket, o.limits, (reason) => {
        refuse(reason);
        spendBudget(socket.remoteAddress, reason);
        o.log("info", "mqtt packet refused", { reason, remote: remoteOf(socket), bytesRead: socket.bytesRead });
      });
      aedes.handle(conn as never);
    },
  );
  // A client address past its refused-request budget is dropped before its TLS handshake
  // (counted into the window's aggregate record, like its other refusals).
  server.on("connection", (socket: Socket) => {
    try {
      o.refusals.admit({ action: "mqtt.connect", remote: socket.remoteAddress ?? null });
    } catch {
      refuse("rate_limited");
      // The error reaches the TLS layer's tlsClientError, which knows it by its code.
      socket.destroy(Object.assign(new Error("over its refusal budget"), { code: DROPPED_OVER_BUDGET }));
    }
  });
  // Counts TCP connections, handshakes included: beyond it the server drops new ones.
  server.maxConnections = o.limits.maxConnections;
  server.on("drop", () => refuse("too_many_connections"));
  server.on("tlsClientError", (err, socket) => {
    // A handshake timeout (handshakeTimeout) is reported here and closes nothing by itself.
    socket.destroy();
    // Dropped above for its address's budget: already counted, and not logged per attempt.
    if ((err as NodeJS.ErrnoException).code === DROPPED_OVER_BUDGET) return;
    refuse("tls");
    spendBudget(socket.remoteAddress, "tls");
    o.log("info", "mqtt TLS handshake refused", { error: err.message, remote: remoteOf(socket) });
  });
  aedes.on("connectionError", (client, err) =>
    o.log("info", "mqtt connection error", { clientId: client.id?.slice(0, 64), error: err.message }),
  );
  aedes.on("clientError", (client, err) =>
    o.log("info", "mqtt client error", { clientId: client.id?.slice(0, 64), error: err.message }),
  );
  // Every registered client ends here, however its connection ended.
  const closing = new Set<Promise<void>>();
  aedes.on("clientDisconnect", (client) => {
    const conn = connections.get(client);
    if (!conn) return;
    clearTimeout(conn.expiry);
    const reason = conn.revoked ? "revoked" : conn.expired ? "expired" : conn.replaced ? "taken over" : "closed";
    const write = mqttSessionClosed(o.deps, conn.sessionId, reason).catch(() => undefined);
    closing.add(write);
    void write.then(() => closing.delete(write));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  // Sessions a previous run left open ended with it.
  await o.deps.storage.apply([{ kind: "closeAllMqttSessions", at: o.deps.clock.now(), reason: "broker restarted" }]);
  o.log("info", "mqtt broker listening", { url: `mqtts://${host}:${port}` });

  return {
    port,
    url: `mqtts://${host}:${port}`,
    publish: (topic, payload, opts) =>
      new Promise<void>((resolve, reject) =>
        aedes.publish(
          { cmd: "publish", topic, payload: Buffer.from(payload), qos: 1, retain: opts.retain, dup: false },
          (err?: Error | null) => (err ? reject(err) : resolve()),
        ),
      ),
    disconnect: async (serial) => {
      let closed = 0;
      for (const client of Object.values(clientsOf(aedes))) {
        const conn = connections.get(client);
        if (!conn || conn.identity.serial !== serial) continue;
        conn.revoked = true;
        closed++;
        await new Promise<void>((resolve) => client.close(() => resolve()));
        // Its persistent session (clean: false) goes too: nothing is kept for a revoked identity.
        const persistence = (aedes as unknown as { persistence: { cleanSubscriptions(c: Client): Promise<void> } })
          .persistence;
        await persistence.cleanSubscriptions(client).catch(() => undefined);
      }
      return closed;
    },
    connectedDevices: () => {
      let n = 0;
      for (const client of Object.values(clientsOf(aedes))) {
        if (connections.get(client)?.identity.kind === "device" && client.connected) n++;
      }
      return n;
    },
    setTls: (tls) => server.setSecureContext({ ...LISTENER_TLS, ...tls }),
    close: async () => {
      server.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      // Their session rows are closed before the database is.
      await Promise.all([...closing]);
    },
  };
}
