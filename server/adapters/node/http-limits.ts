import type { RequestListener, Server } from "node:http";
import type { Config } from "../../config/schema.ts";
import { CanonicalHeadersResponse } from "./canonical-headers.ts";

type HttpLimits = Config["limits"]["http"];

/**
 * Server options every listener (HTTPS and the plain public one) is created with:
 * conventional header spelling, the header size bound, and how often the header and
 * request timeouts are checked (Node's default is 30 s).
 */
export function listenerOptions(limits: HttpLimits) {
  return {
    ServerResponse: CanonicalHeadersResponse,
    maxHeaderSize: limits.maxHeaderBytes,
    connectionsCheckingInterval: 1000,
  };
}

/**
 * Connections, header lines, and slow clients (slowloris, idle keep-alive) bounded by
 * `limits.http`, alike on every listener (`https.Server` is an `http.Server`).
 */
export function applyHttpLimits(server: Server, limits: HttpLimits): void {
  server.maxConnections = limits.maxConnections;
  server.maxHeadersCount = limits.maxHeaders;
  server.headersTimeout = limits.headersTimeout * 1000;
  server.requestTimeout = limits.requestTimeout * 1000;
  server.keepAliveTimeout = limits.keepAliveTimeout * 1000;
}

/**
 * A listener's port is bound before the app exists (the URLs in certificates need it):
 * until `ready` hands it the app's listener, a request gets 503 and Retry-After instead
 * of waiting for an answer forever.
 */
export function answerWhenReady(server: Server): { ready(handle: RequestListener): void } {
  let handle: RequestListener | undefined;
  server.on("request", (req, res) => {
    if (handle) return handle(req, res);
    const body = "starting; retry in a second\n";
    res.writeHead(503, {
      "content-type": "text/plain; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      "retry-after": "1",
      connection: "close",
    });
    res.end(body);
  });
  return {
    ready: (h) => {
      handle = h;
    },
  };
}
