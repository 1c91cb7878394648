import { calculateJwkThumbprint, SignJWT } from "jose";
import { encodeBase64 } from "../pki/base64.ts";
import { readCertificate } from "../pki/certificate.ts";
import { describeKey } from "../pki/keys.ts";
import { StorageConflictError, type Write } from "../ports/storage.ts";
import type { BundleRevision, JwtKeyRecord, JwtKeyVault } from "../ports/trust-bundles.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { AuthorityError, badRequest } from "./errors.ts";

/**
 * The trust domain's SPIFFE bundle (SPIFFE Trust Domain and Bundle §4: a JWK Set with
 * `spiffe_sequence` and `spiffe_refresh_hint`), its rotating JWT-SVID signing keys
 * (ES256), and JWT-SVID signing (JWT-SVID §2–3: header alg and kid, typ JWT; claims
 * sub, aud, exp, iat).
 *
 * Rotation: a key is published when it is made and signs from `activatesAt`, one
 * key lifetime after its predecessor started (so relying parties have it long before
 * its first token; never less than one refresh hint ahead); it stops signing at
 * `retiresAt` and stays in the bundle until `removedAt` = retiresAt + the JWT-SVID
 * maximum lifetime, when every token it signed has expired. `rotateJwtKeys` applies
 * that schedule at the clock's time; the Node server's timer and the Worker's cron
 * call it. Every change of the published set is a new revision: `spiffe_sequence`.
 */

/** The longest JWT-SVID lifetime this server signs (SPIFFE recommends short-lived tokens). */
export const MAX_JWT_SVID_SECONDS = 3600;

/** One key of a SPIFFE bundle: a JWK with the SPIFFE `use` (and, per use, `x5c` or `kid`). */
export interface SpiffeJwk {
  kty: string;
  use: "x509-svid" | "jwt-svid";
  kid?: string;
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  /** x509-svid: exactly one certificate, the trust anchor (standard base64 of its DER). */
  x5c?: string[];
}

/** A SPIFFE bundle as served (`GET /spiffe/bundle`). */
export interface SpiffeBundle {
  keys: SpiffeJwk[];
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

export interface JwtSvidRequest {
  /** The subject: a SPIFFE ID of this trust domain. */
  spiffeId: string;
  /** One or more audiences (the `aud` claim). */
  audience: string[];
  /** Lifetime, 1 … MAX_JWT_SVID_SECONDS (longer is cut to the maximum). */
  ttlSeconds: number;
}

export interface SignedJwtSvid {
  /** The compact JWS. */
  token: string;
  expiresAt: Date;
  /** The key that signed it. */
  kid: string;
}

export interface RotationResult {
  /** Kids of keys made by this rotation. */
  created: string[];
  /** Kids of keys that left the bundle. */
  removed: string[];
  /** The bundle's sequence after the rotation. */
  sequence: number;
  /** True when another process rotated first (nothing of ours was written). */
  lost?: boolean;
}

/** The actor of what the server does on its own schedule. */
const SERVER = "server";

/** The key that signs at `now`: the newest one active then, if any. */
export function signingKey(keys: readonly JwtKeyRecord[], now: Date): JwtKeyRecord | undefined {
  let best: JwtKeyRecord | undefined;
  for (const k of keys) {
    if (k.activatesAt.getTime() > now.getTime() || k.retiresAt.getTime() <= now.getTime()) continue;
    if (!best || k.activatesAt.getTime() > best.activatesAt.getTime()) best = k;
  }
  return best;
}

/** RFC 7638 thumbprint (SHA-256, base64url) of an EC public key: the key's `kid`. */
export function jwkThumbprint(jwk: JsonWebKey): Promise<string> {
  return calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, "sha256");
}

const anchorCache = new WeakMap<Uint8Array, Promise<SpiffeJwk>>();

/** A trust anchor's x509-svid key: its public parameters and the certificate in `x5c`. */
export function x509SvidKey(subtle: SubtleCrypto, certificate: Uint8Array): Promise<SpiffeJwk> {
  let jwk = anchorCache.get(certificate);
  if (!jwk) {
    jwk = anchorJwk(subtle, certificate);
    anchorCache.set(certificate, jwk);
  }
  return jwk;
}

async function anchorJwk(subtle: SubtleCrypto, certificate: Uint8Array): Promise<SpiffeJwk> {
  const spki = readCertificate(certificate).spki;
  const key = describeKey(spki);
  const x5c = [encodeBase64(certificate)];
  if (key.kind === "EC" && (key.curve === "P-256" || key.curve === "P-384" || key.curve === "P-521")) {
    const k = await subtle.importKey("spki", spki as BufferSource, { name: "ECDSA", namedCurve: key.curve }, true, [
      "verify",
    ]);
    const j = await subtle.exportKey("jwk", k);
    return { kty: "EC", crv: j.crv as string, x: j.x as string, y: j.y as string, use: "x509-svid", x5c };
  }
  if (key.kind === "RSA") {
    const k = await subtle.importKey(
      "spki",
      spki as BufferSource,
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      true,
      ["verify"],
    );
    const j = await subtle.exportKey("jwk", k);
    return { kty: "RSA", n: j.n as string, e: j.e as string, use: "x509-svid", x5c };
  }
  throw new Error(`trust anchor key ${key.label} cannot be published in a SPIFFE bundle`);
}

/**
 * The trust anchors X.509-SVIDs chain to: the root of the default (P-256) issuing CA,
 * which issues them.
 */
export function trustAnchors(deps: Pick<AuthorityDeps, "ca">): Uint8Array[] {
  const root = deps.ca.chain[deps.ca.chain.length - 1];
  return root ? [root] : [];
}

function jwtSvidKey(k: JwtKeyRecord): SpiffeJwk {
  const j = k.publicJwk;
  return { kty: "EC", crv: j.crv as string, x: j.x as string, y: j.y as string, use: "jwt-svid", kid: k.kid };
}

/** The trust domain's bundle as it stands: trust anchors, the published JWT keys, sequence and refresh hint. */
export async function trustBundle(
  deps: Pick<AuthorityDeps, "ca" | "crypto" | "storage" | "config">,
): Promise<SpiffeBundle> {
  const [keys, revision] = await Promise.all([deps.storage.listJwtKeys(), deps.storage.latestBundleRevision()]);
  const anchors = await Promise.all(trustAnchors(deps).map((c) => x509SvidKey(deps.crypto.subtle, c)));
  return {
    keys: [...anchors, ...keys.map(jwtSvidKey)],
    spiffe_sequence: revision?.sequence ?? 0,
    spiffe_refresh_hint: deps.config.spiffe.refreshHint,
  };
}

/** What a revision covers: the anchors' DER and the JWT keys' ids. */
async function bundleDigest(deps: Pick<AuthorityDeps, "ca" | "digest">, kids: readonly string[]): Promise<string> {
  const anchors = await Promise.all(trustAnchors(deps).map((c) => sha256Hex(deps.digest, c)));
  return sha256Hex(deps.digest, JSON.stringify({ anchors, kids: [...kids].sort() }));
}

async function makeKey(
  deps: Pick<AuthorityDeps, "crypto">,
  vault: JwtKeyVault,
  now: Date,
  activatesAt: Date,
  lifetimeSeconds: number,
): Promise<JwtKeyRecord> {
  const pair = (await deps.crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const j = await deps.crypto.subtle.exportKey("jwk", pair.publicKey);
  const publicJwk: JsonWebKey = { kty: "EC", crv: "P-256", x: j.x, y: j.y };
  const kid = await jwkThumbprint(publicJwk);
  const sealedKey = await vault.keep(kid, pair.privateKey);
  const retiresAt = new Date(activatesAt.getTime() + lifetimeSeconds * 1000);
  return {
    kid,
    publicJwk,
    sealedKey,
    createdAt: now,
    activatesAt,
    retiresAt,
    removedAt: new Date(retiresAt.getTime() + MAX_JWT_SVID_SECONDS * 1000),
  };
}

/**
 * Applies the rotation schedule at the clock's time: keys whose tokens have all expired
 * leave the bundle; a key is made to sign at once when none is active (the first start,
 * or after the server was down past a key's end); the next key is made as soon as the
 * newest one is active, to start when it retires (at least one refresh hint from now).
 * A change of the published set (anchors included) is a new revision, audited with
 * what changed, in one write set. Two processes rotating at once: the revision's
 * sequence is a primary key, so one of them commits and the other discards its keys.
 */
export async function rotateJwtKeys(
  deps: Pick<AuthorityDeps, "ca" | "crypto" | "digest" | "storage" | "clock" | "config">,
  vault: JwtKeyVault,
): Promise<RotationResult> {
  const now = deps.clock.now();
  const lifetime = deps.config.spiffe.jwtKeyLifetime;
  const hint = deps.config.spiffe.refreshHint;
  const [keys, latest] = await Promise.all([deps.storage.listJwtKeys(), deps.storage.latestBundleRevision()]);
  const removed = keys.filter((k) => k.removedAt.getTime() <= now.getTime());
  const live = keys.filter((k) => k.removedAt.getTime() > now.getTime());
  const created: JwtKeyRecord[] = [];
  try {
    if (!signingKey(live, now)) created.push(await makeKey(deps, vault, now, now, lifetime));
    const all = [...live, ...created];
    const newest = all.reduce((a, b) => (b.activatesAt.getTime() > a.activatesAt.getTime() ? b : a));
    if (newest.activatesAt.getTime() <= now.getTime()) {
      const start = Math.max(newest.retiresAt.getTime(), now.getTime() + hint * 1000);
      created.push(await makeKey(deps, vault, now, new Date(start), lifetime));
    }
    const kids = [...live, ...created].map((k) => k.kid);
    const digest = await bundleDigest(deps, kids);
    if (created.length === 0 && removed.length === 0 && latest?.digest === digest) {
      return { created: [], removed: [], sequence: latest.sequence };
    }
    const revision: BundleRevision = {
      sequence: (latest?.sequence ?? 0) + 1,
      at: now,
      digest,
      reason:
        [
          created.length ? `created ${created.map((k) => k.kid).join(",")}` : "",
          removed.length ? `removed ${removed.map((k) => k.kid).join(",")}` : "",
        ]
          .filter(Boolean)
          .join("; ") || "trust anchors changed",
    };
    const writes: Write[] = [
      ...(removed.length ? [{ kind: "removeJwtKeys", at: now } as const] : []),
      ...created.map((key) => ({ kind: "insertJwtKey", key }) as const),
      { kind: "insertBundleRevision", revision },
      ...created.map((k) =>
        auditWrite({
          at: now,
          actor: SERVER,
          action: "spiffe.jwt_key_created",
          outcome: "success",
          detail: {
            kid: k.kid,
            activatesAt: k.activatesAt.toISOString(),
            retiresAt: k.retiresAt.toISOString(),
            removedAt: k.removedAt.toISOString(),
            sequence: revision.sequence,
          },
        }),
      ),
      ...removed.map((k) =>
        auditWrite({
          at: now,
          actor: SERVER,
          action: "spiffe.jwt_key_removed",
          outcome: "success",
          detail: { kid: k.kid, retiredAt: k.retiresAt.toISOString(), sequence: revision.sequence },
        }),
      ),
    ];
    if (created.length === 0 && removed.length === 0) {
      writes.push(
        auditWrite({
          at: now,
          actor: SERVER,
          action: "spiffe.bundle_changed",
          outcome: "success",
          detail: { reason: revision.reason, sequence: revision.sequence },
        }),
      );
    }
    await deps.storage.apply(writes);
    for (const k of removed) await vault.discard(k.kid).catch(() => undefined);
    return { created: created.map((k) => k.kid), removed: removed.map((k) => k.kid), sequence: revision.sequence };
  } catch (err) {
    for (const k of created) await vault.discard(k.kid).catch(() => undefined);
    if (err instanceof StorageConflictError) {
      const after = await deps.storage.latestBundleRevision();
      return { created: [], removed: [], sequence: after?.sequence ?? 0, lost: true };
    }
    throw err;
  }
}

/** Printable ASCII, no spaces: what an audience or SPIFFE ID may hold here. */
const TOKEN_TEXT = /^[\x21-\x7e]{1,512}$/;

/**
 * Signs a JWT-SVID (JWT-SVID §2–3) for `spiffeId` with the key active at the clock's
 * time. The caller decides who may have which SPIFFE ID and audiences; this checks
 * only that the request is well formed and of this trust domain.
 */
export async function signJwtSvid(
  deps: Pick<AuthorityDeps, "storage" | "clock" | "config">,
  loadKey: (key: JwtKeyRecord) => Promise<CryptoKey>,
  req: JwtSvidRequest,
): Promise<SignedJwtSvid> {
  if (!req.spiffeId.startsWith(`spiffe://${deps.config.trustDomain}/`) || !TOKEN_TEXT.test(req.spiffeId)) {
    throw badRequest("spiffe_id_invalid", `a SPIFFE ID of spiffe://${deps.config.trustDomain}/ is required`);
  }
  if (req.audience.length === 0 || req.audience.length > 32 || !req.audience.every((a) => TOKEN_TEXT.test(a))) {
    throw badRequest("audience_invalid", "1 to 32 audiences of printable characters are required");
  }
  if (!Number.isInteger(req.ttlSeconds) || req.ttlSeconds < 1) {
    throw badRequest("ttl_invalid", "the JWT-SVID lifetime must be a whole number of seconds, at least 1");
  }
  const now = deps.clock.now();
  const key = signingKey(await deps.storage.listJwtKeys(), now);
  if (!key) {
    throw new AuthorityError(
      "internal",
      "no JWT signing key is active; the key rotation has not run",
      "jwt_key_missing",
    );
  }
  const iat = Math.floor(now.getTime() / 1000);
  const exp = iat + Math.min(req.ttlSeconds, MAX_JWT_SVID_SECONDS);
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: "ES256", kid: key.kid, typ: "JWT" })
    .setSubject(req.spiffeId)
    .setAudience(req.audience)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(await loadKey(key));
  return { token, expiresAt: new Date(exp * 1000), kid: key.kid };
}
