import { AsnConvert } from "@peculiar/asn1-schema";
import {
  BasicConstraints,
  Certificate,
  id_ce_basicConstraints,
  id_ce_keyUsage,
  KeyUsage,
  KeyUsageFlags,
  Name,
} from "@peculiar/asn1-x509";
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

/** What checking a manufacturer chain needs of the authority's dependencies. */
export type IdevidDeps = Pick<AuthorityDeps, "idevidAnchors" | "clock" | "verifier" | "digest">;

/** Most certificates between the IDevID and its anchor (intermediates tried per step). */
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
  if (!idevidConfigured(deps, profile)) {
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
  return verifyIdevid(deps, profile, leafDer, intermediates);
}

/** Whether the profile accepts manufacturer certificates, with anchors loaded for it. */
export function idevidConfigured(deps: Pick<AuthorityDeps, "idevidAnchors">, profile: Profile): boolean {
  return Boolean(profile.idevid) && (deps.idevidAnchors.get(profile.name) ?? []).length > 0;
}

/**
 * Checks a manufacturer certificate (DER) against the profile's IDevID anchors, with the
 * intermediates that came with it, and reads the device id it names. Shared by
 * enrollment (the TLS client chain) and by operators binding an IDevID ahead of time.
 *
 * Refusals are `forbidden`: `idevid_malformed`, `idevid_untrusted` (no path to an
 * anchor), `idevid_chain_invalid` (a CA on the path is not allowed to be one),
 * `idevid_expired` / `idevid_not_yet_valid` (any certificate on the path, at the
 * injected clock), `idevid_no_device_id`.
 */
export async function verifyIdevid(
  deps: IdevidDeps,
  profile: Profile,
  leafDer: Uint8Array,
  intermediates: readonly Uint8Array[],
): Promise<IdevidIdentity> {
  const anchors = deps.idevidAnchors.get(profile.name) ?? [];
  const idevid = profile.idevid;
  if (!idevid || anchors.length === 0) {
    throw forbidden("idevid_untrusted", `profile ${profile.name} trusts no manufacturer CA`);
  }
  let leaf: CertificateSummary;
  try {
    leaf = readCertificate(leafDer);
  } catch {
    throw forbidden("idevid_malformed", "client certificate could not be parsed");
  }
  // Extra certificates come from the client: one we cannot read is simply not a path.
  const offered = intermediates.slice(0, MAX_CHAIN).flatMap((der) => {
    try {
      return [readCertificate(der)];
    } catch {
      return [];
    }
  });
  const path = await buildPath(deps, leaf, offered, anchors);
  if (!path) {
    throw forbidden(
      "idevid_untrusted",
      `client certificate does not chain to a manufacturer CA trusted by profile ${profile.name}`,
    );
  }
  checkPath(path, deps.clock.now().getTime());
  const subject = AsnConvert.parse(bufferOf(leafDer), Certificate).tbsCertificate.subject;
  const field = idevid.deviceIdFrom === "subject.serialNumber" ? id_at_serialNumber : id_at_commonName;
  const deviceId = nameAttribute(subject, field);
  if (!deviceId || !isValidDeviceId(deviceId)) {
    throw forbidden(
      "idevid_no_device_id",
      `manufacturer certificate has no usable device id in ${idevid.deviceIdFrom} (${DEVICE_ID_RULE})`,
    );
  }
  return {
    deviceId,
    fingerprint: await sha256Hex(deps.digest, leafDer),
    subject: describeName(subject),
  };
}

/** A certification path, leaf first: the IDevID, the intermediates above it, the trust anchor. */
interface CertPath {
  leaf: CertificateSummary;
  /** Nearest the leaf first. */
  intermediates: CertificateSummary[];
  anchor: CertificateSummary;
}

/**
 * Path building by name and signature: at each step a configured anchor wins over an
 * offered intermediate. Whether the CAs found may act as CAs is checkPath's concern, so
 * that a refusal can say which certificate is wrong and why instead of "untrusted".
 */
async function buildPath(
  deps: IdevidDeps,
  leaf: CertificateSummary,
  offered: CertificateSummary[],
  anchors: CertificateSummary[],
): Promise<CertPath | undefined> {
  const intermediates: CertificateSummary[] = [];
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    const anchor = await findIssuer(deps, current, anchors);
    if (anchor) return { leaf, intermediates, anchor };
    // Each offered certificate at most once: a self-issued one cannot make a loop.
    const next = await findIssuer(
      deps,
      current,
      offered.filter((c) => !intermediates.includes(c)),
    );
    if (!next) return undefined;
    intermediates.push(next);
    current = next;
  }
  return undefined;
}

/**
 * RFC 5280 §6.1, the parts a manufacturer chain needs, applied to the anchor as well
 * (a trust bundle may hold an intermediate CA; its constraints still bind what is below):
 * - every certificate is within its validity period (§6.1.3 (a)(2));
 * - every CA certificate asserts basicConstraints cA (§4.2.1.9, §6.1.4 (k)) and has a
 *   keyUsage extension with keyCertSign (§4.2.1.3, §6.1.4 (n));
 * - pathLenConstraint: the non-self-issued intermediates below a CA certificate are
 *   no more than its pathLenConstraint (§4.2.1.9, §6.1.4 (l)-(m)).
 *
 * @remarks A trust anchor without keyUsage is refused, though §6.1.1 (d) would let the
 * anchor be mere name and key: the bundle is the operator's statement of which CAs sign
 * IDevIDs, and a CA certificate that does not say it signs certificates is one that
 * OpenSSL, Go and browsers also refuse as an issuer. Fix the bundle, not the check.
 */
function checkPath(path: CertPath, now: number): void {
  const { leaf, intermediates, anchor } = path;
  checkValidity(leaf, now, `manufacturer certificate (${nameOf(leaf)})`);
  // Top down, as §6.1 processes a path: anchor, then the intermediate nearest it, …
  const cas = [...intermediates.map((c) => ({ cert: c, role: "intermediate" })), { cert: anchor, role: "CA" }];
  for (let i = cas.length - 1; i >= 0; i--) {
    const { cert, role } = cas[i] as { cert: CertificateSummary; role: string };
    const what = `manufacturer ${role} certificate (${nameOf(cert)})`;
    checkValidity(cert, now, what);
    const { basic, usage } = caExtensions(cert, what);
    if (!basic?.cA) {
      throw forbidden("idevid_chain_invalid", `${what} is not a CA certificate (basicConstraints cA is not set)`);
    }
    if (usage === undefined) {
      throw forbidden(
        "idevid_chain_invalid",
        `${what} has no keyUsage extension; a CA certificate must assert keyCertSign (RFC 5280 §4.2.1.3)`,
      );
    }
    if (!(usage & KeyUsageFlags.keyCertSign)) {
      throw forbidden("idevid_chain_invalid", `${what} keyUsage does not include keyCertSign`);
    }
    const limit = basic.pathLenConstraint;
    if (limit === undefined) continue;
    // The intermediates below this one (those nearer the leaf), self-issued ones excepted.
    const below = intermediates.slice(0, i).filter((c) => !bytesEqual(c.subject, c.issuer)).length;
    if (below > limit) {
      throw forbidden(
        "idevid_chain_invalid",
        `${what} allows ${limit} intermediate CA certificate(s) below it (pathLenConstraint) and the chain has ${below}`,
      );
    }
  }
}

function checkValidity(cert: CertificateSummary, now: number, what: string): void {
  if (cert.notAfter.getTime() <= now) throw forbidden("idevid_expired", `${what} has expired`);
  if (cert.notBefore.getTime() > now) throw forbidden("idevid_not_yet_valid", `${what} is not yet valid`);
}

/** basicConstraints and keyUsage flags (undefined: absent); refuses unreadable or repeated ones. */
function caExtensions(cert: CertificateSummary, what: string): { basic?: BasicConstraints; usage?: number } {
  const invalid = (why: string) => forbidden("idevid_chain_invalid", `${what} ${why}`);
  let extensions: Certificate["tbsCertificate"]["extensions"];
  try {
    extensions = AsnConvert.parse(bufferOf(cert.der), Certificate).tbsCertificate.extensions;
  } catch {
    throw invalid("could not be parsed");
  }
  const only = (oid: string) => {
    const found = extensions?.filter((e) => e.extnID === oid) ?? [];
    // RFC 5280 §4.2: a certificate must not include more than one instance of an extension.
    if (found.length > 1) throw invalid(`repeats extension ${oid}`);
    return found[0];
  };
  const bc = only(id_ce_basicConstraints);
  const ku = only(id_ce_keyUsage);
  try {
    return {
      ...(bc ? { basic: AsnConvert.parse(bc.extnValue.buffer, BasicConstraints) } : {}),
      ...(ku ? { usage: AsnConvert.parse(ku.extnValue.buffer, KeyUsage).toNumber() } : {}),
    };
  } catch {
    throw invalid("has an unreadable basicConstraints or keyUsage extension");
  }
}

async function findIssuer(
  deps: IdevidDeps,
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

function bufferOf(der: Uint8Array): ArrayBuffer {
  return der.slice().buffer;
}

function nameOf(cert: CertificateSummary): string {
  try {
    return describeName(AsnConvert.parse(bufferOf(cert.subject), Name)) || "empty subject";
  } catch {
    return "unreadable subject";
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
