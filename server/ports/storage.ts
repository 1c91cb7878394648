/**
 * The storage port: readers the core needs, and one atomic write verb.
 *
 * D1 has no interactive transactions, so there is no `tx` callback: a change is a
 * list of writes applied all-or-nothing (a better-sqlite3 transaction on Node, a D1
 * `batch` on Workers). What a decision rested on when it was read can have changed by
 * the time its writes commit (a revocation lands while a CSR is being verified), so a
 * write set carries those facts as `require` writes (see {@link Precondition}): each is
 * evaluated inside the same atomic unit, in order, and one that no longer holds aborts
 * the whole set with a StorageConflictError naming it. Uniqueness rules are constraints
 * as well: a bootstrap token's single use is the UNIQUE `certificates.bootstrap_token_id`,
 * one key, one identity is the primary key of `device_keys`.
 */

import type { TrustBundleReads, TrustBundleWrite } from "./trust-bundles.ts";

export type DeviceStatus = "pending" | "active" | "revoked" | "decommissioned";
export type CertificateStatus = "valid" | "revoked";
export type IssuanceMethod = "token" | "reenroll" | "idevid" | "operator" | "gateway" | "workload";
/** The enrollment protocol a certificate was asked for with; null for operator issuance. */
export type EnrollmentProtocol = "est" | "scep";
export type OperatorRole = "admin" | "operator" | "auditor";

/** DNS names and IP addresses (canonical text) that an operator declared for a device. */
export interface DeclaredNames {
  dns: string[];
  ip: string[];
}

/** A fleet-audit finding as stored with its run. */
export interface StoredFinding {
  check: string;
  severity: "critical" | "high" | "medium" | "low";
  deviceId: string;
  serial: string | null;
  message: string;
}

/** A fleet audit's outcome, kept for the dashboard (the latest few runs). */
export interface FleetAuditRun {
  id: number;
  at: Date;
  actor: string;
  counts: Record<string, number>;
  truncated: string[];
  /** The most severe findings, capped (counts has the totals). */
  findings: StoredFinding[];
}

/** A dashboard login: the cookie's secret is stored as its SHA-256 only. */
export interface DashboardSessionRecord {
  idHash: string;
  operatorId: string;
  csrfToken: string;
  createdAt: Date;
  lastSeenAt: Date;
  expiresAt: Date;
  absoluteExpiresAt: Date;
  remote: string | null;
}

export interface DeviceRecord {
  id: string;
  profile: string;
  status: DeviceStatus;
  createdAt: Date;
  updatedAt: Date;
  lastEnrolledAt: Date | null;
  currentSerial: string | null;
  /** notAfter of the current certificate. */
  currentNotAfter: Date | null;
  /** Names an operator declared; every certificate of the device carries them. */
  names?: DeclaredNames | null;
  /**
   * Raised by the store at every change of the device row (issuance, revocation,
   * reinstatement); what a write set names in a `device_unchanged` precondition.
   * Ignored on write.
   */
  revision?: number;
  /**
   * The protocol of the device's latest enrollment or renewal (EST or SCEP). Kept when
   * a write leaves it unset (an operator issuing, a revocation).
   */
  protocol?: EnrollmentProtocol | null;
}

export interface CertificateRecord {
  serial: string;
  deviceId: string;
  profile: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the certificate DER, lowercase hex. */
  fingerprint: string;
  /** SHA-256 of the SubjectPublicKeyInfo, lowercase hex. */
  keyFingerprint: string;
  keyType: string;
  status: CertificateStatus;
  revokedAt: Date | null;
  revocationReason: number | null;
  der: Uint8Array;
  issuedAt: Date;
  method: IssuanceMethod;
  replacesSerial: string | null;
  bootstrapTokenId: string | null;
  /**
   * When the certificate was first seen in use (a mutual-TLS request, an MQTT
   * connection, a status report naming it); null while it never was. Set by the store.
   */
  firstUsedAt?: Date | null;
  /** The protocol the certificate was asked for with (null: an operator issued it). */
  protocol?: EnrollmentProtocol | null;
  /**
   * Set for a workload X.509-SVID: the registration entry it was issued for (null for
   * the device's own certificates). Revoking the device revokes these with the rest.
   */
  workloadEntryId?: string | null;
  /** The SVID's one URI SAN (workload SVIDs only). */
  spiffeId?: string | null;
}

/** What a registration entry's parent names: one device, a profile, or a device-id prefix. */
export type WorkloadParentKind = "device" | "profile" | "prefix";

/** A workload registration entry: which workload, on which devices, gets which SPIFFE ID. */
export interface WorkloadEntryRecord {
  id: string;
  parentKind: WorkloadParentKind;
  parentValue: string;
  /** The workload's name: the last part of its SPIFFE ID. */
  name: string;
  /**
   * The SPIFFE ID when it does not depend on the device (fleet-wide, or a one-device
   * parent); null when each device gets its own (`…/device/<id>/workload/<name>`).
   */
  spiffeId: string | null;
  fleetWide: boolean;
  /** `type:key:value` strings; a workload matches when it has all of them. */
  selectors: string[];
  ttlSeconds: number;
  /** Audiences a JWT-SVID may be asked for; empty: no JWT-SVIDs. */
  jwtAudiences: string[];
  /** Raised by the store at every change; what `workload_entry_unchanged` compares. Ignored on insert. */
  revision?: number;
  createdAt: Date;
  updatedAt: Date;
  createdBy: string;
}

export interface WorkloadEntryQuery {
  parentKind?: WorkloadParentKind;
  parentValue?: string;
  /** Keyset pagination by entry id. */
  after?: string;
  limit: number;
}

export interface TokenRecord {
  id: string;
  /** SHA-256 of the secret, lowercase hex; the secret itself is never stored. */
  hash: string;
  deviceId: string;
  profile: string;
  createdAt: Date;
  expiresAt: Date;
  usedAt: Date | null;
  usedSerial: string | null;
  revokedAt: Date | null;
  createdBy: string;
  /** Names declared with the token, given to the device when it enrolls with it. */
  names?: DeclaredNames | null;
}

export interface IdevidBinding {
  deviceId: string;
  /** SHA-256 of the IDevID certificate DER. */
  fingerprint: string;
  subject: string;
  boundAt: Date;
  revokedAt: Date | null;
}

export interface OperatorRecord {
  id: string;
  name: string;
  role: OperatorRole;
  tokenHash: string;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  createdBy: string | null;
}

export type PendingStatus = "pending" | "approved" | "rejected" | "issued";

/** An enrollment waiting for an operator (RFC 7030 §4.2.3). */
export interface PendingEnrollment {
  id: string;
  deviceId: string;
  profile: string;
  csr: Uint8Array;
  keyFingerprint: string;
  keyType: string;
  status: PendingStatus;
  method: "token" | "idevid" | "gateway";
  requestedBy: string;
  tokenId: string | null;
  remote: string | null;
  createdAt: Date;
  updatedAt: Date;
  decidedAt: Date | null;
  decidedBy: string | null;
  decisionReason: string | null;
  serial: string | null;
}

/** One entry of the revocation feed (CRL and OCSP caches follow it by seq). */
export interface RevocationEntry {
  seq: number;
  serial: string;
  issuer: string;
  deviceId: string;
  revokedAt: Date;
  reason: number | null;
  notAfter: Date;
}

/** What OCSP needs to know about a serial. */
export interface CertificateStatusRecord {
  serial: string;
  issuer: string;
  status: CertificateStatus;
  revokedAt: Date | null;
  revocationReason: number | null;
  notAfter: Date;
}

export type AuditOutcome = "success" | "denied" | "pending" | "error";

export interface AuditEvent {
  at: Date;
  /** "device:<id>", "token:<id>", "operator:<id>", "cli", "anonymous". */
  actor: string;
  action: string;
  outcome: AuditOutcome;
  deviceId?: string | null;
  serial?: string | null;
  remote?: string | null;
  /** Free-form, never secrets. */
  detail?: Record<string, string | number | boolean | null>;
}

export interface StoredAuditEvent extends AuditEvent {
  id: number;
}

/** An audit row exactly as stored, for checking the hash chain. */
export interface AuditChainRow {
  id: number;
  at: number;
  actor: string;
  action: string;
  outcome: string;
  deviceId: string | null;
  serial: string | null;
  remote: string | null;
  /** The stored JSON text. */
  detail: string | null;
  prevHash: string | null;
  hash: string | null;
}

/** What a device last reported over MQTT (the status contract), accepted by the session rule. */
export interface DeviceStatusRecord {
  deviceId: string;
  state: string;
  session: number;
  reportedAt: Date;
  lastSeenAt: Date;
  certSerial: string | null;
  certNotAfter: Date | null;
  keyAlg: string | null;
  nextRenewAt: Date | null;
  agentVersion: string | null;
  lastRenew: { at: string; ok: boolean; error?: string } | null;
  source: "device" | "server";
}

export interface DeviceEventRecord {
  seq: number;
  deviceId: string;
  eventId: string;
  type: string;
  at: Date;
  receivedAt: Date;
  body: Record<string, unknown>;
}

export type CommandName = "rotate" | "ca-update" | "revoked" | "workloads-changed";
export type CommandState = "queued" | "sent" | "succeeded" | "failed" | "expired";

export interface CommandRecord {
  opId: string;
  batchId: string;
  deviceId: string;
  command: CommandName;
  state: CommandState;
  createdAt: Date;
  createdBy: string;
  expiresAt: Date;
  sentAt: Date | null;
  resultAt: Date | null;
  error: string | null;
}

export interface CommandQuery {
  deviceId?: string;
  batchId?: string;
  state?: CommandState;
  /** Keyset pagination by op id. */
  after?: string;
  limit: number;
}

export interface MqttSessionRecord {
  id: string;
  deviceId: string;
  serial: string;
  remote: string | null;
  connectedAt: Date;
  disconnectedAt: Date | null;
  closeReason: string | null;
  tookOver: string | null;
}

/** Operator-declared facts about a device (lifecycle controls). */
export interface DeviceMetadata {
  deviceId: string;
  owner: string | null;
  location: string | null;
  updatedAt: Date;
  updatedBy: string;
}

/** Rows for the fleet audit checks (each bounded by `limit`, or scanned in chunks). */
export interface FleetAuditReads {
  /** Active devices whose last message is older than `before` (oldest first). */
  staleDevices(before: Date, limit: number): Promise<DeviceStatusRecord[]>;
  /** Open MQTT sessions whose certificate is revoked or whose device is no longer active. */
  revokedButConnected(limit: number): Promise<MqttSessionRecord[]>;
  /**
   * Revoked or decommissioned devices that sent a message more than a minute after they
   * were revoked, among the next `scan` such devices after id `after` (chunked like below).
   */
  heardAfterRevocation(
    after: string,
    scan: number,
  ): Promise<{ rows: (DeviceStatusRecord & { revokedAt: Date })[]; next: string | null }>;
  /**
   * Renewals refused since `since` because the certificate presented had been superseded
   * by one in use (a possible clone), newest first.
   */
  supersededRenewals(
    since: Date,
    limit: number,
  ): Promise<{ deviceId: string; serial: string | null; at: Date; remote: string | null }[]>;
  /**
   * Renewals with an expired certificate since `since` (audit action
   * est.renew_after_expiry), newest first: devices that came back after being away.
   */
  renewalsAfterExpiry(
    since: Date,
    limit: number,
  ): Promise<{ deviceId: string; serial: string | null; at: Date; expiredForSeconds: number }[]>;
  /** Sessions since `since` that took over a still-open session with the same certificate. */
  takeovers(since: Date, limit: number): Promise<MqttSessionRecord[]>;
  /**
   * Active devices reporting a certificate that is unknown, another device's, or revoked,
   * among the next `scan` status rows after device id `after` (a chunk of a full scan;
   * `next` continues it, null at the end).
   */
  reportedCertificateProblems(
    after: string,
    scan: number,
  ): Promise<{
    problems: { deviceId: string; serial: string; issuedTo: string | null; status: CertificateStatus | null }[];
    next: string | null;
  }>;
  /** Unexpired valid certificates per (profile, key type), over the next `scan` serials after `after`. */
  keyTypeCounts(
    now: Date,
    after: string,
    scan: number,
  ): Promise<{ counts: { profile: string; keyType: string; count: number }[]; next: string | null }>;
  certificatesWithKeyType(profile: string, keyType: string, now: Date, limit: number): Promise<CertificateRecord[]>;
}

/**
 * A fact a write set rests on, re-checked inside the set: if it no longer holds, the
 * set is not applied and `apply` throws StorageConflictError with `constraint` equal to
 * the precondition's `name`. Put them first in the set: they see the state before the
 * set's own writes.
 */
export type Precondition =
  /** The device row is the one that was read (its revision), or still absent (`revision: null`). */
  | { name: "device_unchanged"; deviceId: string; revision: number | null }
  /** The device exists and is active (a gateway brokering an enrollment). */
  | { name: "device_active"; deviceId: string }
  /** The device exists and is neither revoked nor decommissioned. */
  | { name: "device_not_revoked"; deviceId: string }
  /** The certificate is valid (not revoked) and unexpired at `at`. */
  | { name: "certificate_valid"; serial: string; at: Date }
  /** The certificate was never revoked (expired or not: renewal after expiry). */
  | { name: "certificate_unrevoked"; serial: string }
  /** The certificate has never been used (see CertificateRecord.firstUsedAt). */
  | { name: "certificate_unused"; serial: string }
  /** The bootstrap token is neither used nor revoked, and unexpired at `at`. */
  | { name: "token_usable"; tokenId: string; at: Date }
  /** The bootstrap token is neither used nor revoked (what revoking it needs). */
  | { name: "token_unused"; tokenId: string }
  /** The device's IDevID binding is this certificate and is not revoked. */
  | { name: "idevid_bound"; deviceId: string; fingerprint: string }
  /** The enrollment request is in this state. */
  | { name: "pending_status"; id: string; status: PendingStatus }
  /** The operator exists, is not revoked and its token has not expired at `at`. */
  | { name: "operator_active"; operatorId: string; at: Date }
  /** The gateway holds exactly this many pending or active appliances (a cascade read them all). */
  | { name: "appliance_count"; gatewayId: string; count: number }
  /** The registration entry exists with this revision (unchanged since it was read). */
  | { name: "workload_entry_unchanged"; entryId: string; revision: number }
  /**
   * No device certificate ever certified this key, and no valid, unexpired workload
   * SVID of another entry holds it at `at`.
   */
  | { name: "workload_key_free"; keyFingerprint: string; entryId: string; at: Date };

export type PreconditionName = Precondition["name"];

export const PRECONDITION_NAMES: readonly PreconditionName[] = [
  "device_unchanged",
  "device_active",
  "device_not_revoked",
  "certificate_valid",
  "certificate_unrevoked",
  "certificate_unused",
  "token_usable",
  "token_unused",
  "idevid_bound",
  "pending_status",
  "operator_active",
  "appliance_count",
  "workload_entry_unchanged",
  "workload_key_free",
];

/** Whether a write set failed because one of its preconditions no longer held. */
export function failedPrecondition(err: unknown): PreconditionName | undefined {
  if (!(err instanceof StorageConflictError)) return undefined;
  return PRECONDITION_NAMES.find((n) => n === err.constraint);
}

/** The constraint a certificate whose key another device holds fails (one key, one identity). */
export const KEY_HOLDER_CONSTRAINT = "device_keys.key_fingerprint";

export type Write =
  | { kind: "require"; precondition: Precondition }
  | TrustBundleWrite
  | { kind: "upsertDevice"; device: DeviceRecord }
  /**
   * Also claims the certificate's key for its device: a key another device holds fails
   * the set (KEY_HOLDER_CONSTRAINT); the same device may certify its key again.
   */
  | { kind: "insertCertificate"; certificate: CertificateRecord }
  /** The certificate was used (see CertificateRecord.firstUsedAt); a later use changes nothing. */
  | { kind: "markCertificateUsed"; serial: string; at: Date }
  | { kind: "redeemToken"; tokenId: string; at: Date; serial: string }
  | { kind: "insertToken"; token: TokenRecord }
  | { kind: "bindIdevid"; binding: IdevidBinding }
  | { kind: "insertOperator"; operator: OperatorRecord }
  | { kind: "revokeOperator"; operatorId: string; at: Date }
  /**
   * Revokes every unexpired valid certificate of the device, voids its unused tokens
   * and its IDevID binding, closes its open enrollment requests and sets its status.
   */
  | {
      kind: "revokeDevice";
      deviceId: string;
      at: Date;
      /** Certificates that expired after this are revoked too (they may still renew after expiry). */
      expiredSince: Date;
      reason: number | null;
      status: "revoked" | "decommissioned";
    }
  | { kind: "revokeCertificate"; serial: string; at: Date; reason: number | null }
  /** Back to pending: it may enroll again with a new token; its revoked IDevID stays revoked. */
  | { kind: "reinstateDevice"; deviceId: string; at: Date }
  | { kind: "revokeToken"; tokenId: string; at: Date }
  | { kind: "insertPending"; pending: PendingEnrollment }
  | {
      kind: "decidePending";
      id: string;
      from: PendingStatus;
      status: PendingStatus;
      at: Date;
      by: string | null;
      reason: string | null;
      serial: string | null;
    }
  | { kind: "audit"; event: AuditEvent }
  /**
   * A device's status report, applied only if it is newer by the session rule: a higher
   * session, or the same session and a report at least as new (or `force`, for a last
   * will of the current connection). Reports never replace a server-written status of
   * the same session.
   */
  | { kind: "recordStatus"; status: DeviceStatusRecord; force: boolean }
  /** The server's own status for a device (revocation): state `revoked`, source server. */
  | { kind: "overwriteStatus"; deviceId: string; state: string; at: Date }
  /** Raises last-seen (an event, a command result, a connection). */
  | { kind: "touchDevice"; deviceId: string; at: Date }
  /**
   * Aborts the write set (StorageConflictError, constraint "appliance_quota") when the
   * gateway holds more than `max` pending or active appliances, counted with the
   * set's own writes: it goes after the appliance's upsertDevice.
   */
  | { kind: "guardApplianceQuota"; gatewayId: string; max: number }
  /**
   * Aborts the write set (constraint "pending_quota") when the device has more than
   * `max` enrollment requests waiting for an operator, counted with the set's own
   * writes: it goes after the insertPending.
   */
  | { kind: "guardPendingQuota"; deviceId: string; max: number }
  /** Appends an event unless the device already sent one with this id. */
  | { kind: "insertEvent"; event: Omit<DeviceEventRecord, "seq"> }
  | { kind: "insertCommand"; command: CommandRecord }
  | { kind: "markCommandSent"; opId: string; at: Date }
  | {
      kind: "commandResult";
      opId: string;
      deviceId: string;
      state: "succeeded" | "failed";
      at: Date;
      error: string | null;
    }
  | { kind: "expireCommands"; at: Date }
  | { kind: "openMqttSession"; session: MqttSessionRecord }
  | { kind: "closeMqttSession"; id: string; at: Date; reason: string }
  /** At broker start: every session left open by a previous run is closed. */
  | { kind: "closeAllMqttSessions"; at: Date; reason: string }
  | { kind: "setDeviceMetadata"; metadata: DeviceMetadata }
  /** An expiry alert was sent for this certificate and threshold (a repeat is ignored). */
  | { kind: "recordExpiryAlert"; serial: string; thresholdDays: number; deviceId: string; at: Date }
  | { kind: "insertDashboardSession"; session: DashboardSessionRecord }
  /** Use of a session: last seen, and its idle expiry moved on. */
  | { kind: "touchDashboardSession"; idHash: string; at: Date; expiresAt: Date }
  | { kind: "deleteDashboardSession"; idHash: string }
  /** Sessions past their expiry, and every session of operators whose token no longer works. */
  | { kind: "purgeDashboardSessions"; at: Date }
  /** A fleet audit's outcome; only the latest `keep` runs are kept. */
  | { kind: "recordFleetAudit"; run: Omit<FleetAuditRun, "id">; keep: number }
  /**
   * A SCEP transactionID/senderNonce pair seen (RFC 8894 §3.2.1.5): a pair seen before
   * fails the set (StorageConflictError "scep_nonces"); pairs older than `forgetBefore` go.
   */
  | { kind: "recordScepNonce"; transactionId: string; senderNonce: string; at: Date; forgetBefore: Date }
  /** A pair whose message was answered PENDING: the same message may come again (RFC 8894 §3.3.3). */
  | { kind: "forgetScepNonce"; transactionId: string; senderNonce: string }
  | { kind: "insertWorkloadEntry"; entry: WorkloadEntryRecord }
  /**
   * Replaces the entry's fields (not its id, parent or creation) and raises its revision;
   * with `revokeSvids`, its valid SVIDs are revoked (into the revocation feed) first.
   */
  | { kind: "updateWorkloadEntry"; entry: WorkloadEntryRecord; revokeSvids: boolean; at: Date; reason: number | null }
  /** Deletes the entry and revokes its valid SVIDs (into the revocation feed). */
  | { kind: "deleteWorkloadEntry"; entryId: string; at: Date; reason: number | null }
  /**
   * Deletes these workload SVIDs (rows with a workload entry only) whose notAfter is
   * before `before`, and the claims on their keys that no remaining certificate holds.
   * A device's own certificates and unexpired SVIDs are never deleted, whatever is listed.
   * The revocation feed is left alone (CRLs list only unexpired certificates anyway).
   */
  | { kind: "pruneWorkloadSvids"; serials: readonly string[]; before: Date };

/** Thrown by `apply` when a uniqueness constraint or a write guard refused the write set. */
export class StorageConflictError extends Error {
  override name = "StorageConflictError";
  constructor(
    message: string,
    readonly constraint: string,
  ) {
    super(message);
  }
}

export interface DeviceQuery {
  status?: DeviceStatus;
  profile?: string;
  /** Only the appliances this gateway enrolled (ids `<gateway>~<name>`: one key range). */
  gateway?: string;
  /**
   * Only devices whose current certificate expires before this time; the list is then
   * ordered by (expiry, id) instead of id.
   */
  expiringBefore?: Date;
  /** Only ids that start with this (one range of the primary key). */
  idPrefix?: string;
  /** Keyset pagination: strictly after this device (and, with expiringBefore, its expiry). */
  after?: { id: string; notAfter?: number };
  limit: number;
}

export interface TokenQuery {
  deviceId?: string;
  /** unused: neither used, revoked nor expired at `now`. */
  state?: "unused" | "used" | "revoked" | "expired";
  now: Date;
  /** Keyset pagination by token id. */
  after?: string;
  limit: number;
}

export interface AuditQuery {
  deviceId?: string;
  actor?: string;
  action?: string;
  /** Newest first; only ids strictly below this one. */
  before?: number;
  limit: number;
}

export interface Storage extends FleetAuditReads, TrustBundleReads {
  getDevice(id: string): Promise<DeviceRecord | undefined>;
  listDevices(query: DeviceQuery): Promise<DeviceRecord[]>;
  getCertificate(serial: string): Promise<CertificateRecord | undefined>;
  getCertificateByFingerprint(fingerprint: string): Promise<CertificateRecord | undefined>;
  /** The device's own certificates, newest first (its workload SVIDs: listWorkloadSvids). */
  listCertificates(deviceId: string): Promise<CertificateRecord[]>;
  /**
   * Devices holding a certificate for any of these public-key fingerprints (SHA-256 of
   * an SPKI: one key's spellings), at most `limit` rows read.
   */
  listKeyHolders(keyFingerprints: readonly string[], limit: number): Promise<string[]>;
  /**
   * Whether any key was certified before CSR keys had to be canonical: its fingerprint
   * is of the SPKI as it was sent, so a key's other spellings must be looked up too.
   * Such keys come only from the migration that introduced canonical keys, so the
   * answer may be read once per connection.
   */
  hasKeysAsSent(): Promise<boolean>;
  getTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(deviceId: string): Promise<TokenRecord[]>;
  getIdevidBinding(deviceId: string): Promise<IdevidBinding | undefined>;
  getIdevidBindingByFingerprint(fingerprint: string): Promise<IdevidBinding | undefined>;
  getOperator(id: string): Promise<OperatorRecord | undefined>;
  getOperatorByTokenHash(hash: string): Promise<OperatorRecord | undefined>;
  listOperators(): Promise<OperatorRecord[]>;
  getToken(id: string): Promise<TokenRecord | undefined>;
  queryTokens(query: TokenQuery): Promise<TokenRecord[]>;
  countDevicesByStatus(): Promise<Record<DeviceStatus, number>>;
  /** Appliances of a gateway that count against its quota: pending or active. */
  countAppliances(gatewayId: string): Promise<number>;
  getPending(id: string): Promise<PendingEnrollment | undefined>;
  /** The latest request for this device and key that is not finished (pending, approved or rejected). */
  findPending(deviceId: string, keyFingerprint: string): Promise<PendingEnrollment | undefined>;
  listPending(query: {
    status?: PendingStatus;
    deviceId?: string;
    after?: string;
    limit: number;
  }): Promise<PendingEnrollment[]>;
  getDashboardSession(idHash: string): Promise<DashboardSessionRecord | undefined>;
  latestFleetAudit(): Promise<FleetAuditRun | undefined>;
  /**
   * Active devices whose current certificate expires in [from, until), counted per
   * bucket of `bucketMs` from `from` (bucket 0 first; empty buckets left out).
   */
  expiryByBucket(from: Date, until: Date, bucketMs: number): Promise<{ bucket: number; count: number }[]>;
  /** What OCSP answers from: the status of one serial. */
  getCertificateStatus(serial: string): Promise<CertificateStatusRecord | undefined>;
  /** The revocation feed after `seq`, oldest first, at most `limit`, certificates expiring after `notAfter` only. */
  revocationsSince(seq: number, notAfter: Date, limit: number): Promise<RevocationEntry[]>;
  /** The newest seq of the revocation feed (0 when empty): a cheap change check. */
  lastRevocationSeq(): Promise<number>;
  /** Allocates the next CRL number of an issuing CA (a write of its own, outside any write set). */
  nextCrlNumber(issuer: string): Promise<bigint>;
  listAudit(query: AuditQuery): Promise<StoredAuditEvent[]>;
  /** Raw audit rows in id order after `afterId`, for verifying the hash chain. */
  auditChain(afterId: number, limit: number): Promise<AuditChainRow[]>;
  getDeviceStatus(deviceId: string): Promise<DeviceStatusRecord | undefined>;
  /** A device's events, newest first, only seqs strictly below `before`. */
  listDeviceEvents(deviceId: string, before: number | undefined, limit: number): Promise<DeviceEventRecord[]>;
  getCommand(opId: string): Promise<CommandRecord | undefined>;
  listCommands(query: CommandQuery): Promise<CommandRecord[]>;
  /** Commands waiting to be published, oldest first. */
  queuedCommands(limit: number): Promise<CommandRecord[]>;
  /**
   * Active devices by time left on their current certificate: for each bound (seconds
   * from `now`), how many expire at or before it; with the total and the sum of seconds
   * left. Over the next `scan` active devices after id `after` (`next` continues).
   */
  expiryHistogram(
    now: Date,
    bounds: readonly number[],
    after: string,
    scan: number,
  ): Promise<{ counts: number[]; total: number; sum: number; next: string | null }>;
  getDeviceMetadata(deviceId: string): Promise<DeviceMetadata | undefined>;
  /** Whether the expiry alert for this certificate and threshold was sent. */
  expiryAlertSent(serial: string, thresholdDays: number): Promise<boolean>;
  /** A device's MQTT sessions, newest first. */
  listMqttSessions(deviceId: string, limit: number): Promise<MqttSessionRecord[]>;
  getWorkloadEntry(id: string): Promise<WorkloadEntryRecord | undefined>;
  listWorkloadEntries(query: WorkloadEntryQuery): Promise<WorkloadEntryRecord[]>;
  /**
   * The entries whose parent matches this device (its id, its profile, or a prefix of
   * its id), by id, at most `limit`.
   */
  workloadEntriesFor(device: { id: string; profile: string }, limit: number): Promise<WorkloadEntryRecord[]>;
  /** A device's workload SVIDs, newest first, at most `limit`. */
  listWorkloadSvids(deviceId: string, limit: number): Promise<CertificateRecord[]>;
  /**
   * Serials of workload SVIDs (never a device's own certificates) whose notAfter is
   * before `before`, oldest first, at most `limit`: what pruning deletes next.
   */
  expiredWorkloadSvids(before: Date, limit: number): Promise<string[]>;
  /**
   * Certificates that certify any of these keys (SHA-256 of an SPKI), at most `limit`:
   * what the workload key rules (not a device key, not another workload's) check.
   */
  certificatesWithKey(keyFingerprints: readonly string[], limit: number): Promise<CertificateRecord[]>;
  /** Applies every write or none. */
  apply(writes: readonly Write[]): Promise<void>;
}
