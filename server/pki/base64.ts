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

export function encodeBase64(bytes: Uint8Array, lineLength = 0): string {
  let out = "";
  let line = 0;
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i] as number;
    const b = bytes[i + 1];
    const c = bytes[i + 2];
    const n = (a << 16) | ((b ?? 0) << 8) | (c ?? 0);
    out += ALPHABET[(n >> 18) & 63];
    out += ALPHABET[(n >> 12) & 63];
    out += b === undefined ? "=" : ALPHABET[(n >> 6) & 63];
    out += c === undefined ? "=" : ALPHABET[n & 63];
    line += 4;
    if (lineLength > 0 && line >= lineLength && i + 3 < bytes.length) {
      out += "\r\n";
      line = 0;
    }
  }
  return out;
}

export function base64url(bytes: Uint8Array): string {
  return encodeBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
