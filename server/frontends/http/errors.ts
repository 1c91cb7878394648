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
  rate_limited: 429,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal: 500,
};

/** Retry-After for an answer that says "later": 202 pending, 429 rate limited (RFC 9110 §10.2.3). */
export function retryAfterHeader(err: AuthorityError): Record<string, string> {
  if (err.code === "rate_limited" || err.code === "pending") return { "retry-after": String(err.retryAfter ?? 60) };
  return {};
}

/** An authority error as a plain-text response: its status and one line of text, never cached. */
export function textErrorResponse(err: AuthorityError, headers: Record<string, string> = {}): Response {
  return new Response(`${err.publicMessage.replace(/[\r\n]+/g, " ")}\n`, {
    status: STATUS[err.code],
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...retryAfterHeader(err),
      ...headers,
    },
  });
}
