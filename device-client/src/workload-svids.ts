/**
 * The workload SVIDs this device holds for its registration entries.
 *
 * Fetches the entries (`GET /workload/v1/entries`) every `pollSeconds` and at once on
 * the MQTT command `workloads-changed`; one P-256 key per entry, made here, never sent;
 * CSRs in one batch (`POST /workload/v1/x509-svids`); each SVID renewed at half its
 * lifetime with a new key; an SVID is dropped at once when its entry disappears or
 * changes, when it expires, or when the device is revoked. Bundles
 * (`GET /workload/v1/bundles`) are fetched with the entries. JWT-SVIDs are fetched on
 * demand and cached per (entry, audience set) until half their lifetime.
 * Listeners are told after every change (the Workload API pushes it on its streams).
 */
import { createPrivateKey, type KeyObject, randomBytes, X509Certificate } from "node:crypto";
import {
  closeSync,
  constants as fsc,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import type { AgentDeps } from "./deps.ts";
import { generateKey, makeCsr, pemBlocks, toPem } from "./keys.ts";
import type { HttpAnswer, WorkloadServerClient } from "./workload-client.ts";

export interface WorkloadEntry {
  id: string;
  spiffeId: string;
  selectors: string[];
  ttlSeconds: number;
  jwtAudiences: string[];
}

export interface X509Svid {
  entryId: string;
  spiffeId: string;
  /** DER, leaf first. */
  chain: Uint8Array[];
  key: KeyObject;
  serial: string;
  notBefore: number;
  notAfter: number;
  /** When it arrived: renewal is at half of [receivedAt, notAfter]. */
  receivedAt: number;
}

export interface Jwks {
  keys: Record<string, unknown>[];
  [k: string]: unknown;
}

/** What the Workload API serves from. */
export interface WorkloadView {
  trustDomain: string;
  entries: readonly WorkloadEntry[];
  svid(entryId: string): X509Svid | undefined;
  /** DER trust anchors of this trust domain (X.509-SVID use). */
  x509Bundle: readonly Uint8Array[];
  /** Other trust domains' X.509 anchors, by trust domain name. */
  federatedX509: ReadonlyMap<string, readonly Uint8Array[]>;
  /** JWKS (jwt-svid keys only) by trust domain name, own and federated. */
  jwtBundles: ReadonlyMap<string, Jwks>;
}

export class WorkloadError extends Error {
  constructor(
    message: string,
    readonly kind: "denied" | "unavailable",
  ) {
    super(message);
  }
}

const ENTRY_FIELDS = (e: WorkloadEntry) =>
  JSON.stringify([e.spiffeId, [...e.selectors].sort(), e.ttlSeconds, [...e.jwtAudiences].sort()]);

const parseJson = (a: HttpAnswer): { ok: true; value: unknown } | { ok: false; message: string; status?: number } => {
  if ("error" in a) return { ok: false, message: a.error };
  if (a.status !== 200)
    return { ok: false, status: a.status, message: `HTTP ${a.status}: ${a.body.trim().slice(0, 200)}` };
  try {
    return { ok: true, value: JSON.parse(a.body) };
  } catch {
    return { ok: false, message: "unreadable JSON answer" };
  }
};

const isString = (v: unknown): v is string => typeof v === "string";
const b64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

function readEntries(v: unknown): {
  trustDomain: string;
  revision: string;
  pollSeconds: number;
  entries: WorkloadEntry[];
} {
  const o = v as Record<string, unknown>;
  if (!o || !isString(o.trustDomain) || !Array.isArray(o.entries)) throw new Error("malformed entries answer");
  const entries = o.entries.map((raw) => {
    const e = raw as Record<string, unknown>;
    if (
      !isString(e.id) ||
      !isString(e.spiffeId) ||
      !e.spiffeId.startsWith(`spiffe://${o.trustDomain}/`) ||
      !Array.isArray(e.selectors) ||
      !e.selectors.every(isString) ||
      typeof e.ttlSeconds !== "number"
    )
      throw new Error("malformed entry");
    const jwtAudiences = Array.isArray(e.jwtAudiences) ? e.jwtAudiences.filter(isString) : [];
    return { id: e.id, spiffeId: e.spiffeId, selectors: e.selectors, ttlSeconds: e.ttlSeconds, jwtAudiences };
  });
  const poll = typeof o.pollSeconds === "number" && o.pollSeconds > 0 ? o.pollSeconds : 30;
  return {
    trustDomain: o.trustDomain,
    revision: isString(o.revision) ? o.revision : "",
    pollSeconds: Math.min(Math.max(poll, 5), 3600),
    entries,
  };
}

/** The X.509 anchors (x5c of `use: x509-svid` keys) and the JWT keys (`use: jwt-svid`) of a JWKS bundle. */
export function splitBundle(jwks: unknown): { x509: Uint8Array[]; jwt: Jwks } {
  const keys = Array.isArray((jwks as Jwks | undefined)?.keys) ? (jwks as Jwks).keys : [];
  const x509: Uint8Array[] = [];
  const jwt: Record<string, unknown>[] = [];
  for (const k of keys) {
    if (k.use === "x509-svid" && Array.isArray(k.x5c) && isString(k.x5c[0])) x509.push(b64(k.x5c[0]));
    if (k.use === "jwt-svid") jwt.push(k);
  }
  return { x509, jwt: { keys: jwt } };
}

export interface SvidManagerOptions {
  client: WorkloadServerClient;
  deps: Pick<AgentDeps, "timers" | "log">;
  /** The agent's time (never behind its floor). */
  now: () => number;
  /** Keys and SVIDs persisted here (0600) across restarts; in memory only without it. */
  keysDir?: string;
  /**
   * Where the entries and SVIDs held are written (never a key) at every change, for
   * `edgeid-agent status` (another process) to show.
   */
  summaryFile?: string;
}

/** The entries and SVIDs an agent holds, as `edgeid-agent status` shows them: never a key. */
export interface WorkloadSummary {
  /** When the agent wrote this (its clock). */
  updatedAt: string;
  trustDomain: string;
  entries: { id: string; spiffeId: string; selectors: string[]; ttlSeconds: number; jwtAudiences: string[] }[];
  svids: { entryId: string; spiffeId: string; serial: string; notAfter: string }[];
  /** The device was revoked: nothing is served. */
  revoked: boolean;
}

export class SvidManager implements WorkloadView {
  trustDomain = "";
  entries: WorkloadEntry[] = [];
  x509Bundle: Uint8Array[] = [];
  federatedX509 = new Map<string, Uint8Array[]>();
  jwtBundles = new Map<string, Jwks>();
  private readonly svids = new Map<string, X509Svid>();
  private readonly jwtCache = new Map<
    string,
    { spiffeId: string; token: string; refreshAt: number; expiresAt: number }
  >();
  private readonly listeners = new Set<() => void>();
  private revision: string | undefined;
  private pollSeconds = 30;
  private timer: unknown;
  private running = false;
  private revoked = false;
  private refreshing: Promise<void> | undefined;
  private again = false;
  /** The last refresh met an error (network, 4xx, 5xx). */
  private failed = false;

  constructor(private readonly o: SvidManagerOptions) {
    if (o.keysDir) mkdirSync(o.keysDir, { recursive: true, mode: 0o700 });
  }

  svid(entryId: string): X509Svid | undefined {
    const s = this.svids.get(entryId);
    return s && s.notAfter > this.o.now() ? s : undefined;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    this.writeSummary();
    for (const l of [...this.listeners]) l();
  }

  /** What the agent holds now: entries and SVID metadata (SPIFFE ID, entry, serial, notAfter), no key. */
  summary(): WorkloadSummary {
    const now = this.o.now();
    return {
      updatedAt: new Date(now).toISOString(),
      trustDomain: this.trustDomain,
      entries: this.entries.map((e) => ({
        id: e.id,
        spiffeId: e.spiffeId,
        selectors: [...e.selectors],
        ttlSeconds: e.ttlSeconds,
        jwtAudiences: [...e.jwtAudiences],
      })),
      svids: this.entries.flatMap((e) => {
        const s = this.svid(e.id);
        return s
          ? [
              {
                entryId: s.entryId,
                spiffeId: s.spiffeId,
                serial: s.serial,
                notAfter: new Date(s.notAfter).toISOString(),
              },
            ]
          : [];
      }),
      revoked: this.revoked,
    };
  }

  private writeSummary(): void {
    if (!this.o.summaryFile) return;
    try {
      writePrivate(this.o.summaryFile, `${JSON.stringify(this.summary())}\n`);
    } catch (err) {
      this.o.deps.log("warn", "workload summary not written", { error: (err as Error).message });
    }
  }

  start(): Promise<void> {
    this.running = true;
    // Nothing held yet: status must not show what an earlier run held.
    this.writeSummary();
    return this.refresh();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== undefined) this.o.deps.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The MQTT command `workloads-changed`: refetch now. */
  workloadsChanged(): Promise<void> {
    return this.refresh();
  }

  /** The device is revoked (authenticated source): every SVID is dropped at once, none fetched. */
  deviceRevoked(): void {
    this.revoked = true;
    this.dropAll("device revoked");
  }

  /** The device is no longer revoked (an operator reinstated it, a new identity). */
  deviceReinstated(): void {
    if (!this.revoked) return;
    this.revoked = false;
    void this.refresh();
  }

  private dropAll(reason: string): void {
    const had = this.svids.size > 0 || this.entries.length > 0;
    this.svids.clear();
    this.jwtCache.clear();
    this.entries = [];
    this.revision = undefined;
    for (const f of this.persistedFiles()) rmSync(f, { force: true });
    if (had) {
      this.o.deps.log("warn", "workload SVIDs dropped", { reason });
      this.changed();
    } else this.writeSummary();
  }

  /** One refresh at a time; a request during one runs another after it. */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.again = false;
          await this.refreshOnce();
        } while (this.again && this.running);
      } finally {
        this.refreshing = undefined;
        this.schedule();
      }
    })();
    return this.refreshing;
  }

  private schedule(): void {
    if (!this.running) return;
    if (this.timer !== undefined) this.o.deps.timers.clearTimeout(this.timer);
    const now = this.o.now();
    let at = now + this.pollSeconds * 1000;
    for (const s of this.svids.values()) at = Math.min(at, this.renewAt(s), s.notAfter);
    // After a failed exchange, a due renewal is retried no sooner than 5 s later (and
    // never later than the next poll), not in a tight loop against a server that is down.
    const floor = this.failed ? Math.min(5000, this.pollSeconds * 1000) : 1000;
    this.timer = this.o.deps.timers.setTimeout(
      () => {
        this.timer = undefined;
        void this.refresh();
      },
      Math.max(floor, at - now),
    );
  }

  private renewAt(s: X509Svid): number {
    return s.receivedAt + (s.notAfter - s.receivedAt) / 2;
  }

  private async refreshOnce(): Promise<void> {
    if (this.revoked) return;
    this.failed = false;
    const now = this.o.now();
    let changed = false;
    // Expired SVIDs go whatever the server says.
    for (const [id, s] of this.svids)
      if (s.notAfter <= now) {
        this.svids.delete(id);
        changed = true;
      }
    const answer = parseJson(await this.o.client.get("/workload/v1/entries"));
    if (!answer.ok) {
      this.refused(answer);
      if (changed) this.changed();
      return;
    }
    let doc: ReturnType<typeof readEntries>;
    try {
      doc = readEntries(answer.value);
    } catch (err) {
      this.o.deps.log("warn", "workload entries rejected", { error: (err as Error).message });
      if (changed) this.changed();
      return;
    }
    this.pollSeconds = doc.pollSeconds;
    const revisionChanged = doc.revision !== this.revision;
    if (revisionChanged || doc.trustDomain !== this.trustDomain) {
      const fresh = new Map(doc.entries.map((e) => [e.id, e]));
      for (const old of this.entries) {
        const now2 = fresh.get(old.id);
        if (!now2 || ENTRY_FIELDS(now2) !== ENTRY_FIELDS(old)) {
          // Deleted or changed: the old SVID is not served a moment longer.
          this.svids.delete(old.id);
          this.unpersist(old.id);
          for (const k of this.jwtCache.keys()) if (k.startsWith(`${old.id}\n`)) this.jwtCache.delete(k);
        }
      }
      this.entries = doc.entries;
      this.trustDomain = doc.trustDomain;
      this.revision = doc.revision;
      changed = true;
      if (this.o.keysDir) this.loadPersisted();
    }
    // Bundles every time: a federated trust domain's bundle reaches the server on its own
    // schedule (and keys rotate) without this device's entry revision changing.
    changed = (await this.fetchBundles()) || changed;
    const due = this.entries.filter((e) => {
      const s = this.svids.get(e.id);
      return !s || this.renewAt(s) <= now;
    });
    if (due.length > 0) changed = (await this.issue(due)) || changed;
    if (changed) this.changed();
  }

  private refused(answer: { message: string; status?: number }): void {
    this.failed = true;
    this.o.deps.log("warn", "workload server request failed", { error: answer.message });
    if (answer.status && answer.status >= 400 && answer.status < 500 && /revoked/i.test(answer.message)) {
      this.deviceRevoked();
    }
  }

  private async fetchBundles(): Promise<boolean> {
    const answer = parseJson(await this.o.client.get("/workload/v1/bundles"));
    if (!answer.ok) {
      this.refused(answer);
      return false;
    }
    const o = answer.value as { trustDomain?: unknown; bundle?: unknown; federated?: unknown };
    if (!isString(o.trustDomain)) return false;
    const own = splitBundle(o.bundle);
    const jwt = new Map<string, Jwks>([[o.trustDomain, own.jwt]]);
    const fed = new Map<string, Uint8Array[]>();
    if (o.federated && typeof o.federated === "object") {
      for (const [td, jwks] of Object.entries(o.federated as Record<string, unknown>)) {
        if (td === o.trustDomain) continue;
        const b = splitBundle(jwks);
        fed.set(td, b.x509);
        jwt.set(td, b.jwt);
      }
    }
    const before = bundlesSignature(this.x509Bundle, this.federatedX509, this.jwtBundles);
    if (own.x509.length > 0) this.x509Bundle = own.x509;
    this.jwtBundles = jwt;
    this.federatedX509 = fed;
    return bundlesSignature(this.x509Bundle, this.federatedX509, this.jwtBundles) !== before;
  }

  /** Batches of at most 100 CSRs, one new key per entry. */
  private async issue(entries: WorkloadEntry[]): Promise<boolean> {
    let changed = false;
    for (let i = 0; i < entries.length; i += 100) {
      const batch = entries.slice(i, i + 100);
      const keys = new Map(batch.map((e) => [e.id, generateKey("P-256")]));
      const requests = batch.map((e) => ({
        entryId: e.id,
        csr: Buffer.from(makeCsr(keys.get(e.id) as KeyObject, e.spiffeId)).toString("base64"),
      }));
      const receivedAt = this.o.now();
      const answer = parseJson(await this.o.client.post("/workload/v1/x509-svids", { requests }));
      if (!answer.ok) {
        this.refused(answer);
        continue;
      }
      const o = answer.value as { svids?: unknown; bundle?: unknown };
      if (Array.isArray(o.bundle) && o.bundle.every(isString) && o.bundle.length > 0) {
        this.x509Bundle = o.bundle.map(b64);
        changed = true;
      }
      for (const raw of Array.isArray(o.svids) ? o.svids : []) {
        const s = raw as Record<string, unknown>;
        const entry = batch.find((e) => e.id === s.entryId);
        const key = entry && keys.get(entry.id);
        if (!entry || !key || !isString(s.certificate)) continue;
        try {
          const svid = this.accept(entry, key, s, receivedAt);
          this.svids.set(entry.id, svid);
          this.persist(svid);
          changed = true;
        } catch (err) {
          this.o.deps.log("warn", "workload SVID rejected", { entryId: entry.id, error: (err as Error).message });
        }
      }
    }
    return changed;
  }

  /** Checks an issued SVID: our key, exactly the entry's SPIFFE ID as its one URI SAN, not a CA. */
  private accept(entry: WorkloadEntry, key: KeyObject, s: Record<string, unknown>, receivedAt: number): X509Svid {
    const leafDer = b64(s.certificate as string);
    const leaf = new X509Certificate(leafDer);
    if (!leaf.checkPrivateKey(key)) throw new Error("the certificate is not for the key sent");
    if (leaf.ca) throw new Error("the SVID is a CA certificate");
    const uris = (leaf.subjectAltName ?? "")
      .split(", ")
      .filter((n) => n.startsWith("URI:"))
      .map((n) => n.slice(4));
    if (uris.length !== 1 || uris[0] !== entry.spiffeId)
      throw new Error(`URI SANs ${uris.join(" ")} are not ${entry.spiffeId}`);
    const chain = [leafDer, ...(Array.isArray(s.chain) ? s.chain.filter(isString).map(b64) : [])];
    return {
      entryId: entry.id,
      spiffeId: entry.spiffeId,
      chain,
      key,
      serial: leaf.serialNumber.toLowerCase(),
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
      receivedAt,
    };
  }

  /** A JWT-SVID for the entry and audiences: cached until half its lifetime. */
  async jwtSvid(entry: WorkloadEntry, audience: string[]): Promise<{ spiffeId: string; token: string }> {
    if (this.revoked) throw new WorkloadError("device revoked", "denied");
    const aud = [...new Set(audience)].sort();
    const cacheKey = `${entry.id}\n${JSON.stringify(aud)}`;
    const now = this.o.now();
    const cached = this.jwtCache.get(cacheKey);
    if (cached && cached.refreshAt > now && cached.expiresAt > now) return cached;
    const answer = parseJson(await this.o.client.post("/workload/v1/jwt-svids", { entryId: entry.id, audience: aud }));
    if (!answer.ok) {
      this.refused(answer);
      throw new WorkloadError(
        answer.message,
        answer.status && answer.status >= 400 && answer.status < 500 ? "denied" : "unavailable",
      );
    }
    const o = answer.value as { spiffeId?: unknown; token?: unknown; expiresAt?: unknown };
    if (!isString(o.token) || o.spiffeId !== entry.spiffeId || !isString(o.expiresAt))
      throw new WorkloadError("malformed JWT-SVID answer", "unavailable");
    const expiresAt = Date.parse(o.expiresAt);
    const fresh = { spiffeId: entry.spiffeId, token: o.token, expiresAt, refreshAt: now + (expiresAt - now) / 2 };
    // Only while the entry is still current (not deleted meanwhile).
    if (this.entries.some((e) => e.id === entry.id)) this.jwtCache.set(cacheKey, fresh);
    return fresh;
  }

  // Persistence (--workload-keys-dir): `<entry id>.pem`, key then chain, 0600.
  private fileOf(entryId: string): string | undefined {
    if (!this.o.keysDir || !/^[\w.-]+$/.test(entryId)) return undefined;
    return join(this.o.keysDir, `${entryId}.pem`);
  }

  private persistedFiles(): string[] {
    return this.entries.map((e) => this.fileOf(e.id)).filter(isString);
  }

  private persist(s: X509Svid): void {
    const file = this.fileOf(s.entryId);
    if (!file) return;
    const pem =
      (s.key.export({ type: "pkcs8", format: "pem" }) as string) +
      s.chain.map((d) => toPem("CERTIFICATE", d)).join("") +
      `# received ${s.receivedAt}\n`;
    writePrivate(file, pem);
  }

  private unpersist(entryId: string): void {
    const file = this.fileOf(entryId);
    if (file) rmSync(file, { force: true });
  }

  /** SVIDs kept on disk for the current entries, when still valid and for the same SPIFFE ID. */
  private loadPersisted(): void {
    for (const e of this.entries) {
      const file = this.fileOf(e.id);
      if (!file || this.svids.has(e.id)) continue;
      try {
        const text = readFileSync(file, "utf8");
        const key = createPrivateKey(text);
        const chain = pemBlocks(text, "CERTIFICATE");
        const received = Number(/# received (\d+)/.exec(text)?.[1] ?? 0);
        const svid = this.accept(
          e,
          key,
          {
            certificate: Buffer.from(chain[0] as Uint8Array).toString("base64"),
            chain: chain.slice(1).map((d) => Buffer.from(d).toString("base64")),
          },
          received,
        );
        if (svid.notAfter > this.o.now()) this.svids.set(e.id, svid);
      } catch {
        rmSync(file, { force: true });
      }
    }
  }
}

/**
 * The summary a running agent wrote (`edgeid-agent status`): undefined when there is
 * none (no Workload API configured, or it never started) or it is not one.
 */
export function readWorkloadSummary(file: string): WorkloadSummary | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
  const o = doc as Partial<WorkloadSummary> | null;
  if (!o || typeof o !== "object" || !Array.isArray(o.entries) || !Array.isArray(o.svids)) return undefined;
  return {
    updatedAt: String(o.updatedAt ?? ""),
    trustDomain: String(o.trustDomain ?? ""),
    entries: o.entries.map((e) => ({
      id: String(e.id),
      spiffeId: String(e.spiffeId),
      selectors: Array.isArray(e.selectors) ? e.selectors.map(String) : [],
      ttlSeconds: Number(e.ttlSeconds),
      jwtAudiences: Array.isArray(e.jwtAudiences) ? e.jwtAudiences.map(String) : [],
    })),
    svids: o.svids.map((v) => ({
      entryId: String(v.entryId),
      spiffeId: String(v.spiffeId),
      serial: String(v.serial),
      notAfter: String(v.notAfter),
    })),
    revoked: o.revoked === true,
  };
}

/** What the bundle streams carry, as one string: equal strings, nothing to push. */
function bundlesSignature(
  own: readonly Uint8Array[],
  federated: ReadonlyMap<string, readonly Uint8Array[]>,
  jwt: ReadonlyMap<string, Jwks>,
): string {
  const ders = (l: readonly Uint8Array[]) => l.map((d) => Buffer.from(d).toString("base64"));
  return JSON.stringify([
    ders(own),
    [...federated].sort(([a], [b]) => a.localeCompare(b)).map(([td, l]) => [td, ders(l)]),
    [...jwt].sort(([a], [b]) => a.localeCompare(b)),
  ]);
}

function writePrivate(file: string, data: string): void {
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
