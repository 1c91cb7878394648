import type { ClientIdentity } from "../../ports/client-identity.ts";
import type { CertificateRecord, DeviceRecord } from "../../ports/storage.ts";
import type { AuthorityDeps } from "../deps.ts";
import { forbidden } from "../errors.ts";
import { findOwnCertificate, noteCertificate, type RequestTrail } from "../trail.ts";

/**
 * Mutual-TLS authentication for simplereenroll. The certificate must be one we
 * issued (found by SHA-256 fingerprint among our records, which also works where the
 * transport only gives a fingerprint, as on Workers), unexpired, unrevoked, the
 * device's current one (or the one it replaced, so a device whose previous renewal
 * response was lost can retry), and the device must be active.
 */
export async function authenticateClientCertificate(
  deps: AuthorityDeps,
  client: ClientIdentity | undefined,
  trail: RequestTrail,
): Promise<{ certificate: CertificateRecord; device: DeviceRecord }> {
  if (!client?.chain[0] && !client?.fingerprint) {
    throw forbidden(
      "client_certificate_missing",
      "simplereenroll needs the TLS client certificate that this CA issued",
    );
  }
  if (client.verified === false) {
    throw forbidden(
      "client_certificate_unverified",
      "the TLS terminator could not verify the client certificate against this CA",
    );
  }
  const certificate = await findOwnCertificate(deps, client);
  if (!certificate) throw forbidden("client_certificate_unknown", "client certificate was not issued by this CA");
  noteCertificate(trail, certificate);
  const now = deps.clock.now().getTime();
  if (certificate.status === "revoked") throw forbidden("client_certificate_revoked", "client certificate is revoked");
  if (certificate.notAfter.getTime() <= now) {
    throw forbidden(
      "client_certificate_expired",
      `client certificate expired at ${certificate.notAfter.toISOString()}; enroll again with a bootstrap token`,
    );
  }
  if (certificate.notBefore.getTime() > now) {
    throw forbidden("client_certificate_not_yet_valid", "client certificate is not yet valid");
  }
  const device = await deps.storage.getDevice(certificate.deviceId);
  if (device?.status !== "active") {
    throw forbidden("device_not_active", `device ${certificate.deviceId} is ${device?.status ?? "unknown"}`);
  }
  if (device.currentSerial !== certificate.serial) {
    const current = device.currentSerial ? await deps.storage.getCertificate(device.currentSerial) : undefined;
    // The predecessor may retry only while its successor stands: once the current
    // certificate is revoked, the older one cannot be used to get a new one.
    if (current?.replacesSerial !== certificate.serial || current.status === "revoked") {
      throw forbidden("client_certificate_superseded", "client certificate has been superseded by a newer one");
    }
  }
  return { certificate, device };
}
