import { sql } from "drizzle-orm";
import { blob, check, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { type DeclaredNames, PRECONDITION_NAMES, type StoredFinding } from "../../ports/storage.ts";

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
    /** DNS names and IP addresses an operator declared for the device (its certificates carry them). */
    names: text("names", { mode: "json" }).$type<DeclaredNames>(),
    /** Raised at every change of the row: the `device_unchanged` precondition compares it. */
    revision: integer("revision").notNull().default(0),
    /** The protocol of the latest enrollment or renewal ("est", "scep"); null before any. */
    protocol: text("enrollment_protocol", { enum: ["est", "scep"] }),
  },
  (t) => [
    index("devices_status_id").on(t.status, t.id),
    index("devices_profile_id").on(t.profile, t.id),
    // The expiry indexes hold only devices with a certificate: every query of them bounds
    // the expiry (which implies IS NOT NULL, so SQLite uses them), and a device's first
    // certificate then adds an entry at the young end instead of also deleting its
    // pending entry, filed by id, from a page anywhere in the index.
    index("devices_not_after_id").on(t.currentNotAfter, t.id).where(sql`${t.currentNotAfter} IS NOT NULL`),
    // A profile's devices by expiry (fleet audit, expiry alerts): one range even for a
    // profile with few or no devices, where the (expiry, id) index would be read whole.
    index("devices_profile_not_after_id")
      .on(t.profile, t.currentNotAfter, t.id)
      .where(sql`${t.currentNotAfter} IS NOT NULL`),
    // The dashboard's expiry chart: active devices by expiry, read from the index alone.
    index("devices_status_not_after").on(t.status, t.currentNotAfter).where(sql`${t.currentNotAfter} IS NOT NULL`),
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
    method: text("method", { enum: ["token", "reenroll", "idevid", "operator", "gateway", "workload"] }).notNull(),
    replacesSerial: text("replaces_serial"),
    bootstrapTokenId: text("bootstrap_token_id"),
    /** First seen in use (mutual TLS, MQTT, a status report): a superseded predecessor may retry only before. */
    firstUsedAt: ms("first_used_at"),
    /** The protocol the certificate was asked for with; null for operator issuance. */
    protocol: text("protocol", { enum: ["est", "scep"] }),
    /** A workload X.509-SVID's registration entry; null for the device's own certificates. */
    workloadEntryId: text("workload_entry_id"),
    /** A workload SVID's one URI SAN. */
    spiffeId: text("spiffe_id"),
  },
  (t) => [
    uniqueIndex("certificates_fingerprint").on(t.fingerprint),
    // An entry's SVIDs (revoked when it is deleted): only SVID rows are in this index.
    index("certificates_workload_entry").on(t.workloadEntryId, t.status).where(sql`${t.workloadEntryId} IS NOT NULL`),
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
    /** Names declared with the token; they become the device's at enrollment. */
    names: text("names", { mode: "json" }).$type<DeclaredNames>(),
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

/**
 * One key, one identity: every certified public key (SHA-256 of its canonical SPKI)
 * and the one device it belongs to. The primary key is the rule; it is claimed in the
 * same write set that inserts the certificate.
 */
export const deviceKeys = sqliteTable(
  "device_keys",
  {
    keyFingerprint: text("key_fingerprint").primaryKey(),
    deviceId: text("device_id").notNull(),
    /**
     * 1 for keys certified before CSR keys had to be canonical (copied by migration
     * 0008): their fingerprint is of the SPKI as it was sent, maybe another spelling.
     */
    asSent: integer("as_sent").notNull().default(0),
  },
  // Whether any such key exists is one probe of this partial index.
  (t) => [index("device_keys_as_sent").on(t.asSent).where(sql`${t.asSent} = 1`)],
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
    method: text("method", { enum: ["token", "idevid", "gateway"] }).notNull(),
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
  (t) => [
    index("audit_events_device").on(t.deviceId, t.id),
    index("audit_events_at").on(t.at),
    // The fleet audit's look-backs by action (renewals after expiry) and the audit list's action filter.
    index("audit_events_action_at").on(t.action, t.at),
  ],
);

/**
 * What each device last said about itself over MQTT (the status contract), kept apart
 * from `devices` (what the server decided). `session` orders reports: a report from an
 * older session — such as a late last will — never replaces a newer one.
 */
export const deviceStatus = sqliteTable(
  "device_status",
  {
    deviceId: text("device_id").primaryKey(),
    state: text("state").notNull(),
    session: integer("session").notNull(),
    /** The device's own timestamp of the accepted report. */
    reportedAt: ms("reported_at").notNull(),
    /** When the server last heard from the device (any accepted message, or a connect). */
    lastSeenAt: ms("last_seen_at").notNull(),
    certSerial: text("cert_serial"),
    certNotAfter: ms("cert_not_after"),
    keyAlg: text("key_alg"),
    nextRenewAt: ms("next_renew_at"),
    agentVersion: text("agent_version"),
    lastRenew: text("last_renew", { mode: "json" }).$type<{ at: string; ok: boolean; error?: string }>(),
    /** Set when the server overwrote the status (revocation). */
    source: text("source", { enum: ["device", "server"] }).notNull(),
  },
  (t) => [index("device_status_last_seen").on(t.lastSeenAt, t.deviceId)],
);

/** Device events (rotation, errors), append-only and deduplicated by the device's event id. */
export const deviceEvents = sqliteTable(
  "device_events",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    deviceId: text("device_id").notNull(),
    eventId: text("event_id").notNull(),
    type: text("type").notNull(),
    at: ms("at").notNull(),
    receivedAt: ms("received_at").notNull(),
    body: text("body", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
  },
  (t) => [
    uniqueIndex("device_events_id").on(t.deviceId, t.eventId),
    index("device_events_device").on(t.deviceId, t.seq),
  ],
);

/**
 * Commands to devices (the outbox): written by the API or the CLI in state `queued`,
 * published by the server's fleet loop (`sent`), closed by the device's cmd-result.
 */
export const commands = sqliteTable(
  "commands",
  {
    opId: text("op_id").primaryKey(),
    batchId: text("batch_id").notNull(),
    deviceId: text("device_id").notNull(),
    command: text("command", { enum: ["rotate", "ca-update", "revoked", "workloads-changed"] }).notNull(),
    state: text("state", { enum: ["queued", "sent", "succeeded", "failed", "expired"] }).notNull(),
    createdAt: ms("created_at").notNull(),
    createdBy: text("created_by").notNull(),
    expiresAt: ms("expires_at").notNull(),
    sentAt: ms("sent_at"),
    resultAt: ms("result_at"),
    error: text("error"),
  },
  (t) => [
    index("commands_state").on(t.state, t.createdAt),
    index("commands_device").on(t.deviceId, t.createdAt),
    index("commands_batch").on(t.batchId, t.opId),
  ],
);

/**
 * MQTT connections as the embedded broker saw them: who (certificate), from where,
 * when, and whether the connection took over one that was still open with the same
 * certificate. Fleet audits read it (revoked yet connected, cloned identities).
 */
export const mqttSessions = sqliteTable(
  "mqtt_sessions",
  {
    id: text("id").primaryKey(),
    deviceId: text("device_id").notNull(),
    serial: text("serial").notNull(),
    remote: text("remote"),
    connectedAt: ms("connected_at").notNull(),
    disconnectedAt: ms("disconnected_at"),
    closeReason: text("close_reason"),
    /** The id of a still-open session with the same certificate that this one took over. */
    tookOver: text("took_over"),
  },
  (t) => [
    index("mqtt_sessions_device").on(t.deviceId, t.connectedAt),
    index("mqtt_sessions_open").on(t.disconnectedAt),
    index("mqtt_sessions_takeover").on(t.tookOver),
  ],
);

/** What operators declare about a device (lifecycle controls): who owns it, where it is. */
export const deviceMetadata = sqliteTable("device_metadata", {
  deviceId: text("device_id").primaryKey(),
  owner: text("owner"),
  location: text("location"),
  updatedAt: ms("updated_at").notNull(),
  updatedBy: text("updated_by").notNull(),
});

/** Expiry alerts sent, once per certificate and threshold (days before its notAfter). */
export const expiryAlerts = sqliteTable(
  "expiry_alerts",
  {
    serial: text("serial").notNull(),
    thresholdDays: integer("threshold_days").notNull(),
    deviceId: text("device_id").notNull(),
    sentAt: ms("sent_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.serial, t.thresholdDays] })],
);

/**
 * The names of the conditions a write set can carry (ports/storage.ts Precondition),
 * each a CHECK of its own so that the driver's error names the one that failed.
 */
const GUARD_NAMES = ["appliance_quota", "pending_quota", ...PRECONDITION_NAMES];

/**
 * Conditions checked inside a write set. A D1 batch cannot branch (no interactive
 * transaction, no IF), and a better-sqlite3 transaction should not call back into the
 * core, so a condition is one statement whose failure aborts the set:
 * `INSERT INTO write_guards SELECT '<name>', 0 WHERE NOT (<condition>)` inserts a row
 * only when the condition fails, and that row fails the CHECK named after the
 * condition, so the whole set rolls back (SQLite aborts the transaction; D1 the batch)
 * and the driver's message names the condition. When it holds, nothing is written. A
 * trigger with RAISE(ABORT) would do the same, but its message must be a literal, one
 * trigger per condition; CHECKs keep the conditions in the statements that use them.
 * The appliance quota is counted after the set's own writes and inserts its row with
 * ok = 1 when it holds, deleted again in the same set, so the table stays empty.
 */
export const writeGuards = sqliteTable(
  "write_guards",
  {
    name: text("name").notNull(),
    ok: integer("ok").notNull(),
  },
  (t) => GUARD_NAMES.map((name) => check(name, sql`${t.name} <> ${sql.raw(`'${name}'`)} OR ${t.ok} = 1`)),
);

/**
 * Dashboard sessions: the cookie holds a random secret, this table its SHA-256. A
 * session acts as its operator, whose token is checked again on every request.
 */
export const dashboardSessions = sqliteTable(
  "dashboard_sessions",
  {
    idHash: text("id_hash").primaryKey(),
    operatorId: text("operator_id").notNull(),
    /** The synchronizer token every state-changing form of this session carries. */
    csrfToken: text("csrf_token").notNull(),
    createdAt: ms("created_at").notNull(),
    lastSeenAt: ms("last_seen_at").notNull(),
    /** Idle expiry; moved on by use, never past absoluteExpiresAt. */
    expiresAt: ms("expires_at").notNull(),
    absoluteExpiresAt: ms("absolute_expires_at").notNull(),
    remote: text("remote"),
  },
  (t) => [index("dashboard_sessions_expires").on(t.expiresAt), index("dashboard_sessions_operator").on(t.operatorId)],
);

/** The latest fleet audits (their findings, capped), for the dashboard's overview. */
export const fleetAuditRuns = sqliteTable("fleet_audit_runs", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  at: ms("at").notNull(),
  actor: text("actor").notNull(),
  counts: text("counts", { mode: "json" }).$type<Record<string, number>>().notNull(),
  truncated: text("truncated", { mode: "json" }).$type<string[]>().notNull(),
  findings: text("findings", { mode: "json" }).$type<StoredFinding[]>().notNull(),
});

/**
 * The trust domain's JWT-SVID signing keys (ES256): in the SPIFFE bundle from creation
 * until `removed_at`, signing from `activates_at` until `retires_at`. `sealed_key` is the
 * private key sealed with a key from the Worker's secrets (Workers); null on Node, where
 * the private key is an encrypted file in the data directory.
 */
export const jwtKeys = sqliteTable(
  "jwt_keys",
  {
    kid: text("kid").primaryKey(),
    publicJwk: text("public_jwk", { mode: "json" }).$type<JsonWebKey>().notNull(),
    sealedKey: text("sealed_key"),
    createdAt: ms("created_at").notNull(),
    activatesAt: ms("activates_at").notNull(),
    retiresAt: ms("retires_at").notNull(),
    removedAt: ms("removed_at").notNull(),
  },
  (t) => [index("jwt_keys_removed_at").on(t.removedAt)],
);

/** Each change of the published bundle: the newest sequence is the bundle's spiffe_sequence. */
export const bundleRevisions = sqliteTable("bundle_revisions", {
  sequence: integer("sequence").primaryKey(),
  at: ms("at").notNull(),
  digest: text("digest").notNull(),
  reason: text("reason").notNull(),
});

/** The last good copy of each federated trust domain's bundle. */
export const federatedBundles = sqliteTable("federated_bundles", {
  trustDomain: text("trust_domain").primaryKey(),
  jwks: text("jwks").notNull(),
  sequence: integer("sequence"),
  endpoint: text("endpoint").notNull(),
  fetchedAt: ms("fetched_at").notNull(),
  refreshAt: ms("refresh_at").notNull(),
});

/**
 * Workload registration entries: which workload (selectors), on which devices (the
 * parent: one device, a profile, or a device-id prefix), gets which SPIFFE ID.
 */
export const workloadEntries = sqliteTable(
  "workload_entries",
  {
    id: text("id").primaryKey(),
    parentKind: text("parent_kind", { enum: ["device", "profile", "prefix"] }).notNull(),
    parentValue: text("parent_value").notNull(),
    name: text("name").notNull(),
    /** Null when each device gets its own ID (spiffe://<td>/device/<id>/workload/<name>). */
    spiffeId: text("spiffe_id"),
    fleetWide: integer("fleet_wide", { mode: "boolean" }).notNull(),
    selectors: text("selectors", { mode: "json" }).$type<string[]>().notNull(),
    ttlSeconds: integer("ttl_seconds").notNull(),
    jwtAudiences: text("jwt_audiences", { mode: "json" }).$type<string[]>().notNull(),
    /** Raised at every change: the `workload_entry_unchanged` precondition compares it. */
    revision: integer("revision").notNull().default(0),
    createdAt: ms("created_at").notNull(),
    updatedAt: ms("updated_at").notNull(),
    createdBy: text("created_by").notNull(),
  },
  (t) => [
    // One workload name per parent; a device's entries are one probe per parent kind.
    uniqueIndex("workload_entries_parent_name").on(t.parentKind, t.parentValue, t.name),
  ],
);

export const schema = {
  devices,
  certificates,
  bootstrapTokens,
  idevidBindings,
  deviceKeys,
  pendingEnrollments,
  revocations,
  crlNumbers,
  operators,
  auditEvents,
  deviceStatus,
  deviceEvents,
  commands,
  mqttSessions,
  deviceMetadata,
  expiryAlerts,
  writeGuards,
  dashboardSessions,
  fleetAuditRuns,
  jwtKeys,
  bundleRevisions,
  federatedBundles,
  workloadEntries,
};

export { sql };

/**
 * SCEP transactionID/senderNonce pairs seen (RFC 8894 §3.2.1.5): the primary key refuses
 * a replayed pair. Kept a week (a message older than that is refused by its signingTime).
 */
export const scepNonces = sqliteTable(
  "scep_nonces",
  {
    transactionId: text("transaction_id").notNull(),
    senderNonce: text("sender_nonce").notNull(),
    seenAt: ms("seen_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.transactionId, t.senderNonce] }), index("scep_nonces_seen_at").on(t.seenAt)],
);
