import { Duplex } from "node:stream";
import { type ConnectionOptions, connect, type TLSSocket } from "node:tls";

/**
 * A TLS connection that carries nothing, either way, until `verify` accepted the peer.
 *
 * The check runs when the handshake completes (`secureConnect`), before the first byte
 * of application data is written or read: what the caller writes meanwhile (the MQTT
 * CONNECT) is held here, and what the peer sends (a CONNACK, a PUBLISH) stays unread
 * in the socket. A peer that fails the check is disconnected with both unseen.
 *
 * Node calls `checkServerIdentity` only after OpenSSL's own verification passed, which
 * uses the system clock; the agent verifies at its own time instead (tls-check.ts), so
 * OpenSSL's verdict is not asked for (`rejectUnauthorized: false`) and this stream is
 * what keeps the connection shut until the agent's verdict.
 */
export class VerifiedTlsStream extends Duplex {
  readonly socket: TLSSocket;
  private verified = false;
  private peerEnded = false;
  private held: { chunk: Buffer; callback: (err?: Error | null) => void }[] = [];
  private finalCallback: ((err?: Error | null) => void) | undefined;

  constructor(options: ConnectionOptions, verify: (socket: TLSSocket) => string | undefined) {
    super();
    const socket = connect({ ...options, rejectUnauthorized: false });
    this.socket = socket;
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => {
      // After a clean end, what the peer sent last (a cmd/revoked before it closed) is
      // read first: close once the reader has seen the end.
      if (this.verified && this.peerEnded && !this.readableEnded) this.once("end", () => this.destroy());
      else this.destroy();
    });
    socket.once("secureConnect", () => {
      const problem = verify(socket);
      if (problem) {
        // mqtt.js reports stream errors that carry a code.
        this.destroy(Object.assign(new Error(problem), { code: "ERR_PEER_REFUSED" }));
        return;
      }
      this.verified = true;
      socket.on("data", (chunk: Buffer) => {
        if (!this.push(chunk)) socket.pause();
      });
      socket.on("end", () => {
        this.peerEnded = true;
        this.push(null);
      });
      for (const { chunk, callback } of this.held.splice(0)) socket.write(chunk, callback);
      if (this.finalCallback) socket.end(this.finalCallback);
    });
  }

  override _read(): void {
    if (this.verified) this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.verified) this.socket.write(chunk, callback);
    else this.held.push({ chunk, callback });
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.verified) this.socket.end(callback);
    else this.finalCallback = callback;
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    // What was held for an unverified peer is dropped, never written.
    this.held = [];
    this.finalCallback = undefined;
    callback(err);
  }
}
