/**
 * The agent's client for the server's workload routes (`/workload/v1/*`): JSON over a
 * new mutual-TLS connection per request, with the device's current certificate, the
 * server verified against the agent's trust bundle at the agent's time before a byte of
 * the request goes out (as the EST client does).
 */
import type { X509Certificate } from "node:crypto";
import type { ClientTls } from "./est.ts";
import { checkedRequest } from "./http-exchange.ts";
import { peerProblem, sigalgsFor } from "./tls-check.ts";

const TIMEOUT_MS = 30_000;
const MAX_RESPONSE = 1024 * 1024;

export type HttpAnswer = { status: number; body: string; date?: number } | { error: string };

export interface WorkloadServerClient {
  get(path: string): Promise<HttpAnswer>;
  post(path: string, json: unknown): Promise<HttpAnswer>;
}

export class WorkloadHttpClient implements WorkloadServerClient {
  constructor(
    private readonly server: string,
    private readonly client: () => ClientTls,
    private readonly trust: () => X509Certificate[],
    private readonly verifyAt: () => number,
  ) {}

  get(path: string): Promise<HttpAnswer> {
    return this.send("GET", path);
  }

  post(path: string, json: unknown): Promise<HttpAnswer> {
    return this.send("POST", path, JSON.stringify(json));
  }

  private async send(method: "GET" | "POST", path: string, body?: string): Promise<HttpAnswer> {
    const url = new URL(path, this.server);
    const trust = this.trust();
    const sigalgs = sigalgsFor(trust);
    const headers: Record<string, string> = { accept: "application/json", connection: "close" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    const answer = await checkedRequest({
      url,
      method,
      headers,
      body,
      maxResponse: MAX_RESPONSE,
      timeoutMs: TIMEOUT_MS,
      client: this.client(),
      ...(sigalgs ? { sigalgs } : {}),
      check: (socket) => peerProblem(socket, url.hostname, trust, this.verifyAt()),
    });
    if ("error" in answer) return answer;
    return { status: answer.status, body: answer.body.toString("utf8"), ...(answer.date ? { date: answer.date } : {}) };
  }
}
