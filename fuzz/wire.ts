/**
 * Raw TLS clients: an HTTP/1.1 request written byte for byte (so header spellings,
 * framing and chunked encoding can be wrong on purpose), and an MQTT session of raw
 * packets. A new connection per exchange, from a rotating loopback source address.
 */
import { performance } from "node:perf_hooks";
import { connect, type TLSSocket } from "node:tls";

export interface Endpoint {
  host: string;
  port: number;
  ca: string;
  /** Client certificate and key (PEM) for mutual TLS. */
  cert?: string;
  key?: string;
  localAddress?: string;
}

export interface Exchange {
  /** The HTTP status, undefined when the connection ended without a status line. */
  status?: number;
  /** The response bytes (for the answers the harness reads, like a re-enrollment). */
  response: Buffer;
  ms: number;
  error?: string;
}

function open(ep: Endpoint): TLSSocket {
  return connect({
    host: ep.host,
    port: ep.port,
    ca: ep.ca,
    ...(ep.cert && ep.key ? { cert: ep.cert, key: ep.key } : {}),
    ...(ep.localAddress ? { localAddress: ep.localAddress } : {}),
    servername: "localhost",
    checkServerIdentity: () => undefined,
  });
}

/** Whether `response` holds a whole HTTP response (the server may keep the connection open). */
function complete(response: Buffer): boolean {
  const end = response.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = response.subarray(0, end).toString("latin1");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return true;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (length) return response.length - end - 4 >= Number(length[1]);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return response.subarray(-5).toString("latin1") === "0\r\n\r\n";
  return false;
}

/** Writes `chunks` (pausing between them when there are several) and reads until the server closes. */
export function exchange(ep: Endpoint, chunks: readonly Uint8Array[], timeoutMs: number): Promise<Exchange> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const socket = open(ep);
    const parts: Buffer[] = [];
    let error: string | undefined;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const response = Buffer.concat(parts);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(response.subarray(0, 16).toString("latin1"));
      resolve({ status: m ? Number(m[1]) : undefined, response, ms: performance.now() - t0, error });
    };
    const timer = setTimeout(() => {
      error = "timeout";
      finish();
    }, timeoutMs);
    let received = 0;
    socket.on("data", (d: Buffer) => {
      parts.push(d);
      received += d.length;
      if (complete(Buffer.concat(parts, received))) finish();
    });
    socket.on("error", (e) => {
      error ??= (e as NodeJS.ErrnoException).code ?? e.message;
      finish();
    });
    socket.on("close", finish);
    socket.on("end", finish);
    socket.once("secureConnect", async () => {
      for (const [i, c] of chunks.entries()) {
        if (done) return;
        if (i > 0) await new Promise((r) => setTimeout(r, 2));
        socket.write(c);
      }
    });
  });
}

/** An MQTT session: each packet written in turn; resolves when the broker closes or `lingerMs` after the last. */
export function mqttSession(ep: Endpoint, packets: readonly Uint8Array[], lingerMs: number, timeoutMs: number) {
  const t0 = performance.now();
  return new Promise<{ ms: number; closedByServer: boolean; received: number; error?: string }>((resolve) => {
    const socket = open(ep);
    let received = 0;
    let error: string | undefined;
    let closedByServer = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ms: performance.now() - t0, closedByServer, received, error });
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on("data", (d: Buffer) => {
      received += d.length;
    });
    socket.on("error", (e) => {
      error ??= (e as NodeJS.ErrnoException).code ?? e.message;
      finish();
    });
    socket.on("end", () => {
      closedByServer = true;
      finish();
    });
    socket.on("close", finish);
    socket.once("secureConnect", async () => {
      for (const p of packets) {
        if (done) return;
        socket.write(p);
        await new Promise((r) => setTimeout(r, 1));
      }
      setTimeout(finish, lingerMs);
    });
  });
}

/** Source addresses 127.0.0.2…127.0.0.254 in turn (Linux routes all of 127/8 to loopback), or a given list. */
export function addressRotation(spec: string): (i: number) => string | undefined {
  if (spec === "none" || spec === "") return () => undefined;
  const list =
    spec === "rotate"
      ? Array.from({ length: 253 }, (_, i) => `127.0.0.${i + 2}`)
      : spec.split(",").map((s) => s.trim());
  return (i) => list[i % list.length];
}
