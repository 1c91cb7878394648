/**
 * What the agent accepts from the server as trusted: the CA bundle of /cacerts (against
 * the pinned anchor, and at each refresh) and the certificate chains it is issued.
 * (The TLS peers themselves are checked in tls-check.ts.)
 */
import { type KeyObject, X509Certificate } from "node:crypto";
import { caProblem } from "./extensions.ts";
import { type Identity, publicKeyMatches } from "./store.ts";
import { chainPath } from "./tls-check.ts";

/** The verifying chain of `leaf` up to one of `trust`, through `intermediates`; throws if there is none. */
export function verifyChain(leaf: X509Certificate, intermediates: X509Certificate[], trust: X509Certificate[]): void {
  if (!chainPath(leaf, intermediates, trust)) {
    throw new Error(`certificate ${leaf.subject.replace(/\n/g, ", ")} does not chain to the trusted CA`);
  }
}

/**
 * A CA certificate (cA and keyCertSign): the only kind the trust bundle holds. A device
 * certificate from the same CA in a /cacerts answer would otherwise become an anchor its
 * holder could sign any server certificate under.
 */
export const isCaCertificate = (c: X509Certificate) => caProblem(c, 0) === undefined;

/** The CA certificates of a /cacerts answer that are, or chain to, the pinned anchor. */
export function acceptCaBundle(certs: X509Certificate[], anchors: X509Certificate[]): X509Certificate[] {
  const accepted = [...anchors];
  let grew = true;
  while (grew) {
    grew = false;
    for (const c of certs) {
      if (accepted.some((a) => a.fingerprint256 === c.fingerprint256)) continue;
      if (!isCaCertificate(c)) continue;
      if (accepted.some((a) => c.checkIssued(a) && c.verify(a.publicKey))) {
        accepted.push(c);
        grew = true;
      }
    }
  }
  return accepted;
}

/**
 * A refreshed /cacerts answer (from the verified server) merged into the bundle: old and
 * new CAs are kept (a rollover), duplicates, certificates that are not CAs and the CAs
 * expired at `now` dropped; `added` counts the CAs the bundle did not hold unexpired.
 */
export function mergeCaBundle(
  trust: X509Certificate[],
  fresh: X509Certificate[],
  now: number,
): { merged: X509Certificate[]; added: number } {
  const merged = [...trust, ...fresh.filter(isCaCertificate)].filter(
    (c, i, all) => all.findIndex((o) => o.fingerprint256 === c.fingerprint256) === i && Date.parse(c.validTo) > now,
  );
  const added = merged.length - trust.filter((c) => Date.parse(c.validTo) > now).length;
  return { merged, added };
}

/** The issued chain must certify our new key and chain to our trust bundle. */
export function checkIssued(chainDer: Uint8Array[], key: KeyObject, trust: X509Certificate[]): Identity {
  const chain = chainDer.map((d) => new X509Certificate(d));
  const leaf = chain[0];
  if (!leaf) throw new Error("the server answered without a certificate");
  if (!publicKeyMatches(key, leaf)) throw new Error("the issued certificate is not for the key this agent generated");
  verifyChain(leaf, [...chain.slice(1), ...trust], trust);
  // Kept with the key: the leaf and the intermediate CAs above it (not self-signed), so a
  // TLS peer that knows only the root can build the path.
  const intermediates: X509Certificate[] = [];
  for (let c = leaf; intermediates.length < 4; ) {
    const issuer = [...chain.slice(1), ...trust].find((i) => c.checkIssued(i) && c.verify(i.publicKey));
    if (!issuer || issuer.checkIssued(issuer)) break;
    intermediates.push(issuer);
    c = issuer;
  }
  return { key, chain: [leaf, ...intermediates] };
}
