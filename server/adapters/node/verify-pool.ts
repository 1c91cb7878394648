import { Worker } from "node:worker_threads";
import { subjectPublicKeyBits } from "../../pki/keys.ts";
import { SignatureAlgorithmError, type SignatureVerifier, type VerifyRequest } from "../../pki/verify.ts";
import type { CheckResult, SignatureCheck } from "./signature-check.mjs";

interface Waiting {
  resolve(ok: boolean): void;
  reject(err: unknown): void;
}

interface Lane {
  worker: Worker;
  /** Batches sent and not yet answered, in order (a worker answers in order). */
  inFlight: Waiting[][];
}

/** What the worker is sent for one request (plain data: it is cloned across). */
export function toCheck(req: VerifyRequest): SignatureCheck {
  return {
    kind: req.key.kind,
    point: req.key.kind === "EC" ? subjectPublicKeyBits(req.spki) : undefined,
    hash: req.hash,
    spki: req.spki,
    signature: req.signature,
    data: req.data,
  };
}

const WORKER_URL = new URL("./verify-worker.mjs", import.meta.url);

/**
 * Signature checks on worker threads (node:crypto), batched per event-loop turn: key
 * import and verification cost the event loop one message per batch instead of a
 * WebCrypto key import per request. Same answers as webCryptoVerifier
 * (test/server/verifier.test.ts runs both through the same cases).
 */
export class WorkerVerifier implements SignatureVerifier {
  private readonly lanes: Lane[] = [];
  private queue: { req: VerifyRequest; waiting: Waiting }[] = [];
  private next = 0;
  private closed = false;

  /**
   * @param size worker threads
   * @param chunk checks per message: small enough that answers flow back while the
   *   worker goes on (8 measured best in `npm run bench`, against 4, 16 and whole turns)
   * @param name the workers' thread name (what `top -H` and /proc show on Node 24+;
   *   Linux keeps 15 characters)
   */
  constructor(
    size = 1,
    private readonly chunk = 8,
    private readonly name = "verify",
  ) {
    for (let i = 0; i < size; i++) this.lanes.push(this.spawn());
  }

  private spawn(): Lane {
    const lane: Lane = { worker: new Worker(WORKER_URL, { name: this.name }), inFlight: [] };
    lane.worker.unref();
    lane.worker.on("message", (results: CheckResult[] | { error: string }) => {
      const batch = lane.inFlight.shift() ?? [];
      if (!Array.isArray(results)) {
        for (const w of batch) w.reject(new Error(`signature worker failed: ${results.error}`));
        return;
      }
      batch.forEach((w, i) => {
        const r = results[i];
        if (r === "bad-key") w.reject(new SignatureAlgorithmError("public key could not be imported"));
        else w.resolve(r === true);
      });
    });
    const fail = (err: unknown) => {
      for (const batch of lane.inFlight) for (const w of batch) w.reject(err);
      lane.inFlight = [];
      if (this.closed) return;
      const i = this.lanes.indexOf(lane);
      if (i >= 0) this.lanes[i] = this.spawn();
    };
    lane.worker.on("error", fail);
    lane.worker.on("exit", (code) => fail(new Error(`signature worker exited (${code})`)));
    return lane;
  }

  verify(req: VerifyRequest): Promise<boolean> {
    if (this.closed) return Promise.reject(new Error("verifier is closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ req, waiting: { resolve, reject } });
      if (this.queue.length === 1) setImmediate(this.flush);
    });
  }

  private readonly flush = (): void => {
    const queue = this.queue;
    this.queue = [];
    // Small messages, so that the event loop gets the first answers back (and goes on
    // with those requests) while the worker still checks the rest.
    for (let start = 0; start < queue.length; start += this.chunk) {
      const part = queue.slice(start, start + this.chunk);
      const lane = this.lanes[this.next++ % this.lanes.length] as Lane;
      lane.inFlight.push(part.map((q) => q.waiting));
      lane.worker.postMessage(part.map(({ req }) => toCheck(req)));
    }
  };

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.lanes.map((l) => l.worker.terminate()));
  }
}
