import type { AuthorityError } from "../../authority/errors.ts";
import { textErrorResponse } from "../http/errors.ts";

export const REALM = 'Basic realm="edgeid EST", charset="UTF-8"';

/** The one place an authority error becomes an EST response: status + one line of text. */
export function estErrorResponse(err: AuthorityError): Response {
  const headers: Record<string, string> = {};
  // RFC 7030 §3.2.3 / RFC 9110 §11.6.1: a 401 names the scheme the client should retry with.
  if (err.code === "unauthenticated") headers["www-authenticate"] = REALM;
  // RFC 7030 §4.2.3: 202 with Retry-After (and 429 with it, RFC 6585 §4): textErrorResponse.
  return textErrorResponse(err, headers);
}
