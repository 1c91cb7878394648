import type { IncomingMessage } from "node:http";
import type { PeerCertificate, TLSSocket } from "node:tls";
import type { Context } from "hono";
import type { PeerInfo } from "../../ports/client-identity.ts";

/**
 * Node's view of the peer: the client certificate chain the TLS handshake carried.
 * The server requests a certificate without requiring one and without judging it
 * (rejectUnauthorized: false); OpenSSL has still checked the CertificateVerify
 * signature, i.e. the client holds the key. Trust is decided by the authority.
 */
export function nodePeer(c: Context): PeerInfo {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  const socket = incoming?.socket as TLSSocket | undefined;
  const remoteAddress = socket?.remoteAddress ?? "unknown";
  if (!socket || typeof socket.getPeerCertificate !== "function") return { remoteAddress };
  const leaf = socket.getPeerCertificate(true);
  return leaf?.raw ? { remoteAddress, client: { chain: chainOf(leaf) } } : { remoteAddress };
}

function chainOf(leaf: PeerCertificate & { issuerCertificate?: PeerCertificate }): Uint8Array[] {
  const chain: Uint8Array[] = [];
  let cert: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = leaf;
  while (cert?.raw && chain.length < 8) {
    chain.push(new Uint8Array(cert.raw));
    const next: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = cert.issuerCertificate;
    if (!next || next === cert || next.fingerprint256 === cert.fingerprint256) break;
    cert = next;
  }
  return chain;
}
