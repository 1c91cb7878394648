/**
 * Signature checks for the core. WebCrypto (pki/verify.ts webCryptoVerifier) runs
 * everywhere; the Node server puts a worker-thread verifier here so that key import
 * and verification leave the event loop.
 */
export type { SignatureVerifier, VerifyRequest } from "../pki/verify.ts";
