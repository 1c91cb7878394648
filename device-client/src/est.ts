import type { KeyObject, X509Certificate } from "node:crypto";
import { checkedRequest } from "./http-exchange.ts";
import { certsFromPkcs7 } from "./keys.ts";
import { peerProblem, sigalgsFor } from "./tls-check.ts";

/** What an EST call came to, in the terms the retry policy decides on. */
export type EstOutcome =
  | { kind: "issued"; chain: Uint8Array[]; date?: number }
  /** 202 (RFC 7030 §4.2.3): ask again after this many seconds. */
  | { kind: "wait"; seconds: number; date?: number }
  /** A 4xx from the verified server: retrying the same request will not help. */
  | { kind: "refused"; status: number; message: string; revoked: boolean; date?: number }
  /** Network errors (TLS alerts included) and 5xx: retry later. */
  | { kind: "unavailable"; message: string; status?: number; date?: number };

export interface ClientTls {
  key: KeyObject;
  chain: X509Certificate[];
}

export type EnrollAuth = { basic: { user: string; password: string } } | { client: ClientTls };

const TIMEOUT_MS = 30_000;
const MAX_RESPONSE = 256 * 1024;

/** An EST refusal (an HTTP 4xx from the verified server) that says the client certificate is revoked. */
export const isRevocationMessage = (message: string) => /certificate (is )?revoked/i.test(message);

/** An outcome in a word or two, for the logs and the saved last error. */
export function describeOutcome(o: EstOutcome): string {
  switch (o.kind) {
    case "issued":
      return "issued";
    case "wait":
      return `202, retry after ${o.seconds} s`;
    case "refused":
      return `HTTP ${o.status}: ${o.message}`;
    case "unavailable":
      return o.status ? `HTTP ${o.status}: ${o.message}` : o.message;
  }
}

/**
 * An EST client (RFC 7030) over node:https: a new TLS connection per request (so a
 * renewed certificate is used at once), the server verified against the agent's trust
 * bundle only, and every answer classified.
 */
export class EstClient {
  constructor(
    private readonly server: string,
    private readonly label: string,
    /** Trust anchors for the server's certificate; "bootstrap" only for the first /cacerts. */
    private readonly trust: X509Certificate[] | "bootstrap",
    /**
     * The time to check the server's certificate at: the agent's clock, which never goes
     * behind its floor. OpenSSL would use the system clock, which on a gateway without a
     * real-time clock may be a year (or fifty) behind.
     */
    private readonly verifyAt: () => number = () => Date.now(),
  ) {
    this.sigalgs = trust === "bootstrap" ? undefined : sigalgsFor(trust);
  }

  private readonly sigalgs: string | undefined;

  private url(op: string): URL {
    const path = this.label ? `/.well-known/est/${this.label}/${op}` : `/.well-known/est/${op}`;
    return new URL(path, this.server);
  }

  /**
   * The CA certificates. With "bootstrap" trust the server is not verified: the caller
   * must check the answer against a pinned fingerprint (RFC 7030 §4.1.1) before using it.
   */
  async cacerts(): Promise<{ certs: Uint8Array[]; date?: number }> {
    const r = await this.send("GET", "cacerts");
    if ("error" in r) throw new Error(`cacerts: ${r.error}`);
    if (r.status !== 200) throw new Error(`cacerts: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    return { certs: certsFromPkcs7(r.body), date: r.date };
  }

  simpleenroll(csr: Uint8Array, auth: EnrollAuth): Promise<EstOutcome> {
    return this.post("simpleenroll", csr, auth);
  }

  simplereenroll(csr: Uint8Array, client: ClientTls): Promise<EstOutcome> {
    return this.post("simplereenroll", csr, { client });
  }

  private async post(op: string, csr: Uint8Array, auth: EnrollAuth): Promise<EstOutcome> {
    const r = await this.send("POST", op, Buffer.from(csr).toString("base64"), auth);
    // A transport error is a network error, whatever it says: a TLS alert
    // "certificate_revoked" (RFC 8446 §6.2) or a reset can come from anything on the
    // path before the server is authenticated. Only the verified server's HTTP answer
    // can say that this device is revoked.
    if ("error" in r) return { kind: "unavailable", message: r.error };
    const message = r.body.trim().slice(0, 300);
    if (r.status === 200) {
      try {
        return { kind: "issued", chain: certsFromPkcs7(r.body), date: r.date };
      } catch (err) {
        return {
          kind: "unavailable",
          status: 200,
          message: `unreadable response: ${(err as Error).message}`,
          date: r.date,
        };
      }
    }
    if (r.status === 202) return { kind: "wait", seconds: retryAfter(r.retryAfter, r.date), date: r.date };
    // 409: another request changed the device while this one was processed (the server
    // wrote nothing): the same request may succeed later, so back off and retry.
    if (r.status >= 500 || r.status === 429 || r.status === 408 || r.status === 409) {
      return { kind: "unavailable", status: r.status, message, date: r.date };
    }
    return { kind: "refused", status: r.status, message, revoked: isRevocationMessage(message), date: r.date };
  }

  private async send(
    method: "GET" | "POST",
    op: string,
    body?: string,
    auth?: EnrollAuth,
  ): Promise<{ status: number; body: string; date?: number; retryAfter?: string } | { error: string }> {
    const url = this.url(op);
    const headers: Record<string, string> = {};
    if (body !== undefined) {
      headers["content-type"] = "application/pkcs10";
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    if (auth && "basic" in auth) {
      headers.authorization = `Basic ${Buffer.from(`${auth.basic.user}:${auth.basic.password}`).toString("base64")}`;
    }
    const client = auth && "client" in auth ? auth.client : undefined;
    const answer = await checkedRequest({
      url,
      method,
      headers,
      body,
      maxResponse: MAX_RESPONSE,
      timeoutMs: TIMEOUT_MS,
      ...(client ? { client } : {}),
      ...(this.sigalgs ? { sigalgs: this.sigalgs } : {}),
      check: (socket) =>
        this.trust === "bootstrap" ? undefined : peerProblem(socket, url.hostname, this.trust, this.verifyAt()),
    });
    return "error" in answer ? answer : { ...answer, body: answer.body.toString("latin1") };
  }
}

/** Retry-After as seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), at least 1. */
export function retryAfter(value: string | undefined, date: number | undefined): number {
  if (value && /^\d+$/.test(value.trim())) return Math.max(1, Number(value.trim()));
  const at = value ? Date.parse(value) : Number.NaN;
  if (Number.isFinite(at)) return Math.max(1, Math.ceil((at - (date ?? at)) / 1000));
  return 60;
}
