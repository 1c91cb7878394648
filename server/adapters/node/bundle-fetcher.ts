import { X509Certificate } from "node:crypto";
import { request } from "node:https";
import type { Authority } from "../../authority/authority.ts";
import {
  ForeignBundleError,
  initialTrustAnchors,
  MAX_FOREIGN_BUNDLE_BYTES,
  MAX_REFRESH_SECONDS,
  MIN_REFRESH_SECONDS,
  x509Authorities,
} from "../../authority/federation.ts";
import type { Scheduler } from "../../authority/responders.ts";
import type { Config } from "../../config/schema.ts";
import { toPem } from "../../pki/pem.ts";

export type FederationTarget = Config["federation"][number];

export interface FetchLimits {
  /** Whole request, connection included. */
  timeoutMs: number;
  maxBytes: number;
}

export const DEFAULT_FETCH_LIMITS: FetchLimits = { timeoutMs: 10_000, maxBytes: MAX_FOREIGN_BUNDLE_BYTES };

export class BundleFetchError extends Error {
  override name = "BundleFetchError";
}

/** How to authenticate a bundle endpoint. */
export type EndpointTrust =
  /** https_web: the system CAs, or these PEM CA certificates (`caFile`). */
  | { profile: "https_web"; ca?: string }
  /** https_spiffe: an X.509-SVID of `spiffeId` chaining to one of these authorities (DER). */
  | { profile: "https_spiffe"; spiffeId: string; authorities: Uint8Array[] };

/**
 * GETs a bundle endpoint over HTTPS: status 200, at most `maxBytes` (counted as the body
 * arrives; a larger answer is cut off and refused), within `timeoutMs`. https_spiffe
 * trusts only the foreign trust domain's X.509 authorities and checks the endpoint's
 * URI SAN instead of its host name (SPIFFE Trust Domain and Bundle §5.2.2).
 */
export function fetchBundleText(url: string, trust: EndpointTrust, limits = DEFAULT_FETCH_LIMITS): Promise<string> {
  return new Promise((resolve, reject) => {
    const tls =
      trust.profile === "https_web"
        ? trust.ca
          ? { ca: trust.ca }
          : {}
        : {
            ca: trust.authorities.map((der) => toPem("CERTIFICATE", der)),
            checkServerIdentity: (_host: string, cert: { raw: Buffer }) => {
              const sans = new X509Certificate(cert.raw).subjectAltName ?? "";
              const uris = sans
                .split(/,\s*/)
                .filter((s) => s.startsWith("URI:"))
                .map((s) => s.slice(4));
              if (uris.length === 1 && uris[0] === trust.spiffeId) return undefined;
              return new Error(`bundle endpoint is ${uris.join(", ") || "no SPIFFE ID"}, not ${trust.spiffeId}`);
            },
          };
    if (trust.profile === "https_spiffe" && trust.authorities.length === 0) {
      reject(new BundleFetchError("no X.509 authority of the foreign trust domain is held to check its endpoint"));
      return;
    }
    const req = request(url, { method: "GET", headers: { accept: "application/json" }, ...tls }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new BundleFetchError(`bundle endpoint answered ${res.statusCode}`));
        return;
      }
      const declared = Number(res.headers["content-length"] ?? "0");
      if (declared > limits.maxBytes) {
        res.destroy();
        reject(new BundleFetchError(`bundle is larger than ${limits.maxBytes} bytes`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > limits.maxBytes) {
          res.destroy();
          reject(new BundleFetchError(`bundle is larger than ${limits.maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      res.on("error", reject);
    });
    req.setTimeout(limits.timeoutMs, () =>
      req.destroy(new BundleFetchError(`no answer within ${limits.timeoutMs} ms`)),
    );
    req.on("error", (e) => reject(e instanceof BundleFetchError ? e : new BundleFetchError(e.message)));
    req.end();
  });
}

export interface FederationFetcherOptions {
  authority: Authority;
  targets: readonly FederationTarget[];
  /** PEM text of each https_web target's `caFile`, by trust domain (read by the entry). */
  caFiles?: ReadonlyMap<string, string>;
  scheduler: Scheduler;
  log: (level: "info" | "warn", msg: string, fields: Record<string, unknown>) => void;
  limits?: FetchLimits;
}

/**
 * Keeps the federated bundles fresh on Node: each is fetched when its copy is due (at
 * start when none is held or it is past due), validated by the core and stored as the
 * last good copy; a failure keeps the copy held and tries again sooner (30 s, doubling
 * up to the copy's refresh interval or a day).
 */
export class FederationFetcher {
  private readonly timers = new Map<string, { cancel(): void }>();
  private readonly failures = new Map<string, number>();
  private stopped = false;

  constructor(private readonly o: FederationFetcherOptions) {}

  /** Schedules every target from the copies held (a restart does not refetch what is fresh). */
  async start(): Promise<void> {
    const held = new Map((await this.o.authority.deps.storage.listFederatedBundles()).map((b) => [b.trustDomain, b]));
    const now = this.o.authority.now().getTime();
    for (const t of this.o.targets) {
      const due = held.get(t.trustDomain)?.refreshAt.getTime() ?? now;
      this.schedule(t, Math.max(0, due - now));
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) t.cancel();
    this.timers.clear();
  }

  private schedule(t: FederationTarget, ms: number): void {
    if (this.stopped) return;
    this.timers.get(t.trustDomain)?.cancel();
    this.timers.set(
      t.trustDomain,
      this.o.scheduler.after(ms, () => void this.refresh(t)),
    );
  }

  /** The trust to check a target's endpoint with, from the copy held (https_spiffe). */
  private async trust(t: FederationTarget): Promise<EndpointTrust> {
    if (t.profile === "https_web") return { profile: "https_web", ca: this.o.caFiles?.get(t.trustDomain) };
    const held = (await this.o.authority.trustBundles.federated())[t.trustDomain];
    const authorities = held ? x509Authorities(held) : initialTrustAnchors(t.trustBundle ?? "");
    return { profile: "https_spiffe", spiffeId: t.endpointSpiffeId ?? "", authorities };
  }

  /** Fetches one target now; returns when it is due next (ms from now). */
  async refresh(t: FederationTarget): Promise<number> {
    let next: number;
    try {
      const text = await fetchBundleText(t.bundleEndpointUrl, await this.trust(t), this.o.limits);
      const stored = await this.o.authority.trustBundles.storeFederated(t.trustDomain, t.bundleEndpointUrl, text);
      this.failures.delete(t.trustDomain);
      if (stored.changed) {
        this.o.log("info", "federated bundle updated", { trustDomain: t.trustDomain, endpoint: t.bundleEndpointUrl });
      }
      next = Math.max(MIN_REFRESH_SECONDS * 1000, stored.refreshAt.getTime() - this.o.authority.now().getTime());
    } catch (err) {
      const n = (this.failures.get(t.trustDomain) ?? 0) + 1;
      this.failures.set(t.trustDomain, n);
      next = Math.min(MAX_REFRESH_SECONDS, MIN_REFRESH_SECONDS * 2 ** Math.min(n - 1, 12)) * 1000;
      this.o.log("warn", "federated bundle refresh failed; the copy held stays", {
        trustDomain: t.trustDomain,
        endpoint: t.bundleEndpointUrl,
        error: (err as Error).message,
        invalid: err instanceof ForeignBundleError,
        retryInSeconds: next / 1000,
      });
    }
    this.schedule(t, next);
    return next;
  }
}
