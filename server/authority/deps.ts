import type { Config, Profile } from "../config/schema.ts";
import type { CertificateSummary } from "../pki/certificate.ts";
import type { Clock } from "../ports/clock.ts";
import type { Digest } from "../ports/digest.ts";
import type { ScepRa } from "../ports/scep-ra.ts";
import type { Signer } from "../ports/signer.ts";
import type { Storage } from "../ports/storage.ts";
import type { JwtKeyVault } from "../ports/trust-bundles.ts";
import type { SignatureVerifier } from "../ports/verifier.ts";

/** The issuing CA as the core sees it: certificate facts plus a signer. */
export interface IssuingCa {
  /** Stable short name, used in URLs and records, e.g. "issuing-p256". */
  name: string;
  certificate: Uint8Array;
  /** The CA's subject Name, DER: the issuer of everything it signs. */
  subject: Uint8Array;
  /** The CA's subjectKeyIdentifier: the authorityKeyIdentifier of what it signs. */
  keyId: Uint8Array;
  signer: Signer;
  /** Trust chain served by /cacerts: this CA, then up to and including the root. */
  chain: Uint8Array[];
}

export interface AuthorityDeps {
  config: Config;
  profiles: Map<string, Profile>;
  storage: Storage;
  /** The default issuing CA (P-256): service identities, and every profile without an issuer of its own. */
  ca: IssuingCa;
  /** Every issuing CA by name, the default one included; a profile names its issuer. */
  cas: Map<string, IssuingCa>;
  clock: Clock;
  /** WebCrypto: randomness, signature checks. */
  crypto: Crypto;
  /** Digests (WebCrypto, or a faster runtime hash). */
  digest: Digest;
  /** Signature checks: proof of possession, manufacturer chains (WebCrypto, or faster). */
  verifier: SignatureVerifier;
  /** Base of the CRL and OCSP URLs written into certificates. */
  publicUrl: string;
  /** Manufacturer CA certificates (DER) per profile that accepts IDevID first boot. */
  idevidAnchors: Map<string, CertificateSummary[]>;
  /** The SCEP registration authority's key, where SCEP is offered (it needs the RSA hierarchy); read per request, as it is renewed. */
  scepRa?: () => ScepRa | undefined;
  /** Where the JWT-SVID signing keys' private halves are kept; without it no JWT key is made or used. */
  jwtKeys?: JwtKeyVault;
  /** Called after a revocation is committed: the responders refresh at once. */
  onRevocation?: () => Promise<void>;
  /** Called after commands were queued: the fleet loop publishes them at once. */
  onCommands?: () => Promise<void>;
}

/** The CA that issues a profile's certificates. */
export function caFor(deps: Pick<AuthorityDeps, "cas">, profile: Profile): IssuingCa {
  const ca = deps.cas.get(profile.issuer);
  if (!ca) throw new Error(`profile ${profile.name}: issuing CA ${profile.issuer} is not loaded`);
  return ca;
}

/** Refuses a configuration whose profiles name an issuing CA that is not there, before anything is served. */
export function checkIssuers(config: Config, cas: Map<string, IssuingCa>): void {
  for (const [name, profile] of Object.entries(config.profiles)) {
    if (cas.has(profile.issuer)) continue;
    const hint = profile.issuer === "issuing-rsa" ? "; create it with `edgeid ca add-rsa`" : "";
    throw new Error(
      `profile ${name} is issued by ${profile.issuer}, which this data directory does not have (it has ${[...cas.keys()].join(", ")})${hint}`,
    );
  }
}
