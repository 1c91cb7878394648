/** The load generator: N concurrent clients posting prepared requests over HTTPS. */
import { Agent, type RequestOptions, request } from "node:https";
import type { SecureContext } from "node:tls";

export interface Job {
  /** Headers besides content-type/length. */
  headers: Record<string, string>;
  body: string;
  /** Client certificate and key for mutual TLS (a context made ahead); a new connection per job. */
  tls?: SecureContext;
}

export interface Outcome {
  status: number;
  body: string;
  ms: number;
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
}

function post(url: URL, job: Job, ca: string, agent: Agent | false): Promise<Outcome> {
  const body = Buffer.from(job.body, "latin1");
  const t0 = performance.now();
  return new Promise((resolve) => {
    // secureContext is a tls.connect option that https passes through (absent from its types).
    const options: RequestOptions & { secureContext?: SecureContext } = {
      method: "POST",
      agent,
      ca,
      secureContext: job.tls,
      headers: {
        "content-type": "application/pkcs10",
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
 * Runs jobs in order with `concurrency` clients until the jobs or the time run out.
 * Keep-alive connections for token jobs; a fresh TLS connection for each mTLS job.
 */
export async function runLoad(jobs: readonly Job[], opts: LoadOptions): Promise<LoadResult> {
  const url = new URL(opts.url);
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency, ca: opts.ca });
  const outcomes: (Outcome | undefined)[] = new Array(jobs.length);
  const statuses = new Map<string, number>();
  let next = 0;
  const t0 = performance.now();
  const deadline = t0 + opts.seconds * 1000;
  const client = async () => {
    while (next < jobs.length && performance.now() < deadline) {
      const i = next++;
      const job = jobs[i] as Job;
      const outcome = await post(url, job, opts.ca, job.tls ? false : agent);
      outcomes[i] = outcome;
      const key = outcome.status === 0 ? `network error: ${outcome.body}` : String(outcome.status);
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, client));
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  return { outcomes, started: next, seconds, statuses };
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}
