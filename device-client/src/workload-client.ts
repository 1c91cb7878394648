/**
 * The agent's client for the server's workload routes (`/workload/v1/*`): JSON over a
 * new mutual-TLS connection per request, with the device's current certificate, the
 * server verified against the agent's trust bundle at the agent's time before a byte of
 * the request goes out (as the EST client does).
 */
import type { X509Certificate } from "node:crypto";
import { request } from "node:https";
import { isIP } from "node:net";
import { connect } from "node:tls";
import type { ClientTls } from "./est.ts";
import { bareHost, peerProblem, sigalgsFor } from "./tls-check.ts";

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

  private send(method: "GET" | "POST", path: string, body?: string): Promise<HttpAnswer> {
    const url = new URL(path, this.server);
    const trust = this.trust();
    const client = this.client();
    const sigalgs = sigalgsFor(trust);
    const headers: Record<string, string> = { accept: "application/json", connection: "close" };
    if (body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    return new Promise((resolve) => {
      let done = false;
      const finish = (a: HttpAnswer) => {
        if (!done) {
          done = true;
          resolve(a);
        }
      };
      const host = bareHost(url.hostname);
      const socket = connect({
        host,
        port: Number(url.port || 443),
        servername: isIP(host) ? undefined : url.hostname,
        rejectUnauthorized: false,
        ...(sigalgs ? { sigalgs } : {}),
        key: client.key.export({ type: "pkcs8", format: "pem" }) as string,
        cert: client.chain.map((c) => c.toString()).join(""),
      });
      socket.once("error", (e) => finish({ error: e.message }));
      socket.setTimeout(TIMEOUT_MS, () => socket.destroy(new Error(`no answer from ${url.host}`)));
      socket.once("secureConnect", () => {
        const problem = peerProblem(socket, url.hostname, trust, this.verifyAt());
        if (problem) {
          socket.destroy();
          finish({ error: problem });
          return;
        }
        const req = request(url, { method, headers, createConnection: () => socket }, (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE) req.destroy(new Error("response too large"));
            else chunks.push(c);
          });
          res.on("end", () => {
            const date = res.headers.date ? Date.parse(res.headers.date) : Number.NaN;
            finish({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString("utf8"),
              ...(Number.isFinite(date) ? { date } : {}),
            });
          });
          res.on("error", (e) => finish({ error: e.message }));
        });
        req.on("error", (e) => finish({ error: e.message }));
        req.end(body);
      });
    });
  }
}
