import { buildCrl, encodeCrlEntry } from "../pki/crl.ts";
import { bytesEqual, toHex } from "../pki/der.ts";
import {
  buildOcspResponse,
  encodeSingleResponse,
  type IssuerHashes,
  issuerHashes,
  OcspError,
  type OcspStatus,
  ocspErrorResponse,
  parseOcspRequest,
} from "../pki/ocsp.ts";
import type { RevocationEntry } from "../ports/storage.ts";
import type { AuthorityDeps, IssuingCa } from "./deps.ts";

/** Timers are a parameter of the core, like the clock: tests step them. */
export interface Scheduler {
  every(ms: number, run: () => void): { cancel(): void };
  after(ms: number, run: () => void): { cancel(): void };
}

/**
 * Revocations that arrive within this window share one CRL rebuild: a burst of 1,000
 * revocations costs a few rebuilds, not 1,000, and each stays well within the second
 * that the CRL has to reflect a revocation.
 */
export const CRL_COALESCE_MS = 100;

export interface PublishedCrl {
  /** The issuing CA's name. */
  ca: string;
  der: Uint8Array;
  number: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: number;
  /** Milliseconds the last build took (entries, encoding, signature). */
  buildMs: number;
}

const FEED_PAGE = 10_000;
const MAX_OCSP_REQUESTS = 16;
const OCSP_CACHE_SERIALS = 100_000;
/**
 * The cache's bound in bytes of responses. A CertID has at most four spellings for one
 * certificate (SHA-1 or SHA-256; hash parameters NULL or absent — the parser refuses any
 * other, and non-minimal serials), each answered in its own spelling, so one serial holds
 * at most four entries; this bound holds whatever their size.
 */
const OCSP_CACHE_BYTES = 32 * 1024 * 1024;
const OCSP_SPELLINGS_PER_SERIAL = 4;
/** The status cache's bound: serials whose status (good or revoked) was read from storage (~150 bytes each). */
const STATUS_CACHE_SERIALS = 100_000;
const GOOD: OcspStatus = Object.freeze({ type: "good" });

/** How much each OCSP cache of a responder may hold (the defaults above; tests make them small). */
export interface ResponderBounds {
  /** Serials with cached answers (least recently answered leave first). */
  answerSerials: number;
  /** Bytes of cached answers. */
  answerBytes: number;
  /** Serials whose status was read (first read, first out). */
  statusSerials: number;
}

const DEFAULT_BOUNDS: ResponderBounds = {
  answerSerials: OCSP_CACHE_SERIALS,
  answerBytes: OCSP_CACHE_BYTES,
  statusSerials: STATUS_CACHE_SERIALS,
};

interface CachedResponse {
  certId: string;
  der: Uint8Array;
  freshUntil: number;
}

/**
 * A nonce-less OCSP answer one responder signed and cached, as another one (another
 * event loop of the same server) may adopt it into its own cache.
 */
export interface SharedOcspAnswer {
  serial: string;
  /** The CertID as asked (hex of its DER), the cache key beside the serial. */
  certId: string;
  der: Uint8Array;
  /** Epoch ms until which it is served from a cache. */
  freshUntil: number;
  /**
   * The revocation feed's seq its signer had read when it read the status: the answer
   * reflects every revocation up to there, and may miss any later one.
   */
  feedSeq: number;
}

/** One issuing CA's CRL: its entries and its current signed list. */
class CaCrl {
  readonly entries = new Map<string, { der: Uint8Array; notAfter: number }>();
  crl: PublishedCrl | undefined;
  building: Promise<void> | undefined;
  rebuildAgain = false;
  hashes: IssuerHashes | undefined;
  /** New entries since the last build: a revocation re-signs this CA's CRL only. */
  changed = false;

  constructor(readonly ca: IssuingCa) {}
}

/**
 * The CRL and OCSP responders of the issuing CAs (one CRL per CA; OCSP answers for
 * any of them, signed by the certificate's issuer), all fed by the revocation feed
 * (`revocations` by seq). State kept in memory: one pre-encoded CRL entry per revoked,
 * unexpired certificate, the current signed CRLs, and signed OCSP responses per serial.
 *
 * - A revocation in this process calls `revoked()`: the new feed rows are read (cost:
 *   the new rows only), their cached OCSP answers dropped, and a CRL rebuild scheduled.
 * - Revocations by other processes (the CLI on the same database) are found by a poll
 *   of the feed's newest seq, one indexed read.
 * - The CRL is rebuilt on revocation and at half its validity; expired certificates
 *   leave it then. It is always served from memory.
 */
export class RevocationResponders {
  private readonly crls: Map<string, CaCrl>;
  private lastSeq = 0;
  private feedReading: Promise<void> | undefined;
  private readonly ocspCache = new Map<string, CachedResponse[]>();
  private ocspCacheBytes = 0;
  /**
   * The status read from storage of each serial asked about (not unknown ones: a serial
   * becomes known once issued), for requests with a nonce, which are signed each time
   * but need not read storage each time. A status only moves from good to revoked (a
   * certificate is never un-revoked, nor deleted), and that move reaches this process
   * through the revocation feed, which drops the serial's entry as it drops its answers.
   */
  private readonly statusCache = new Map<string, { issuer: string; status: OcspStatus }>();
  private timer: { cancel(): void } | undefined;
  private scheduler: Scheduler | undefined;
  private pendingRebuild: { cancel(): void } | undefined;
  private readonly listeners: ((entries: RevocationEntry[]) => void)[] = [];
  private readonly answerListeners: ((answer: SharedOcspAnswer) => void)[] = [];
  private started = false;

  constructor(
    private readonly deps: AuthorityDeps,
    /** Told of every CRL published (the Node entry logs it: number, entries, size, build time). */
    private readonly onPublished?: (crl: PublishedCrl) => void,
    /**
     * "build" (default): this responder signs the CRLs. "follow": another one does (the
     * main event loop of a multi-loop server) and hands each new CRL to `adopt`; this one
     * keeps its own OCSP cache, fed by the same revocation feed.
     */
    private readonly crlMode: "build" | "follow" = "build",
    private readonly bounds: ResponderBounds = DEFAULT_BOUNDS,
  ) {
    this.crls = new Map([...deps.cas.values()].map((ca) => [ca.name, new CaCrl(ca)]));
  }

  /** Loads the feed, publishes the first CRLs and starts watching. */
  async start(scheduler?: Scheduler): Promise<void> {
    for (const c of this.crls.values()) c.hashes = await issuerHashes(c.ca.certificate, this.deps.digest);
    await this.readFeed();
    if (this.crlMode === "build") await this.rebuildCrls();
    this.started = true;
    this.scheduler = scheduler;
    this.timer = scheduler?.every(this.deps.config.revocation.pollMs, () => void this.tick());
  }

  /**
   * Told of every revocation found after start (in this process or another), once:
   * the fleet loop carries them to the MQTT broker.
   */
  onRevocations(listener: (entries: RevocationEntry[]) => void): void {
    this.listeners.push(listener);
  }

  /**
   * Told of every nonce-less answer this responder signs and caches (not of those it
   * adopts): the other event loops adopt them (`adoptAnswer`), so that a certificate
   * asked about on one loop is answered from the cache on every loop.
   */
  onAnswerCached(listener: (answer: SharedOcspAnswer) => void): void {
    this.answerListeners.push(listener);
  }

  /**
   * Caches an answer another responder signed, unless it may be stale here: when this
   * responder has read a revocation its signer had not (a later feed seq), the answer
   * could predate it and is refused. One it reads afterwards drops it, as it drops its
   * own. An answer of its own that is still fresh is kept. Returns whether it adopted.
   */
  adoptAnswer(answer: SharedOcspAnswer): boolean {
    if (this.lastSeq > answer.feedSeq) return false;
    const now = this.deps.clock.now().getTime();
    if (answer.freshUntil <= now) return false;
    const own = this.ocspCache.get(answer.serial)?.find((c) => c.certId === answer.certId);
    if (own && own.freshUntil > now) return false;
    this.remember(answer.serial, answer.certId, answer.der, answer.freshUntil);
    return true;
  }

  /** `adoptAnswer` for each of another loop's answers (one message's worth). */
  adoptAnswers(answers: readonly SharedOcspAnswer[]): void {
    for (const a of answers) this.adoptAnswer(a);
  }

  stop(): void {
    this.timer?.cancel();
    this.pendingRebuild?.cancel();
  }

  /**
   * Called after a revocation was committed here (deps.onRevocation). When it returns,
   * OCSP answers reflect the revocation; the CRL follows within CRL_COALESCE_MS plus
   * one build.
   */
  async revoked(): Promise<void> {
    const found = await this.readFeed();
    if (found === 0 || this.crlMode === "follow") return;
    if (!this.scheduler) {
      // Without timers (tests, one-shot tools) the CRL is rebuilt before this returns.
      await this.rebuildChanged();
      return;
    }
    this.pendingRebuild ??= this.scheduler.after(CRL_COALESCE_MS, () => {
      this.pendingRebuild = undefined;
      void this.rebuildChanged().catch(() => undefined);
    });
  }

  /** One poll: new revocations from anywhere, or a CRL that is half-way to its nextUpdate. */
  async tick(): Promise<void> {
    try {
      if ((await this.deps.storage.lastRevocationSeq()) > this.lastSeq) return await this.revoked();
      if (this.crlMode === "follow") return;
      const half = (this.deps.config.revocation.crlValidity * 1000) / 2;
      for (const c of this.crls.values()) {
        const crl = c.crl;
        if (!crl || this.deps.clock.now().getTime() >= crl.thisUpdate.getTime() + half) await this.rebuildCrl(c);
      }
    } catch {
      // The next tick tries again; the current CRL stays valid until its nextUpdate.
    }
  }

  /** A CRL signed by the building responder ("follow" mode): served from now on, unless an older number. */
  adopt(crl: PublishedCrl): void {
    const c = this.crls.get(crl.ca);
    if (!c || (c.crl && c.crl.number > crl.number)) return;
    c.crl = crl;
  }

  currentCrl(caName: string): PublishedCrl | undefined {
    return this.crls.get(caName)?.crl;
  }

  /** Reads the feed after lastSeq (single flight); returns how many entries were new. */
  private async readFeed(): Promise<number> {
    while (this.feedReading) await this.feedReading;
    let found = 0;
    const run = async () => {
      const now = this.deps.clock.now();
      // Read before the rows: the feed's seq follows commit order, so every row up to
      // this seq that the query below skips is one it skips for expiry, and every
      // later row is either read below or still ahead of lastSeq.
      const seenUpTo = await this.deps.storage.lastRevocationSeq();
      for (;;) {
        const rows = await this.deps.storage.revocationsSince(this.lastSeq, now, FEED_PAGE);
        for (const r of rows) this.add(r);
        found += rows.length;
        if (this.started && rows.length > 0) for (const l of this.listeners) l(rows);
        const last = rows[rows.length - 1];
        if (last) this.lastSeq = last.seq;
        if (rows.length < FEED_PAGE) break;
      }
      // Expired certificates are skipped by the query; the seq still moves past them.
      this.lastSeq = Math.max(this.lastSeq, seenUpTo);
    };
    this.feedReading = run();
    try {
      await this.feedReading;
    } finally {
      this.feedReading = undefined;
    }
    return found;
  }

  private add(r: RevocationEntry): void {
    this.forget(r.serial);
    const c = this.crls.get(r.issuer);
    if (!c) return;
    c.changed = true;
    c.entries.set(r.serial, {
      der: encodeCrlEntry({ serial: r.serial, revokedAt: r.revokedAt, reason: r.reason }),
      notAfter: r.notAfter.getTime(),
    });
  }

  /** Builds and signs a new CRL of every CA. */
  async rebuildCrls(): Promise<void> {
    await Promise.all([...this.crls.values()].map((c) => this.rebuildCrl(c)));
  }

  /** Builds and signs the CRLs that gained entries since their last build. */
  private async rebuildChanged(): Promise<void> {
    await Promise.all([...this.crls.values()].filter((c) => c.changed).map((c) => this.rebuildCrl(c)));
  }

  /** Builds and signs a new CRL (single flight: a request during a build runs one more build after it). */
  private rebuildCrl(c: CaCrl): Promise<void> {
    if (c.building) {
      c.rebuildAgain = true;
      return c.building;
    }
    c.building = (async () => {
      try {
        do {
          c.rebuildAgain = false;
          await this.buildOnce(c);
        } while (c.rebuildAgain);
      } finally {
        c.building = undefined;
      }
    })();
    return c.building;
  }

  private async buildOnce(c: CaCrl): Promise<void> {
    const started = performance.now();
    const { config, clock, storage } = this.deps;
    const ca = c.ca;
    c.changed = false;
    const now = clock.now();
    const parts: Uint8Array[] = [];
    for (const [serial, e] of c.entries) {
      if (e.notAfter <= now.getTime()) c.entries.delete(serial);
      else parts.push(e.der);
    }
    const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const nextUpdate = new Date(thisUpdate.getTime() + config.revocation.crlValidity * 1000);
    const number = await storage.nextCrlNumber(ca.name);
    const der = await buildCrl(
      {
        issuer: ca.subject,
        authorityKeyId: ca.keyId,
        thisUpdate,
        nextUpdate,
        crlNumber: number,
        entries: parts,
        signatureAlgorithm: ca.signer.signatureAlgorithm,
      },
      ca.signer,
    );
    c.crl = {
      ca: ca.name,
      der,
      number,
      thisUpdate,
      nextUpdate,
      entries: parts.length,
      buildMs: performance.now() - started,
    };
    this.onPublished?.(c.crl);
  }

  /**
   * Answers an OCSP request (RFC 6960): DER in, DER out, always a well-formed
   * OCSPResponse (errors are OCSP statuses, not HTTP ones). A request without a nonce
   * for one certificate is answered from the cache while the cached answer is fresh.
   */
  async ocsp(requestDer: Uint8Array): Promise<{ der: Uint8Array; status: "successful" | string }> {
    let request: ReturnType<typeof parseOcspRequest>;
    try {
      request = parseOcspRequest(requestDer, MAX_OCSP_REQUESTS);
    } catch (err) {
      if (err instanceof OcspError) return { der: ocspErrorResponse(1), status: "malformedRequest" };
      throw err;
    }
    // Every certificate asked about must be of one of our CAs, and (the response has
    // one signer) all of the same one.
    let issuer: CaCrl | undefined;
    for (const id of request.certIds) {
      const match = await this.issuerOf(id);
      if (!match || (issuer && match !== issuer)) return { der: ocspErrorResponse(6), status: "unauthorized" };
      issuer = match;
    }
    if (!issuer?.hashes) return { der: ocspErrorResponse(6), status: "unauthorized" };
    const hashes = issuer.hashes;
    const now = this.deps.clock.now();
    const single = request.certIds.length === 1 && !request.nonce ? request.certIds[0] : undefined;
    const certIdHex = single ? toHex(single.raw) : "";
    if (single?.serial) {
      const hit = this.ocspCache.get(single.serial)?.find((c) => c.certId === certIdHex);
      if (hit && hit.freshUntil > now.getTime()) return { der: hit.der, status: "successful" };
    }
    const validity = this.deps.config.revocation.ocspValidity * 1000;
    const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const nextUpdate = new Date(thisUpdate.getTime() + validity);
    const responses: Uint8Array[] = [];
    // A revocation read from the feed while this answer is read and signed drops the
    // cached answers it concerns, but not this one, which is remembered after: such an
    // answer is sent (it was true when read) and not cached.
    const feedSeq = this.lastSeq;
    let cacheable = true;
    for (const id of request.certIds) {
      const status = await this.status(id.serial, issuer.ca.name);
      if (status.type === "unknown") cacheable = false;
      responses.push(encodeSingleResponse({ certId: id.raw, status, thisUpdate, nextUpdate }));
    }
    const der = await buildOcspResponse(
      {
        responderKeyHash: hashes["SHA-1"].key,
        producedAt: thisUpdate,
        responses,
        nonce: request.nonce,
        signatureAlgorithm: issuer.ca.signer.signatureAlgorithm,
      },
      issuer.ca.signer,
    );
    // Unknown serials are not cached: the answer changes once the serial is issued.
    if (single?.serial && cacheable && this.lastSeq === feedSeq) {
      const answer = { serial: single.serial, certId: certIdHex, der, freshUntil: thisUpdate.getTime() + validity / 2 };
      this.remember(answer.serial, answer.certId, answer.der, answer.freshUntil);
      for (const l of this.answerListeners) l({ ...answer, feedSeq });
    }
    return { der, status: "successful" };
  }

  /** The CA whose name and key hashes a CertID carries. */
  private async issuerOf(id: ReturnType<typeof parseOcspRequest>["certIds"][number]): Promise<CaCrl | undefined> {
    for (const c of this.crls.values()) {
      c.hashes ??= await issuerHashes(c.ca.certificate, this.deps.digest);
      const h = c.hashes[id.hashAlgorithm];
      if (bytesEqual(h.name, id.issuerNameHash) && bytesEqual(h.key, id.issuerKeyHash)) return c;
    }
    return undefined;
  }

  private async status(serial: string | null, issuer: string): Promise<OcspStatus> {
    if (!serial) return { type: "unknown" };
    let known = this.statusCache.get(serial);
    if (!known) {
      // As for answers: a status read before a revocation that the feed brings in during
      // the read is not remembered (the revocation's drop came before it).
      const feedSeq = this.lastSeq;
      const record = await this.deps.storage.getCertificateStatus(serial);
      if (!record) return { type: "unknown" };
      known = {
        issuer: record.issuer,
        status:
          record.status === "revoked" && record.revokedAt
            ? { type: "revoked", revokedAt: record.revokedAt, reason: record.revocationReason }
            : GOOD,
      };
      if (this.lastSeq === feedSeq) {
        this.statusCache.set(serial, known);
        if (this.statusCache.size > this.bounds.statusSerials) {
          const oldest = this.statusCache.keys().next().value;
          if (oldest !== undefined) this.statusCache.delete(oldest);
        }
      }
    }
    return known.issuer === issuer ? known.status : { type: "unknown" };
  }

  private remember(serial: string, certId: string, der: Uint8Array, freshUntil: number): void {
    const list = (this.ocspCache.get(serial) ?? []).filter((c) => c.certId !== certId);
    list.push({ certId, der, freshUntil });
    // However a CertID may be spelled, one serial keeps a few answers (SHA-1/SHA-256, with
    // or without NULL parameters): the oldest spelling leaves first.
    if (list.length > OCSP_SPELLINGS_PER_SERIAL) list.shift();
    this.dropAnswers(serial);
    this.ocspCache.set(serial, list);
    this.ocspCacheBytes += list.reduce((n, c) => n + c.der.length + c.certId.length, 0);
    // The least recently answered serials leave first, until both bounds hold.
    while (this.ocspCache.size > this.bounds.answerSerials || this.ocspCacheBytes > this.bounds.answerBytes) {
      const oldest = this.ocspCache.keys().next().value;
      if (oldest === undefined) break;
      this.dropAnswers(oldest);
    }
  }

  /** Drops what is known of a serial: a revocation read from the feed. */
  private forget(serial: string): void {
    this.statusCache.delete(serial);
    this.dropAnswers(serial);
  }

  private dropAnswers(serial: string): void {
    const list = this.ocspCache.get(serial);
    if (!list) return;
    this.ocspCacheBytes -= list.reduce((n, c) => n + c.der.length + c.certId.length, 0);
    this.ocspCache.delete(serial);
  }

  /** What the OCSP cache holds: serials, answers and bytes (for tests and metrics). */
  ocspCacheSize(): { serials: number; entries: number; bytes: number } {
    let entries = 0;
    for (const list of this.ocspCache.values()) entries += list.length;
    return { serials: this.ocspCache.size, entries, bytes: this.ocspCacheBytes };
  }
}
