import type { Context } from "hono";
import { AuthorityError } from "../../authority/errors.ts";
import { concat } from "../../pki/der.ts";

function tooLarge(limit: number): AuthorityError {
  return new AuthorityError("payload_too_large", `body exceeds ${limit} bytes`, "payload_too_large");
}

/**
 * A request body of at most `limit` bytes. A declared length frames the body exactly
 * (HTTP/1.1), so it is checked first and the body read whole (the runtime's fast path);
 * otherwise the stream is read up to the limit and refused beyond it, without
 * buffering the rest.
 */
export async function readBody(c: Context, limit: number): Promise<Uint8Array> {
  const length = c.req.header("content-length");
  if (length !== undefined && /^\d{1,10}$/.test(length)) {
    if (Number(length) > limit) throw tooLarge(limit);
    return new Uint8Array(await c.req.arrayBuffer());
  }
  const request = c.req.raw;
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel();
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  return concat(chunks);
}
