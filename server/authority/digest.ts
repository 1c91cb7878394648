import { toHex } from "../pki/der.ts";
import type { Digest } from "../ports/digest.ts";

const utf8 = new TextEncoder();

export async function sha256Hex(digest: Digest, data: Uint8Array | string): Promise<string> {
  return toHex(await digest("SHA-256", typeof data === "string" ? utf8.encode(data) : data));
}
