import type { Profile } from "../config/schema.ts";
import {
  authorityKeyIdentifier,
  basicConstraints,
  type CertificateFields,
  crlDistributionPoint,
  encodeName,
  extendedKeyUsage,
  type KeyUsageName,
  keyIdentifier,
  keyUsage,
  ocspAccess,
  subjectAltName,
  subjectKeyIdentifier,
} from "../pki/certificate.ts";
import { CertificateTemplate } from "../pki/certificate-template.ts";
import { toHex } from "../pki/der.ts";
import type { KeyDescription } from "../pki/keys.ts";
import { ipOctets } from "../pki/names.ts";
import { id_at_commonName, id_kp_clientAuth, id_kp_serverAuth } from "../pki/oids.ts";
import type {
  CertificateRecord,
  DeclaredNames,
  DeviceRecord,
  EnrollmentProtocol,
  IssuanceMethod,
  Write,
} from "../ports/storage.ts";
import { type AuthorityDeps, caFor } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { spiffeId } from "./identity.ts";
import { refuseServiceNames, serverNames } from "./policy/names.ts";
import { randomBytes } from "./random-bytes.ts";

export interface IssueInput {
  deviceId: string;
  profile: Profile;
  spki: Uint8Array;
  key: KeyDescription;
  keyFingerprint: string;
  method: IssuanceMethod;
  /** The protocol the device asked with; absent for operator issuance. */
  protocol?: EnrollmentProtocol;
  replacesSerial?: string | null;
  bootstrapTokenId?: string | null;
  /** DNS names and IP addresses an operator declared for the device. */
  names?: DeclaredNames | null;
  /** Seconds, when an operator asked for less than the profile's validity (its maximum). */
  validity?: number;
}

/**
 * 128 random bits as a positive INTEGER magnitude (RFC 5280 §4.1.2.2 allows up to
 * 20 octets; CA/B BR ask for ≥ 64 bits of CSPRNG output).
 */
export function randomSerial(crypto: Crypto): Uint8Array {
  const bytes = randomBytes(crypto, 16);
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return bytes.subarray(start);
}

/**
 * The URL a listener is reached at: a wildcard address (0.0.0.0, ::) is reached by the
 * first configured hostname, not by itself; IPv6 literals are bracketed.
 */
export function listenerUrl(scheme: "http" | "https", host: string, port: number, hostnames: string[]): string {
  const reachable = host === "0.0.0.0" || host === "::" ? (hostnames[0] ?? "localhost") : host;
  return `${scheme}://${reachable.includes(":") ? `[${reachable}]` : reachable}:${port}`;
}

export interface RevocationBase {
  /** Base of the CRL and OCSP URLs written into new certificates. */
  url: string;
  /** Where it came from, for the start log. */
  from: "publicHttpUrl" | "publicListen" | "publicUrl" | "listen";
}

/**
 * Where new certificates say their revocation data is. Plain HTTP when there is a way to
 * it (RFC 5280 §4.2.1.13, RFC 6960 §A.1: CRLs and OCSP responses are signed, and a
 * relying party fetching them must not need revocation data to validate a TLS
 * certificate first): the configured `publicHttpUrl`, else the public listener's own
 * address — unless the operator configured `publicUrl` and no `publicHttpUrl`: a URL the
 * operator chose is never replaced by a derived one (it may name a host relying parties
 * reach and the listener's address not), so those keep https until `publicHttpUrl` is set.
 * With the public listener off, the https base as before.
 */
export function revocationBase(
  config: { publicUrl?: string; publicHttpUrl?: string },
  listeners: { https: string; publicHttp?: string },
): RevocationBase {
  if (config.publicHttpUrl) return { url: config.publicHttpUrl, from: "publicHttpUrl" };
  if (config.publicUrl) return { url: config.publicUrl, from: "publicUrl" };
  if (listeners.publicHttp) return { url: listeners.publicHttp, from: "publicListen" };
  return { url: listeners.https, from: "listen" };
}

export function crlUrl(publicUrl: string, caName: string): string {
  return `${publicUrl}/pki/crl/${caName}.crl`;
}

export function ocspUrl(publicUrl: string): string {
  return `${publicUrl}/pki/ocsp`;
}

export function keyUsageFor(key: KeyDescription): KeyUsageName[] {
  // RSA keys may do TLS key transport on legacy stacks; EC and EdDSA keys only sign.
  return key.kind === "RSA" ? ["digitalSignature", "keyEncipherment"] : ["digitalSignature"];
}

/** Everything that varies from one certificate to the next. */
export interface CertificateContent {
  deviceId: string;
  profile: Profile;
  key: KeyDescription;
  spki: Uint8Array;
  serial: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  subjectKeyId: Uint8Array;
  names?: DeclaredNames | null;
}

/**
 * The extensions of a device certificate, in order; subjectKeyIdentifier and
 * subjectAltName are the per-certificate ones, the others are fixed per CA, profile
 * and key kind.
 */
function fixedExtensions(deps: AuthorityDeps, profile: Profile, key: KeyDescription) {
  const ekus = profile.extendedKeyUsage.map((e) => (e === "clientAuth" ? id_kp_clientAuth : id_kp_serverAuth));
  const ca = caFor(deps, profile);
  return {
    before: [basicConstraints(false), keyUsage(keyUsageFor(key)), extendedKeyUsage(ekus)],
    between: [authorityKeyIdentifier(ca.keyId)],
    after: [crlDistributionPoint(crlUrl(deps.publicUrl, ca.name)), ocspAccess(ocspUrl(deps.publicUrl))],
  };
}

/** The reference: the same certificate through the ASN.1 object library (tests compare). */
export function referenceFields(deps: AuthorityDeps, c: CertificateContent): CertificateFields {
  const { before, between, after } = fixedExtensions(deps, c.profile, c.key);
  return {
    serial: c.serial,
    issuer: caFor(deps, c.profile).subject,
    subject: encodeName([{ type: id_at_commonName, value: c.deviceId }]),
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    spki: c.spki,
    extensions: [
      ...before,
      subjectKeyIdentifier(c.subjectKeyId),
      ...between,
      subjectAltName([
        { type: "uri", value: spiffeId(deps.config.trustDomain, c.deviceId) },
        ...(c.names?.dns ?? []).map((value) => ({ type: "dns" as const, value })),
        ...(c.names?.ip ?? []).map((value) => ({ type: "ip" as const, value })),
      ]),
      ...after,
    ],
  };
}

const templates = new WeakMap<AuthorityDeps, Map<string, CertificateTemplate>>();

/** The fast path's template for this CA, profile and key kind, made on first use. */
export function templateFor(deps: AuthorityDeps, profile: Profile, key: KeyDescription): CertificateTemplate {
  let byProfile = templates.get(deps);
  if (!byProfile) {
    byProfile = new Map();
    templates.set(deps, byProfile);
  }
  const name = `${profile.name}/${keyUsageFor(key).join(",")}`;
  let template = byProfile.get(name);
  if (!template) {
    const fixed = fixedExtensions(deps, profile, key);
    const ca = caFor(deps, profile);
    template = new CertificateTemplate({
      issuer: ca.subject,
      signatureAlgorithm: ca.signer.signatureAlgorithm,
      ...fixed,
    });
    byProfile.set(name, template);
  }
  return template;
}

/** Declared names as the template's SAN variables. */
export function sanNames(names: DeclaredNames): { dns: string[]; ips: Uint8Array[] } {
  return {
    dns: names.dns,
    ips: names.ip.map((ip) => {
      const octets = ipOctets(ip);
      if (!octets) throw new Error(`declared IP address ${ip} does not parse`);
      return octets;
    }),
  };
}

/** Builds (fast path) and signs a device certificate; returns it with the record to store. */
export async function issueDeviceCertificate(
  deps: AuthorityDeps,
  input: IssueInput,
): Promise<{ der: Uint8Array; record: CertificateRecord }> {
  // Names declared before a host name was added to the server's configuration are
  // checked again at every issuance: no device certificate carries the server's names.
  refuseServiceNames(input.names, serverNames(deps));
  const now = deps.clock.now();
  const { profile } = input;
  const second = Math.floor(now.getTime() / 1000) * 1000;
  const notBefore = new Date(second - profile.backdate * 1000);
  const notAfter = new Date(second + Math.min(input.validity ?? profile.validity, profile.validity) * 1000);
  const serial = randomSerial(deps.crypto);
  const ca = caFor(deps, profile);
  const der = await templateFor(deps, profile, input.key).build(
    {
      serial,
      notBefore,
      notAfter,
      commonName: input.deviceId,
      spki: input.spki,
      subjectKeyId: await keyIdentifier(input.spki, deps.digest),
      uris: [spiffeId(deps.config.trustDomain, input.deviceId)],
      ...(input.names ? sanNames(input.names) : {}),
    },
    ca.signer,
  );
  const record: CertificateRecord = {
    serial: toHex(serial),
    deviceId: input.deviceId,
    profile: profile.name,
    issuer: ca.name,
    notBefore,
    notAfter,
    fingerprint: await sha256Hex(deps.digest, der),
    keyFingerprint: input.keyFingerprint,
    keyType: input.key.label,
    status: "valid",
    revokedAt: null,
    revocationReason: null,
    der,
    issuedAt: now,
    method: input.method,
    replacesSerial: input.replacesSerial ?? null,
    bootstrapTokenId: input.bootstrapTokenId ?? null,
    protocol: input.protocol ?? null,
  };
  return { der, record };
}

/**
 * The certificate row and the device, now active with it as its current certificate:
 * the writes every first issuance for a device shares (enrollment, operator issuance).
 */
export function issuanceWrites(
  record: CertificateRecord,
  deviceId: string,
  profile: string,
  existing: DeviceRecord | undefined,
  names: DeclaredNames | null | undefined,
): Write[] {
  const now = record.issuedAt;
  return [
    { kind: "insertCertificate", certificate: record },
    {
      kind: "upsertDevice",
      device: {
        id: deviceId,
        profile,
        status: "active",
        createdAt: existing?.createdAt ?? now,
        updatedAt: now,
        lastEnrolledAt: now,
        currentSerial: record.serial,
        currentNotAfter: record.notAfter,
        names: names ?? null,
        protocol: record.protocol ?? null,
      },
    },
  ];
}
