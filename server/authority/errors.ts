/**
 * Typed errors of the core. No transport status codes here: each frontend maps
 * `code` once (frontends/http/errors.ts for HTTP).
 */
export type ErrorCode =
  | "bad_request"
  | "unsupported_media_type"
  | "payload_too_large"
  | "unauthenticated"
  | "forbidden"
  | "not_found"
  | "method_not_allowed"
  | "conflict"
  | "pending"
  | "rate_limited"
  | "internal";

export class AuthorityError extends Error {
  override name = "AuthorityError";
  constructor(
    readonly code: ErrorCode,
    /** Safe to show the client: says what was wrong and what to do; never a secret. */
    readonly publicMessage: string,
    /** A stable machine-readable reason for the audit trail, e.g. "token_used". */
    readonly reason: string,
    options?: { cause?: unknown; retryAfter?: number },
  ) {
    super(publicMessage, options);
    this.retryAfter = options?.retryAfter;
  }

  /** Seconds, for "pending" and "rate_limited": when the client should ask again (RFC 7030 §4.2.3, RFC 6585 §4). */
  readonly retryAfter: number | undefined;
}

export const badRequest = (reason: string, message: string, cause?: unknown) =>
  new AuthorityError("bad_request", message, reason, { cause });
export const unauthenticated = (reason: string, message: string) =>
  new AuthorityError("unauthenticated", message, reason);
export const forbidden = (reason: string, message: string) => new AuthorityError("forbidden", message, reason);
export const notFound = (reason: string, message: string) => new AuthorityError("not_found", message, reason);
export const conflict = (reason: string, message: string) => new AuthorityError("conflict", message, reason);
/** Not refused, not done: an operator has to decide first. */
export const pending = (reason: string, message: string, retryAfter: number) =>
  new AuthorityError("pending", message, reason, { retryAfter });
