/**
 * DNS and IP names for subjectAltName (RFC 5280 §4.2.1.6): validation, the canonical
 * text kept in records, and the octets of an iPAddress GeneralName. Portable (no
 * node:net): the Workers runtime runs the same checks.
 */

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A host name as certificates carry it: lowercase LDH labels (RFC 1123), at most 253
 * characters, at least two labels or "localhost"-like single labels; no wildcard, no
 * trailing dot, not an IP address.
 */
export function isDnsName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  if (!labels.every((l) => LABEL.test(l))) return false;
  // All-numeric last label: an IPv4 address or a typo of one, not a host name.
  return !/^[0-9]+$/.test(labels[labels.length - 1] as string);
}

/** The 4 or 16 octets of an IPv4 or IPv6 address, or undefined if it is neither. */
export function ipOctets(text: string): Uint8Array | undefined {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    if (parts.some((p, i) => p > 255 || ((v4[i + 1] as string).length > 1 && (v4[i + 1] as string).startsWith("0")))) {
      return undefined;
    }
    return Uint8Array.from(parts);
  }
  if (!text.includes(":") || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  let host: string;
  try {
    // The WHATWG URL parser implements RFC 4291 text forms and normalises them.
    host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  const [head = "", tail] = host.split("::");
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const fill = tail === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...Array(fill).fill("0"), ...right];
  if (all.length !== 8) return undefined;
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    const v = Number.parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

/** The canonical text of an IP address (IPv6 compressed, lowercase), or undefined. */
export function canonicalIp(text: string): string | undefined {
  const octets = ipOctets(text);
  if (!octets) return undefined;
  if (octets.length === 4) return octets.join(".");
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}
