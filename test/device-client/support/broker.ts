/**
 * A real MQTT broker (aedes, as the server embeds) over TLS on 127.0.0.1 for the agent's
 * tests: it records every CONNECT with the serial of the client certificate and what it
 * answered, refuses the serials a test names (CONNACK return code 5, not authorized, as
 * edgeid's broker refuses a certificate), can hold a serial's CONNACK until released, can
 * refuse a serial's subscriptions (SUBACK 0x80), and records what clients publish.
 */
import type { AddressInfo } from "node:net";
import { createServer, type TLSSocket } from "node:tls";
import { Aedes } from "aedes";

export interface TestBroker {
  port: number;
  url: string;
  /** Every CONNECT: the client certificate's serial (lower-case hex) and the CONNACK code sent. */
  connects: { serial: string; code: number }[];
  published: { topic: string; payload: string }[];
  /** Serials answered with CONNACK `code` (5 unless set) instead of 0. */
  refuse: Map<string, number>;
  /** Serials whose subscriptions are refused (granted QoS 128). */
  refuseSubscriptions: Set<string>;
  /** Serials whose CONNACK waits until `release()`. */
  hold: Set<string>;
  /** The serials of CONNECTs that were held. */
  held: string[];
  release(): void;
  /** The JSON payloads published on the topics ending with `suffix`. */
  messages(suffix: string): Record<string, unknown>[];
  close(): Promise<void>;
}

export async function testBroker(cert: { pem: string; key: string }): Promise<TestBroker> {
  const aedes = await Aedes.createBroker();
  const refuse = new Map<string, number>();
  const hold = new Set<string>();
  const refuseSubscriptions = new Set<string>();
  const connects: TestBroker["connects"] = [];
  const published: TestBroker["published"] = [];
  const held: string[] = [];
  let released: () => void = () => undefined;
  let gate = new Promise<void>((r) => {
    released = r;
  });
  aedes.authenticate = (client, _user, _password, done) => {
    const socket = client.conn as unknown as TLSSocket;
    const serial = String(socket.getPeerCertificate?.()?.serialNumber ?? "").toLowerCase();
    const answer = () => {
      const code = serial ? (refuse.get(serial) ?? 0) : 5;
      connects.push({ serial, code });
      if (code === 0) done(null, true);
      else done(Object.assign(new Error("refused for the test"), { returnCode: code as 5 }), false);
    };
    if (hold.has(serial)) {
      held.push(serial);
      void gate.then(answer);
    } else answer();
  };
  aedes.authorizeSubscribe = (client, sub, done) => {
    const socket = client.conn as unknown as TLSSocket;
    const serial = String(socket.getPeerCertificate?.()?.serialNumber ?? "").toLowerCase();
    done(null, refuseSubscriptions.has(serial) ? null : sub);
  };
  aedes.on("publish", (packet, client) => {
    if (client) published.push({ topic: packet.topic, payload: packet.payload.toString() });
  });
  // The device certificates of the tests are valid at the agents' injected time, not at the
  // real one: the broker asks for a client certificate and reads its serial, no more.
  const sockets = new Set<TLSSocket>();
  const server = createServer({ key: cert.key, cert: cert.pem, requestCert: true, rejectUnauthorized: false }, (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
    aedes.handle(s as never);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `mqtts://127.0.0.1:${port}`,
    connects,
    published,
    refuse,
    refuseSubscriptions,
    hold,
    held,
    release: () => {
      hold.clear();
      released();
      gate = new Promise<void>((r) => {
        released = r;
      });
    },
    messages: (suffix) =>
      published.filter((m) => m.topic.endsWith(suffix)).map((m) => JSON.parse(m.payload) as Record<string, unknown>),
    close: async () => {
      await new Promise<void>((r) => aedes.close(() => r()));
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
