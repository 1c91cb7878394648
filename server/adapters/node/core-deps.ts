import { webcrypto } from "node:crypto";
import type { AuthorityDeps, IssuingCa } from "../../authority/deps.ts";
import { type Config, profilesOf } from "../../config/schema.ts";
import type { CertificateSummary } from "../../pki/certificate.ts";
import { systemClock } from "../../ports/clock.ts";
import type { Storage } from "../../ports/storage.ts";
import type { SignatureVerifier } from "../../ports/verifier.ts";
import { nodeDigest } from "./node-digest.ts";

/** The core's dependencies on Node: system clock, WebCrypto, node:crypto hashing. */
export function nodeCoreDeps(o: {
  config: Config;
  storage: Storage;
  ca: IssuingCa;
  verifier: SignatureVerifier;
  publicUrl: string;
  idevidAnchors?: Map<string, CertificateSummary[]>;
}): AuthorityDeps {
  return {
    config: o.config,
    profiles: profilesOf(o.config),
    storage: o.storage,
    ca: o.ca,
    clock: systemClock,
    crypto: webcrypto as Crypto,
    digest: nodeDigest,
    verifier: o.verifier,
    publicUrl: o.publicUrl,
    idevidAnchors: o.idevidAnchors ?? new Map(),
  };
}
