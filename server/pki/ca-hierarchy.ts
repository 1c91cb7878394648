import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  type CertificateSigner,
  keyIdentifier,
  keyUsage,
  subjectKeyIdentifier,
} from "./certificate.ts";
import { webCryptoDigest } from "./webcrypto-digest.ts";

export interface CaKey {
  /** Subject Name, DER. */
  name: Uint8Array;
  spki: Uint8Array;
  serial: Uint8Array;
}

export interface CaHierarchy {
  root: Uint8Array;
  issuing: Uint8Array;
  rootKeyId: Uint8Array;
  issuingKeyId: Uint8Array;
}

const YEAR_MS = 365 * 86400_000;

/**
 * A self-signed root (pathLen 1) and an issuing CA under it (pathLen 0), both P-256
 * signed by the root key. The root lives 20 years, the issuing CA 10; both are
 * backdated an hour for clock skew.
 */
export async function buildCaHierarchy(
  root: CaKey,
  issuing: CaKey,
  rootSigner: CertificateSigner,
  now: Date,
  subtle: SubtleCrypto,
): Promise<CaHierarchy> {
  const digest = webCryptoDigest(subtle);
  const rootKeyId = await keyIdentifier(root.spki, digest);
  const issuingKeyId = await keyIdentifier(issuing.spki, digest);
  const notBefore = new Date(now.getTime() - 3600_000);
  const rootCert = await buildCertificate(
    {
      serial: root.serial,
      issuer: root.name,
      subject: root.name,
      notBefore,
      notAfter: new Date(now.getTime() + 20 * YEAR_MS),
      spki: root.spki,
      extensions: [basicConstraints(true, 1), keyUsage(["keyCertSign", "cRLSign"]), subjectKeyIdentifier(rootKeyId)],
    },
    rootSigner,
  );
  const issuingCert = await buildCertificate(
    {
      serial: issuing.serial,
      issuer: root.name,
      subject: issuing.name,
      notBefore,
      notAfter: new Date(now.getTime() + 10 * YEAR_MS),
      spki: issuing.spki,
      extensions: [
        basicConstraints(true, 0),
        keyUsage(["digitalSignature", "keyCertSign", "cRLSign"]),
        subjectKeyIdentifier(issuingKeyId),
        authorityKeyIdentifier(rootKeyId),
      ],
    },
    rootSigner,
  );
  return { root: rootCert, issuing: issuingCert, rootKeyId, issuingKeyId };
}
