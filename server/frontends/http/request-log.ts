import type { Context, Hono } from "hono";
import type { PeerInfo } from "../../ports/client-identity.ts";
import type { AppEnv } from "./env.ts";

export interface RequestLog {
  method: string;
  path: string;
  status: number;
  ms: number;
  remote: string;
  client?: boolean;
  /** Why a request was refused (the audit reason), when it was. */
  refusal?: string;
  /** Which listener answered: absent for the HTTPS one, "public" for the plain HTTP one. */
  listener?: "public";
}

export interface AppLogger {
  request(entry: RequestLog): void;
  error(err: unknown, context: Record<string, unknown>): void;
}

export interface RequestLogDeps {
  /** How this runtime tells who is connected. */
  peer: (c: Context) => PeerInfo;
  logger: AppLogger;
  now?: () => number;
  /** Waits `ms` (the refusal tarpit); tests pass one that records instead of waiting. */
  delay?: (ms: number) => Promise<void>;
  /** `limits.refusals.tarpit`, in milliseconds. */
  tarpitMs: number;
  /** Set on the entries of the plain HTTP listener. */
  listener?: "public";
}

/**
 * The connection's peer, read once per request and shared by the routes and the
 * request log (on Node the TLS peer's certificate chain is read from the socket).
 */
export function peerOnce(read: (c: Context) => PeerInfo): (c: Context<AppEnv>) => PeerInfo {
  return (c) => {
    let p = c.get("peer");
    if (!p) {
      p = read(c);
      c.set("peer", p);
    }
    return p;
  };
}

/**
 * One line per request with its outcome, never headers or bodies (tokens live there);
 * a 429 to a client past its refusal budget is held for the tarpit first. Installed
 * first on every HTTP app, so that both listeners log alike.
 */
export function useRequestLog(app: Hono<AppEnv>, deps: RequestLogDeps): void {
  const now = deps.now ?? (() => performance.now());
  const delay = deps.delay ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const peer = peerOnce(deps.peer);
  app.use(async (c, next) => {
    const start = now();
    await next();
    // A client past its refusal budget that asks again at once is held before its 429:
    // on a keep-alive connection it can send nothing else meanwhile.
    if (c.get("refusal") === "rate_limited" && deps.tarpitMs > 0) await delay(deps.tarpitMs);
    const { remoteAddress, client } = peer(c);
    deps.logger.request({
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round((now() - start) * 10) / 10,
      remote: remoteAddress,
      client: client !== undefined,
      ...(c.get("refusal") ? { refusal: c.get("refusal") } : {}),
      ...(deps.listener ? { listener: deps.listener } : {}),
    });
  });
}

/**
 * Unhandled errors: logged, answered 500 without detail (JSON under /api/); a request
 * whose client closed the connection before it was read is not an error here.
 */
export function useErrorHandler(app: Hono<AppEnv>, logger: AppLogger): void {
  app.onError((err, c) => {
    if (c.req.raw.signal.aborted) {
      c.set("refusal", "client_closed");
      return c.text("the connection closed before the request was read\n", 400);
    }
    logger.error(err, { method: c.req.method, path: c.req.path });
    const message = "internal error; the request was not processed";
    if (c.req.path.startsWith("/api/")) return c.json({ error: { code: "internal", message } }, 500);
    return c.text(`${message}\n`, 500);
  });
}
