import { DEFAULT_CIPHERS } from "node:tls";

/**
 * Which of the listener's two certificates (P-256 and RSA) a client gets.
 *
 * The HTTPS listener and the embedded broker hold one certificate per issuing CA.
 * OpenSSL chooses between them through the cipher suite in TLS 1.2 (an ECDHE-ECDSA
 * suite needs the ECDSA certificate, an ECDHE-RSA suite the RSA one) and through the
 * signature algorithms in TLS 1.3. Node sets `honorCipherOrder` by default, so the
 * *server's* list decides in TLS 1.2, and Node's default list puts ECDHE-RSA first:
 * a TLS 1.2 client offering both (OpenSSL's default) was handed the RSA chain, which
 * a device trusting only the P-256 root (the anchor `edgeid ca export` prints and the
 * agent pins) cannot verify.
 *
 * So the server's order here is: every ECDHE-ECDSA suite of Node's default set first
 * (the AEAD ones ahead), then the rest of that set unchanged. A client that offers any
 * ECDSA suite it can complete gets the P-256 chain; only a client offering no ECDSA
 * suite (or no ECDSA signature algorithm, which makes OpenSSL skip those suites) gets
 * the RSA chain. The set of suites is Node's default (`--tls-cipher-list` still applies):
 * only the order differs. TLS 1.3 suites are independent of the certificate; there the
 * server's signature-algorithm preference (ECDSA first) picks P-256 for any client
 * that accepts ECDSA.
 */
export const LISTENER_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  // OpenSSL adds a suite once: the default list below keeps the positions given here.
  "ECDHE+aECDSA+HIGH",
  DEFAULT_CIPHERS,
].join(":");

/**
 * The options every listener context needs, at creation and at every
 * `setSecureContext` (which resets the cipher list and order to Node's defaults when
 * they are not passed again).
 */
export const LISTENER_TLS = {
  ciphers: LISTENER_CIPHERS,
  honorCipherOrder: true,
  minVersion: "TLSv1.2",
} as const;
