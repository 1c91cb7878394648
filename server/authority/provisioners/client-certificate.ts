import type { ClientIdentity } from "../../ports/client-identity.ts";
import type { CertificateRecord, DeviceRecord } from "../../ports/storage.ts";
import { type Caller, findOwnCertificate, noteCertificate } from "../caller.ts";
import type { AuthorityDeps } from "../deps.ts";
import { forbidden } from "../errors.ts";

/** Who a client certificate authenticated, and what a renewal with it would replace. */
export interface AuthenticatedClient {
  /** The certificate presented. */
  certificate: CertificateRecord;
  device: DeviceRecord;
  /**
   * Set when the presented certificate is the predecessor of the device's current one
   * and retries a renewal whose response was lost: the current certificate, which the
   * retry replaces (and revokes).
   */
  supersedes?: CertificateRecord;
  /**
   * Set when the presented certificate has expired and its profile renews it within a
   * window (`renewAfterExpiry`): how long ago it expired, in milliseconds.
   */
  expiredFor?: number;
}

/**
 * Mutual-TLS authentication for simplereenroll. The certificate must be one we
 * issued (found by SHA-256 fingerprint among our records, which also works where the
 * transport only gives a fingerprint, as on Workers), unexpired, unrevoked, the
 * device's current one, and the device must be active.
 *
 * The one exception is a lost response: the device renewed, the new certificate never
 * reached it, and it retries with the certificate it still has. That predecessor may
 * renew once, and only while its successor stands unused — valid, and never seen in a
 * mutual-TLS request, an MQTT connection or a status report. Any other renewal with a
 * superseded certificate is someone else holding an old key (a clone, a thief locking
 * the real device out): refused, and the denial carries the serial for the fleet audit.
 */
export async function authenticateClientCertificate(
  deps: AuthorityDeps,
  client: ClientIdentity | undefined,
  caller: Caller,
): Promise<AuthenticatedClient> {
  if (!client?.chain[0] && !client?.fingerprint) {
    throw forbidden(
      "client_certificate_missing",
      "simplereenroll needs the TLS client certificate that this CA issued",
    );
  }
  if (client.verified === false && !client.expired) {
    throw forbidden(
      "client_certificate_unverified",
      "the TLS terminator could not verify the client certificate against this CA",
    );
  }
  const certificate = await findOwnCertificate(deps, client);
  if (!certificate) throw forbidden("client_certificate_unknown", "client certificate was not issued by this CA");
  noteCertificate(caller, certificate);
  // A workload's SVID is the workload's identity: it never renews, nor stands for, its device.
  if (certificate.workloadEntryId) {
    throw forbidden(
      "client_certificate_not_device",
      "this is a workload SVID, not a device certificate: authenticate with the device certificate",
    );
  }
  const now = deps.clock.now().getTime();
  if (certificate.status === "revoked") throw forbidden("client_certificate_revoked", "client certificate is revoked");
  if (certificate.notAfter.getTime() <= now) return renewAfterExpiry(deps, certificate, now);
  if (certificate.notBefore.getTime() > now) {
    throw forbidden("client_certificate_not_yet_valid", "client certificate is not yet valid");
  }
  const device = await deps.storage.getDevice(certificate.deviceId);
  if (device?.status !== "active") {
    throw forbidden("device_not_active", `device ${certificate.deviceId} is ${device?.status ?? "unknown"}`);
  }
  if (device.currentSerial === certificate.serial) return { certificate, device };
  const current = device.currentSerial ? await deps.storage.getCertificate(device.currentSerial) : undefined;
  if (
    current?.replacesSerial === certificate.serial &&
    current.status === "valid" &&
    current.notAfter.getTime() > now &&
    !current.firstUsedAt
  ) {
    return { certificate, device, supersedes: current };
  }
  throw forbidden(
    SUPERSEDED,
    "client certificate has been superseded (its one retry was made, or its successor is in use); renewing with it is refused and recorded",
  );
}

/**
 * An expired certificate renews only within its profile's window (`renewAfterExpiry`),
 * and only as the device's current certificate of an active device: one that was
 * replaced (the device re-enrolled since) or revoked never comes back.
 */
async function renewAfterExpiry(
  deps: AuthorityDeps,
  certificate: CertificateRecord,
  now: number,
): Promise<AuthenticatedClient> {
  const expiredFor = now - certificate.notAfter.getTime();
  const window = (deps.profiles.get(certificate.profile)?.renewAfterExpiry ?? 0) * 1000;
  const expired = `client certificate expired at ${certificate.notAfter.toISOString()} (${describeSpan(expiredFor)} ago)`;
  if (window === 0) {
    throw forbidden(
      "client_certificate_expired",
      `${expired}; profile ${certificate.profile} does not renew expired certificates: enroll again with a bootstrap token`,
    );
  }
  if (expiredFor > window) {
    throw forbidden(
      "client_certificate_expired",
      `${expired}, past the ${describeSpan(window)} in which profile ${certificate.profile} renews expired certificates (renewAfterExpiry): enroll again with a bootstrap token`,
    );
  }
  const device = await deps.storage.getDevice(certificate.deviceId);
  if (device?.status !== "active") {
    throw forbidden("device_not_active", `device ${certificate.deviceId} is ${device?.status ?? "unknown"}`);
  }
  if (device.currentSerial !== certificate.serial) {
    // Someone holds a key the device replaced: recorded like any superseded renewal (fleet audit).
    throw forbidden(
      SUPERSEDED,
      `${expired}, and it has been superseded: only the device's current certificate renews after expiry`,
    );
  }
  return { certificate, device, expiredFor };
}

/** "5d", "3h", "40m", "7s": how long, for messages. */
function describeSpan(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s >= 2 * 86400) return `${Math.round(s / 86400)}d`;
  if (s >= 7200) return `${Math.round(s / 3600)}h`;
  if (s >= 120) return `${Math.round(s / 60)}m`;
  return `${s}s`;
}

/** The refusal of a renewal with a superseded certificate: a possible clone (fleet audit). */
export const SUPERSEDED = "client_certificate_superseded";
