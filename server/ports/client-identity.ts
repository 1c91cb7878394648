/**
 * Who is on the other end of the connection, as the transport saw it.
 *
 * On Node the TLS layer has already checked possession of the private key (the
 * CertificateVerify message); the chain is *not* trusted yet, the authority decides.
 */
export interface ClientIdentity {
  /** Leaf first, then any intermediates the client sent (DER); empty where the transport keeps them (Workers). */
  chain: Uint8Array[];
  /**
   * SHA-256 of the leaf, lowercase hex, where only that is known: Cloudflare terminates
   * TLS and passes `request.cf.tlsClientAuth` (fingerprint, verification result), not
   * the certificate. Our own certificates are found by it.
   */
  fingerprint?: string;
  /**
   * False when the transport saw a certificate but could not verify it against the
   * CA configured for mutual TLS (Cloudflare's certVerified other than SUCCESS).
   */
  verified?: boolean;
  /**
   * The transport's verification failed only because the certificate has expired
   * (Cloudflare: certVerified "FAILED:certificate has expired"): the chain is ours and the
   * handshake proved possession of the key, so renewal after expiry may still apply.
   */
  expired?: boolean;
}

/** The remote address where the transport does not say (a Worker reached without Cloudflare's cf-connecting-ip). */
export const UNKNOWN_REMOTE = "unknown";

export interface PeerInfo {
  /** The client's address, or UNKNOWN_REMOTE. */
  remoteAddress: string;
  client?: ClientIdentity;
}
