import { webcrypto } from "node:crypto";
import type { AuthorityDeps, IssuingCa } from "../../authority/deps.ts";
import { type Config, profilesOf } from "../../config/schema.ts";
import type { CertificateSummary } from "../../pki/certificate.ts";
import type { Storage } from "../../ports/storage.ts";
import type { JwtKeyVault } from "../../ports/trust-bundles.ts";
import type { SignatureVerifier } from "../../ports/verifier.ts";
import { systemClock } from "../system-clock.ts";
import { ISSUING_CA_NAME } from "./data-dir.ts";
import { nodeDigest } from "./node-digest.ts";

function defaultCa(cas: Map<string, IssuingCa>): IssuingCa {
  const ca = cas.get(ISSUING_CA_NAME);
  if (!ca) throw new Error(`the default issuing CA ${ISSUING_CA_NAME} is missing`);
  return ca;
}

/** The core's dependencies on Node: system clock, WebCrypto, node:crypto hashing. */
export function nodeCoreDeps(o: {
  config: Config;
  storage: Storage;
  /** Every issuing CA by name; "issuing-p256" is the default one. */
  cas: Map<string, IssuingCa>;
  verifier: SignatureVerifier;
  publicUrl: string;
  idevidAnchors?: Map<string, CertificateSummary[]>;
  /** Where the JWT-SVID signing keys are kept (jwt-key-files.ts). */
  jwtKeys?: JwtKeyVault;
}): AuthorityDeps {
  return {
    config: o.config,
    profiles: profilesOf(o.config),
    storage: o.storage,
    ca: defaultCa(o.cas),
    cas: o.cas,
    clock: systemClock,
    crypto: webcrypto as Crypto,
    digest: nodeDigest,
    verifier: o.verifier,
    publicUrl: o.publicUrl,
    idevidAnchors: o.idevidAnchors ?? new Map(),
    ...(o.jwtKeys ? { jwtKeys: o.jwtKeys } : {}),
  };
}
