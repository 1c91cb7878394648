import { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";

/**
 * Bounds MQTT packets before anything buffers them. The MQTT parser behind aedes
 * collects a packet until its announced length has arrived, whatever that length is (up
 * to 256 MB); this guard reads only the fixed header of each packet (MQTT 3.1.1 §2.2:
 * the type byte and the 1–4 byte Remaining Length, §2.2.3) from the raw stream and
 * refuses a connection whose next packet would be too large before its body is passed
 * on. It never copies a byte: a packet body is skipped by counting.
 */

export interface PacketLimits {
  /** Largest first packet (CONNECT, with its will), fixed header included. */
  maxConnectBytes: number;
  /** Largest packet after CONNECT, fixed header included. */
  maxPacketBytes: number;
}

export type PacketRefusal = "packet_too_large" | "connect_too_large" | "malformed_packet" | "not_connect";

/** MQTT control packet type 1 (§2.2.1). */
const CONNECT = 1;

/** The fixed-header reader: one per connection, fed every chunk in order. */
export class MqttPacketGuard {
  /** Body bytes of the current packet still to skip; 0 when the next byte is a type byte. */
  private bodyLeft = 0;
  /** Inside a fixed header: the type byte is read, the Remaining Length is being read. */
  private inHeader = false;
  private packetType = 0;
  private length = 0;
  private lengthBytes = 0;
  private packets = 0;
  private refusal: PacketRefusal | null = null;

  constructor(private readonly limits: PacketLimits) {}

  /** Reads one chunk; null while every header so far is within the limits, else why not (sticky). */
  inspect(chunk: Uint8Array): PacketRefusal | null {
    if (this.refusal) return this.refusal;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.bodyLeft > 0) {
        const skip = Math.min(this.bodyLeft, n - i);
        this.bodyLeft -= skip;
        i += skip;
        continue;
      }
      const byte = chunk[i++] as number;
      if (!this.inHeader) {
        this.inHeader = true;
        this.packetType = byte >> 4;
        this.length = 0;
        this.lengthBytes = 0;
        continue;
      }
      // Remaining Length: 7 bits a byte, least significant first, at most 4 bytes (§2.2.3).
      this.length += (byte & 0x7f) * 128 ** this.lengthBytes;
      this.lengthBytes++;
      if (byte & 0x80) {
        if (this.lengthBytes === 4) return this.refuse("malformed_packet");
        continue;
      }
      const refusal = this.admit(1 + this.lengthBytes + this.length);
      if (refusal) return this.refuse(refusal);
      this.inHeader = false;
      this.bodyLeft = this.length;
    }
    return null;
  }

  private admit(size: number): PacketRefusal | null {
    const first = this.packets++ === 0;
    if (first) {
      // The first packet must be CONNECT (MQTT-3.1.0-1); nothing else is read before it.
      if (this.packetType !== CONNECT) return "not_connect";
      return size > this.limits.maxConnectBytes ? "connect_too_large" : null;
    }
    return size > this.limits.maxPacketBytes ? "packet_too_large" : null;
  }

  private refuse(reason: PacketRefusal): PacketRefusal {
    this.refusal = reason;
    return reason;
  }
}

/**
 * The connection aedes reads: the TLS socket's bytes pass through the guard on their
 * way in (and nothing is held back: the guard only reads headers); what aedes writes
 * goes straight to the socket. A refused header destroys the socket at once, before
 * the chunk that carried it is passed on.
 */
export class GuardedConnection extends Duplex {
  private readonly guard: MqttPacketGuard;

  constructor(
    readonly socket: TLSSocket,
    limits: PacketLimits,
    onRefused: (reason: PacketRefusal) => void,
  ) {
    super({ allowHalfOpen: false });
    this.guard = new MqttPacketGuard(limits);
    socket.on("data", (chunk: Buffer) => {
      const refusal = this.guard.inspect(chunk);
      if (refusal) {
        socket.removeAllListeners("data");
        // Told first: the socket still knows its peer's address.
        onRefused(refusal);
        socket.destroy();
        this.destroy();
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
    socket.on("drain", () => this.emit("drain"));
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.socket.write(chunk)) done();
    else this.socket.once("drain", () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.socket.end(() => done());
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.socket.destroy();
    done(err);
  }
}
