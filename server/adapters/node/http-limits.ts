import { createServer as createHttpServer, type RequestListener, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
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

/**
 * An event loop's listeners, not yet listening: the HTTPS one (mutual TLS optional, the
 * client certificate checked by the app) and, when `withPublic`, the plain HTTP public
 * one, both with `limits`; each answers once its app is given to `ready`.
 */
export function createListeners(tls: Record<string, unknown>, limits: HttpLimits, withPublic: boolean) {
  const server = createHttpsServer({
    ...tls,
    requestCert: true,
    rejectUnauthorized: false,
    ...listenerOptions(limits),
    handshakeTimeout: limits.handshakeTimeout * 1000,
  });
  applyHttpLimits(server, limits);
  const serving = answerWhenReady(server);
  const publicServer = withPublic ? createHttpServer(listenerOptions(limits)) : undefined;
  if (publicServer) applyHttpLimits(publicServer, limits);
  const publicServing = publicServer && answerWhenReady(publicServer);
  return { server, serving, publicServer, publicServing };
}
