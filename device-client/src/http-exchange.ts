/**
 * One HTTP request over a new TLS connection that is checked before a byte of the
 * request goes out: the EST client and the workload client verify the server against
 * the agent's trust bundle at the agent's time (`check`), not with OpenSSL's clock. The
 * answer is bounded: past `maxResponse` bytes the request is destroyed and the caller
 * gets an error; a connection silent for `timeoutMs` is an error too.
 */
import type { KeyObject, X509Certificate } from "node:crypto";
import { request } from "node:https";
import { isIP } from "node:net";
import { connect, type TLSSocket } from "node:tls";
import { bareHost } from "./tls-check.ts";

export interface RawAnswer {
  status: number;
  body: Buffer;
  /** The server's Date header (ms since the epoch), when it sent a valid one. */
  date?: number;
  retryAfter?: string;
}

export interface CheckedRequest {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body?: string;
  maxResponse: number;
  timeoutMs: number;
  /** The client certificate chain and key, for mutual TLS. */
  client?: { key: KeyObject; chain: X509Certificate[] };
  sigalgs?: string;
  /** Why the connected server is not to be trusted, or undefined when it is. */
  check: (socket: TLSSocket) => string | undefined;
}

export function checkedRequest(o: CheckedRequest): Promise<RawAnswer | { error: string }> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: RawAnswer | { error: string }) => {
      if (!settled) {
        settled = true;
        resolve(a);
      }
    };
    const host = bareHost(o.url.hostname);
    let socket: TLSSocket;
    try {
      socket = connect({
        host,
        port: Number(o.url.port || 443),
        servername: isIP(host) ? undefined : o.url.hostname,
        // Verified by `check` against the trust bundle at the agent's time.
        rejectUnauthorized: false,
        ...(o.sigalgs ? { sigalgs: o.sigalgs } : {}),
        ...(o.client
          ? {
              key: o.client.key.export({ type: "pkcs8", format: "pem" }) as string,
              cert: o.client.chain.map((c) => c.toString()).join(""),
            }
          : {}),
      });
    } catch (e) {
      done({ error: (e as Error).message });
      return;
    }
    socket.once("error", (e) => done({ error: e.message }));
    socket.setTimeout(o.timeoutMs, () =>
      socket.destroy(new Error(`no answer from ${o.url.host} within ${o.timeoutMs / 1000} s`)),
    );
    socket.once("secureConnect", () => {
      const problem = o.check(socket);
      if (problem) {
        socket.destroy();
        done({ error: problem });
        return;
      }
      // Only now, over a verified connection, does the request (and any token) go out.
      const req = request(
        o.url,
        { method: o.method, headers: { ...o.headers, connection: "close" }, createConnection: () => socket },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > o.maxResponse) req.destroy(new Error("response too large"));
            else chunks.push(c);
          });
          res.on("end", () => {
            const date = res.headers.date ? Date.parse(res.headers.date) : Number.NaN;
            done({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks),
              ...(Number.isFinite(date) ? { date } : {}),
              ...(typeof res.headers["retry-after"] === "string" ? { retryAfter: res.headers["retry-after"] } : {}),
            });
          });
          res.on("error", (e) => done({ error: e.message }));
        },
      );
      req.on("error", (e) => done({ error: e.message }));
      req.end(o.body);
    });
  });
}
