import { certificates } from "../schema.ts";
import { raw, rowInsert, toBuffer, type WriteTable, writeOfFields } from "./write-entry.ts";

/** A certificate's first use (CertificateRecord.firstUsedAt); later uses change nothing. */
export const MARK_USED = "UPDATE certificates SET first_used_at = ? WHERE serial = ? AND first_used_at IS NULL";

/** Revoked certificates into the revocation feed (what CRLs and OCSP follow), before they are marked revoked. */
export const REVOKED_CERTIFICATES_TO_FEED = `INSERT INTO revocations (serial, issuer, device_id, revoked_at, reason, not_after)
  SELECT serial, issuer, device_id, ?, ?, not_after FROM certificates`;

/** Writes to certificates: issuance (with the key it certifies), first use, revocation, expiry alerts. */
export const certificateWrites = {
  insertCertificate: rowInsert(
    certificates,
    (w) => ({ ...w.certificate, der: toBuffer(w.certificate.der) }),
    // One key, one identity: the key is claimed for the device unless the device holds it
    // already; another device's claim fails the primary key (KEY_HOLDER_CONSTRAINT).
    raw(
      `INSERT INTO device_keys (key_fingerprint, device_id) SELECT ?, ?
       WHERE NOT EXISTS (SELECT 1 FROM device_keys WHERE key_fingerprint = ? AND device_id = ?)`,
      "keyFingerprint",
      "deviceId",
      "keyFingerprint",
      "deviceId",
    ),
  ),
  markCertificateUsed: writeOfFields(raw(MARK_USED, "at", "serial")),
  revokeCertificate: writeOfFields(
    raw(`${REVOKED_CERTIFICATES_TO_FEED} WHERE serial = ? AND status = 'valid'`, "at", "reason", "serial"),
    raw(
      "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ? AND status = 'valid'",
      "at",
      "reason",
      "serial",
    ),
  ),
  recordExpiryAlert: writeOfFields(
    raw(
      `INSERT INTO expiry_alerts (serial, threshold_days, device_id, sent_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (serial, threshold_days) DO NOTHING`,
      "serial",
      "thresholdDays",
      "deviceId",
      "at",
    ),
  ),
} satisfies Partial<WriteTable>;
