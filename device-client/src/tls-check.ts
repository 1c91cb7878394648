import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { caProblem, extensionsOf, ID_KP_SERVER_AUTH } from "./extensions.ts";

/**
 * The certificates from `leaf` up to (not including) one of `trust`, each signed by the
 * next, through `intermediates`, and the anchor that signed the last; undefined when
 * there is no such path.
 */
export function chainToAnchor(
  leaf: X509Certificate,
  intermediates: X509Certificate[],
  trust: X509Certificate[],
): { path: X509Certificate[]; anchor: X509Certificate } | undefined {
  const path = [leaf];
  for (let current = leaf; path.length <= 6; ) {
    const anchor = trust.find((t) => current.checkIssued(t) && current.verify(t.publicKey));
    if (anchor) return { path, anchor };
    const next = intermediates.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey));
    if (!next) return undefined;
    path.push(next);
    current = next;
  }
  return undefined;
}

/** The path of `chainToAnchor` without its anchor. */
export function chainPath(
  leaf: X509Certificate,
  intermediates: X509Certificate[],
  trust: X509Certificate[],
): X509Certificate[] | undefined {
  return chainToAnchor(leaf, intermediates, trust)?.path;
}

/** The host name as a URL gives it, without the brackets of an IPv6 literal. */
export const bareHost = (hostname: string) => hostname.replace(/^\[(.*)\]$/, "$1");

/**
 * Why `chain` (leaf first, as the peer sent it) does not identify the server `host`, or
 * undefined when it does:
 * - the leaf chains to the agent's trust bundle, and every certificate on the path, the
 *   anchor included, is valid at `at` — the agent's time, never behind its floor, where
 *   OpenSSL would use a system clock that on a gateway without a real-time clock may be
 *   years behind;
 * - every CA certificate on the path (intermediates and anchor) has cA, keyCertSign and
 *   a pathLenConstraint the path respects (RFC 5280 §6.1.4);
 * - the leaf is for TLS servers (extKeyUsage with serverAuth, RFC 5280 §4.2.1.12): a
 *   device certificate from the same CA is not;
 * - the leaf names `host` in its subjectAltName (a dNSName, or an iPAddress for an IP),
 *   never in its subject CN (RFC 9525 §6.4.4): device ids, which may contain dots, are
 *   CNs.
 */
export function serverChainProblem(
  chain: X509Certificate[],
  host: string,
  trust: X509Certificate[],
  at: number,
): string | undefined {
  const leaf = chain[0];
  if (!leaf) return "the peer sent no certificate";
  const found = chainToAnchor(leaf, chain.slice(1), trust);
  if (!found) return "peer certificate does not chain to the trusted CA";
  const { path, anchor } = found;
  for (const c of [...path, anchor]) {
    if (Date.parse(c.validFrom) > at || Date.parse(c.validTo) < at) {
      return `peer certificate ${c.subject.replace(/\n/g, ", ")} is not valid at ${new Date(at).toISOString()}`;
    }
  }
  // path[i] (i ≥ 1) has i - 1 intermediate CAs below it; the anchor has all of them.
  for (const [i, ca] of [...path.slice(1), anchor].entries()) {
    const problem = caProblem(ca, i);
    if (problem) return problem;
  }
  let eku: string[] | undefined;
  try {
    eku = extensionsOf(leaf).extKeyUsage;
  } catch (err) {
    return `peer certificate: ${(err as Error).message}`;
  }
  if (!eku?.includes(ID_KP_SERVER_AUTH)) return "peer certificate is not for TLS servers (no serverAuth extKeyUsage)";
  const name = bareHost(host);
  const hostOk = isIP(name)
    ? leaf.checkIP(name) !== undefined
    : leaf.checkHost(name, { subject: "never", partialWildcards: false }) !== undefined;
  return hostOk ? undefined : `peer certificate does not name ${name} in its subjectAltName`;
}

/** The certificates a TLS peer sent, leaf first. */
export function peerChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let peer: PeerCertificate | undefined = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (peer?.raw && !seen.has(peer.fingerprint256)) {
    seen.add(peer.fingerprint256);
    chain.push(new X509Certificate(peer.raw));
    peer = (peer as { issuerCertificate?: PeerCertificate }).issuerCertificate;
  }
  return chain;
}

/**
 * Why a TLS peer (the EST server, the MQTT broker) is not acceptable as `host`, or
 * undefined when it is (`serverChainProblem`). Runs on `secureConnect`, before a byte
 * of application data goes either way.
 */
export function peerProblem(socket: TLSSocket, host: string, trust: X509Certificate[], at: number): string | undefined {
  return serverChainProblem(peerChain(socket), host, trust, at);
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
