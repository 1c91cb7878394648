import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import type { PeerCertificate, TLSSocket } from "node:tls";

/**
 * The certificates from `leaf` up to (not including) one of `trust`, each signed by the
 * next, through `intermediates`; undefined when there is no such path.
 */
export function chainPath(
  leaf: X509Certificate,
  intermediates: X509Certificate[],
  trust: X509Certificate[],
): X509Certificate[] | undefined {
  const path = [leaf];
  for (let current = leaf; path.length <= 6; ) {
    if (trust.some((t) => current.checkIssued(t) && current.verify(t.publicKey))) return path;
    const next = intermediates.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey));
    if (!next) return undefined;
    path.push(next);
    current = next;
  }
  return undefined;
}

/**
 * Why a TLS peer (the EST server, the MQTT broker) is not acceptable, or undefined when
 * it is: its chain must verify up to the agent's trust bundle, every certificate on the
 * way must be valid at `at` — the agent's time, never behind its floor, where OpenSSL
 * would use a system clock that on a gateway without a real-time clock may be years
 * behind — and the leaf must name `host`.
 */
export function peerProblem(socket: TLSSocket, host: string, trust: X509Certificate[], at: number): string | undefined {
  const chain: X509Certificate[] = [];
  let peer: PeerCertificate | undefined = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (peer?.raw && !seen.has(peer.fingerprint256)) {
    seen.add(peer.fingerprint256);
    chain.push(new X509Certificate(peer.raw));
    peer = (peer as { issuerCertificate?: PeerCertificate }).issuerCertificate;
  }
  const leaf = chain[0];
  if (!leaf) return "the peer sent no certificate";
  const path = chainPath(leaf, chain.slice(1), trust);
  if (!path) return "peer certificate does not chain to the trusted CA";
  for (const c of path) {
    if (Date.parse(c.validFrom) > at || Date.parse(c.validTo) < at) {
      return `peer certificate ${c.subject.replace(/\n/g, ", ")} is not valid at ${new Date(at).toISOString()}`;
    }
  }
  const hostOk = isIP(host) ? leaf.checkIP(host) : leaf.checkHost(host);
  return hostOk ? undefined : `peer certificate is not for ${host}`;
}

/**
 * With trust anchors that are all RSA (the legacy hierarchy), the agent offers only RSA
 * signature algorithms, like the RSA-only appliances it stands in for: a server with an
 * ECDSA and an RSA certificate then presents the RSA chain, the one the anchors verify.
 * RSASSA-PSS is for TLS 1.3 handshakes; PKCS #1 v1.5 is what the certificates carry.
 */
export function sigalgsFor(trust: X509Certificate[]): string | undefined {
  if (trust.length === 0 || !trust.every((t) => t.publicKey.asymmetricKeyType === "rsa")) return undefined;
  return "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:rsa_pkcs1_sha256:rsa_pkcs1_sha384:rsa_pkcs1_sha512";
}
