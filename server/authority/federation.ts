import { decodeBase64 } from "../pki/base64.ts";
import { readCertificate } from "../pki/certificate.ts";
import { parsePem } from "../pki/pem.ts";
import type { FederatedBundleRecord } from "../ports/trust-bundles.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import type { SpiffeBundle, SpiffeJwk } from "./trust-bundles.ts";

/**
 * Bundles of the trust domains this server federates with (SPIFFE Trust Domain and
 * Bundle §5): what a fetched document must be to replace the copy held, and how often
 * to fetch it again. A document that fails is never stored: the last good copy stays.
 */

/** The most a bundle endpoint's answer may be. */
export const MAX_FOREIGN_BUNDLE_BYTES = 1024 * 1024;
/** Bounds on the foreign spiffe_refresh_hint. */
export const MIN_REFRESH_SECONDS = 30;
export const MAX_REFRESH_SECONDS = 86_400;
/** Without a hint: SPIFFE suggests a short default. */
export const DEFAULT_REFRESH_SECONDS = 300;
/** At most this many keys in a foreign bundle. */
const MAX_KEYS = 1000;

export class ForeignBundleError extends Error {
  override name = "ForeignBundleError";
}

export interface ValidBundle {
  bundle: SpiffeBundle;
  /** The bundle's refresh hint, bounded to [MIN, MAX]. */
  refreshSeconds: number;
  sequence: number | null;
}

const B64URL = /^[A-Za-z0-9_-]+$/;

async function checkKey(subtle: SubtleCrypto, k: Record<string, unknown>, i: number): Promise<SpiffeJwk | undefined> {
  const use = k.use;
  // §4.2.1.1: a key whose use is not understood is ignored.
  if (use !== "x509-svid" && use !== "jwt-svid") return undefined;
  const where = `key ${i} (${use})`;
  const str = (name: string) => {
    const v = k[name];
    if (typeof v !== "string" || !B64URL.test(v))
      throw new ForeignBundleError(`${where}: ${name} is missing or not base64url`);
    return v;
  };
  let out: SpiffeJwk;
  if (k.kty === "EC") {
    const crv = k.crv;
    if (crv !== "P-256" && crv !== "P-384" && crv !== "P-521")
      throw new ForeignBundleError(`${where}: unsupported curve`);
    out = { kty: "EC", use, crv, x: str("x"), y: str("y") };
    await subtle
      .importKey("jwk", { kty: "EC", crv, x: out.x, y: out.y }, { name: "ECDSA", namedCurve: crv }, true, ["verify"])
      .catch(() => {
        throw new ForeignBundleError(`${where}: not a point on ${crv}`);
      });
  } else if (k.kty === "RSA") {
    out = { kty: "RSA", use, n: str("n"), e: str("e") };
    if (out.n && out.n.length < 342) throw new ForeignBundleError(`${where}: RSA keys under 2048 bits are refused`);
    await subtle
      .importKey("jwk", { kty: "RSA", n: out.n, e: out.e }, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, true, [
        "verify",
      ])
      .catch(() => {
        throw new ForeignBundleError(`${where}: not an RSA public key`);
      });
  } else {
    throw new ForeignBundleError(`${where}: kty ${String(k.kty)} is not supported`);
  }
  if (use === "x509-svid") {
    // §4.2.2: exactly one certificate, the authority.
    const x5c = k.x5c;
    if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== "string") {
      throw new ForeignBundleError(`${where}: x5c must hold exactly one certificate`);
    }
    try {
      readCertificate(decodeBase64(x5c[0]));
    } catch {
      throw new ForeignBundleError(`${where}: x5c is not a DER certificate`);
    }
    out.x5c = [x5c[0]];
  } else {
    // §4.2.3: a JWT authority has a key id.
    if (typeof k.kid !== "string" || k.kid.length === 0 || k.kid.length > 256) {
      throw new ForeignBundleError(`${where}: kid is required`);
    }
    out.kid = k.kid;
  }
  return out;
}

/**
 * Parses and checks a foreign trust domain's bundle: a JWK Set whose keys are sane
 * (public parameters that import, x509-svid keys with one certificate, jwt-svid keys
 * with a kid), at least one SPIFFE key, an integer sequence and refresh hint if present.
 */
export async function validateForeignBundle(subtle: SubtleCrypto, text: string): Promise<ValidBundle> {
  if (text.length > MAX_FOREIGN_BUNDLE_BYTES) throw new ForeignBundleError("bundle is larger than 1 MiB");
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ForeignBundleError("bundle is not JSON");
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc))
    throw new ForeignBundleError("bundle is not a JSON object");
  const d = doc as Record<string, unknown>;
  if (!Array.isArray(d.keys)) throw new ForeignBundleError("bundle has no keys array");
  if (d.keys.length > MAX_KEYS) throw new ForeignBundleError(`bundle has more than ${MAX_KEYS} keys`);
  const seq = d.spiffe_sequence;
  if (seq !== undefined && !(Number.isSafeInteger(seq) && (seq as number) >= 0)) {
    throw new ForeignBundleError("spiffe_sequence is not a non-negative integer");
  }
  const hint = d.spiffe_refresh_hint;
  if (hint !== undefined && !(Number.isSafeInteger(hint) && (hint as number) >= 0)) {
    throw new ForeignBundleError("spiffe_refresh_hint is not a non-negative integer");
  }
  const keys: SpiffeJwk[] = [];
  for (const [i, k] of d.keys.entries()) {
    if (!k || typeof k !== "object" || Array.isArray(k)) throw new ForeignBundleError(`key ${i} is not an object`);
    const key = await checkKey(subtle, k as Record<string, unknown>, i);
    if (key) keys.push(key);
  }
  if (keys.length === 0) throw new ForeignBundleError("bundle has no x509-svid or jwt-svid key");
  const refreshSeconds = Math.min(
    MAX_REFRESH_SECONDS,
    Math.max(MIN_REFRESH_SECONDS, (hint as number | undefined) ?? DEFAULT_REFRESH_SECONDS),
  );
  return {
    bundle: {
      keys,
      spiffe_sequence: (seq as number | undefined) ?? 0,
      spiffe_refresh_hint: (hint as number | undefined) ?? DEFAULT_REFRESH_SECONDS,
    },
    refreshSeconds,
    sequence: (seq as number | undefined) ?? null,
  };
}

/**
 * An initial foreign bundle from configuration (`trustBundle` of an https_spiffe
 * entry): a JWKS, or PEM certificates (its X.509 authorities).
 */
export function initialTrustAnchors(text: string): Uint8Array[] {
  if (text.trimStart().startsWith("{")) {
    const doc = JSON.parse(text) as { keys?: { use?: string; x5c?: string[] }[] };
    return (doc.keys ?? [])
      .filter((k) => k.use === "x509-svid" && k.x5c?.[0])
      .map((k) => decodeBase64(k.x5c?.[0] as string));
  }
  return parsePem(text)
    .filter((b) => b.label === "CERTIFICATE")
    .map((b) => b.der);
}

/** The X.509 authorities (DER) of a bundle held. */
export function x509Authorities(bundle: SpiffeBundle): Uint8Array[] {
  return bundle.keys.filter((k) => k.use === "x509-svid" && k.x5c?.[0]).map((k) => decodeBase64(k.x5c?.[0] as string));
}

/**
 * Stores a fetched foreign bundle once it passed validation: the last good copy, with
 * the time to fetch again. A change of content is audited in the same write set.
 * Returns when to fetch next.
 */
export async function storeForeignBundle(
  deps: Pick<AuthorityDeps, "storage" | "clock" | "crypto">,
  trustDomain: string,
  endpoint: string,
  text: string,
): Promise<{ refreshAt: Date; changed: boolean }> {
  const valid = await validateForeignBundle(deps.crypto.subtle, text);
  const now = deps.clock.now();
  const refreshAt = new Date(now.getTime() + valid.refreshSeconds * 1000);
  const jwks = JSON.stringify(valid.bundle);
  const held = (await deps.storage.listFederatedBundles()).find((b) => b.trustDomain === trustDomain);
  const changed = held?.jwks !== jwks;
  const record: FederatedBundleRecord = {
    trustDomain,
    jwks,
    sequence: valid.sequence,
    endpoint,
    fetchedAt: now,
    refreshAt,
  };
  await deps.storage.apply([
    { kind: "putFederatedBundle", bundle: record },
    ...(changed
      ? [
          auditWrite({
            at: now,
            actor: "server",
            action: "spiffe.federated_bundle_updated",
            outcome: "success",
            detail: { trustDomain, endpoint, sequence: valid.sequence, keys: valid.bundle.keys.length },
          }),
        ]
      : []),
  ]);
  return { refreshAt, changed };
}

/** The federated bundles held, by trust domain (only those still configured). */
export async function federatedBundles(
  deps: Pick<AuthorityDeps, "storage" | "config">,
): Promise<Record<string, SpiffeBundle>> {
  const configured = new Set(deps.config.federation.map((f) => f.trustDomain));
  const out: Record<string, SpiffeBundle> = {};
  for (const b of await deps.storage.listFederatedBundles()) {
    if (configured.has(b.trustDomain)) out[b.trustDomain] = JSON.parse(b.jwks) as SpiffeBundle;
  }
  return out;
}
