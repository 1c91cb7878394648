/**
 * The few X.509 extensions (RFC 5280 §4.2.1) the agent decides on, read from the DER:
 * node:crypto's X509Certificate says whether a certificate is a CA, but not its
 * keyUsage bits, its pathLenConstraint, or whether an extension is there at all.
 */
import type { X509Certificate } from "node:crypto";
import { children, oid, readTlv } from "./der.ts";

export interface CertificateExtensions {
  /** basicConstraints (§4.2.1.9); undefined when absent. */
  basicConstraints?: { ca: boolean; pathLen?: number };
  /** keyUsage (§4.2.1.3) as its bits, bit 0 first; undefined when absent. */
  keyUsage?: boolean[];
  /** extKeyUsage (§4.2.1.12) as dotted OIDs; undefined when absent. */
  extKeyUsage?: string[];
}

export const KEY_USAGE_KEY_CERT_SIGN = 5;
export const ID_KP_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const BASIC_CONSTRAINTS = hex(oid("2.5.29.19"));
const KEY_USAGE = hex(oid("2.5.29.15"));
const EXT_KEY_USAGE = hex(oid("2.5.29.37"));

function dotted(content: Uint8Array): string {
  const arcs: number[] = [];
  let value = 0;
  for (const byte of content) {
    value = value * 128 + (byte & 0x7f);
    if (byte & 0x80) continue;
    if (arcs.length === 0) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
    else arcs.push(value);
    value = 0;
  }
  return arcs.join(".");
}

function integer(content: Uint8Array): number {
  let n = 0;
  for (const byte of content) n = n * 256 + byte;
  return n;
}

/** The extensions of `cert` that the agent checks; throws on DER it cannot read. */
export function extensionsOf(cert: X509Certificate): CertificateExtensions {
  const [tbs] = children(readTlv(new Uint8Array(cert.raw)).content);
  if (!tbs) throw new Error("not a certificate");
  const out: CertificateExtensions = {};
  const wrapper = children(tbs.content).find((el) => el.tag === 0xa3);
  if (!wrapper) return out;
  for (const ext of children(readTlv(wrapper.content).content)) {
    const parts = children(ext.content);
    const id = parts[0];
    const value = parts.at(-1);
    if (!id || !value || value.tag !== 0x04) throw new Error("malformed extension");
    const inner = readTlv(value.content);
    const key = hex(id.raw);
    if (key === BASIC_CONSTRAINTS) {
      const fields = children(inner.content);
      const ca = fields[0]?.tag === 0x01 && (fields[0].content[0] ?? 0) !== 0;
      const len = fields.find((f) => f.tag === 0x02);
      out.basicConstraints = { ca, ...(len ? { pathLen: integer(len.content) } : {}) };
    } else if (key === KEY_USAGE) {
      const unused = inner.content[0] ?? 0;
      const bytes = inner.content.subarray(1);
      const bits: boolean[] = [];
      for (let i = 0; i < bytes.length * 8 - unused; i++)
        bits.push((((bytes[i >> 3] as number) >> (7 - (i & 7))) & 1) === 1);
      out.keyUsage = bits;
    } else if (key === EXT_KEY_USAGE) {
      out.extKeyUsage = children(inner.content).map((el) => dotted(el.content));
    }
  }
  return out;
}

/**
 * Why `cert` may not issue certificates with `below` intermediate CAs under it, or
 * undefined when it may: cA set, keyCertSign asserted, pathLenConstraint respected
 * (RFC 5280 §4.2.1.9, §4.2.1.3, §6.1.4 (k)-(n)).
 */
export function caProblem(cert: X509Certificate, below: number): string | undefined {
  const name = cert.subject.replace(/\n/g, ", ");
  let ext: CertificateExtensions;
  try {
    ext = extensionsOf(cert);
  } catch (err) {
    return `CA certificate ${name}: ${(err as Error).message}`;
  }
  if (!ext.basicConstraints?.ca) return `certificate ${name} is not a CA (basicConstraints cA not set)`;
  if (!ext.keyUsage?.[KEY_USAGE_KEY_CERT_SIGN])
    return `CA certificate ${name} may not sign certificates (no keyCertSign)`;
  const pathLen = ext.basicConstraints.pathLen;
  if (pathLen !== undefined && below > pathLen) {
    return `CA certificate ${name} allows ${pathLen} intermediate CAs below it, the path has ${below}`;
  }
  return undefined;
}
