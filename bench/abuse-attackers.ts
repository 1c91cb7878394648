/**
 * The attackers of the abuse benchmark (bench/abuse.ts), run as a child process of
 * their own so that their client-side work (TLS, 256 MB of MQTT payload) does not
 * stall the event loop that measures the legitimate devices' latency. Each attack comes
 * from its own loopback address, so that a server with per-address refusal budgets can
 * tell the attackers from the devices (Linux routes all of 127.0.0.0/8 to loopback):
 *
 * - 127.0.0.2, refused EST: simpleenroll with wrong tokens, garbage bodies, broken
 *   Basic headers, no credentials, the wrong media type, bodies over the size limit;
 * - 127.0.0.3, OCSP: real serials spelled every way a CertID can be (SHA-1/SHA-256,
 *   NULL or absent hash parameters, INTEGERs padded with leading zero octets, with and
 *   without nonces) over POST and GET, and malformed or invalid requests;
 * - 127.0.0.4, MQTT: TLS connections with a revoked device's certificate that send a
 *   CONNECT fixed header announcing 256 MB and then stream bytes as fast as the socket
 *   takes them, reconnecting when dropped (raw node:tls: an MQTT client would not).
 *
 * Started by the parent with EDGEID_BENCH_ATTACKER=1 and an IPC channel. The parent
 * sends `start` with an AttackConfig, `stop-mqtt` (the server's memory reached the
 * benchmark's safety cap) and `stop`; the child answers `ready` once the attacks run
 * and `result` (AttackResult) after `stop`.
 */
import { randomBytes, randomInt } from "node:crypto";
import { type ConnectionOptions, connect, type TLSSocket } from "node:tls";
import { encodeOid, fromHex, sequence, TAG, tlv } from "../server/pki/der.ts";
import { id_sha1, id_sha256 } from "../server/pki/oids.ts";

export const ATTACKER_ADDRESSES = { est: "127.0.0.2", ocsp: "127.0.0.3", mqtt: "127.0.0.4" } as const;

export interface AttackConfig {
  /** https://127.0.0.1:PORT */
  url: string;
  mqttPort: number;
  ca: string;
  estConnections: number;
  ocspConnections: number;
  mqttConnections: number;
  /** The P-256 issuing CA's CertID hashes, hex. */
  issuer: Record<"SHA-1" | "SHA-256", { name: string; key: string }>;
  /** Serials (hex) of real certificates: the flood asks about these. */
  serials: string[];
  /** Revoked device certificates and their keys (PEM), for the MQTT connections. */
  revoked: { cert: string; key: string }[];
  /** Device ids that exist (their tokens were used) and valid CSRs, for wrong-token attempts. */
  deviceIds: string[];
  csrs: string[];
}

/** Answers by HTTP status, or `dropped` (the connection closed before the answer) / `connect error`. */
export type Tally = Record<string, number>;

export interface MqttAttackResult {
  connections: number;
  handshakes: number;
  /** Why connections ended, by error message or "closed by server". */
  ends: Tally;
  /** Payload bytes the sockets accepted. */
  bytesSent: number;
  /** The most payload one connection got in before it ended. */
  maxBytesOneConnection: number;
  /** The longest a connection stayed open, seconds. */
  longestSeconds: number;
  /** Seconds into the flood when the parent stopped it for the memory cap, if it did. */
  stoppedAt?: number;
}

export interface AttackResult {
  seconds: number;
  /** Per flood and kind of request: answers by status. */
  est: Record<string, Tally>;
  ocsp: Record<string, Tally>;
  mqtt: MqttAttackResult;
  /** CPU seconds the attacker process used. */
  cpuSeconds: number;
}

type Message = { type: "start"; config: AttackConfig } | { type: "stop-mqtt" } | { type: "stop" };

interface RawRequest {
  /** What the request is, for the tally. */
  kind: string;
  bytes: Buffer;
}

const MAX_REMAINING_LENGTH = Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]); // CONNECT, 268,435,455 bytes
const MQTT_CHUNK = Buffer.alloc(64 * 1024, 0x41);

/** tls.connect takes net.connect's options too; its types do not list localAddress. */
const from = (localAddress: string, options: ConnectionOptions): ConnectionOptions => ({
  ...options,
  ...{ localAddress },
});

const count = (t: Tally, key: string) => {
  t[key] = (t[key] ?? 0) + 1;
};

function httpRequest(
  host: string,
  method: "GET" | "POST",
  path: string,
  headers: Record<string, string>,
  body?: Uint8Array,
): Buffer {
  const lines = [`${method} ${path} HTTP/1.1`, `host: ${host}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (body) lines.push(`content-length: ${body.length}`);
  const head = Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
  return body ? Buffer.concat([head, body]) : head;
}

/**
 * One keep-alive TLS connection from a given source address, one request at a time;
 * reconnects after the server closes it. Answers are read by Content-Length.
 */
class FloodConnection {
  private socket: TLSSocket | undefined;
  private chunks: Buffer[] = [];
  private waiting: ((status: string) => void) | undefined;

  constructor(
    private readonly url: URL,
    private readonly ca: string,
    private readonly localAddress: string,
  ) {}

  private connect(): TLSSocket {
    const socket = connect(
      from(this.localAddress, { host: this.url.hostname, port: Number(this.url.port), ca: this.ca }),
    );
    socket.setNoDelay(true);
    let connected = false;
    socket.once("secureConnect", () => {
      connected = true;
    });
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.parse();
    });
    const fail = () => {
      if (this.socket === socket) this.socket = undefined;
      this.chunks = [];
      const w = this.waiting;
      this.waiting = undefined;
      w?.(connected ? "dropped" : "connect error");
    };
    socket.on("error", fail);
    socket.on("close", fail);
    return socket;
  }

  private parse(): void {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = [all];
    const end = all.indexOf("\r\n\r\n");
    if (end < 0) return;
    const head = all.subarray(0, end).toString("latin1");
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const status = head.slice(9, 12);
    if (!length) {
      // Not framed by length: take the status and start over on a new connection.
      this.finish(status, true);
      return;
    }
    const total = end + 4 + Number(length[1]);
    if (all.length < total) return;
    this.chunks = all.length > total ? [all.subarray(total)] : [];
    this.finish(status, /\r\nconnection:\s*close/i.test(head));
  }

  private finish(status: string, close: boolean): void {
    const w = this.waiting;
    this.waiting = undefined;
    if (close) {
      const s = this.socket;
      this.socket = undefined;
      this.chunks = [];
      s?.destroy();
    }
    w?.(status);
  }

  send(bytes: Buffer): Promise<string> {
    this.socket ??= this.connect();
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.socket?.write(bytes);
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }
}

/** `connections` clients sending `next()` back to back until stopped; answers by kind and status. */
async function flood(
  config: AttackConfig,
  localAddress: string,
  connections: number,
  next: () => RawRequest,
  running: () => boolean,
): Promise<Record<string, Tally>> {
  const url = new URL(config.url);
  const out: Record<string, Tally> = {};
  const client = async () => {
    const c = new FloodConnection(url, config.ca, localAddress);
    while (running()) {
      const r = next();
      const status = await c.send(r.bytes);
      out[r.kind] ??= {};
      count(out[r.kind] as Tally, status);
      // Do not spin on a refused connect (e.g. an address that cannot be bound).
      if (status === "connect error") await new Promise((res) => setTimeout(res, 100));
    }
    c.close();
  };
  await Promise.all(Array.from({ length: connections }, client));
  return out;
}

// --- OCSP ---

const NONCE_OID = encodeOid("1.3.6.1.5.5.7.48.1.2");
const pick = <T>(a: readonly T[]): T => a[randomInt(a.length)] as T;

interface Spelling {
  hash: "SHA-1" | "SHA-256";
  params: "null" | "absent";
  /** Leading zero octets before the minimal INTEGER content. */
  pad: number;
  nonce: boolean;
}

function minimalContent(serialHex: string): Uint8Array {
  const bytes = fromHex(serialHex.length % 2 ? `0${serialHex}` : serialHex);
  return (bytes[0] as number) & 0x80 ? Buffer.concat([Buffer.of(0), bytes]) : bytes;
}

function certId(config: AttackConfig, serialContent: Uint8Array, s: Omit<Spelling, "pad" | "nonce">): Uint8Array {
  const oid = encodeOid(s.hash === "SHA-1" ? id_sha1 : id_sha256);
  const h = config.issuer[s.hash];
  return sequence(
    s.params === "absent" ? sequence(oid) : sequence(oid, Uint8Array.of(TAG.NULL, 0)),
    tlv(TAG.OCTET_STRING, fromHex(h.name)),
    tlv(TAG.OCTET_STRING, fromHex(h.key)),
    tlv(TAG.INTEGER, serialContent),
  );
}

function ocspRequest(ids: Uint8Array[], nonce?: Uint8Array): Uint8Array {
  const ext = nonce
    ? [tlv(0xa2, sequence(sequence(NONCE_OID, tlv(TAG.OCTET_STRING, tlv(TAG.OCTET_STRING, nonce)))))]
    : [];
  return sequence(sequence(sequence(...ids.map((id) => sequence(id))), ...ext));
}

function spelled(config: AttackConfig, serialHex: string, s: Spelling): Uint8Array {
  const content = Buffer.concat([Buffer.alloc(s.pad), minimalContent(serialHex)]);
  return ocspRequest([certId(config, content, s)], s.nonce ? randomBytes(16) : undefined);
}

/** Malformed or invalid OCSP requests, each a different way to be wrong: what it is and its DER. */
function malformed(config: AttackConfig, serialHex: string): [string, Uint8Array] {
  const ok = { hash: "SHA-1", params: "null" } as const;
  const good = ocspRequest([certId(config, minimalContent(serialHex), ok)]);
  const hashes = (oid: string, length: number) =>
    ocspRequest([
      sequence(
        sequence(encodeOid(oid), Uint8Array.of(TAG.NULL, 0)),
        tlv(TAG.OCTET_STRING, randomBytes(length)),
        tlv(TAG.OCTET_STRING, randomBytes(length)),
        tlv(TAG.INTEGER, minimalContent(serialHex)),
      ),
    ]);
  switch (randomInt(10)) {
    case 0:
      return ["random bytes", randomBytes(randomInt(1, 200))];
    case 1:
      return ["truncated", good.subarray(0, randomInt(1, good.length))];
    case 2:
      return ["trailing byte", Buffer.concat([good, Buffer.of(0)])];
    case 3:
      return ["30-octet serial", ocspRequest([certId(config, Buffer.concat([Buffer.of(0x7f), randomBytes(29)]), ok)])];
    case 4:
      return [
        "zero or negative serial",
        ocspRequest([certId(config, randomInt(2) ? Buffer.of(0) : Buffer.of(0xff, 0x01), ok)]),
      ];
    case 5:
      return ["SHA-512 CertID", hashes("2.16.840.1.101.3.4.2.3", 64)];
    case 6:
      return ["SHA-1 CertID with 32-octet hashes", hashes(id_sha1, 32)];
    case 7:
      return [
        "64 CertIDs",
        ocspRequest(Array.from({ length: 64 }, () => certId(config, minimalContent(serialHex), ok))),
      ];
    case 8:
      return ["empty requestList", sequence(sequence(sequence()))];
    default:
      return ["1000-octet nonce", ocspRequest([certId(config, minimalContent(serialHex), ok)], randomBytes(1000))];
  }
}

function ocspRequests(config: AttackConfig): () => RawRequest {
  const host = new URL(config.url).host;
  const post = (kind: string, der: Uint8Array, type = "application/ocsp-request"): RawRequest => ({
    kind: `${kind} POST`,
    bytes: httpRequest(host, "POST", "/pki/ocsp", { "content-type": type }, der),
  });
  const get = (kind: string, der: Uint8Array): RawRequest => {
    const b64 = Buffer.from(der).toString(randomInt(2) ? "base64" : "base64url");
    return { kind: `${kind} GET`, bytes: httpRequest(host, "GET", `/pki/ocsp/${encodeURIComponent(b64)}`, {}) };
  };
  const send = (kind: string, der: Uint8Array) => (randomInt(2) ? post(kind, der) : get(kind, der));
  return () => {
    const serial = pick(config.serials);
    const spelling: Spelling = {
      hash: randomInt(2) ? "SHA-1" : "SHA-256",
      params: randomInt(2) ? "null" : "absent",
      pad: 0,
      nonce: randomInt(2) === 0,
    };
    const roll = randomInt(100);
    if (roll < 35) return send("ocsp minimal spelling", spelled(config, serial, spelling));
    if (roll < 70) return send("ocsp padded serial", spelled(config, serial, { ...spelling, pad: randomInt(1, 24) }));
    if (roll < 92) {
      const [what, der] = malformed(config, serial);
      return { ...send("", der), kind: `ocsp malformed: ${what}` };
    }
    if (roll < 96) return post("ocsp wrong media type", spelled(config, serial, spelling), "application/octet-stream");
    if (roll < 98) return post("ocsp oversized body", randomBytes(9 * 1024));
    return {
      kind: "ocsp bad base64 GET",
      bytes: httpRequest(host, "GET", `/pki/ocsp/${"%%%!!".repeat(randomInt(1, 50))}`, {}),
    };
  };
}

// --- refused EST ---

function estRequests(config: AttackConfig): () => RawRequest {
  const host = new URL(config.url).host;
  const path = "/.well-known/est/simpleenroll";
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const pkcs10 = { "content-type": "application/pkcs10" };
  const oversized = Buffer.alloc(70 * 1024, 0x41);
  const request = (kind: string, headers: Record<string, string>, body: Uint8Array): RawRequest => ({
    kind,
    bytes: httpRequest(host, "POST", path, headers, body),
  });
  return () => {
    const id = randomInt(2) ? pick(config.deviceIds) : `nobody-${randomInt(1e9)}`;
    const wrong = { ...pkcs10, authorization: `Basic ${b64(`${id}:${randomBytes(16).toString("hex")}`)}` };
    const csr = Buffer.from(pick(config.csrs), "latin1");
    const roll = randomInt(100);
    if (roll < 40) return request("est wrong token", wrong, csr);
    if (roll < 60) return request("est garbage body", wrong, randomBytes(randomInt(1, 600)));
    if (roll < 80) {
      const authorization = pick([
        "Basic !!!!",
        `Basic ${b64("no-colon-here")}`,
        "Basic ",
        `Basic ${b64(`${id}:`)}`,
        `Bearer ${randomBytes(24).toString("hex")}`,
        `Basic ${b64(`${"x".repeat(4000)}:${"y".repeat(4000)}`)}`,
      ]);
      return request("est bad Basic header", { ...pkcs10, authorization }, csr);
    }
    if (roll < 90) return request("est no credentials", pkcs10, csr);
    if (roll < 97) return request("est wrong media type", { ...wrong, "content-type": "text/plain" }, csr);
    return request("est oversized body", wrong, oversized);
  };
}

// --- MQTT ---

function mqttAttack(
  config: AttackConfig,
  running: () => boolean,
  t0: number,
): { result: MqttAttackResult; stop: () => void; done: Promise<void> } {
  const result: MqttAttackResult = {
    connections: 0,
    handshakes: 0,
    ends: {},
    bytesSent: 0,
    maxBytesOneConnection: 0,
    longestSeconds: 0,
  };
  const open = new Set<TLSSocket>();
  let stopped = false;
  const attacker = (i: number) =>
    new Promise<void>((resolve) => {
      const again = () => {
        if (stopped || !running()) return resolve();
        const identity = config.revoked[i % config.revoked.length] as { cert: string; key: string };
        const socket = connect(
          from(ATTACKER_ADDRESSES.mqtt, {
            host: "127.0.0.1",
            port: config.mqttPort,
            ca: config.ca,
            cert: identity.cert,
            key: identity.key,
          }),
        );
        open.add(socket);
        result.connections++;
        const started = performance.now();
        let handed = 0;
        let error: string | undefined;
        const pump = () => {
          while (!stopped && running() && !socket.destroyed) {
            handed += MQTT_CHUNK.length;
            if (!socket.write(MQTT_CHUNK)) return;
          }
        };
        socket.once("secureConnect", () => {
          result.handshakes++;
          socket.write(MAX_REMAINING_LENGTH);
          pump();
        });
        socket.on("drain", pump);
        socket.on("data", () => undefined);
        socket.on("error", (e) => {
          error = e.message;
        });
        socket.once("close", () => {
          open.delete(socket);
          const sent = Math.max(0, handed - socket.writableLength);
          result.bytesSent += sent;
          result.maxBytesOneConnection = Math.max(result.maxBytesOneConnection, sent);
          result.longestSeconds = Math.max(result.longestSeconds, (performance.now() - started) / 1000);
          count(result.ends, stopped || !running() ? "closed by the benchmark" : (error ?? "closed by server"));
          setTimeout(again, 20);
        });
      };
      again();
    });
  const done = Promise.all(Array.from({ length: config.mqttConnections }, (_, i) => attacker(i))).then(() => {});
  return {
    result,
    stop: () => {
      if (stopped) return;
      stopped = true;
      result.stoppedAt ??= (performance.now() - t0) / 1000;
      for (const s of open) s.destroy();
    },
    done,
  };
}

async function attack(config: AttackConfig, stopSignal: Promise<void>, mqttStop: Promise<void>): Promise<AttackResult> {
  let running = true;
  const isRunning = () => running;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const mqtt = mqttAttack(config, isRunning, t0);
  void mqttStop.then(() => mqtt.stop());
  const est = flood(config, ATTACKER_ADDRESSES.est, config.estConnections, estRequests(config), isRunning);
  const ocsp = flood(config, ATTACKER_ADDRESSES.ocsp, config.ocspConnections, ocspRequests(config), isRunning);
  process.send?.({ type: "ready" });
  await stopSignal;
  running = false;
  const stoppedByCap = mqtt.result.stoppedAt;
  mqtt.stop();
  if (stoppedByCap === undefined) delete mqtt.result.stoppedAt;
  const [estResult, ocspResult] = await Promise.all([est, ocsp, mqtt.done]);
  const cpu = process.cpuUsage(cpu0);
  return {
    seconds: (performance.now() - t0) / 1000,
    est: estResult,
    ocsp: ocspResult,
    mqtt: mqtt.result,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
}

if (process.send && process.env.EDGEID_BENCH_ATTACKER === "1") {
  let stop: () => void = () => undefined;
  let stopMqtt: () => void = () => undefined;
  const stopSignal = new Promise<void>((r) => {
    stop = r;
  });
  const mqttStop = new Promise<void>((r) => {
    stopMqtt = r;
  });
  process.on("message", (m: Message) => {
    if (m.type === "start") {
      void attack(m.config, stopSignal, mqttStop).then((result) => {
        process.send?.({ type: "result", result }, () => process.exit(0));
      });
    } else if (m.type === "stop-mqtt") stopMqtt();
    else stop();
  });
}
