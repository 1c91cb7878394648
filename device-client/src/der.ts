/**
 * The little DER the agent needs: encode a CSR, read PKCS#7 certs-only. Kept here
 * rather than shared with the server so that the agent stays a small package of its own.
 */

export interface Tlv {
  tag: number;
  content: Uint8Array;
  /** The whole element, tag and length included. */
  raw: Uint8Array;
  end: number;
}

export function readTlv(input: Uint8Array, offset = 0): Tlv {
  if (offset + 2 > input.length) throw new Error("truncated DER");
  const tag = input[offset] as number;
  let length = input[offset + 1] as number;
  let cursor = offset + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || cursor + n > input.length) throw new Error("unsupported DER length");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (input[cursor + i] as number);
    cursor += n;
  }
  const end = cursor + length;
  if (end > input.length) throw new Error("truncated DER");
  return { tag, content: input.subarray(cursor, end), raw: input.subarray(offset, end), end };
}

export function children(content: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  for (let offset = 0; offset < content.length; ) {
    const el = readTlv(content, offset);
    out.push(el);
    offset = el.end;
  }
  return out;
}

function length(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

export function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(parts);
  return new Uint8Array(Buffer.concat([Uint8Array.of(tag, ...length(body.length)), body]));
}

export const seq = (...parts: Uint8Array[]) => tlv(0x30, ...parts);

export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map(Number);
  const ids = [(arcs[0] as number) * 40 + (arcs[1] as number), ...arcs.slice(2)];
  const out: number[] = [];
  for (const arc of ids) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Uint8Array.from(out));
}
