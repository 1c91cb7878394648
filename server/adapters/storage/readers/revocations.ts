import { and, asc, eq, gt, max, sql } from "drizzle-orm";
import type { CertificateStatusRecord, RevocationEntry } from "../../../ports/storage.ts";
import { certificates, crlNumbers, revocations } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** What OCSP and the CRLs are made from: certificate status, the revocation feed, CRL numbers. */
export function revocationReaders<B extends ConnectionClass>(Base: B) {
  return class RevocationReaders extends Base {
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
      const q = this.prepared("lastRevocationSeq", () =>
        this.db.select({ seq: max(revocations.seq) }).from(revocations),
      );
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
  };
}
