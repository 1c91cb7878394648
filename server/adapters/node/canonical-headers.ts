import { type OutgoingHttpHeader, type OutgoingHttpHeaders, ServerResponse } from "node:http";

/** Names whose usual spelling is not "each dash-separated word capitalised". */
const SPELLINGS = new Map(
  ["WWW-Authenticate", "ETag", "Content-MD5", "TE", "DNT", "X-XSS-Protection", "Content-ID"].map((n) => [
    n.toLowerCase(),
    n,
  ]),
);
const cache = new Map<string, string>();

/**
 * The conventional spelling of a header name: `content-type` → `Content-Type`,
 * `www-authenticate` → `WWW-Authenticate`. HTTP names are case-insensitive, but EST
 * clients embedded in network gear compare them byte for byte with the spelling of
 * RFC 7030's examples, and the fetch `Headers` the app answers with keeps only lower
 * case.
 */
export function canonicalHeaderName(name: string): string {
  const lower = name.toLowerCase();
  let spelled = cache.get(lower);
  if (spelled === undefined) {
    spelled =
      SPELLINGS.get(lower) ?? lower.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase());
    // The set of names this server sends is small and fixed; the bound keeps a client from growing it.
    if (cache.size < 256) cache.set(lower, spelled);
  }
  return spelled;
}

type HeaderArgument = OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined;

function canonicalHeaders(headers: HeaderArgument): HeaderArgument {
  if (headers === undefined) return headers;
  if (Array.isArray(headers)) {
    // Either [[name, value], …] or the flat raw form [name, value, name, value, …].
    if (headers.every((h) => Array.isArray(h))) {
      return (headers as unknown as [string, OutgoingHttpHeader][]).map(([n, v]) => [
        canonicalHeaderName(n),
        v,
      ]) as never;
    }
    return headers.map((h, i) => (i % 2 === 0 && typeof h === "string" ? canonicalHeaderName(h) : h));
  }
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) out[canonicalHeaderName(name)] = value;
  return out;
}

/**
 * The Node response for every listener: header names go on the wire in their
 * conventional spelling whatever the app wrote (`writeHead` is the one way
 * @hono/node-server sends a head; `setHeader` names are respelled too). Node's own
 * headers (`Content-Length`, `Date`, `Connection`, `Keep-Alive`) are already spelled so.
 */
export class CanonicalHeadersResponse extends ServerResponse {
  override setHeader(name: string, value: number | string | readonly string[]): this {
    return super.setHeader(canonicalHeaderName(name), value);
  }
}

// writeHead has three overloads ((status), (status, headers), (status, message, headers));
// it is replaced on the prototype so that all of them pass through one spelling step.
const writeHead = ServerResponse.prototype.writeHead as (
  this: ServerResponse,
  status: number,
  ...rest: (string | HeaderArgument)[]
) => ServerResponse;
CanonicalHeadersResponse.prototype.writeHead = function (
  this: ServerResponse,
  status: number,
  ...rest: [string | HeaderArgument, HeaderArgument?]
) {
  if (typeof rest[0] === "string") return writeHead.call(this, status, rest[0], canonicalHeaders(rest[1]));
  return writeHead.call(this, status, canonicalHeaders(rest[0]));
} as ServerResponse["writeHead"];
