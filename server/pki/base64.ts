/**
 * Base64 as EST uses it (RFC 7030 §4 with the RFC 8951 clarification: bodies are
 * base64 DER regardless of any Content-Transfer-Encoding header).
 *
 * @remarks Decoding tolerates whitespace and CR/LF line breaks anywhere and missing
 * trailing padding, because deployed clients (libest, openssl-based scripts) wrap
 * lines at 64 or 76 characters or strip `=`. Anything else outside the alphabet is
 * refused rather than skipped.
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const LOOKUP = new Int16Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

export class Base64Error extends Error {
  override name = "Base64Error";
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

export function decodeBase64(text: string): Uint8Array {
  const values: number[] = [];
  let padding = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (isSpace(code)) continue;
    if (code === 0x3d /* = */) {
      padding++;
      continue;
    }
    const v = code < 256 ? (LOOKUP[code] as number) : -1;
    if (v < 0 || padding > 0) throw new Base64Error("body is not base64");
    values.push(v);
  }
  const rem = values.length % 4;
  if (padding > 2 || rem === 1 || (padding > 0 && (values.length + padding) % 4 !== 0)) {
    throw new Base64Error("body is not base64");
  }
  const out = new Uint8Array(Math.floor((values.length * 3) / 4));
  let o = 0;
  for (let i = 0; i < values.length; i += 4) {
    const a = values[i] as number;
    const b = values[i + 1] ?? 0;
    const c = values[i + 2] ?? 0;
    const d = values[i + 3] ?? 0;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = (n >> 16) & 0xff;
    if (i + 2 < values.length) out[o++] = (n >> 8) & 0xff;
    if (i + 3 < values.length) out[o++] = n & 0xff;
  }
  return out;
}

const ENCODE = Uint8Array.from(ALPHABET, (ch) => ch.charCodeAt(0));
const ASCII = new TextDecoder("latin1");

/** Standard base64 with padding, optionally wrapped with CRLF every `lineLength` characters. */
export function encodeBase64(bytes: Uint8Array, lineLength = 0): string {
  const chars = Math.ceil(bytes.length / 3) * 4;
  const breaks = lineLength > 0 && chars > 0 ? Math.floor((chars - 1) / lineLength) : 0;
  const out = new Uint8Array(chars + 2 * breaks);
  let o = 0;
  let line = 0;
  for (let i = 0; i < bytes.length; i += 3) {
    const rest = bytes.length - i;
    const n =
      ((bytes[i] as number) << 16) |
      (rest > 1 ? (bytes[i + 1] as number) << 8 : 0) |
      (rest > 2 ? (bytes[i + 2] as number) : 0);
    out[o++] = ENCODE[(n >> 18) & 63] as number;
    out[o++] = ENCODE[(n >> 12) & 63] as number;
    out[o++] = rest > 1 ? (ENCODE[(n >> 6) & 63] as number) : 0x3d;
    out[o++] = rest > 2 ? (ENCODE[n & 63] as number) : 0x3d;
    line += 4;
    if (lineLength > 0 && line >= lineLength && i + 3 < bytes.length) {
      out[o++] = 0x0d;
      out[o++] = 0x0a;
      line = 0;
    }
  }
  return ASCII.decode(out.subarray(0, o));
}

export function base64url(bytes: Uint8Array): string {
  return encodeBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
