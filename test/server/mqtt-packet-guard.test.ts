/**
 * The MQTT packet guard of the embedded broker: fixed headers read from a raw byte
 * stream however it is cut into chunks, and a refused header stops the connection
 * before the chunk carrying it reaches the MQTT parser.
 */
import { EventEmitter } from "node:events";
import type { TLSSocket } from "node:tls";
import { describe, expect, it } from "vitest";
import {
  GuardedConnection,
  MqttPacketGuard,
  type PacketLimits,
  type PacketRefusal,
} from "../../server/adapters/node/mqtt-packet-guard.ts";

const LIMITS: PacketLimits = { maxConnectBytes: 4096, maxPacketBytes: 20 * 1024 };

/** Remaining Length (MQTT 3.1.1 §2.2.3). */
function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

const packet = (typeByte: number, body: Uint8Array) =>
  Uint8Array.from([typeByte, ...remainingLength(body.length), ...body]);

function connect(clientId: string, extra = 0): Uint8Array {
  const id = new TextEncoder().encode(clientId);
  const variable = [0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60];
  return packet(0x10, Uint8Array.from([...variable, 0, id.length, ...id, ...new Uint8Array(extra)]));
}

function publish(topic: string, payloadBytes: number): Uint8Array {
  const t = new TextEncoder().encode(topic);
  return packet(0x30, Uint8Array.from([0, t.length, ...t, ...new Uint8Array(payloadBytes).fill(0x61)]));
}

/** `make(extra)` with `extra` chosen so the packet is `total` bytes long (the length field grows with it). */
function sized(total: number, make: (extra: number) => Uint8Array): Uint8Array {
  let extra = total - make(0).length;
  while (make(extra).length > total) extra--;
  return make(extra);
}

const PINGREQ = Uint8Array.from([0xc0, 0]);

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** Feeds `bytes` cut every `size` bytes; the first refusal and the offset of the chunk that drew it. */
function feed(bytes: Uint8Array, size: number, limits = LIMITS): { refusal: PacketRefusal | null; at: number } {
  const guard = new MqttPacketGuard(limits);
  for (let i = 0; i < bytes.length; i += size) {
    const refusal = guard.inspect(bytes.subarray(i, i + size));
    if (refusal) return { refusal, at: i };
  }
  return { refusal: null, at: bytes.length };
}

const CHUNKINGS = [1, 2, 3, 7, 64, 1500, 1 << 20];

describe("MQTT packet guard", () => {
  it("passes a session of packets within the limits, whole, coalesced or split byte by byte", () => {
    const maxPublish = sized(LIMITS.maxPacketBytes, (n) => publish("edgeid/v1/devices/dev-a/events", n));
    expect(maxPublish.length).toBe(LIMITS.maxPacketBytes);
    const session = concat(connect("dev-a"), publish("edgeid/v1/devices/dev-a/status", 300), PINGREQ, maxPublish);
    for (const size of CHUNKINGS)
      expect(feed(session, size), `chunks of ${size}`).toEqual({ refusal: null, at: session.length });
  });

  it("refuses a CONNECT announcing 256 MB at its header, before any of its body", () => {
    // 0x10, then Remaining Length 268,435,455 (ff ff ff 7f): the largest MQTT allows.
    const header = Uint8Array.from([0x10, 0xff, 0xff, 0xff, 0x7f]);
    const attack = concat(header, new Uint8Array(64 * 1024));
    for (const size of CHUNKINGS) {
      const r = feed(attack, size);
      expect(r.refusal, `chunks of ${size}`).toBe("connect_too_large");
      // The chunk that drew the refusal is the one that completed the header.
      expect(r.at, `chunks of ${size}`).toBeLessThan(header.length);
    }
  });

  it("bounds CONNECT by maxConnectBytes and later packets by maxPacketBytes", () => {
    const limits = { maxConnectBytes: 256, maxPacketBytes: 1024 };
    const fits = sized(256, (n) => connect("dev-a", n));
    expect(fits.length).toBe(256);
    expect(feed(fits, 7, limits).refusal).toBeNull();
    expect(
      feed(
        sized(257, (n) => connect("dev-a", n)),
        7,
        limits,
      ).refusal,
    ).toBe("connect_too_large");
    const justFits = sized(1024, (n) => publish("t", n));
    expect(justFits.length).toBe(1024);
    for (const size of CHUNKINGS) {
      expect(feed(concat(fits, justFits, PINGREQ), size, limits).refusal).toBeNull();
      expect(
        feed(
          concat(
            fits,
            PINGREQ,
            sized(1025, (n) => publish("t", n)),
          ),
          size,
          limits,
        ).refusal,
      ).toBe("packet_too_large");
    }
  });

  it("refuses a Remaining Length longer than 4 bytes, and a first packet that is not CONNECT", () => {
    for (const size of CHUNKINGS) {
      expect(feed(Uint8Array.from([0x10, 0x80, 0x80, 0x80, 0x80, 0x01]), size).refusal).toBe("malformed_packet");
      expect(feed(concat(connect("dev-a"), Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])), size).refusal).toBe(
        "malformed_packet",
      );
      expect(feed(publish("t", 10), size).refusal).toBe("not_connect");
    }
  });

  it("stays refused once it refused", () => {
    const guard = new MqttPacketGuard(LIMITS);
    expect(guard.inspect(Uint8Array.from([0x10, 0xff, 0xff, 0xff, 0x7f]))).toBe("connect_too_large");
    expect(guard.inspect(PINGREQ)).toBe("connect_too_large");
  });
});

/** A socket stand-in: records what the connection does to it. */
class FakeSocket extends EventEmitter {
  written: Buffer[] = [];
  destroyed = false;
  paused = false;
  bytesRead = 0;
  write(chunk: Buffer): boolean {
    this.written.push(chunk);
    return true;
  }
  end(done?: () => void): void {
    done?.();
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit("close");
  }
}

describe("guarded connection", () => {
  const open = () => {
    const socket = new FakeSocket();
    const refusals: PacketRefusal[] = [];
    const conn = new GuardedConnection(socket as unknown as TLSSocket, LIMITS, (r) => refusals.push(r));
    const passed: Buffer[] = [];
    conn.on("data", (c: Buffer) => passed.push(c));
    return { socket, conn, refusals, passed };
  };

  it("passes the bytes of good packets through unchanged, and writes go to the socket", async () => {
    const { socket, conn, passed } = open();
    const session = concat(connect("dev-a"), PINGREQ);
    socket.emit("data", Buffer.from(session.subarray(0, 5)));
    socket.emit("data", Buffer.from(session.subarray(5)));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(passed)).toEqual(Buffer.from(session));
    await new Promise<void>((r) => conn.write(Buffer.from([0x20, 2, 0, 0]), () => r()));
    expect(socket.written).toEqual([Buffer.from([0x20, 2, 0, 0])]);
    expect(socket.destroyed).toBe(false);
  });

  it("destroys the socket at a refused header and passes nothing of the chunk that carried it", async () => {
    const { socket, conn, refusals, passed } = open();
    socket.emit("data", Buffer.from([0x10, 0xff]));
    expect(socket.destroyed).toBe(false);
    socket.emit("data", Buffer.concat([Buffer.from([0xff, 0xff, 0x7f]), Buffer.alloc(16 * 1024)]));
    expect(socket.destroyed).toBe(true);
    expect(refusals).toEqual(["connect_too_large"]);
    // More bytes that arrive after the refusal are not read.
    socket.emit("data", Buffer.alloc(16 * 1024));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(passed).length).toBeLessThanOrEqual(2);
    expect(conn.destroyed).toBe(true);
  });
});
