import { and, asc, count, desc, eq, getTableColumns, gt, gte, isNotNull, isNull, lt, max, or, sql } from "drizzle-orm";
import type {
  CertificateRecord,
  CertificateStatus,
  DeviceStatusRecord,
  FleetAuditReads,
  FleetAuditRun,
  MqttSessionRecord,
} from "../../../ports/storage.ts";
import { auditEvents, certificates, deviceStatus, devices, fleetAuditRuns, mqttSessions } from "../schema.ts";
import { type CertificateRow, toCertificate } from "./certificates.ts";
import type { ConnectionClass } from "./connection.ts";

/** The audit reason of a renewal refused for a superseded certificate (provisioners/client-certificate.ts). */
const SUPERSEDED_REASON = "client_certificate_superseded";

/** The audit action of a renewal after expiry (authority/reenroll.ts RENEW_AFTER_EXPIRY). */
const RENEW_AFTER_EXPIRY_ACTION = "est.renew_after_expiry";

/** The fleet audit: the rows of its checks (FleetAuditReads), and its latest run. */
export function fleetAuditReaders<B extends ConnectionClass>(Base: B) {
  return class FleetAuditReaders extends Base implements FleetAuditReads {
    async latestFleetAudit(): Promise<FleetAuditRun | undefined> {
      const [row] = await this.db.select().from(fleetAuditRuns).orderBy(desc(fleetAuditRuns.id)).limit(1).all();
      return row as FleetAuditRun | undefined;
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

    async renewalsAfterExpiry(
      since: Date,
      limit: number,
    ): Promise<{ deviceId: string; serial: string | null; at: Date; expiredForSeconds: number }[]> {
      // One range of audit_events_action_at.
      const rows = await this.db
        .select({
          deviceId: auditEvents.deviceId,
          serial: auditEvents.serial,
          at: auditEvents.at,
          detail: auditEvents.detail,
        })
        .from(auditEvents)
        .where(and(eq(auditEvents.action, RENEW_AFTER_EXPIRY_ACTION), gte(auditEvents.at, since)))
        .orderBy(desc(auditEvents.at))
        .limit(limit)
        .all();
      type Row = { deviceId: string | null; serial: string | null; at: Date; detail: Record<string, unknown> | null };
      return (rows as Row[]).flatMap((r) =>
        r.deviceId
          ? [
              {
                deviceId: r.deviceId,
                serial: r.serial,
                at: r.at,
                expiredForSeconds: Number(r.detail?.expiredForSeconds ?? 0),
              },
            ]
          : [],
      );
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
  };
}
