import { AsnConvert } from "@peculiar/asn1-schema";
import { BasicConstraints, Certificate, id_ce_basicConstraints, Name } from "@peculiar/asn1-x509";
import type { Profile } from "../../config/schema.ts";
import { type CertificateSummary, readCertificate } from "../../pki/certificate.ts";
import { bytesEqual } from "../../pki/der.ts";
import { id_at_commonName, id_at_serialNumber } from "../../pki/oids.ts";
import { SignatureAlgorithmError, verifySignature } from "../../pki/verify.ts";
import type { ClientIdentity } from "../../ports/client-identity.ts";
import type { AuthorityDeps } from "../deps.ts";
import { sha256Hex } from "../digest.ts";
import { forbidden, unauthenticated } from "../errors.ts";
import { DEVICE_ID_RULE, isValidDeviceId } from "../identity.ts";

export interface IdevidIdentity {
  deviceId: string;
  fingerprint: string;
  subject: string;
}

const MAX_CHAIN = 4;

/**
 * Zero-touch first boot (the IEEE 802.1AR IDevID pattern): the TLS client certificate
 * was burned in by the manufacturer and chains to a manufacturer CA that this profile
 * trusts. The device id is read from a configured subject field. The TLS layer has
 * proved possession of the key; here we prove the chain and the validity period.
 */
export async function authenticateIdevid(
  deps: AuthorityDeps,
  profile: Profile,
  client: ClientIdentity,
): Promise<IdevidIdentity> {
  const anchors = deps.idevidAnchors.get(profile.name) ?? [];
  const idevid = profile.idevid;
  if (!idevid || anchors.length === 0) {
    throw unauthenticated(
      "credentials_missing",
      `profile ${profile.name} needs a bootstrap token (HTTP Basic or Bearer)`,
    );
  }
  const [leafDer, ...intermediates] = client.chain;
  if (!leafDer && client.fingerprint) {
    throw forbidden(
      "idevid_unavailable",
      "this deployment sees only client certificate fingerprints; enroll with a manufacturer certificate on a server that terminates TLS itself",
    );
  }
  if (!leafDer) throw unauthenticated("credentials_missing", "no client certificate");
  const now = deps.clock.now().getTime();
  let current: CertificateSummary;
  try {
    current = readCertificate(leafDer);
  } catch {
    throw forbidden("idevid_malformed", "client certificate could not be parsed");
  }
  checkValidity(current, now, "manufacturer certificate");
  // Extra certificates come from the client: one we cannot read is simply not a path.
  const intermediateSummaries = intermediates.slice(0, MAX_CHAIN).flatMap((der) => {
    try {
      return [readCertificate(der)];
    } catch {
      return [];
    }
  });
  let trusted = false;
  for (let depth = 0; depth < MAX_CHAIN && !trusted; depth++) {
    const anchor = await findIssuer(deps, current, anchors);
    if (anchor) {
      checkValidity(anchor, now, "manufacturer CA certificate");
      trusted = true;
      break;
    }
    const next = await findIssuer(deps, current, intermediateSummaries);
    if (!next || !isCa(next.der)) break;
    checkValidity(next, now, "manufacturer intermediate certificate");
    current = next;
  }
  if (!trusted) {
    throw forbidden(
      "idevid_untrusted",
      `client certificate does not chain to a manufacturer CA trusted by profile ${profile.name}`,
    );
  }
  const leaf = AsnConvert.parse(leafDer.slice().buffer, Certificate).tbsCertificate.subject;
  const field = idevid.deviceIdFrom === "subject.serialNumber" ? id_at_serialNumber : id_at_commonName;
  const deviceId = nameAttribute(leaf, field);
  if (!deviceId || !isValidDeviceId(deviceId)) {
    throw forbidden(
      "idevid_no_device_id",
      `manufacturer certificate has no usable device id in ${idevid.deviceIdFrom} (${DEVICE_ID_RULE})`,
    );
  }
  return {
    deviceId,
    fingerprint: await sha256Hex(deps.digest, leafDer),
    subject: describeName(leaf),
  };
}

function checkValidity(cert: CertificateSummary, now: number, what: string): void {
  if (cert.notAfter.getTime() <= now) throw forbidden("idevid_expired", `${what} has expired`);
  if (cert.notBefore.getTime() > now) throw forbidden("idevid_not_yet_valid", `${what} is not yet valid`);
}

async function findIssuer(
  deps: AuthorityDeps,
  cert: CertificateSummary,
  candidates: CertificateSummary[],
): Promise<CertificateSummary | undefined> {
  for (const c of candidates) {
    if (!bytesEqual(c.subject, cert.issuer)) continue;
    try {
      const ok = await verifySignature(deps.verifier, {
        spki: c.spki,
        signatureAlgorithm: cert.signatureAlgorithm,
        signature: cert.signature,
        data: cert.tbs,
      });
      if (ok) return c;
    } catch (err) {
      if (!(err instanceof SignatureAlgorithmError)) throw err;
    }
  }
  return undefined;
}

function isCa(der: Uint8Array): boolean {
  try {
    const cert = AsnConvert.parse(der.slice().buffer, Certificate);
    const ext = cert.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_basicConstraints);
    return ext ? AsnConvert.parse(ext.extnValue.buffer, BasicConstraints).cA : false;
  } catch {
    return false;
  }
}

function nameAttribute(name: Name, type: string): string | undefined {
  for (const rdn of name) for (const atv of rdn) if (atv.type === type) return atv.value.toString();
  return undefined;
}

function describeName(name: Name): string {
  const short: Record<string, string> = { [id_at_commonName]: "CN", [id_at_serialNumber]: "serialNumber" };
  return name.flatMap((rdn) => rdn.map((atv) => `${short[atv.type] ?? atv.type}=${atv.value.toString()}`)).join(", ");
}
