import { sql } from "drizzle-orm";
import { blob, index, integer, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/** Times are integer milliseconds since the epoch (UTC). */
const ms = (name: string) => integer(name, { mode: "timestamp_ms" });

export const devices = sqliteTable(
  "devices",
  {
    id: text("id").primaryKey(),
    profile: text("profile").notNull(),
    status: text("status", { enum: ["pending", "active", "revoked", "decommissioned"] }).notNull(),
    createdAt: ms("created_at").notNull(),
    updatedAt: ms("updated_at").notNull(),
    lastEnrolledAt: ms("last_enrolled_at"),
    currentSerial: text("current_serial"),
    /** notAfter of the current certificate, kept with it: "expiring within" is one index range. */
    currentNotAfter: ms("current_not_after"),
  },
  (t) => [
    index("devices_status_id").on(t.status, t.id),
    index("devices_profile_id").on(t.profile, t.id),
    index("devices_not_after_id").on(t.currentNotAfter, t.id),
  ],
);

export const certificates = sqliteTable(
  "certificates",
  {
    serial: text("serial").primaryKey(),
    deviceId: text("device_id").notNull(),
    profile: text("profile").notNull(),
    issuer: text("issuer").notNull(),
    notBefore: ms("not_before").notNull(),
    notAfter: ms("not_after").notNull(),
    fingerprint: text("fingerprint").notNull(),
    keyFingerprint: text("key_fingerprint").notNull(),
    keyType: text("key_type").notNull(),
    status: text("status", { enum: ["valid", "revoked"] }).notNull(),
    revokedAt: ms("revoked_at"),
    revocationReason: integer("revocation_reason"),
    der: blob("der", { mode: "buffer" }).notNull(),
    issuedAt: ms("issued_at").notNull(),
    method: text("method", { enum: ["token", "reenroll", "idevid"] }).notNull(),
    replacesSerial: text("replaces_serial"),
    bootstrapTokenId: text("bootstrap_token_id"),
  },
  (t) => [
    uniqueIndex("certificates_fingerprint").on(t.fingerprint),
    // A bootstrap token redeems exactly one certificate: the constraint that makes
    // concurrent use of one token succeed once (SQLite allows many NULLs).
    uniqueIndex("certificates_bootstrap_token").on(t.bootstrapTokenId),
    index("certificates_device").on(t.deviceId, t.issuedAt),
    index("certificates_not_after").on(t.notAfter),
    // Covers the one-key-one-identity check (key → device ids) without reading the rows.
    index("certificates_key_device").on(t.keyFingerprint, t.deviceId),
  ],
);

export const bootstrapTokens = sqliteTable(
  "bootstrap_tokens",
  {
    id: text("id").primaryKey(),
    hash: text("hash").notNull(),
    deviceId: text("device_id").notNull(),
    profile: text("profile").notNull(),
    createdAt: ms("created_at").notNull(),
    expiresAt: ms("expires_at").notNull(),
    usedAt: ms("used_at"),
    usedSerial: text("used_serial"),
    revokedAt: ms("revoked_at"),
    createdBy: text("created_by").notNull(),
  },
  (t) => [uniqueIndex("bootstrap_tokens_hash").on(t.hash), index("bootstrap_tokens_device").on(t.deviceId)],
);

export const idevidBindings = sqliteTable(
  "idevid_bindings",
  {
    deviceId: text("device_id").primaryKey(),
    fingerprint: text("fingerprint").notNull(),
    subject: text("subject").notNull(),
    boundAt: ms("bound_at").notNull(),
    /** Set when the device is revoked: this IDevID no longer bootstraps anything. */
    revokedAt: ms("revoked_at"),
  },
  (t) => [uniqueIndex("idevid_bindings_fingerprint").on(t.fingerprint)],
);

/** Enrollments waiting for an operator (RFC 7030 §4.2.3 202 + Retry-After). */
export const pendingEnrollments = sqliteTable(
  "pending_enrollments",
  {
    id: text("id").primaryKey(),
    deviceId: text("device_id").notNull(),
    profile: text("profile").notNull(),
    csr: blob("csr", { mode: "buffer" }).notNull(),
    keyFingerprint: text("key_fingerprint").notNull(),
    keyType: text("key_type").notNull(),
    status: text("status", { enum: ["pending", "approved", "rejected", "issued"] }).notNull(),
    method: text("method", { enum: ["token", "idevid"] }).notNull(),
    /** Who asked: "token:<id>" or "idevid:<fingerprint prefix>". */
    requestedBy: text("requested_by").notNull(),
    tokenId: text("token_id"),
    remote: text("remote"),
    createdAt: ms("created_at").notNull(),
    updatedAt: ms("updated_at").notNull(),
    decidedAt: ms("decided_at"),
    decidedBy: text("decided_by"),
    decisionReason: text("decision_reason"),
    serial: text("serial"),
  },
  (t) => [
    index("pending_enrollments_device").on(t.deviceId, t.status),
    index("pending_enrollments_status_id").on(t.status, t.id),
  ],
);

/**
 * The revocation feed: one row per revoked certificate, in revocation order. The
 * CRL and OCSP caches follow it by `seq` (in this process and in others, such as the
 * CLI); `certificates.status` stays the record the EST checks read.
 */
export const revocations = sqliteTable(
  "revocations",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    serial: text("serial").notNull(),
    issuer: text("issuer").notNull(),
    deviceId: text("device_id").notNull(),
    revokedAt: ms("revoked_at").notNull(),
    reason: integer("reason"),
    notAfter: ms("not_after").notNull(),
  },
  (t) => [uniqueIndex("revocations_serial").on(t.serial), index("revocations_not_after").on(t.notAfter)],
);

/** The last CRL number used per issuing CA: CRL numbers only ever increase (RFC 5280 §5.2.3). */
export const crlNumbers = sqliteTable("crl_numbers", {
  issuer: text("issuer").primaryKey(),
  number: integer("number").notNull(),
});

export const operators = sqliteTable(
  "operators",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    role: text("role", { enum: ["admin", "operator", "auditor"] }).notNull(),
    tokenHash: text("token_hash").notNull(),
    createdAt: ms("created_at").notNull(),
    expiresAt: ms("expires_at"),
    revokedAt: ms("revoked_at"),
    createdBy: text("created_by"),
  },
  (t) => [uniqueIndex("operators_token_hash").on(t.tokenHash)],
);

export const auditEvents = sqliteTable(
  "audit_events",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    at: ms("at").notNull(),
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    outcome: text("outcome", { enum: ["success", "denied", "pending", "error"] }).notNull(),
    deviceId: text("device_id"),
    serial: text("serial"),
    remote: text("remote"),
    detail: text("detail", { mode: "json" }).$type<Record<string, string | number | boolean | null>>(),
    /** The hash chain (sqlite-batch.mjs auditHash): each record commits to the previous one. */
    prevHash: text("prev_hash"),
    hash: text("hash"),
  },
  (t) => [index("audit_events_device").on(t.deviceId, t.id), index("audit_events_at").on(t.at)],
);

export const schema = {
  devices,
  certificates,
  bootstrapTokens,
  idevidBindings,
  pendingEnrollments,
  revocations,
  crlNumbers,
  operators,
  auditEvents,
};

export { sql };
