/**
 * Several HTTPS event loops in one process: the main thread and N-1 worker threads,
 * each with its own listeners on the same port (`reusePort`: the kernel spreads the
 * connections), its own read connection, signers, verifier and OCSP cache. What must
 * stay one stays on the main thread: the SQLite writer (group commit, guarded write
 * sets), the CRL signer, the embedded broker, the fleet loop, timers and metrics.
 *
 * `LoopHub` is the main thread's side, `LoopLink` a worker loop's. The protocol is
 * request/answer over the worker's MessagePort:
 *
 * - worker → main: `apply` (a whole write set, committed by the one writer),
 *   `crlNumber`, `revoked` (a revocation was committed here), `commands`,
 *   `fleetAudit`, `fleetReceive`, `metrics`, `ocspAnswers`;
 * - main → worker: `revoked` (read the revocation feed, drop cached OCSP answers;
 *   answered once done), `crl` (a new CRL signed by the main thread), `tls` (renewed
 *   listener credentials), `ocspAnswers`, `close`.
 *
 * `ocspAnswers` (a notice, one per event-loop turn) carries the nonce-less OCSP answers
 * a loop signed and cached; the main thread adopts them and passes them on to the
 * other loops, so that a certificate asked about on one loop is answered from the
 * cache on all. Each answer carries the revocation feed's seq its signer had read, and
 * a loop that has read a later revocation refuses it (`RevocationResponders#adoptAnswer`).
 *
 * A revocation committed through any loop is answered (revoke verb, re-enroll) only
 * after every loop acknowledged `revoked`: from then on each loop's OCSP answers and
 * refusals reflect it.
 */
import { availableParallelism } from "node:os";
import { type MessagePort, Worker } from "node:worker_threads";
import type { FleetLoopHandle } from "../../authority/resources/fleet.ts";
import type { PublishedCrl, Scheduler, SharedOcspAnswer } from "../../authority/responders.ts";
import type { InboundMessage, MessageOutcome } from "../../ports/fleet-link.ts";
import { type AuditEvent, StorageConflictError, type Write } from "../../ports/storage.ts";
import type { RemoteWriter } from "../storage/sqlite-storage.ts";

/** Node lines whose `net.Server#listen` takes `reusePort` (22.12+ on the 22 line, 23.1+). */
export function reusePortSupported(version = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/**
 * How many event loops to run: `requested` ("auto" or 0: one per core), capped at the
 * core count... never more than 64; 1 where the Node line has no `reusePort`.
 */
export function loopCount(
  requested: number | "auto",
  o: { cores?: number; version?: string } = {},
): { loops: number; reason?: string } {
  const cores = o.cores ?? availableParallelism();
  const want = requested === "auto" || requested === 0 ? cores : Math.min(64, Math.max(1, Math.floor(requested)));
  if (want > 1 && !reusePortSupported(o.version)) {
    return {
      loops: 1,
      reason: `node ${o.version ?? process.versions.node} has no reusePort (22.12+ or 23.1+): one event loop`,
    };
  }
  return { loops: want };
}

interface ErrorShape {
  message: string;
  name?: string;
  constraint?: string;
}

type Request =
  | { op: "apply"; writes: readonly Write[] }
  | { op: "audited"; events: AuditEvent[] }
  | { op: "crlNumber"; issuer: string }
  | { op: "revoked" }
  | { op: "commands" }
  | { op: "fleetAudit"; args: Parameters<FleetLoopHandle["audit"]> }
  | { op: "fleetReceive"; message: InboundMessage }
  | { op: "metrics" }
  | { op: "ocspAnswers"; answers: SharedOcspAnswer[] };

type Notice =
  | { op: "revoked" }
  | { op: "crl"; crl: PublishedCrl }
  | { op: "tls"; tls: unknown }
  | { op: "ocspAnswers"; answers: SharedOcspAnswer[] }
  | { op: "close" };

type Envelope<T> = { id: number } & T;
type Answer = { id: number; answer: true; value?: unknown; error?: ErrorShape };

function errorShape(err: unknown): ErrorShape {
  const e = err as { message?: unknown; name?: unknown; constraint?: unknown };
  return {
    message: String(e?.message ?? err),
    name: typeof e?.name === "string" ? e.name : undefined,
    constraint: typeof e?.constraint === "string" ? e.constraint : undefined,
  };
}

function errorOf(shape: ErrorShape): Error {
  if (shape.name === "StorageConflictError" && shape.constraint) {
    return new StorageConflictError(shape.message, shape.constraint);
  }
  return new Error(shape.message);
}

/** Items gathered over one event-loop turn and handed to `send` together, at its end. */
function perTurn<T>(send: (items: T[]) => void): (item: T) => void {
  let items: T[] = [];
  return (item) => {
    if (items.length === 0)
      setImmediate(() => {
        const batch = items;
        items = [];
        send(batch);
      });
    items.push(item);
  };
}

function withoutFunctions<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => typeof v !== "function")) as T;
}

/** Requests with answers over one port (either side). */
class Channel {
  private next = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();

  constructor(
    private readonly port: Pick<MessagePort, "postMessage">,
    private readonly handle: (message: { op: string } & Record<string, unknown>) => Promise<unknown> | unknown,
  ) {}

  request<T>(message: object): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        this.port.postMessage({ id, ...message });
      } catch (err) {
        this.waiting.delete(id);
        reject(err);
      }
    });
  }

  post(message: object): void {
    this.port.postMessage({ id: 0, ...message });
  }

  /** Every request still waiting fails (the other side is gone). */
  drop(err: Error): void {
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  receive(message: Answer | Envelope<{ op: string }>): void {
    if ("answer" in message) {
      const w = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (!w) return;
      if (message.error) w.reject(errorOf(message.error));
      else w.resolve(message.value);
      return;
    }
    const id = message.id;
    const answer = (a: Omit<Answer, "id" | "answer">) => {
      if (!id) return;
      try {
        this.port.postMessage({ id, answer: true, ...a });
      } catch (err) {
        // An answer that cannot cross the threads (DataCloneError) is an error answer.
        this.port.postMessage({ id, answer: true, error: errorShape(err) });
      }
    };
    Promise.resolve()
      .then(() => this.handle(message as { op: string } & Record<string, unknown>))
      .then(
        (value) => answer({ value }),
        (err: unknown) => answer({ error: errorShape(err) }),
      );
  }
}

/** What the main thread does for its loops. */
export interface HubDeps {
  /** The one writer: write sets of every loop are committed here. */
  storage: Pick<RemoteWriter, "apply" | "nextCrlNumber">;
  /**
   * A line of a new loop's own to the writer thread (`SqliteStorage#connectWriter`):
   * its write sets then skip this event loop. Without it they come through `apply`.
   */
  writerPort?(): MessagePort;
  /** Audit records a loop committed over its own line (the metrics count them here). */
  audited?(events: AuditEvent[]): void;
  /** A revocation was committed through a worker loop: the main thread's own follow-up (its responders, the broker). */
  revoked(): Promise<void>;
  /** OCSP answers a worker loop signed and cached, for the main thread's own cache. */
  adoptAnswers?(answers: SharedOcspAnswer[]): void;
  commands?(): Promise<void>;
  fleet?: FleetLoopHandle;
  metrics?: { render(): Promise<string> };
  log(level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>): void;
  /** Timers of the restarts (injected by tests). */
  scheduler: Scheduler;
  /** Clock of the restart backoff, in ms. */
  now(): number;
  /** First restart delay, doubled after each quick exit (default 1 s). */
  restartMs?: number;
  /** Restart delay bound (default 60 s). */
  maxRestartMs?: number;
}

interface LoopWorker {
  index: number;
  worker: Worker;
  channel: Channel;
  gone: boolean;
  /** When it last started, and the delay before its next restart. */
  startedAt: number;
  delay: number;
  /** Started again when it exits: once it listened, or from the start when it is a restart. */
  restart: boolean;
}

/** The main thread's side: starts the worker loops and serves their requests. */
export class LoopHub {
  private readonly loops: LoopWorker[] = [];
  private closing = false;

  private readonly restarts = new Set<{ cancel(): void }>();

  private constructor(
    private readonly deps: HubDeps,
    private readonly entry: URL,
    /** What a loop starts from, read at each start (a restarted loop gets the current TLS credentials and CRLs). */
    private readonly workerData: () => Record<string, unknown>,
  ) {}

  /**
   * Starts `count` worker loops running `entry` with `workerData()` (plus `loop`, its
   * number from 2; the main thread's is 1); resolves once each reported that it listens.
   * A loop that exits afterwards is started again, after 1 s doubling up to 60 s while
   * it keeps exiting within a minute of its start.
   */
  static async start(
    count: number,
    entry: URL,
    workerData: () => Record<string, unknown>,
    deps: HubDeps,
  ): Promise<LoopHub> {
    const hub = new LoopHub(deps, entry, workerData);
    const ready = [];
    // Loop 1 is the main thread's.
    for (let i = 2; i <= count + 1; i++) ready.push(hub.spawn(i, deps.restartMs ?? 1000, false));
    try {
      await Promise.all(ready);
    } catch (err) {
      await hub.close();
      throw err;
    }
    return hub;
  }

  get size(): number {
    return this.loops.length;
  }

  /** Worker thread ids, loop 2 first (for per-loop CPU figures). */
  threadIds(): number[] {
    return [...this.loops].sort((a, b) => a.index - b.index).map((l) => l.worker.threadId);
  }

  private spawn(index: number, delay: number, restart: boolean): Promise<void> {
    const writerPort = this.deps.writerPort?.();
    const worker = new Worker(this.entry, {
      workerData: { ...this.workerData(), loop: index, writerPort },
      name: `loop-${index}`,
      transferList: writerPort ? [writerPort] : [],
    });
    const loop: LoopWorker = {
      index,
      worker,
      gone: false,
      channel: new Channel(worker, (m) => this.serve(m as Envelope<Request>, loop)),
      startedAt: this.deps.now(),
      delay,
      restart,
    };
    this.loops.push(loop);
    return new Promise<void>((resolve, reject) => {
      let started = false;
      worker.on("message", (m: Answer | Envelope<{ op: string; message?: string }>) => {
        if (!("answer" in m) && m.op === "ready") {
          started = true;
          loop.restart = true;
          resolve();
          return;
        }
        if (!("answer" in m) && m.op === "failed") {
          reject(new Error(`event loop ${index} did not start: ${m.message}`));
          // What it opened before it failed goes with it; a restart begins afresh.
          void worker.terminate();
          return;
        }
        loop.channel.receive(m);
      });
      worker.on("error", (err) => {
        if (!started) reject(err);
        else this.deps.log("error", "event loop failed", { loop: index, err });
      });
      worker.on("exit", (code) => {
        loop.gone = true;
        loop.channel.drop(new Error(`event loop ${index} exited (${code})`));
        if (!started) reject(new Error(`event loop ${index} exited (${code}) before it listened`));
        if (this.closing) return;
        if (started) this.deps.log("error", "event loop exited", { loop: index, code });
        if (loop.restart) this.restart(loop);
      });
    });
  }

  /**
   * A loop that exited while serving is started again in its place: after `delay`,
   * doubled (up to the bound) when it exited within a minute of its start, back to the
   * first delay when it had run longer. The other loops serve meanwhile.
   */
  private restart(gone: LoopWorker): void {
    const first = this.deps.restartMs ?? 1000;
    const bound = this.deps.maxRestartMs ?? 60_000;
    const ranFor = this.deps.now() - gone.startedAt;
    const delay = ranFor >= 60_000 ? first : gone.delay;
    const timer = this.deps.scheduler.after(delay, () => {
      this.restarts.delete(timer);
      if (this.closing) return;
      const at = this.loops.indexOf(gone);
      if (at >= 0) this.loops.splice(at, 1);
      this.deps.log("warn", "event loop restarting", { loop: gone.index, after: delay });
      this.spawn(gone.index, Math.min(bound, delay * 2), true).then(
        () => this.deps.log("info", "event loop restarted", { loop: gone.index }),
        (err: unknown) => this.deps.log("error", "event loop did not restart", { loop: gone.index, err }),
      );
    });
    this.restarts.add(timer);
  }

  private async serve(m: Envelope<Request>, from: LoopWorker): Promise<unknown> {
    switch (m.op) {
      case "apply":
        return this.deps.storage.apply(m.writes);
      case "audited":
        this.deps.audited?.(m.events);
        return undefined;
      case "crlNumber":
        return this.deps.storage.nextCrlNumber(m.issuer);
      case "revoked":
        await this.deps.revoked();
        return this.revoked();
      case "commands":
        return this.deps.commands?.();
      case "fleetAudit":
        if (!this.deps.fleet) throw new Error("no fleet loop");
        return this.deps.fleet.audit(...m.args);
      case "fleetReceive":
        if (!this.deps.fleet?.receive) throw new Error("no fleet loop");
        return this.deps.fleet.receive(m.message);
      case "metrics":
        if (!this.deps.metrics) throw new Error("no metrics");
        return this.deps.metrics.render();
      case "ocspAnswers":
        this.deps.adoptAnswers?.(m.answers);
        this.passOn(m.answers, from);
        return undefined;
      default:
        throw new Error(`unknown request ${(m as { op: string }).op}`);
    }
  }

  /**
   * Tells every worker loop that revocations were committed; resolves once each has
   * read them (its OCSP cache dropped their answers). A loop that is gone does not
   * hold this up.
   */
  async revoked(): Promise<void> {
    await Promise.all(
      this.loops.filter((l) => !l.gone).map((l) => l.channel.request<void>({ op: "revoked" }).catch(() => undefined)),
    );
  }

  /**
   * An OCSP answer the main thread's loop signed and cached: every worker loop is
   * offered it, in one message per turn.
   */
  readonly shareAnswer = perTurn<SharedOcspAnswer>((answers) => this.passOn(answers));

  private passOn(answers: SharedOcspAnswer[], from?: LoopWorker): void {
    for (const l of this.loops) {
      if (!l.gone && l !== from) l.channel.post({ op: "ocspAnswers", answers } satisfies Notice);
    }
  }

  /** A CRL signed by the main thread, for every loop to serve. */
  publish(crl: PublishedCrl): void {
    for (const l of this.loops) if (!l.gone) l.channel.post({ op: "crl", crl } satisfies Notice);
  }

  /** Renewed listener credentials (the options of `setSecureContext`). */
  setTls(tls: unknown): void {
    for (const l of this.loops) if (!l.gone) l.channel.post({ op: "tls", tls } satisfies Notice);
  }

  /** Each loop stops listening, finishes its requests and writes, and exits. */
  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.restarts) t.cancel();
    this.restarts.clear();
    await Promise.all(
      this.loops.map(async (l) => {
        if (l.gone) return;
        const exited = new Promise<void>((r) => l.worker.once("exit", () => r()));
        const timer = setTimeout(() => void l.worker.terminate(), 10_000);
        await l.channel.request({ op: "close" }).catch(() => undefined);
        await l.worker.terminate();
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}

/** What a worker loop does when the main thread tells it something. */
export interface LinkHandlers {
  revoked(): Promise<void>;
  crl(crl: PublishedCrl): void;
  tls(tls: unknown): void;
  /** OCSP answers another loop signed and cached. */
  ocspAnswers(answers: SharedOcspAnswer[]): void;
  close(): Promise<void>;
}

/** A worker loop's side of the hub. */
export class LoopLink {
  private readonly channel: Channel;
  private handlers: LinkHandlers | undefined;
  /** Notices that arrived before `listen` (a CRL published while this loop started). */
  private early: Envelope<Notice>[] = [];

  constructor(private readonly port: MessagePort) {
    this.channel = new Channel(port, (m) => this.serve(m as Envelope<Notice>));
    port.on("message", (m: Answer | Envelope<Notice>) => {
      if (!this.handlers && !("answer" in m)) this.early.push(m);
      else this.channel.receive(m);
    });
  }

  private async serve(m: Envelope<Notice>): Promise<unknown> {
    const h = this.handlers as LinkHandlers;
    switch (m.op) {
      case "revoked":
        return h.revoked();
      case "crl":
        return h.crl(m.crl);
      case "tls":
        return h.tls(m.tls);
      case "ocspAnswers":
        return h.ocspAnswers(m.answers);
      case "close":
        return h.close();
      default:
        return undefined;
    }
  }

  /** Starts serving the main thread's notices (the queued ones first). */
  listen(handlers: LinkHandlers): void {
    this.handlers = handlers;
    for (const m of this.early.splice(0)) this.channel.receive(m);
  }

  ready(): void {
    this.port.postMessage({ id: 0, op: "ready" });
  }

  failed(err: unknown): void {
    this.port.postMessage({ id: 0, op: "failed", message: String((err as Error)?.stack ?? err) });
  }

  /** The storage's writer: the main thread's. */
  readonly writer: RemoteWriter = {
    apply: (writes) => this.channel.request<void>({ op: "apply", writes } satisfies Request),
    nextCrlNumber: (issuer) => this.channel.request<bigint>({ op: "crlNumber", issuer } satisfies Request),
  };

  /**
   * Audit records this loop committed over its own line to the writer: told to the main
   * thread (its metrics), a message per event-loop turn.
   */
  audited(events: readonly AuditEvent[]): void {
    for (const e of events) this.audit(e);
  }

  private readonly audit = perTurn<AuditEvent>((events) =>
    this.channel.post({ op: "audited", events } satisfies Request),
  );

  /** An OCSP answer this loop signed and cached, for the other loops (a message per turn). */
  readonly shareAnswer = perTurn<SharedOcspAnswer>((answers) =>
    this.channel.post({ op: "ocspAnswers", answers } satisfies Request),
  );

  /** After a revocation committed here: answers once every loop (this one too) has read it. */
  revoked(): Promise<void> {
    return this.channel.request<void>({ op: "revoked" } satisfies Request);
  }

  commands(): Promise<void> {
    return this.channel.request<void>({ op: "commands" } satisfies Request);
  }

  readonly fleet: Required<FleetLoopHandle> = {
    // Callbacks (afterChunk) stay here: the main thread's fleet loop sets its own.
    audit: (actor, opts) =>
      this.channel.request({ op: "fleetAudit", args: [actor, withoutFunctions(opts)] } satisfies Request),
    receive: (message) => this.channel.request<MessageOutcome>({ op: "fleetReceive", message } satisfies Request),
  };

  readonly metrics = { render: () => this.channel.request<string>({ op: "metrics" } satisfies Request) };
}
