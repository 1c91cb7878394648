import type { X509Certificate } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import type { Context } from "hono";
import type { PeerInfo } from "../../ports/client-identity.ts";

/** At most this many certificates of a client's chain are passed on (leaf first). */
const MAX_CHAIN = 8;

/**
 * Node's view of the peer: the client certificate chain the TLS handshake carried.
 * The server requests a certificate without requiring one and without judging it
 * (rejectUnauthorized: false); OpenSSL has still checked the CertificateVerify
 * signature, i.e. the client holds the key of the leaf. Trust is decided by the
 * authority.
 *
 * The chain is the leaf and then the certificates the client sent with it, in the order
 * it sent them, as DER: `getPeerX509Certificate` hands them over without decoding them.
 * (`getPeerCertificate(true)` decoded every certificate into an object, with three
 * fingerprints each, and appended issuers from the listener's own trust store, on every
 * request: 40–110 µs a request on Node 24 against 2–44 µs.) The authority reads only the
 * leaf for its own certificates, and for a manufacturer certificate treats the others as
 * offered intermediates, in any order, towards the profile's anchors.
 */
export function nodePeer(c: Context): PeerInfo {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const socket = incoming?.socket as TLSSocket | undefined;
  const remoteAddress = socket?.remoteAddress ?? "unknown";
  if (!socket || typeof socket.getPeerX509Certificate !== "function") return { remoteAddress };
  const leaf = socket.getPeerX509Certificate();
  return leaf ? { remoteAddress, client: { chain: chainOf(leaf) } } : { remoteAddress };
}

function chainOf(leaf: X509Certificate): Uint8Array[] {
  const chain: Uint8Array[] = [];
  for (let cert: X509Certificate | undefined = leaf; cert && chain.length < MAX_CHAIN; cert = cert.issuerCertificate) {
    chain.push(new Uint8Array(cert.raw));
  }
  return chain;
}
