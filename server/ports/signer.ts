import type { CertificateSigner } from "../pki/certificate.ts";

/** The CA private key, wherever it lives (WebCrypto key, Node KeyObject, an HSM). */
export type Signer = CertificateSigner;
