/**
 * The storage port: readers the core needs, and one atomic write verb.
 *
 * D1 has no interactive transactions, so there is no `tx` callback: a change is a
 * list of writes applied all-or-nothing (a better-sqlite3 transaction on Node, a D1
 * `batch` on Workers). Conditions that must hold at write time are expressed as
 * constraints, e.g. a bootstrap token's single use is the UNIQUE
 * `certificates.bootstrap_token_id`.
 */

export type DeviceStatus = "pending" | "active" | "revoked" | "decommissioned";
export type CertificateStatus = "valid" | "revoked";
export type IssuanceMethod = "token" | "reenroll" | "idevid";
export type OperatorRole = "admin" | "operator" | "auditor";

export interface DeviceRecord {
  id: string;
  profile: string;
  status: DeviceStatus;
  createdAt: Date;
  updatedAt: Date;
  lastEnrolledAt: Date | null;
  currentSerial: string | null;
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
}

export interface IdevidBinding {
  deviceId: string;
  /** SHA-256 of the IDevID certificate DER. */
  fingerprint: string;
  subject: string;
  boundAt: Date;
}

export interface OperatorRecord {
  id: string;
  name: string;
  role: OperatorRole;
  tokenHash: string;
  createdAt: Date;
  revokedAt: Date | null;
}

export type AuditOutcome = "success" | "denied" | "error";

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

export type Write =
  | { kind: "upsertDevice"; device: DeviceRecord }
  | { kind: "insertCertificate"; certificate: CertificateRecord }
  | { kind: "redeemToken"; tokenId: string; at: Date; serial: string }
  | { kind: "insertToken"; token: TokenRecord }
  | { kind: "bindIdevid"; binding: IdevidBinding }
  | { kind: "insertOperator"; operator: OperatorRecord }
  | { kind: "audit"; event: AuditEvent };

/** Thrown by `apply` when a uniqueness constraint refused the write set. */
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
  /** Keyset pagination: ids strictly after this one. */
  after?: string;
  limit: number;
}

export interface Storage {
  getDevice(id: string): Promise<DeviceRecord | undefined>;
  listDevices(query: DeviceQuery): Promise<DeviceRecord[]>;
  getCertificate(serial: string): Promise<CertificateRecord | undefined>;
  getCertificateByFingerprint(fingerprint: string): Promise<CertificateRecord | undefined>;
  listCertificates(deviceId: string): Promise<CertificateRecord[]>;
  /** Certificates for one public key (by SPKI SHA-256), at most `limit`. */
  /** Devices holding a certificate for this public key (SHA-256 of the SPKI), at most `limit`. */
  listKeyHolders(keyFingerprint: string, limit: number): Promise<string[]>;
  getTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(deviceId: string): Promise<TokenRecord[]>;
  getIdevidBinding(deviceId: string): Promise<IdevidBinding | undefined>;
  getIdevidBindingByFingerprint(fingerprint: string): Promise<IdevidBinding | undefined>;
  getOperatorByTokenHash(hash: string): Promise<OperatorRecord | undefined>;
  listAudit(query: { deviceId?: string; limit: number }): Promise<StoredAuditEvent[]>;
  /** Applies every write or none. */
  apply(writes: readonly Write[]): Promise<void>;
}
