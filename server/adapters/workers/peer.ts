import type { Context } from "hono";
import { type PeerInfo, UNKNOWN_REMOTE } from "../../ports/client-identity.ts";

/** What Cloudflare passes about the client certificate when mTLS is on for the zone. */
export interface TlsClientAuth {
  /** "1" when the client presented a certificate. */
  certPresented?: string;
  /** "SUCCESS", "NONE", or "FAILED:<reason>": verification against the zone's mTLS CA. */
  certVerified?: string;
  /** SHA-256 of the leaf, hex. */
  certFingerprintSHA256?: string;
  certSerial?: string;
  certSubjectDN?: string;
  certIssuerDN?: string;
}

/**
 * The Workers view of the peer: TLS ends at Cloudflare, which passes the client
 * certificate's fingerprint and its verdict (`request.cf.tlsClientAuth`), never the
 * certificate. The authority looks the fingerprint up among the certificates we issued
 * and applies the same rules as on Node; a certificate Cloudflare could not verify
 * against the zone's CA is refused.
 */
export function workersPeer(c: Context): PeerInfo {
  const cf = (c.req.raw as Request & { cf?: { tlsClientAuth?: TlsClientAuth } }).cf;
  const remoteAddress = c.req.header("cf-connecting-ip") ?? UNKNOWN_REMOTE;
  const auth = cf?.tlsClientAuth;
  const fingerprint = auth?.certFingerprintSHA256?.toLowerCase();
  if (auth?.certPresented !== "1" || !fingerprint || !/^[0-9a-f]{64}$/.test(fingerprint)) return { remoteAddress };
  // An expired certificate fails Cloudflare's verification with this reason and no other;
  // the handshake still proved possession of its key (renewal after expiry decides).
  const expired = auth.certVerified === "FAILED:certificate has expired";
  return {
    remoteAddress,
    client: { chain: [], fingerprint, verified: auth.certVerified === "SUCCESS", ...(expired ? { expired } : {}) },
  };
}
