/** The load generator: N concurrent clients posting prepared requests over HTTPS (or plain HTTP, for the public listener). */
import { type RequestOptions, request } from "node:https";
import { connect as connectPlain, type Socket } from "node:net";
import { connect, type SecureContext } from "node:tls";

export interface Job {
  /** Headers besides content-type/length. */
  headers: Record<string, string>;
  /** Bytes as a latin1 string. */
  body: string;
  /** Default application/pkcs10. */
  contentType?: string;
  /** Client certificate and key for mutual TLS (a context made ahead); a new connection per job. */
  tls?: SecureContext;
}

export interface Outcome {
  status: number;
  body: string;
  ms: number;
  /** Seconds since the run started, when the answer came. */
  at?: number;
}

export interface LoadResult {
  outcomes: (Outcome | undefined)[];
  /** Jobs started before the deadline. */
  started: number;
  seconds: number;
  statuses: Map<string, number>;
}

export interface LoadOptions {
  url: string;
  ca: string;
  concurrency: number;
  /** Stop starting new jobs after this many seconds. */
  seconds: number;
  /** Source address of the connections (any of 127.0.0.0/8 reaches a loopback server on Linux). */
  localAddress?: string;
}

/** One request on a new connection (https), for mutual-TLS jobs. */
function post(url: URL, job: Job, ca: string, agent: false, localAddress?: string): Promise<Outcome> {
  const body = Buffer.from(job.body, "latin1");
  const t0 = performance.now();
  return new Promise((resolve) => {
    // secureContext is a tls.connect option that https passes through (absent from its types).
    const options: RequestOptions & { secureContext?: SecureContext } = {
      method: "POST",
      agent,
      ca,
      ...(localAddress ? { localAddress } : {}),
      secureContext: job.tls,
      headers: {
        "content-type": job.contentType ?? "application/pkcs10",
        "content-length": String(body.length),
        ...(agent === false ? { connection: "close" } : {}),
        ...job.headers,
      },
    };
    const req = request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString("latin1"),
          ms: performance.now() - t0,
        }),
      );
      res.on("error", (e) => resolve({ status: 0, body: e.message, ms: performance.now() - t0 }));
    });
    req.on("error", (e) => resolve({ status: 0, body: e.message, ms: performance.now() - t0 }));
    req.end(body);
  });
}

/**
 * A lean HTTP/1.1 client on one keep-alive connection (TLS, or plain TCP for an http:
 * URL): a request is one write, a
 * response is read by its Content-Length (the server always sends one). It keeps the
 * load generator's own CPU small, since it shares the machine with the server.
 */
class KeepAliveConnection {
  private socket: Socket | undefined;
  private chunks: Buffer[] = [];
  private waiting: ((r: { status: number; body: string }) => void) | undefined;

  constructor(
    private readonly url: URL,
    private readonly ca: string,
    private readonly localAddress?: string,
  ) {}

  private connect(): Socket {
    const at = {
      host: this.url.hostname,
      port: Number(this.url.port),
      ...(this.localAddress ? { localAddress: this.localAddress } : {}),
    };
    const socket =
      this.url.protocol === "http:"
        ? connectPlain(at)
        : connect({
            ...at,
            ca: this.ca,
            servername: this.url.hostname === "127.0.0.1" ? undefined : this.url.hostname,
          });
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.parse();
    });
    const fail = (e?: Error) => {
      if (this.socket === socket) this.socket = undefined;
      const w = this.waiting;
      this.waiting = undefined;
      this.chunks = [];
      w?.({ status: 0, body: e?.message ?? "connection closed" });
    };
    socket.on("error", fail);
    socket.on("close", () => fail());
    return socket;
  }

  private parse(): void {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = [all];
    const end = all.indexOf("\r\n\r\n");
    if (end < 0) return;
    const head = all.subarray(0, end).toString("latin1");
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!length) {
      this.socket?.destroy(new Error("response without Content-Length"));
      return;
    }
    const total = end + 4 + Number(length[1]);
    if (all.length < total) return;
    this.chunks = all.length > total ? [all.subarray(total)] : [];
    const w = this.waiting;
    this.waiting = undefined;
    w?.({ status: Number(head.slice(9, 12)), body: all.subarray(end + 4, total).toString("latin1") });
  }

  send(job: Job): Promise<{ status: number; body: string }> {
    this.socket ??= this.connect();
    const extra = Object.entries(job.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    const head =
      `POST ${this.url.pathname} HTTP/1.1\r\nhost: ${this.url.host}\r\ncontent-type: ${job.contentType ?? "application/pkcs10"}\r\n` +
      `content-length: ${job.body.length}\r\n${extra}\r\n`;
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.socket?.write(head + job.body, "latin1");
    });
  }

  close(): void {
    this.socket?.end();
  }
}

/**
 * Runs jobs in order with `concurrency` clients until the jobs or the time run out.
 * Keep-alive connections for token jobs; a fresh TLS connection for each mTLS job.
 */
export async function runLoad(jobs: readonly Job[], opts: LoadOptions): Promise<LoadResult> {
  const url = new URL(opts.url);
  const outcomes: (Outcome | undefined)[] = new Array(jobs.length);
  const statuses = new Map<string, number>();
  let next = 0;
  const t0 = performance.now();
  const deadline = t0 + opts.seconds * 1000;
  const connections: KeepAliveConnection[] = [];
  const client = async () => {
    const connection = new KeepAliveConnection(url, opts.ca, opts.localAddress);
    connections.push(connection);
    while (next < jobs.length && performance.now() < deadline) {
      const i = next++;
      const job = jobs[i] as Job;
      let outcome: Outcome;
      if (job.tls) {
        outcome = await post(url, job, opts.ca, false, opts.localAddress);
      } else {
        const started = performance.now();
        const r = await connection.send(job);
        outcome = { ...r, ms: performance.now() - started };
      }
      outcome.at = (performance.now() - t0) / 1000;
      outcomes[i] = outcome;
      const key = outcome.status === 0 ? `network error: ${outcome.body}` : String(outcome.status);
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, client));
  const seconds = (performance.now() - t0) / 1000;
  for (const c of connections) c.close();
  return { outcomes, started: next, seconds, statuses };
}

/** Successful answers per second in each whole `window`-second slice of the run. */
export function windowRates(r: LoadResult, window: number): number[] {
  const slices = Math.floor(r.seconds / window);
  const counts = new Array<number>(slices).fill(0);
  for (const o of r.outcomes) {
    if (o?.status !== 200 || o.at === undefined) continue;
    const k = Math.floor(o.at / window);
    if (k < slices) counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts.map((c) => c / window);
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}
