import { RSA_PKCS1_SIGNATURES } from "./oids.ts";
/**
 * Minimal DER (ITU-T X.690) encoding and reading helpers.
 *
 * Used for the small fixed structures EST needs (PKCS#7 certs-only, CsrAttrs,
 * ECDSA-Sig-Value), for reading CSRs, and by the fast issuance path
 * (certificate-template.ts), whose reference is @peculiar/asn1-x509 (certificate.ts).
 */

export const TAG = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** The octets of a tag's definite length in DER (X.690 §8.1.3): 1 in the short form, up to 5 here. */
export function lengthSize(length: number): number {
  if (!(Number.isSafeInteger(length) && length >= 0 && length <= 0xffffffff)) {
    throw new RangeError(`DER contents of ${length} octets`);
  }
  return length < 0x80 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : length < 0x1000000 ? 4 : 5;
}

/** Writes a tag and a DER length at `at`; returns the offset just past them. */
export function putHeader(out: Uint8Array, at: number, tag: number, length: number): number {
  out[at++] = tag;
  if (length < 0x80) {
    out[at++] = length;
    return at;
  }
  const n = lengthSize(length) - 1;
  out[at++] = 0x80 | n;
  for (let i = n - 1; i >= 0; i--) out[at++] = (length / 2 ** (8 * i)) & 0xff;
  return at;
}

export function encodeLength(length: number): Uint8Array {
  const out = new Uint8Array(lengthSize(length) + 1);
  putHeader(out, 0, 0, length);
  return out.subarray(1);
}

/**
 * Tag-length-value with a definite length, the only form DER allows. One allocation:
 * the header is written in front of the contents, which are copied once.
 */
export function tlv(tag: number, ...content: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const c of content) length += c.length;
  const out = new Uint8Array(1 + lengthSize(length) + length);
  let offset = putHeader(out, 0, tag, length);
  for (const c of content) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

export const sequence = (...items: Uint8Array[]): Uint8Array => tlv(TAG.SEQUENCE, ...items);

/** SET OF in DER: elements sorted by their encodings (X.690 §11.6). */
export function setOf(items: readonly Uint8Array[]): Uint8Array {
  const sorted = [...items].sort(compareBytes);
  return tlv(TAG.SET, ...sorted);
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** An unsigned big-endian magnitude as a minimal, positive DER INTEGER. */
export function unsignedInteger(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  const needsPad = ((trimmed[0] ?? 0) & 0x80) !== 0;
  return tlv(TAG.INTEGER, needsPad ? concat([Uint8Array.of(0), trimmed]) : trimmed);
}

export function encodeOid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map((a) => Number.parseInt(a, 10));
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0) || (arcs[0] as number) > 2) {
    throw new Error(`invalid OID ${dotted}`);
  }
  // X.690 §8.19.4: the first two arcs share one subidentifier.
  const subidentifiers = [(arcs[0] as number) * 40 + (arcs[1] as number), ...arcs.slice(2)];
  const out: number[] = [];
  for (const arc of subidentifiers) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(TAG.OID, Uint8Array.from(out));
}

export function decodeOid(content: Uint8Array): string {
  const subidentifiers: number[] = [];
  let value = 0;
  for (const byte of content) {
    value = value * 128 + (byte & 0x7f);
    if ((byte & 0x80) === 0) {
      subidentifiers.push(value);
      value = 0;
    }
  }
  const first = subidentifiers[0] ?? 0;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...subidentifiers.slice(1)].join(".");
}

export interface Tlv {
  tag: number;
  /** Offset of the first content byte within the input. */
  start: number;
  /** Offset just past the element. */
  end: number;
  content: Uint8Array;
  /** The whole element, tag and length included. */
  raw: Uint8Array;
}

export class DerError extends Error {
  override name = "DerError";
}

/** Reads one DER element at `offset`. Rejects indefinite and non-minimal lengths. */
export function readTlv(input: Uint8Array, offset = 0): Tlv {
  if (offset + 2 > input.length) throw new DerError("truncated DER element");
  const tag = input[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tags are not supported");
  let lengthByte = input[offset + 1] as number;
  let cursor = offset + 2;
  let length: number;
  if (lengthByte < 0x80) {
    length = lengthByte;
  } else {
    lengthByte &= 0x7f;
    if (lengthByte === 0) throw new DerError("indefinite length is not DER");
    if (lengthByte > 4) throw new DerError("DER length too large");
    if (cursor + lengthByte > input.length) throw new DerError("truncated DER length");
    length = 0;
    for (let i = 0; i < lengthByte; i++) length = length * 256 + (input[cursor + i] as number);
    if (length < 0x80 || (lengthByte > 1 && input[cursor] === 0)) throw new DerError("non-minimal DER length");
    cursor += lengthByte;
  }
  const end = cursor + length;
  if (end > input.length) throw new DerError("truncated DER content");
  return { tag, start: cursor, end, content: input.subarray(cursor, end), raw: input.subarray(offset, end) };
}

/** The elements directly inside a constructed element's content. */
export function readChildren(content: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  let offset = 0;
  while (offset < content.length) {
    const el = readTlv(content, offset);
    out.push(el);
    offset = el.end;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i] as number];
  return s;
}

export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) throw new Error("invalid hex");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** A signer has one algorithm: its identifier is encoded once (copies are handed out). */
const algorithmIdentifiers = new Map<string, Uint8Array>();

/**
 * The signature AlgorithmIdentifier of a CA signer, DER: ECDSA and EdDSA take no
 * parameters (RFC 5758 §3.2, RFC 8410 §3), RSA PKCS #1 v1.5 takes NULL (RFC 4055 §5).
 */
export function signatureAlgorithmIdentifier(oid: string): Uint8Array {
  let der = algorithmIdentifiers.get(oid);
  if (!der) {
    der = RSA_PKCS1_SIGNATURES.has(oid)
      ? sequence(encodeOid(oid), Uint8Array.of(TAG.NULL, 0))
      : sequence(encodeOid(oid));
    if (algorithmIdentifiers.size < 16) algorithmIdentifiers.set(oid, der);
  }
  return der.slice();
}

/** UTCTime (0x17) and GeneralizedTime (0x18) tags. */
export const UTC_TIME = 0x17;
export const GENERALIZED_TIME = 0x18;

function putTwoDigits(out: Uint8Array, at: number, n: number): number {
  out[at] = 0x30 + Math.floor(n / 10);
  out[at + 1] = 0x30 + (n % 10);
  return at + 2;
}

/**
 * A time in DER's form (X.690 §11.7-11.8), written at `at`: UTC, whole seconds, "Z".
 * UTCTime (YYMMDDHHMMSSZ) holds 1950 through 2049 (RFC 5280 §4.1.2.5.1),
 * GeneralizedTime (YYYYMMDDHHMMSSZ) years 0 through 9999; any other year is refused.
 * Returns the offset just past it (15 or 17 octets on).
 */
export function putTime(
  out: Uint8Array,
  at: number,
  tag: typeof UTC_TIME | typeof GENERALIZED_TIME,
  date: Date,
): number {
  const year = date.getUTCFullYear();
  const utc = tag === UTC_TIME;
  if (!(utc ? year >= 1950 && year <= 2049 : year >= 0 && year <= 9999)) {
    throw new RangeError(`${utc ? "UTCTime" : "GeneralizedTime"} cannot hold ${date.toString()}`);
  }
  out[at++] = tag;
  out[at++] = utc ? 13 : 15;
  if (!utc) at = putTwoDigits(out, at, Math.floor(year / 100));
  at = putTwoDigits(out, at, year % 100);
  at = putTwoDigits(out, at, date.getUTCMonth() + 1);
  at = putTwoDigits(out, at, date.getUTCDate());
  at = putTwoDigits(out, at, date.getUTCHours());
  at = putTwoDigits(out, at, date.getUTCMinutes());
  at = putTwoDigits(out, at, date.getUTCSeconds());
  out[at++] = 0x5a; // "Z"
  return at;
}

/** putTime into an array of its own. */
export function derTime(tag: typeof UTC_TIME | typeof GENERALIZED_TIME, date: Date): Uint8Array {
  const out = new Uint8Array(tag === UTC_TIME ? 15 : 17);
  putTime(out, 0, tag, date);
  return out;
}
