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

export const REALM = 'Basic realm="edgeid EST", charset="UTF-8"';

/** The one place an authority error becomes an EST response: status + one line of text. */
export function estErrorResponse(err: AuthorityError): Response {
  const headers = new Headers({ "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
  // RFC 7030 §3.2.3 / RFC 9110 §11.6.1: a 401 names the scheme the client should retry with.
  if (err.code === "unauthenticated") headers.set("www-authenticate", REALM);
  // RFC 7030 §4.2.3: 202 with Retry-After; the client repeats the same request later.
  if (err.code === "pending") headers.set("retry-after", String(err.retryAfter ?? 60));
  return new Response(`${err.publicMessage.replace(/[\r\n]+/g, " ")}\n`, { status: STATUS[err.code], headers });
}
