import { decodeBase64, encodeBase64 } from "./base64.ts";

export function toPem(label: string, der: Uint8Array): string {
  return `-----BEGIN ${label}-----\n${encodeBase64(der, 64).replace(/\r\n/g, "\n")}\n-----END ${label}-----\n`;
}

export interface PemBlock {
  label: string;
  der: Uint8Array;
}

/** Every PEM block in `text`, in order; text outside the blocks is ignored. */
export function parsePem(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  // The body up to the next "-" only (base64 has none): a BEGIN without its END costs one
  // scan to the next dash, not one to the end of the text (quadratic in the number of BEGINs).
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END \1-----/g;
  for (const m of text.matchAll(re)) {
    blocks.push({ label: m[1] as string, der: decodeBase64(m[2] as string) });
  }
  return blocks;
}

export function pemCertificates(text: string): Uint8Array[] {
  return parsePem(text)
    .filter((b) => b.label === "CERTIFICATE")
    .map((b) => b.der);
}
