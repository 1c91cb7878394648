import {
  and,
  asc,
  count,
  desc,
  eq,
  getTableColumns,
  getTableName,
  gt,
  gte,
  inArray,
  is,
  isNotNull,
  isNull,
  lt,
  lte,
  max,
  or,
  Placeholder,
  type SQL,
  sql,
  type Table,
} from "drizzle-orm";
import type { BaseSQLiteDatabase, SQLiteColumn, SQLiteTable } from "drizzle-orm/sqlite-core";
import type {
  AuditChainRow,
  AuditQuery,
  CertificateRecord,
  CertificateStatus,
  CertificateStatusRecord,
  CommandQuery,
  CommandRecord,
  DashboardSessionRecord,
  DeviceEventRecord,
  DeviceMetadata,
  DeviceQuery,
  DeviceRecord,
  DeviceStatus,
  DeviceStatusRecord,
  FleetAuditRun,
  IdevidBinding,
  MqttSessionRecord,
  OperatorRecord,
  PendingEnrollment,
  PendingStatus,
  Precondition,
  RevocationEntry,
  StoredAuditEvent,
  TokenQuery,
  TokenRecord,
  Write,
} from "../../ports/storage.ts";
import { StorageConflictError } from "../../ports/storage.ts";
import {
  auditEvents,
  bootstrapTokens,
  certificates,
  commands,
  crlNumbers,
  dashboardSessions,
  deviceEvents,
  deviceKeys,
  deviceMetadata,
  deviceStatus,
  devices,
  expiryAlerts,
  fleetAuditRuns,
  idevidBindings,
  mqttSessions,
  operators,
  pendingEnrollments,
  revocations,
  type schema,
} from "./schema.ts";
import type { CompiledWrite } from "./sqlite-batch.mjs";

// biome-ignore lint/suspicious/noExplicitAny: one implementation serves the sync (better-sqlite3) and async (D1) drivers.
export type Db = BaseSQLiteDatabase<any, any, typeof schema>;

/**
 * Readers and write builders shared by the better-sqlite3 and D1 adapters; the
 * adapters differ only in how a write set is made atomic.
 */
export class DrizzleReaders {
  private readonly statements = new Map<string, Prepared>();

  constructor(protected readonly db: Db) {}

  /** The row whose `column` equals `value` (a unique or primary key), by a statement prepared once. */
  private async findOne<T>(table: SQLiteTable, column: SQLiteColumn, value: string): Promise<T | undefined> {
    const q = this.prepared(`one:${getTableName(table)}.${column.name}`, () =>
      this.db
        .select()
        .from(table)
        .where(eq(column, sql.placeholder("value"))),
    );
    return (await q.get({ value })) as T | undefined;
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.findOne(devices, devices.id, id);
  }

  async listDevices(q: DeviceQuery): Promise<DeviceRecord[]> {
    const conds: (SQL | undefined)[] = [];
    // By expiry, an index ending in (expiry, id) must drive the query: `+status` keeps
    // SQLite from choosing the status index and sorting the whole match instead; with a
    // profile, (profile, expiry, id) is that index.
    const byExpiry = q.expiringBefore !== undefined;
    if (q.gateway) conds.push(...applianceRange(q.gateway));
    // Device ids are printable ASCII, so DEL sorts after every id with the prefix.
    if (q.idPrefix) conds.push(gte(devices.id, q.idPrefix), lt(devices.id, `${q.idPrefix}\x7f`));
    if (q.status) conds.push(byExpiry ? sql`+${devices.status} = ${q.status}` : eq(devices.status, q.status));
    if (q.profile) conds.push(eq(devices.profile, q.profile));
    if (q.expiringBefore) {
      // Ordered by (expiry, id) on devices_not_after_id: a keyset page is one index range.
      conds.push(isNotNull(devices.currentNotAfter), lt(devices.currentNotAfter, q.expiringBefore));
      if (q.after?.notAfter !== undefined) {
        // A row value: one index range from the cursor on (2.6× faster per page than the
        // equivalent OR, which SQLite evaluates row by row).
        conds.push(sql`(${devices.currentNotAfter}, ${devices.id}) > (${q.after.notAfter}, ${q.after.id})`);
      }
      return this.db
        .select()
        .from(devices)
        .where(and(...conds))
        .orderBy(asc(devices.currentNotAfter), asc(devices.id))
        .limit(q.limit)
        .all();
    }
    if (q.after) conds.push(gt(devices.id, q.after.id));
    return this.db
      .select()
      .from(devices)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(asc(devices.id))
      .limit(q.limit)
      .all();
  }

  async countAppliances(gatewayId: string): Promise<number> {
    const [row] = await this.db
      .select({ n: count() })
      .from(devices)
      .where(and(...applianceRange(gatewayId), or(eq(devices.status, "active"), eq(devices.status, "pending"))))
      .all();
    return (row as { n: number } | undefined)?.n ?? 0;
  }

  async countDevicesByStatus(): Promise<Record<DeviceStatus, number>> {
    const rows = await this.db
      .select({ status: devices.status, n: count() })
      .from(devices)
      .groupBy(devices.status)
      .all();
    const out: Record<DeviceStatus, number> = { pending: 0, active: 0, revoked: 0, decommissioned: 0 };
    for (const r of rows as { status: DeviceStatus; n: number }[]) out[r.status] = r.n;
    return out;
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    const row = await this.findOne<CertificateRow>(certificates, certificates.serial, serial);
    return row && toCertificate(row);
  }

  async getCertificateByFingerprint(fingerprint: string): Promise<CertificateRecord | undefined> {
    const row = await this.findOne<CertificateRow>(certificates, certificates.fingerprint, fingerprint);
    return row && toCertificate(row);
  }

  async listCertificates(deviceId: string): Promise<CertificateRecord[]> {
    const rows = await this.db
      .select()
      .from(certificates)
      .where(eq(certificates.deviceId, deviceId))
      .orderBy(desc(certificates.issuedAt))
      .all();
    return rows.map((r: typeof certificates.$inferSelect) => toCertificate(r));
  }

  async listKeyHolders(keyFingerprints: readonly string[], limit: number): Promise<string[]> {
    // device_keys holds every certified key (claimed with its certificate; migration 0008
    // copied the older ones): one primary-key probe per spelling, one statement.
    const n = keyFingerprints.length;
    if (n === 0) return [];
    const q = this.prepared(`listKeyHolders:${n}`, () =>
      this.db
        .select({ deviceId: deviceKeys.deviceId })
        .from(deviceKeys)
        .where(
          inArray(
            deviceKeys.keyFingerprint,
            keyFingerprints.map((_, i) => sql.placeholder(`f${i}`)),
          ),
        )
        .limit(sql.placeholder("limit")),
    );
    const params: Record<string, unknown> = { limit };
    keyFingerprints.forEach((f, i) => {
      params[`f${i}`] = f;
    });
    const rows = (await q.all(params)) as { deviceId: string }[];
    return [...new Set(rows.map((r) => r.deviceId))];
  }

  private keysAsSent: Promise<boolean> | undefined;

  async hasKeysAsSent(): Promise<boolean> {
    // Such rows come only from migration 0008, which ran before this connection was
    // used (Node: at open; Workers: before deploy), and never change: asked once.
    this.keysAsSent ??= (async () => {
      const row = await this.db
        .select({ one: sql<number>`1` })
        .from(deviceKeys)
        .where(eq(deviceKeys.asSent, 1))
        .limit(1)
        .get();
      return row !== undefined;
    })();
    return this.keysAsSent;
  }

  async getTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.findOne(bootstrapTokens, bootstrapTokens.hash, hash);
  }

  async listTokens(deviceId: string): Promise<TokenRecord[]> {
    return this.db
      .select()
      .from(bootstrapTokens)
      .where(eq(bootstrapTokens.deviceId, deviceId))
      .orderBy(desc(bootstrapTokens.createdAt))
      .all();
  }

  async getIdevidBinding(deviceId: string): Promise<IdevidBinding | undefined> {
    return this.findOne(idevidBindings, idevidBindings.deviceId, deviceId);
  }

  async getIdevidBindingByFingerprint(fingerprint: string): Promise<IdevidBinding | undefined> {
    return this.findOne(idevidBindings, idevidBindings.fingerprint, fingerprint);
  }

  async getOperator(id: string): Promise<OperatorRecord | undefined> {
    return this.findOne(operators, operators.id, id);
  }

  async getOperatorByTokenHash(hash: string): Promise<OperatorRecord | undefined> {
    return this.findOne(operators, operators.tokenHash, hash);
  }

  async listOperators(): Promise<OperatorRecord[]> {
    return this.db.select().from(operators).orderBy(asc(operators.createdAt)).all();
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    return this.findOne(bootstrapTokens, bootstrapTokens.id, id);
  }

  async queryTokens(q: TokenQuery): Promise<TokenRecord[]> {
    const conds: (SQL | undefined)[] = [];
    if (q.deviceId) conds.push(eq(bootstrapTokens.deviceId, q.deviceId));
    if (q.after) conds.push(gt(bootstrapTokens.id, q.after));
    switch (q.state) {
      case "unused":
        conds.push(
          isNull(bootstrapTokens.usedAt),
          isNull(bootstrapTokens.revokedAt),
          gt(bootstrapTokens.expiresAt, q.now),
        );
        break;
      case "used":
        conds.push(isNotNull(bootstrapTokens.usedAt));
        break;
      case "revoked":
        conds.push(isNotNull(bootstrapTokens.revokedAt));
        break;
      case "expired":
        conds.push(isNull(bootstrapTokens.usedAt), lte(bootstrapTokens.expiresAt, q.now));
        break;
    }
    return this.db
      .select()
      .from(bootstrapTokens)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(asc(bootstrapTokens.id))
      .limit(q.limit)
      .all();
  }

  async getPending(id: string): Promise<PendingEnrollment | undefined> {
    const row = await this.findOne<PendingRow>(pendingEnrollments, pendingEnrollments.id, id);
    return row && toPending(row);
  }

  async findPending(deviceId: string, keyFingerprint: string): Promise<PendingEnrollment | undefined> {
    const row = await this.db
      .select()
      .from(pendingEnrollments)
      .where(
        and(
          eq(pendingEnrollments.deviceId, deviceId),
          eq(pendingEnrollments.keyFingerprint, keyFingerprint),
          sql`${pendingEnrollments.status} in ('pending', 'approved', 'rejected')`,
        ),
      )
      .orderBy(desc(pendingEnrollments.createdAt))
      .limit(1)
      .get();
    return row && toPending(row as PendingRow);
  }

  async listPending(q: {
    status?: PendingStatus;
    deviceId?: string;
    after?: string;
    limit: number;
  }): Promise<PendingEnrollment[]> {
    const conds: (SQL | undefined)[] = [];
    if (q.status) conds.push(eq(pendingEnrollments.status, q.status));
    if (q.deviceId) conds.push(eq(pendingEnrollments.deviceId, q.deviceId));
    if (q.after) conds.push(gt(pendingEnrollments.id, q.after));
    const rows = await this.db
      .select()
      .from(pendingEnrollments)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(asc(pendingEnrollments.id))
      .limit(q.limit)
      .all();
    return rows.map((r: PendingRow) => toPending(r));
  }

  async getCertificateStatus(serial: string): Promise<CertificateStatusRecord | undefined> {
    const q = this.prepared("certificateStatus", () =>
      this.db
        .select({
          serial: certificates.serial,
          issuer: certificates.issuer,
          status: certificates.status,
          revokedAt: certificates.revokedAt,
          revocationReason: certificates.revocationReason,
          notAfter: certificates.notAfter,
        })
        .from(certificates)
        .where(eq(certificates.serial, sql.placeholder("serial"))),
    );
    return (await q.get({ serial })) as CertificateStatusRecord | undefined;
  }

  async revocationsSince(seq: number, notAfter: Date, limit: number): Promise<RevocationEntry[]> {
    return this.db
      .select()
      .from(revocations)
      .where(and(gt(revocations.seq, seq), gt(revocations.notAfter, notAfter)))
      .orderBy(asc(revocations.seq))
      .limit(limit)
      .all();
  }

  async lastRevocationSeq(): Promise<number> {
    const q = this.prepared("lastRevocationSeq", () => this.db.select({ seq: max(revocations.seq) }).from(revocations));
    const row = (await q.get()) as { seq: number | null } | undefined;
    return row?.seq ?? 0;
  }

  async nextCrlNumber(issuer: string): Promise<bigint> {
    const row = await this.db
      .insert(crlNumbers)
      .values({ issuer, number: 1 })
      .onConflictDoUpdate({ target: crlNumbers.issuer, set: { number: sql`${crlNumbers.number} + 1` } })
      .returning({ number: crlNumbers.number })
      .get();
    return BigInt((row as { number: number }).number);
  }

  async listAudit(q: AuditQuery): Promise<StoredAuditEvent[]> {
    const conds: (SQL | undefined)[] = [];
    if (q.deviceId) conds.push(eq(auditEvents.deviceId, q.deviceId));
    if (q.actor) conds.push(eq(auditEvents.actor, q.actor));
    if (q.action) conds.push(eq(auditEvents.action, q.action));
    if (q.before !== undefined) conds.push(lt(auditEvents.id, q.before));
    const rows = await this.db
      .select()
      .from(auditEvents)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(desc(auditEvents.id))
      .limit(q.limit)
      .all();
    return rows.map(({ prevHash: _p, hash: _h, ...r }: typeof auditEvents.$inferSelect) => ({
      ...r,
      detail: r.detail ?? undefined,
    }));
  }

  async auditChain(afterId: number, limit: number): Promise<AuditChainRow[]> {
    // Raw column values: the chain is over the stored text, not its parsed form.
    const q = this.prepared("auditChain", () =>
      this.db
        .select({
          id: auditEvents.id,
          at: sql<number>`${auditEvents.at}`,
          actor: auditEvents.actor,
          action: auditEvents.action,
          outcome: auditEvents.outcome,
          deviceId: auditEvents.deviceId,
          serial: auditEvents.serial,
          remote: auditEvents.remote,
          detail: sql<string | null>`${auditEvents.detail}`,
          prevHash: auditEvents.prevHash,
          hash: auditEvents.hash,
        })
        .from(auditEvents)
        .where(gt(auditEvents.id, sql.placeholder("afterId")))
        .orderBy(asc(auditEvents.id))
        .limit(sql.placeholder("limit")),
    );
    return (await q.all({ afterId, limit })) as AuditChainRow[];
  }

  async getDeviceStatus(deviceId: string): Promise<DeviceStatusRecord | undefined> {
    return this.findOne(deviceStatus, deviceStatus.deviceId, deviceId);
  }

  async listDeviceEvents(deviceId: string, before: number | undefined, limit: number): Promise<DeviceEventRecord[]> {
    return this.db
      .select()
      .from(deviceEvents)
      .where(and(eq(deviceEvents.deviceId, deviceId), before === undefined ? undefined : lt(deviceEvents.seq, before)))
      .orderBy(desc(deviceEvents.seq))
      .limit(limit)
      .all();
  }

  async getCommand(opId: string): Promise<CommandRecord | undefined> {
    return this.findOne(commands, commands.opId, opId);
  }

  async listCommands(q: CommandQuery): Promise<CommandRecord[]> {
    const conds: (SQL | undefined)[] = [];
    if (q.deviceId) conds.push(eq(commands.deviceId, q.deviceId));
    if (q.batchId) conds.push(eq(commands.batchId, q.batchId));
    if (q.state) conds.push(eq(commands.state, q.state));
    if (q.after) conds.push(gt(commands.opId, q.after));
    return this.db
      .select()
      .from(commands)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(asc(commands.opId))
      .limit(q.limit)
      .all();
  }

  async queuedCommands(limit: number): Promise<CommandRecord[]> {
    const q = this.prepared("queuedCommands", () =>
      this.db
        .select()
        .from(commands)
        .where(eq(commands.state, "queued"))
        .orderBy(asc(commands.createdAt))
        .limit(sql.placeholder("limit")),
    );
    return (await q.all({ limit })) as CommandRecord[];
  }

  async expiryHistogram(
    now: Date,
    bounds: readonly number[],
    after: string,
    scan: number,
  ): Promise<{ counts: number[]; total: number; sum: number; next: string | null }> {
    const rows = (await this.db
      .select({ id: devices.id, notAfter: sql<number | null>`${devices.currentNotAfter}` })
      .from(devices)
      .where(and(eq(devices.status, "active"), gt(devices.id, after)))
      .orderBy(asc(devices.id))
      .limit(scan)
      .all()) as { id: string; notAfter: number | null }[];
    const at = now.getTime();
    const counts = bounds.map(() => 0);
    let total = 0;
    let sum = 0;
    for (const r of rows) {
      if (r.notAfter === null) continue;
      const left = (r.notAfter - at) / 1000;
      total++;
      sum += left;
      bounds.forEach((b, i) => {
        if (left <= b) counts[i] = (counts[i] as number) + 1;
      });
    }
    return { counts, total, sum, next: rows.length === scan ? (rows.at(-1)?.id ?? null) : null };
  }

  async getDashboardSession(idHash: string): Promise<DashboardSessionRecord | undefined> {
    return this.findOne(dashboardSessions, dashboardSessions.idHash, idHash);
  }

  async latestFleetAudit(): Promise<FleetAuditRun | undefined> {
    const [row] = await this.db.select().from(fleetAuditRuns).orderBy(desc(fleetAuditRuns.id)).limit(1).all();
    return row as FleetAuditRun | undefined;
  }

  async expiryByBucket(from: Date, until: Date, bucketMs: number): Promise<{ bucket: number; count: number }[]> {
    // One range of (status, expiry): counted from the index, the table is not read.
    // Integer division (drivers may bind a JS number as REAL).
    const bucket = sql<number>`CAST((${devices.currentNotAfter} - ${from.getTime()}) / ${Math.max(1, Math.floor(bucketMs))} AS INTEGER)`;
    return (await this.db
      .select({ bucket, count: count() })
      .from(devices)
      .where(and(eq(devices.status, "active"), gte(devices.currentNotAfter, from), lt(devices.currentNotAfter, until)))
      .groupBy(bucket)
      .orderBy(bucket)
      .all()) as { bucket: number; count: number }[];
  }

  async getDeviceMetadata(deviceId: string): Promise<DeviceMetadata | undefined> {
    return this.findOne(deviceMetadata, deviceMetadata.deviceId, deviceId);
  }

  async expiryAlertSent(serial: string, thresholdDays: number): Promise<boolean> {
    const q = this.prepared("expiryAlertSent", () =>
      this.db
        .select({ serial: expiryAlerts.serial })
        .from(expiryAlerts)
        .where(
          and(
            eq(expiryAlerts.serial, sql.placeholder("serial")),
            eq(expiryAlerts.thresholdDays, sql.placeholder("thresholdDays")),
          ),
        ),
    );
    return (await q.get({ serial, thresholdDays })) !== undefined;
  }

  async listMqttSessions(deviceId: string, limit: number): Promise<MqttSessionRecord[]> {
    return this.db
      .select()
      .from(mqttSessions)
      .where(eq(mqttSessions.deviceId, deviceId))
      .orderBy(desc(mqttSessions.connectedAt))
      .limit(limit)
      .all();
  }

  async staleDevices(before: Date, limit: number): Promise<DeviceStatusRecord[]> {
    return (
      this.db
        .select(getTableColumns(deviceStatus))
        .from(deviceStatus)
        .innerJoin(devices, eq(devices.id, deviceStatus.deviceId))
        // Driven by the last-seen index (`+` keeps the status index out of it).
        .where(and(lt(deviceStatus.lastSeenAt, before), sql`+${devices.status} = 'active'`))
        .orderBy(asc(deviceStatus.lastSeenAt), asc(deviceStatus.deviceId))
        .limit(limit)
        .all()
    );
  }

  async revokedButConnected(limit: number): Promise<MqttSessionRecord[]> {
    return this.db
      .select(getTableColumns(mqttSessions))
      .from(mqttSessions)
      .leftJoin(certificates, eq(certificates.serial, mqttSessions.serial))
      .leftJoin(devices, eq(devices.id, mqttSessions.deviceId))
      .where(
        and(
          isNull(mqttSessions.disconnectedAt),
          or(eq(certificates.status, "revoked"), sql`${devices.status} in ('revoked', 'decommissioned')`),
        ),
      )
      .orderBy(asc(mqttSessions.connectedAt))
      .limit(limit)
      .all();
  }

  async heardAfterRevocation(
    after: string,
    scan: number,
  ): Promise<{ rows: (DeviceStatusRecord & { revokedAt: Date })[]; next: string | null }> {
    // A chunk of revoked devices in (status, id) index order, then their status rows.
    const chunk = this.db
      .select({ id: devices.id, updatedAt: devices.updatedAt })
      .from(devices)
      .where(and(sql`${devices.status} in ('revoked', 'decommissioned')`, gt(devices.id, after)))
      .orderBy(asc(devices.id))
      .limit(scan)
      .as("chunk");
    const rows = (await this.db
      .select({ id: chunk.id, status: getTableColumns(deviceStatus), revokedAt: chunk.updatedAt })
      .from(chunk)
      .leftJoin(deviceStatus, eq(deviceStatus.deviceId, chunk.id))
      .orderBy(asc(chunk.id))
      .all()) as { id: string; status: DeviceStatusRecord | null; revokedAt: Date }[];
    return {
      rows: rows
        // A minute's grace: what the device sent while it was being told and cut off.
        .filter((r) => r.status?.deviceId && r.status.lastSeenAt.getTime() > r.revokedAt.getTime() + 60_000)
        .map((r) => ({ ...(r.status as DeviceStatusRecord), revokedAt: r.revokedAt })),
      next: rows.length === scan ? (rows.at(-1)?.id ?? null) : null,
    };
  }

  async supersededRenewals(
    since: Date,
    limit: number,
  ): Promise<{ deviceId: string; serial: string | null; at: Date; remote: string | null }[]> {
    // One range of audit_events_at; the denial records of the window are few.
    const rows = await this.db
      .select({
        deviceId: auditEvents.deviceId,
        serial: auditEvents.serial,
        at: auditEvents.at,
        remote: auditEvents.remote,
      })
      .from(auditEvents)
      .where(
        and(
          gte(auditEvents.at, since),
          eq(auditEvents.outcome, "denied"),
          sql`json_extract(${auditEvents.detail}, '$.reason') = ${SUPERSEDED_REASON}`,
        ),
      )
      .orderBy(desc(auditEvents.at))
      .limit(limit)
      .all();
    return (rows as { deviceId: string | null; serial: string | null; at: Date; remote: string | null }[]).flatMap(
      (r) => (r.deviceId ? [{ ...r, deviceId: r.deviceId }] : []),
    );
  }

  async takeovers(since: Date, limit: number): Promise<MqttSessionRecord[]> {
    return this.db
      .select()
      .from(mqttSessions)
      .where(and(isNotNull(mqttSessions.tookOver), gt(mqttSessions.connectedAt, since)))
      .orderBy(asc(mqttSessions.deviceId), asc(mqttSessions.connectedAt))
      .limit(limit)
      .all();
  }

  async reportedCertificateProblems(
    after: string,
    scan: number,
  ): Promise<{
    problems: { deviceId: string; serial: string; issuedTo: string | null; status: CertificateStatus | null }[];
    next: string | null;
  }> {
    // One chunk of device_status in key order; every row costs two primary-key lookups.
    const chunk = this.db
      .select({ deviceId: deviceStatus.deviceId, serial: deviceStatus.certSerial })
      .from(deviceStatus)
      .where(gt(deviceStatus.deviceId, after))
      .orderBy(asc(deviceStatus.deviceId))
      .limit(scan)
      .as("chunk");
    const rows = (await this.db
      .select({
        deviceId: chunk.deviceId,
        serial: chunk.serial,
        active: sql<number>`${devices.status} = 'active'`,
        issuedTo: certificates.deviceId,
        status: certificates.status,
      })
      .from(chunk)
      .leftJoin(devices, eq(devices.id, chunk.deviceId))
      .leftJoin(certificates, eq(certificates.serial, chunk.serial))
      .orderBy(asc(chunk.deviceId))
      .all()) as {
      deviceId: string;
      serial: string | null;
      active: number | null;
      issuedTo: string | null;
      status: CertificateStatus | null;
    }[];
    const problems = rows
      .filter(
        (r) =>
          r.active === 1 &&
          r.serial !== null &&
          (r.issuedTo === null || r.issuedTo !== r.deviceId || r.status === "revoked"),
      )
      .map((r) => ({ deviceId: r.deviceId, serial: r.serial as string, issuedTo: r.issuedTo, status: r.status }));
    return { problems, next: rows.length === scan ? (rows.at(-1)?.deviceId ?? null) : null };
  }

  async keyTypeCounts(
    now: Date,
    after: string,
    scan: number,
  ): Promise<{ counts: { profile: string; keyType: string; count: number }[]; next: string | null }> {
    const chunk = this.db
      .select({ serial: certificates.serial, profile: certificates.profile, keyType: certificates.keyType })
      .from(certificates)
      .where(and(gt(certificates.serial, after), eq(certificates.status, "valid"), gt(certificates.notAfter, now)))
      .orderBy(asc(certificates.serial))
      .limit(scan)
      .as("chunk");
    const rows = (await this.db
      .select({ profile: chunk.profile, keyType: chunk.keyType, count: count(), last: max(chunk.serial) })
      .from(chunk)
      .groupBy(chunk.profile, chunk.keyType)
      .all()) as { profile: string; keyType: string; count: number; last: string }[];
    const scanned = rows.reduce((n, r) => n + r.count, 0);
    const last =
      rows
        .map((r) => r.last)
        .sort()
        .at(-1) ?? "";
    return {
      counts: rows.map(({ profile, keyType, count: n }) => ({ profile, keyType, count: n })),
      next: scanned === scan ? last : null,
    };
  }

  async certificatesWithKeyType(
    profile: string,
    keyType: string,
    now: Date,
    limit: number,
  ): Promise<CertificateRecord[]> {
    const rows = await this.db
      .select()
      .from(certificates)
      .where(
        and(
          eq(certificates.profile, profile),
          eq(certificates.keyType, keyType),
          eq(certificates.status, "valid"),
          gt(certificates.notAfter, now),
        ),
      )
      .orderBy(asc(certificates.notAfter))
      .limit(limit)
      .all();
    return rows.map((r: CertificateRow) => toCertificate(r));
  }

  /**
   * One write as SQL statements with positional parameters, executed by the adapter
   * inside its atomic unit (a better-sqlite3 transaction; a D1 batch takes the same
   * form). The SQL of each kind is built once; per write only the parameters are
   * filled in.
   */
  protected compile(w: Write): CompiledWrite[] {
    const values = writeValues(w);
    return this.writeTemplates(w).map((t) => ({
      sql: t.sql,
      params: t.params.map((p) => (is(p, Placeholder) ? values[p.name] : p)),
    }));
  }

  /**
   * An audit record without its place in the hash chain, for a store that cannot
   * compute SHA-256 in SQL (D1): its adapter seals the rows afterwards, in id order.
   */
  protected compileUnsealedAudit(w: Extract<Write, { kind: "audit" }>): CompiledWrite {
    const values = writeValues(w);
    return {
      sql: "INSERT INTO audit_events (at, actor, action, outcome, device_id, serial, remote, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      params: AUDIT_FIELDS.map((f) => values[f]),
    };
  }

  private readonly templates = new Map<string, Template[]>();

  private writeTemplates(w: Write): Template[] {
    const key = w.kind === "require" ? `require:${w.precondition.name}` : w.kind;
    let t = this.templates.get(key);
    if (!t) {
      t =
        w.kind === "require"
          ? [PRECONDITIONS[w.precondition.name]]
          : [...(RAW[w.kind] ?? [this.writeQuery(w.kind).toSQL()]), ...(ALSO[w.kind] ?? [])];
      this.templates.set(key, t);
    }
    return t;
  }

  private writeQuery(kind: Write["kind"]): { toSQL(): Template } {
    switch (kind) {
      case "upsertDevice": {
        const set: Record<string, SQL> = {};
        for (const [key, column] of Object.entries(getTableColumns(devices))) {
          if (key !== "id") set[key] = sql.raw(`excluded."${column.name}"`);
        }
        // Every change of the row raises its revision (the device_unchanged precondition).
        set.revision = sql.raw(`"devices"."revision" + 1`);
        return this.db.insert(devices).values(placeholders(devices)).onConflictDoUpdate({ target: devices.id, set });
      }
      case "insertCertificate":
        return this.db.insert(certificates).values(placeholders(certificates));
      case "redeemToken":
        return this.db
          .update(bootstrapTokens)
          .set({ usedAt: sql`${sql.placeholder("at")}`, usedSerial: sql`${sql.placeholder("serial")}` })
          .where(eq(bootstrapTokens.id, sql.placeholder("tokenId")));
      case "insertToken":
        return this.db.insert(bootstrapTokens).values(placeholders(bootstrapTokens));
      case "bindIdevid":
        return this.db.insert(idevidBindings).values(placeholders(idevidBindings));
      case "insertOperator":
        return this.db.insert(operators).values(placeholders(operators));
      case "insertPending":
        return this.db.insert(pendingEnrollments).values(placeholders(pendingEnrollments));
      case "insertCommand":
        return this.db.insert(commands).values(placeholders(commands));
      case "openMqttSession":
        return this.db.insert(mqttSessions).values(placeholders(mqttSessions));
      case "insertDashboardSession":
        return this.db.insert(dashboardSessions).values(placeholders(dashboardSessions));
      case "setDeviceMetadata": {
        const set: Record<string, SQL> = {};
        for (const [key, column] of Object.entries(getTableColumns(deviceMetadata))) {
          if (key !== "deviceId") set[key] = sql.raw(`excluded."${column.name}"`);
        }
        return this.db
          .insert(deviceMetadata)
          .values(placeholders(deviceMetadata))
          .onConflictDoUpdate({ target: deviceMetadata.deviceId, set });
      }
      default:
        throw new Error(`no SQL for write ${kind}`);
    }
  }

  /** A prepared statement, made on first use and kept for the life of the connection. */
  protected prepared(name: string, build: () => { prepare(): Prepared }): Prepared {
    let p = this.statements.get(name);
    if (!p) {
      p = build().prepare();
      this.statements.set(name, p);
    }
    return p;
  }
}

/** What drizzle's prepare() gives back, for both the sync and the async drivers. */
export interface Prepared {
  run(params?: Record<string, unknown>): unknown;
  get(params?: Record<string, unknown>): unknown;
  all(params?: Record<string, unknown>): unknown;
}

/**
 * `{ column: placeholder }` for every column of a table. The placeholders are plain SQL,
 * so drizzle binds what it is given: toDriver() converts values to driver values first.
 */
function placeholders<T extends Table>(table: T): Record<keyof T["_"]["columns"], SQL> {
  const out: Record<string, SQL> = {};
  for (const key of Object.keys(getTableColumns(table))) out[key] = sql`${sql.placeholder(key)}`;
  return out as Record<keyof T["_"]["columns"], SQL>;
}

/** A record as driver values (Date → ms, JSON → text), through each column's own mapping. */
function toDriver(table: Table, values: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const record = values as Record<string, unknown>;
  for (const [key, column] of Object.entries(getTableColumns(table))) {
    const v = record[key];
    out[key] = v === null || v === undefined ? null : column.mapToDriverValue(v);
  }
  return out;
}

/**
 * The ids `<gateway>~…`: '~' sorts after every other character of a device id and
 * DEL after '~', so they are exactly the ids in (`<gateway>~`, `<gateway>~\x7f`), one
 * range of the primary key.
 */
function applianceRange(gatewayId: string): SQL[] {
  return [gt(devices.id, `${gatewayId}~`), lt(devices.id, `${gatewayId}~\x7f`)];
}

type CertificateRow = typeof certificates.$inferSelect;

function toCertificate(row: CertificateRow): CertificateRecord {
  return { ...row, der: new Uint8Array(row.der.buffer, row.der.byteOffset, row.der.byteLength) };
}

function toBuffer(bytes: Uint8Array): Buffer {
  // drizzle's blob(buffer) column wants a Buffer; D1 and better-sqlite3 both accept one.
  return bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Maps a driver's UNIQUE/PRIMARY KEY violation, or a write guard's CHECK, to the port's conflict error. */
export function asConflict(err: unknown): StorageConflictError | undefined {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const message = String((e as { message?: unknown }).message ?? "");
    const m = /(?:UNIQUE|CHECK) constraint failed: ([\w.]+)/.exec(message);
    if (m) return new StorageConflictError(message, m[1] as string);
  }
  return undefined;
}

type Template = { sql: string; params: unknown[] };

/** Hand-written SQL (with named parameters, in order) for the writes that touch many rows. */
function raw(text: string, ...names: string[]): Template {
  return { sql: text.replace(/\s+/g, " ").trim(), params: names.map((n) => sql.placeholder(n)) };
}

const AUDIT_FIELDS = ["at", "actor", "action", "outcome", "deviceId", "serial", "remote", "detail"];

/** The audit reason of a renewal refused for a superseded certificate (provisioners/client-certificate.ts). */
const SUPERSEDED_REASON = "client_certificate_superseded";

/** A certificate's first use (CertificateRecord.firstUsedAt); later uses change nothing. */
const MARK_USED = "UPDATE certificates SET first_used_at = ? WHERE serial = ? AND first_used_at IS NULL";

const REVOKED_CERTIFICATES_TO_FEED = `INSERT INTO revocations (serial, issuer, device_id, revoked_at, reason, not_after)
  SELECT serial, issuer, device_id, ?, ?, not_after FROM certificates`;

/**
 * The writes that are conditional or set-based. Each touches only the rows of one
 * device, token or certificate through an index, so its cost does not grow with the
 * number of certificates already revoked.
 */
const RAW: Partial<Record<Write["kind"], Template[]>> = {
  markCertificateUsed: [raw(MARK_USED, "at", "serial")],
  // The CHECK on write_guards fails (and the transaction with it) when the count is over.
  guardApplianceQuota: [
    raw(
      `INSERT INTO write_guards (name, ok) SELECT 'appliance_quota', count(*) <= ? FROM devices
       WHERE id > ? AND id < ? AND status IN ('active', 'pending')`,
      "max",
      "from",
      "to",
    ),
    raw("DELETE FROM write_guards"),
  ],
  revokeDevice: [
    raw(
      `${REVOKED_CERTIFICATES_TO_FEED} WHERE device_id = ? AND status = 'valid' AND not_after > ?`,
      "at",
      "reason",
      "deviceId",
      "at",
    ),
    raw(
      `UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
       WHERE device_id = ? AND status = 'valid' AND not_after > ?`,
      "at",
      "reason",
      "deviceId",
      "at",
    ),
    raw(
      "UPDATE devices SET status = ?, updated_at = ?, revision = revision + 1 WHERE id = ?",
      "status",
      "at",
      "deviceId",
    ),
    raw(
      "UPDATE bootstrap_tokens SET revoked_at = ? WHERE device_id = ? AND used_at IS NULL AND revoked_at IS NULL",
      "at",
      "deviceId",
    ),
    raw("UPDATE idevid_bindings SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL", "at", "deviceId"),
    raw(
      `UPDATE pending_enrollments SET status = 'rejected', updated_at = ?, decided_at = ?, decided_by = 'revocation',
       decision_reason = 'the device was revoked' WHERE device_id = ? AND status IN ('pending', 'approved')`,
      "at",
      "at",
      "deviceId",
    ),
  ],
  revokeCertificate: [
    raw(`${REVOKED_CERTIFICATES_TO_FEED} WHERE serial = ? AND status = 'valid'`, "at", "reason", "serial"),
    raw(
      "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ? AND status = 'valid'",
      "at",
      "reason",
      "serial",
    ),
  ],
  reinstateDevice: [
    raw(
      `UPDATE devices SET status = 'pending', updated_at = ?, current_serial = NULL, current_not_after = NULL,
       revision = revision + 1 WHERE id = ? AND status IN ('revoked', 'decommissioned')`,
      "at",
      "deviceId",
    ),
  ],
  revokeToken: [
    raw(
      "UPDATE bootstrap_tokens SET revoked_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
      "at",
      "tokenId",
    ),
  ],
  revokeOperator: [raw("UPDATE operators SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", "at", "operatorId")],
  decidePending: [
    raw(
      `UPDATE pending_enrollments SET status = ?, updated_at = ?, decided_at = coalesce(decided_at, ?),
       decided_by = coalesce(?, decided_by), decision_reason = coalesce(?, decision_reason), serial = coalesce(?, serial)
       WHERE id = ? AND status = ?`,
      "status",
      "at",
      "at",
      "by",
      "reason",
      "serial",
      "id",
      "from",
    ),
  ],
  // The session rule (ports/storage.ts recordStatus), decided inside the upsert.
  recordStatus: [
    raw(
      `INSERT INTO device_status (device_id, state, session, reported_at, last_seen_at, cert_serial, cert_not_after,
         key_alg, next_renew_at, agent_version, last_renew, source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'device')
       ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, session = excluded.session,
         reported_at = excluded.reported_at, last_seen_at = max(device_status.last_seen_at, excluded.last_seen_at),
         cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after, key_alg = excluded.key_alg,
         next_renew_at = excluded.next_renew_at, agent_version = excluded.agent_version,
         last_renew = excluded.last_renew, source = 'device'
       WHERE excluded.session > device_status.session
         OR (excluded.session = device_status.session AND device_status.source = 'device'
             AND (excluded.reported_at >= device_status.reported_at OR ? = 1))`,
      "deviceId",
      "state",
      "session",
      "reportedAt",
      "lastSeenAt",
      "certSerial",
      "certNotAfter",
      "keyAlg",
      "nextRenewAt",
      "agentVersion",
      "lastRenew",
      "force",
    ),
  ],
  overwriteStatus: [
    raw(
      `INSERT INTO device_status (device_id, state, session, reported_at, last_seen_at, source)
       VALUES (?, ?, 0, ?, 0, 'server')
       ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, reported_at = excluded.reported_at, source = 'server'`,
      "deviceId",
      "state",
      "at",
    ),
  ],
  touchDevice: [
    raw("UPDATE device_status SET last_seen_at = max(last_seen_at, ?) WHERE device_id = ?", "at", "deviceId"),
  ],
  insertEvent: [
    raw(
      `INSERT INTO device_events (device_id, event_id, type, at, received_at, body) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (device_id, event_id) DO NOTHING`,
      "deviceId",
      "eventId",
      "type",
      "at",
      "receivedAt",
      "body",
    ),
  ],
  markCommandSent: [
    raw("UPDATE commands SET state = 'sent', sent_at = ? WHERE op_id = ? AND state = 'queued'", "at", "opId"),
  ],
  commandResult: [
    raw(
      `UPDATE commands SET state = ?, result_at = ?, error = ?
       WHERE op_id = ? AND device_id = ? AND state IN ('queued', 'sent', 'expired')`,
      "state",
      "at",
      "error",
      "opId",
      "deviceId",
    ),
  ],
  expireCommands: [
    raw("UPDATE commands SET state = 'expired' WHERE state IN ('queued', 'sent') AND expires_at <= ?", "at"),
  ],
  closeMqttSession: [
    raw(
      "UPDATE mqtt_sessions SET disconnected_at = ?, close_reason = ? WHERE id = ? AND disconnected_at IS NULL",
      "at",
      "reason",
      "id",
    ),
  ],
  closeAllMqttSessions: [
    raw("UPDATE mqtt_sessions SET disconnected_at = ?, close_reason = ? WHERE disconnected_at IS NULL", "at", "reason"),
  ],
  recordExpiryAlert: [
    raw(
      `INSERT INTO expiry_alerts (serial, threshold_days, device_id, sent_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (serial, threshold_days) DO NOTHING`,
      "serial",
      "thresholdDays",
      "deviceId",
      "at",
    ),
  ],
  touchDashboardSession: [
    raw(
      "UPDATE dashboard_sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?",
      "at",
      "expiresAt",
      "idHash",
    ),
  ],
  deleteDashboardSession: [raw("DELETE FROM dashboard_sessions WHERE id_hash = ?", "idHash")],
  purgeDashboardSessions: [
    raw(
      `DELETE FROM dashboard_sessions WHERE expires_at <= ? OR operator_id IN
       (SELECT id FROM operators WHERE revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= ?))`,
      "at",
      "at",
    ),
  ],
  recordFleetAudit: [
    raw(
      "INSERT INTO fleet_audit_runs (at, actor, counts, truncated, findings) VALUES (?, ?, ?, ?, ?)",
      "at",
      "actor",
      "counts",
      "truncated",
      "findings",
    ),
    raw("DELETE FROM fleet_audit_runs WHERE id <= (SELECT max(id) FROM fleet_audit_runs) - ?", "keep"),
  ],
  // The hash chain: the previous record's hash is read inside the same transaction
  // that appends, so concurrent writers (server, CLI) chain in commit order.
  // edgeid_audit_hash is registered on every connection (sqlite-batch.mjs).
  audit: [
    raw(
      `INSERT INTO audit_events (at, actor, action, outcome, device_id, serial, remote, detail, prev_hash, hash)
       SELECT ?, ?, ?, ?, ?, ?, ?, ?, h.prev, edgeid_audit_hash(h.prev, ?, ?, ?, ?, ?, ?, ?, ?)
       FROM (SELECT coalesce((SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1), '') AS prev) AS h`,
      ...AUDIT_FIELDS,
      ...AUDIT_FIELDS,
    ),
  ],
};

/** A precondition's parameters as driver values (an absent device is revision -1). */
function preconditionValues(p: Precondition): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) out[k] = v instanceof Date ? v.getTime() : v;
  if (p.name === "device_unchanged") out.revision = p.revision ?? -1;
  if (p.name === "appliance_count") Object.assign(out, { from: `${p.gatewayId}~`, to: `${p.gatewayId}~\x7f` });
  return out;
}

/** A precondition: a row that fails its CHECK is inserted only when the condition fails (schema.ts write_guards). */
function precondition(name: Precondition["name"], failsWhen: string, ...params: string[]): Template {
  return raw(`INSERT INTO write_guards (name, ok) SELECT '${name}', 0 WHERE ${failsWhen}`, ...params);
}

/** One statement per precondition (ports/storage.ts Precondition); each reads one row by its key. */
const PRECONDITIONS: Record<Precondition["name"], Template> = {
  device_unchanged: precondition(
    "device_unchanged",
    "coalesce((SELECT revision FROM devices WHERE id = ?), -1) <> ?",
    "deviceId",
    "revision",
  ),
  device_active: precondition(
    "device_active",
    "coalesce((SELECT status FROM devices WHERE id = ?), '') <> 'active'",
    "deviceId",
  ),
  device_not_revoked: precondition(
    "device_not_revoked",
    "coalesce((SELECT status FROM devices WHERE id = ?), '') NOT IN ('pending', 'active')",
    "deviceId",
  ),
  certificate_valid: precondition(
    "certificate_valid",
    "NOT EXISTS (SELECT 1 FROM certificates WHERE serial = ? AND status = 'valid' AND not_after > ?)",
    "serial",
    "at",
  ),
  certificate_unused: precondition(
    "certificate_unused",
    "EXISTS (SELECT 1 FROM certificates WHERE serial = ? AND first_used_at IS NOT NULL)",
    "serial",
  ),
  token_usable: precondition(
    "token_usable",
    `NOT EXISTS (SELECT 1 FROM bootstrap_tokens WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL
     AND expires_at > ?)`,
    "tokenId",
    "at",
  ),
  token_unused: precondition(
    "token_unused",
    "NOT EXISTS (SELECT 1 FROM bootstrap_tokens WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL)",
    "tokenId",
  ),
  idevid_bound: precondition(
    "idevid_bound",
    "NOT EXISTS (SELECT 1 FROM idevid_bindings WHERE device_id = ? AND fingerprint = ? AND revoked_at IS NULL)",
    "deviceId",
    "fingerprint",
  ),
  pending_status: precondition(
    "pending_status",
    "NOT EXISTS (SELECT 1 FROM pending_enrollments WHERE id = ? AND status = ?)",
    "id",
    "status",
  ),
  appliance_count: precondition(
    "appliance_count",
    "(SELECT count(*) FROM devices WHERE id > ? AND id < ? AND status IN ('active', 'pending')) <> ?",
    "from",
    "to",
    "count",
  ),
  operator_active: precondition(
    "operator_active",
    `NOT EXISTS (SELECT 1 FROM operators WHERE id = ? AND revoked_at IS NULL
     AND (expires_at IS NULL OR expires_at > ?))`,
    "operatorId",
    "at",
  ),
};

/** Statements that follow a write's own (the same parameters). */
const ALSO: Partial<Record<Write["kind"], Template[]>> = {
  // One key, one identity: the key is claimed for the device unless the device holds it
  // already; another device's claim fails the primary key (KEY_HOLDER_CONSTRAINT).
  insertCertificate: [
    raw(
      `INSERT INTO device_keys (key_fingerprint, device_id) SELECT ?, ?
       WHERE NOT EXISTS (SELECT 1 FROM device_keys WHERE key_fingerprint = ? AND device_id = ?)`,
      "keyFingerprint",
      "deviceId",
      "keyFingerprint",
      "deviceId",
    ),
  ],
  // A connection or a status report with a certificate of the device is a use of it.
  openMqttSession: [raw(`${MARK_USED} AND device_id = ?`, "connectedAt", "serial", "deviceId")],
  recordStatus: [raw(`${MARK_USED} AND device_id = ?`, "lastSeenAt", "certSerial", "deviceId")],
};

/** The parameters of one write, as driver values. */
function writeValues(w: Write): Record<string, unknown> {
  switch (w.kind) {
    case "require":
      return preconditionValues(w.precondition);
    case "upsertDevice":
      // A new row starts at revision 0; an existing one is raised in SQL.
      return { ...toDriver(devices, w.device), revision: 0 };
    case "markCertificateUsed":
      return { serial: w.serial, at: w.at.getTime() };
    case "insertCertificate":
      return toDriver(certificates, { ...w.certificate, der: toBuffer(w.certificate.der) });
    case "redeemToken":
      return { tokenId: w.tokenId, at: w.at.getTime(), serial: w.serial };
    case "insertToken":
      return toDriver(bootstrapTokens, w.token);
    case "bindIdevid":
      return toDriver(idevidBindings, w.binding);
    case "insertOperator":
      return toDriver(operators, w.operator);
    case "revokeOperator":
      return { operatorId: w.operatorId, at: w.at.getTime() };
    case "revokeDevice":
      return { deviceId: w.deviceId, at: w.at.getTime(), reason: w.reason, status: w.status };
    case "revokeCertificate":
      return { serial: w.serial, at: w.at.getTime(), reason: w.reason };
    case "revokeToken":
      return { tokenId: w.tokenId, at: w.at.getTime() };
    case "reinstateDevice":
      return { deviceId: w.deviceId, at: w.at.getTime() };
    case "insertPending":
      return toDriver(pendingEnrollments, { ...w.pending, csr: toBuffer(w.pending.csr) });
    case "decidePending":
      return {
        id: w.id,
        from: w.from,
        status: w.status,
        at: w.at.getTime(),
        by: w.by,
        reason: w.reason,
        serial: w.serial,
      };
    case "audit":
      return toDriver(auditEvents, w.event);
    case "recordStatus":
      return { ...toDriver(deviceStatus, w.status), force: w.force ? 1 : 0 };
    case "overwriteStatus":
      return { deviceId: w.deviceId, state: w.state, at: w.at.getTime() };
    case "touchDevice":
      return { deviceId: w.deviceId, at: w.at.getTime() };
    case "guardApplianceQuota":
      return { from: `${w.gatewayId}~`, to: `${w.gatewayId}~\x7f`, max: w.max };
    case "insertEvent":
      return toDriver(deviceEvents, w.event);
    case "insertCommand":
      return toDriver(commands, w.command);
    case "markCommandSent":
      return { opId: w.opId, at: w.at.getTime() };
    case "commandResult":
      return { opId: w.opId, deviceId: w.deviceId, state: w.state, at: w.at.getTime(), error: w.error };
    case "expireCommands":
      return { at: w.at.getTime() };
    case "openMqttSession":
      return toDriver(mqttSessions, w.session);
    case "closeMqttSession":
      return { id: w.id, at: w.at.getTime(), reason: w.reason };
    case "closeAllMqttSessions":
      return { at: w.at.getTime(), reason: w.reason };
    case "setDeviceMetadata":
      return toDriver(deviceMetadata, w.metadata);
    case "recordExpiryAlert":
      return { serial: w.serial, thresholdDays: w.thresholdDays, deviceId: w.deviceId, at: w.at.getTime() };
    case "insertDashboardSession":
      return toDriver(dashboardSessions, w.session);
    case "touchDashboardSession":
      return { idHash: w.idHash, at: w.at.getTime(), expiresAt: w.expiresAt.getTime() };
    case "deleteDashboardSession":
      return { idHash: w.idHash };
    case "purgeDashboardSessions":
      return { at: w.at.getTime() };
    case "recordFleetAudit":
      return { ...toDriver(fleetAuditRuns, { ...w.run, id: null }), keep: w.keep };
  }
}

type PendingRow = typeof pendingEnrollments.$inferSelect;

function toPending(row: PendingRow): PendingEnrollment {
  return { ...row, csr: new Uint8Array(row.csr.buffer, row.csr.byteOffset, row.csr.byteLength) };
}
