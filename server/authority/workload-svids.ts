import {
  authorityKeyIdentifier,
  basicConstraints,
  crlDistributionPoint,
  extendedKeyUsage,
  keyIdentifier,
  keyUsage,
  ocspAccess,
} from "../pki/certificate.ts";
import { CertificateTemplate } from "../pki/certificate-template.ts";
import { CsrError, type ParsedCsr, parseCsr, verifyCsrSignature } from "../pki/csr.ts";
import { toHex } from "../pki/der.ts";
import { id_kp_clientAuth, id_kp_serverAuth } from "../pki/oids.ts";
import type { PeerInfo } from "../ports/client-identity.ts";
import type { CertificateRecord, DeviceRecord, WorkloadEntryRecord, Write } from "../ports/storage.ts";
import { asAuthorityError, auditWrite } from "./audit.ts";
import type { Caller } from "./caller.ts";
import { requireCanonicalKey } from "./csr-check.ts";
import type { AuthorityDeps, IssuingCa } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { badRequest, forbidden } from "./errors.ts";
import { crlUrl, ocspUrl, randomSerial } from "./issue.ts";
import { applyGuarded, guard } from "./preconditions.ts";
import { authenticateClientCertificate } from "./provisioners/client-certificate.ts";
import type { Refusals } from "./refusals.ts";
import { type JwtSvidRequest, MAX_JWT_SVID_SECONDS, type SignedJwtSvid } from "./trust-bundles.ts";
import { pruneWorkloadSvids, type SvidPruneResult } from "./workload-pruning.ts";
import { MAX_ENTRIES_PER_DEVICE, maxSvidTtl, workloadSpiffeId } from "./workloads.ts";

/** How often an agent polls its entries when no `workloads-changed` command reached it. */
export const ENTRIES_POLL_SECONDS = 30;
/** The subject of every X.509-SVID: fixed, so that nobody can rely on it (the URI SAN is the identity). */
export const SVID_SUBJECT_CN = "SPIFFE workload";

/** An entry as its device sees it (contract item 1). */
export interface DeviceEntry {
  id: string;
  spiffeId: string;
  selectors: string[];
  ttlSeconds: number;
  jwtAudiences: string[];
}

export interface DeviceEntries {
  trustDomain: string;
  /** Changes whenever the set of entries for this device (or any of them) changes. */
  revision: string;
  pollSeconds: number;
  entries: DeviceEntry[];
}

export interface SvidRequest {
  entryId: string;
  /** DER PKCS#10, P-256. */
  csr: Uint8Array;
}

export interface IssuedSvid {
  entryId: string;
  spiffeId: string;
  certificate: Uint8Array;
  /** The issuing CA and any intermediates up to (not including) the trust anchor. */
  chain: Uint8Array[];
  serial: string;
  notAfter: Date;
}

export interface IssuedSvids {
  svids: IssuedSvid[];
  /** The trust anchors of the trust domain. */
  bundle: Uint8Array[];
}

/** A JWT-SVID as `POST /workload/v1/jwt-svids` answers it. */
export interface IssuedJwtSvid {
  spiffeId: string;
  /** Compact JWS (ES256), signed with the trust domain's active JWT key. */
  token: string;
  expiresAt: Date;
}

/** Signs a JWT-SVID (the trust bundles' door holds the keys). */
export type JwtSvidSigner = (req: JwtSvidRequest) => Promise<SignedJwtSvid>;

/** The device an mTLS request authenticates, held to the workload routes' rules. */
export interface Authenticated {
  device: DeviceRecord;
  certificate: CertificateRecord;
}

/**
 * The device side of workload identity, reached over mutual TLS with the device's
 * current certificate (authenticated exactly as simplereenroll is, but neither an
 * expired certificate nor a lost-response retry: a device in either state renews
 * first). Refusals are audited once, here.
 */
export class WorkloadSvids {
  constructor(
    private readonly deps: AuthorityDeps,
    private readonly refusals: Refusals,
    private readonly signJwt: JwtSvidSigner,
  ) {}

  /** `GET /workload/v1/entries`: the entries whose parent matches the device. */
  entries(peer: PeerInfo): Promise<DeviceEntries> {
    const caller: Caller = { actor: "anonymous" };
    return this.audited("workload.entries", peer, caller, async () => {
      const { device, certificate } = await authenticateWorkloadDevice(this.deps, peer, caller);
      // A certificate seen in a mutual-TLS request is in use: its predecessor may no longer retry a renewal.
      if (!certificate.firstUsedAt) {
        await this.deps.storage.apply([
          { kind: "markCertificateUsed", serial: certificate.serial, at: this.deps.clock.now() },
        ]);
      }
      const entries = await this.deps.storage.workloadEntriesFor(device, MAX_ENTRIES_PER_DEVICE);
      return {
        trustDomain: this.deps.config.trustDomain,
        revision: await entriesRevision(this.deps, device, entries),
        pollSeconds: ENTRIES_POLL_SECONDS,
        entries: entries.map((e) => deviceEntry(this.deps, device, e)),
      };
    });
  }

  /** `POST /workload/v1/x509-svids`: one X.509-SVID per request, all or none. */
  issueX509(peer: PeerInfo, requests: readonly SvidRequest[]): Promise<IssuedSvids> {
    const caller: Caller = { actor: "anonymous" };
    return this.audited("workload.x509_svid", peer, caller, () => issueX509Svids(this.deps, peer, requests, caller));
  }

  /**
   * `POST /workload/v1/jwt-svids`: a JWT-SVID for the entry `entryId`, which must apply to
   * the device the request authenticates (403 `entry_not_applicable`), for audiences that
   * are each one of the entry's (403 `audience_not_allowed`). Lifetime: the entry's TTL,
   * held to the profile's maximum and to MAX_JWT_SVID_SECONDS. The token is handed out
   * only once a write set has committed its audit record with what it rests on
   * re-checked: the device active and unchanged, its certificate valid, the entry
   * unchanged.
   */
  issueJwt(peer: PeerInfo, entryId: string, audience: readonly string[]): Promise<IssuedJwtSvid> {
    const caller: Caller = { actor: "anonymous" };
    const action = "workload.jwt_svid";
    return this.audited(action, peer, caller, async () => {
      const { device, certificate } = await authenticateWorkloadDevice(this.deps, peer, caller);
      const entry = await applicableEntry(this.deps, device, entryId);
      checkAudiences(entry, audience);
      const spiffeId = workloadSpiffeId(this.deps.config.trustDomain, entry, device.id);
      const ttlSeconds = Math.min(
        entry.ttlSeconds,
        maxSvidTtl(this.deps.profiles.get(device.profile)),
        MAX_JWT_SVID_SECONDS,
      );
      const signed = await this.signJwt({ spiffeId, audience: [...audience], ttlSeconds });
      const now = this.deps.clock.now();
      await applyGuarded(
        this.deps,
        [
          guard({ name: "device_unchanged", deviceId: device.id, revision: device.revision ?? 0 }),
          guard({ name: "device_active", deviceId: device.id }),
          guard({ name: "certificate_valid", serial: certificate.serial, at: now }),
          guard({ name: "workload_entry_unchanged", entryId: entry.id, revision: entry.revision ?? 0 }),
          { kind: "markCertificateUsed", serial: certificate.serial, at: now },
          auditWrite({
            at: now,
            actor: caller.actor,
            action,
            outcome: "success",
            deviceId: device.id,
            remote: peer.remoteAddress,
            detail: {
              entry: entry.id,
              spiffeId,
              audience: JSON.stringify(audience),
              kid: signed.kid,
              deviceSerial: certificate.serial,
              expiresAt: signed.expiresAt.toISOString(),
            },
          }),
        ],
        async () => {
          // The refusal the request would have got had the change come first.
          const again = await authenticateWorkloadDevice(this.deps, peer, caller);
          checkAudiences(await applicableEntry(this.deps, again.device, entryId), audience);
        },
      );
      return { spiffeId, token: signed.token, expiresAt: signed.expiresAt };
    });
  }

  /**
   * Deletes workload SVIDs expired longer than `spiffe.svidRetention` ago, in bounded
   * batches (see pruneWorkloadSvids): what the Node main thread's timer and the Workers
   * Cron Trigger run.
   */
  prune(opts?: { batch?: number; maxBatches?: number }): Promise<SvidPruneResult> {
    return pruneWorkloadSvids(this.deps, opts);
  }

  private async audited<T>(action: string, peer: PeerInfo, caller: Caller, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      const e = asAuthorityError(err);
      await this.refusals.record({ action, remote: peer.remoteAddress, ...caller }, e);
      throw e;
    }
  }
}

/** Every audience asked for must be one the entry allows. */
export function checkAudiences(entry: WorkloadEntryRecord, audiences: readonly string[]): void {
  if (audiences.length === 0) throw badRequest("audience_missing", "a JWT-SVID needs at least one audience");
  const refused = audiences.filter((a) => !entry.jwtAudiences.includes(a));
  if (refused.length > 0) {
    throw forbidden(
      "audience_not_allowed",
      `entry ${entry.id} does not allow JWT-SVIDs for ${refused.map((a) => `"${a.slice(0, 64)}"`).join(", ")}`,
    );
  }
}

/**
 * The device a workload route's request authenticates: its current, unexpired
 * certificate over mutual TLS, checked as simplereenroll checks it, without the
 * predecessor's one retry or renewal after expiry (they exist to renew, not to read or
 * get SVIDs). Used by every `/workload/v1/*` verb.
 */
export async function authenticateWorkloadDevice(
  deps: AuthorityDeps,
  peer: PeerInfo,
  caller: Caller,
): Promise<Authenticated> {
  const { certificate, device, supersedes, expiredFor } = await authenticateClientCertificate(
    deps,
    peer.client,
    caller,
  );
  if (expiredFor !== undefined) {
    throw forbidden("client_certificate_expired", "the device certificate has expired: renew it first");
  }
  if (supersedes) {
    throw forbidden(
      "client_certificate_not_current",
      "this is not the device's current certificate: finish its renewal first",
    );
  }
  return { certificate, device };
}

async function applicableEntry(
  deps: AuthorityDeps,
  device: DeviceRecord,
  entryId: string,
): Promise<WorkloadEntryRecord> {
  // The entries served are the ones issued for: an entry past the per-device limit is neither.
  const entry = (await deps.storage.workloadEntriesFor(device, MAX_ENTRIES_PER_DEVICE)).find((e) => e.id === entryId);
  // An entry that exists but names other devices is refused like one that does not exist.
  if (!entry) {
    throw forbidden(
      "entry_not_applicable",
      `no workload entry ${String(entryId).slice(0, 64)} applies to device ${device.id}`,
    );
  }
  return entry;
}

function deviceEntry(deps: AuthorityDeps, device: DeviceRecord, e: WorkloadEntryRecord): DeviceEntry {
  return {
    id: e.id,
    spiffeId: workloadSpiffeId(deps.config.trustDomain, e, device.id),
    selectors: e.selectors,
    ttlSeconds: Math.min(e.ttlSeconds, maxSvidTtl(deps.profiles.get(device.profile))),
    jwtAudiences: e.jwtAudiences,
  };
}

/** SHA-256 over the entries (id and revision) and the device's profile: equal exactly when the set is. */
async function entriesRevision(
  deps: AuthorityDeps,
  device: DeviceRecord,
  entries: readonly WorkloadEntryRecord[],
): Promise<string> {
  const text = JSON.stringify([device.profile, entries.map((e) => [e.id, e.revision ?? 0])]);
  return (await sha256Hex(deps.digest, text)).slice(0, 32);
}

const templates = new WeakMap<AuthorityDeps, CertificateTemplate>();

/**
 * The X.509-SVID template (SPIFFE X509-SVID §4): not a CA, keyUsage digitalSignature
 * (critical), extendedKeyUsage clientAuth and serverAuth, one URI SAN, a fixed subject;
 * with the revocation pointers every certificate of the issuing CA carries.
 */
function svidTemplate(deps: AuthorityDeps): CertificateTemplate {
  let t = templates.get(deps);
  if (!t) {
    const ca = deps.ca;
    t = new CertificateTemplate({
      issuer: ca.subject,
      signatureAlgorithm: ca.signer.signatureAlgorithm,
      before: [
        basicConstraints(false),
        keyUsage(["digitalSignature"]),
        extendedKeyUsage([id_kp_clientAuth, id_kp_serverAuth]),
      ],
      between: [authorityKeyIdentifier(ca.keyId)],
      after: [crlDistributionPoint(crlUrl(deps.publicUrl, ca.name)), ocspAccess(ocspUrl(deps.publicUrl))],
    });
    templates.set(deps, t);
  }
  return t;
}

interface CheckedSvidCsr {
  csr: ParsedCsr;
  keyFingerprint: string;
}

/** Parse, P-256 only, canonical key, proof of possession. Subject and SANs are ignored. */
async function checkSvidCsr(deps: AuthorityDeps, der: Uint8Array, entryId: string): Promise<CheckedSvidCsr> {
  let csr: ParsedCsr;
  try {
    csr = parseCsr(der);
  } catch (err) {
    throw badRequest("csr_malformed", `entry ${entryId}: the CSR is not a DER PKCS#10 certification request`, err);
  }
  if (csr.key.kind !== "EC" || csr.key.curve !== "P-256") {
    throw badRequest("key_type_not_allowed", `entry ${entryId}: X.509-SVID keys are P-256 (got ${csr.key.label})`);
  }
  requireCanonicalKey(csr.spki);
  let ok: boolean;
  try {
    ok = await verifyCsrSignature(csr, deps.verifier);
  } catch (err) {
    if (err instanceof CsrError) throw badRequest("csr_signature_algorithm", err.message, err);
    throw err;
  }
  if (!ok)
    throw badRequest("csr_signature_invalid", `entry ${entryId}: the CSR signature does not verify with its key`);
  return { csr, keyFingerprint: await sha256Hex(deps.digest, csr.spki) };
}

/**
 * A workload key is the workload's own: never a key any device certificate certified
 * (this device's or another's), nor one another entry's valid SVID holds.
 */
async function checkWorkloadKey(
  deps: AuthorityDeps,
  device: DeviceRecord,
  entryId: string,
  keyFingerprint: string,
  now: Date,
): Promise<void> {
  const uses = await deps.storage.certificatesWithKey([keyFingerprint], 50);
  if (uses.some((c) => !c.workloadEntryId)) {
    throw forbidden("key_is_device_key", `entry ${entryId}: this key is a device's key; generate a key per workload`);
  }
  const other = uses.some(
    (c) =>
      (c.deviceId !== device.id || c.workloadEntryId !== entryId) &&
      c.status === "valid" &&
      c.notAfter.getTime() > now.getTime(),
  );
  const holders = await deps.storage.listKeyHolders([keyFingerprint], 10);
  if (other || holders.some((h) => h !== device.id)) {
    throw forbidden(
      "key_in_use",
      `entry ${entryId}: this key belongs to another workload; generate a key per workload`,
    );
  }
}

async function issueX509Svids(
  deps: AuthorityDeps,
  peer: PeerInfo,
  requests: readonly SvidRequest[],
  caller: Caller,
): Promise<IssuedSvids> {
  if (requests.length === 0 || requests.length > MAX_ENTRIES_PER_DEVICE) {
    throw badRequest("bad_batch", `a batch asks for 1-${MAX_ENTRIES_PER_DEVICE} SVIDs`);
  }
  const ids = requests.map((r) => r.entryId);
  if (new Set(ids).size !== ids.length)
    throw badRequest("duplicate_entry", "each entry is asked for at most once per batch");
  const { device, certificate: presented } = await authenticateWorkloadDevice(deps, peer, caller);
  const applicable = new Map(
    (await deps.storage.workloadEntriesFor(device, MAX_ENTRIES_PER_DEVICE)).map((e) => [e.id, e] as const),
  );
  const entries = requests.map((r) => {
    const entry = applicable.get(r.entryId);
    if (!entry) {
      throw forbidden(
        "entry_not_applicable",
        `no workload entry ${String(r.entryId).slice(0, 64)} applies to device ${device.id}`,
      );
    }
    return entry;
  });
  const now = deps.clock.now();
  const checked: CheckedSvidCsr[] = [];
  for (const r of requests) checked.push(await checkSvidCsr(deps, r.csr, r.entryId));
  const keys = checked.map((c) => c.keyFingerprint);
  if (new Set(keys).size !== keys.length) {
    throw forbidden("key_in_use", "two SVIDs of one batch ask for the same key; generate a key per workload");
  }
  for (const [i, c] of checked.entries()) {
    await checkWorkloadKey(deps, device, (entries[i] as WorkloadEntryRecord).id, c.keyFingerprint, now);
  }

  const ca: IssuingCa = deps.ca;
  const profile = deps.profiles.get(device.profile);
  const maxTtl = maxSvidTtl(profile);
  const second = Math.floor(now.getTime() / 1000) * 1000;
  const notBefore = new Date(second - Math.min(profile?.backdate ?? 300, 300) * 1000);
  const svids: IssuedSvid[] = [];
  const records: CertificateRecord[] = [];
  for (const [i, entry] of entries.entries()) {
    const { csr, keyFingerprint } = checked[i] as CheckedSvidCsr;
    const spiffe = workloadSpiffeId(deps.config.trustDomain, entry, device.id);
    const notAfter = new Date(
      Math.min(second + Math.min(entry.ttlSeconds, maxTtl) * 1000, presented.notAfter.getTime()),
    );
    const serial = randomSerial(deps.crypto);
    const der = await svidTemplate(deps).build(
      {
        serial,
        notBefore,
        notAfter,
        commonName: SVID_SUBJECT_CN,
        spki: csr.spki,
        subjectKeyId: await keyIdentifier(csr.spki, deps.digest),
        uris: [spiffe],
      },
      ca.signer,
    );
    const record: CertificateRecord = {
      serial: toHex(serial),
      deviceId: device.id,
      profile: device.profile,
      issuer: ca.name,
      notBefore,
      notAfter,
      fingerprint: await sha256Hex(deps.digest, der),
      keyFingerprint,
      keyType: csr.key.label,
      status: "valid",
      revokedAt: null,
      revocationReason: null,
      der,
      issuedAt: now,
      method: "workload",
      replacesSerial: null,
      bootstrapTokenId: null,
      protocol: null,
      workloadEntryId: entry.id,
      spiffeId: spiffe,
    };
    records.push(record);
    svids.push({
      entryId: entry.id,
      spiffeId: spiffe,
      certificate: der,
      chain: ca.chain.length > 1 ? ca.chain.slice(0, -1) : ca.chain,
      serial: record.serial,
      notAfter,
    });
  }

  // What issuance rests on, re-checked inside the write set: the device as read (active,
  // same profile), its certificate still valid, every entry unchanged (so still naming
  // this device), every key still the workload's own.
  const writes: Write[] = [
    guard({ name: "device_unchanged", deviceId: device.id, revision: device.revision ?? 0 }),
    guard({ name: "device_active", deviceId: device.id }),
    guard({ name: "certificate_valid", serial: presented.serial, at: now }),
    { kind: "markCertificateUsed", serial: presented.serial, at: now },
  ];
  for (const [i, entry] of entries.entries()) {
    const record = records[i] as CertificateRecord;
    writes.push(
      guard({ name: "workload_entry_unchanged", entryId: entry.id, revision: entry.revision ?? 0 }),
      guard({ name: "workload_key_free", keyFingerprint: record.keyFingerprint, entryId: entry.id, at: now }),
      { kind: "insertCertificate", certificate: record },
      auditWrite({
        at: now,
        actor: caller.actor,
        action: "workload.x509_svid",
        outcome: "success",
        deviceId: device.id,
        serial: record.serial,
        remote: peer.remoteAddress,
        detail: {
          entry: entry.id,
          spiffeId: record.spiffeId ?? null,
          deviceSerial: presented.serial,
          notAfter: record.notAfter.toISOString(),
        },
      }),
    );
  }
  await applyGuarded(deps, writes, async (failed) => {
    // The refusal the request would have got had the change come first.
    const again = await authenticateWorkloadDevice(deps, peer, caller);
    for (const r of requests) await applicableEntry(deps, again.device, r.entryId);
    if (failed === "workload_key_free") {
      for (const [i, c] of checked.entries()) {
        await checkWorkloadKey(deps, again.device, (entries[i] as WorkloadEntryRecord).id, c.keyFingerprint, now);
      }
    }
  });
  const root = ca.chain[ca.chain.length - 1];
  return { svids, bundle: root ? [root] : [] };
}
