import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import type { PeerCertificate, TLSSocket } from "node:tls";

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
  let current = leaf;
  for (let depth = 0; depth < 6; depth++) {
    if (Date.parse(current.validFrom) > at || Date.parse(current.validTo) < at) {
      return `peer certificate ${current.subject.replace(/\n/g, ", ")} is not valid at ${new Date(at).toISOString()}`;
    }
    const anchor = trust.find((t) => current.checkIssued(t) && current.verify(t.publicKey));
    if (anchor) {
      const hostOk = isIP(host) ? leaf.checkIP(host) : leaf.checkHost(host);
      return hostOk ? undefined : `peer certificate is not for ${host}`;
    }
    const next = chain.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey));
    if (!next) break;
    current = next;
  }
  return "peer certificate does not chain to the trusted CA";
}
