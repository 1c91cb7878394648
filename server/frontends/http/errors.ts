import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AuthorityError, ErrorCode } from "../../authority/errors.ts";

/** The one mapping from core error codes to HTTP statuses, for every HTTP frontend. */
export const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  bad_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  pending: 202,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal: 500,
};

/** An authority error as a plain-text response: its status and one line of text, never cached. */
export function textErrorResponse(err: AuthorityError, headers: Record<string, string> = {}): Response {
  return new Response(`${err.publicMessage.replace(/[\r\n]+/g, " ")}\n`, {
    status: STATUS[err.code],
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}
