import { request } from "node:https";
import type { CreatedTokenView, FleetClient, OperatorView } from "./fleet-client.ts";

/** The options that were given, for a JSON body. */
function definedOf(o: Record<string, unknown> | undefined): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined));
}

export interface RemoteOptions {
  /** https://host:port of the server. */
  server: string;
  token: string;
  /** PEM trust anchors for the server's TLS certificate; the system's when absent. */
  ca?: string;
}

/** An operator API error, with the server's code and message. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The operator API of a running server, with an operator token. */
export function remoteFleet(o: RemoteOptions): FleetClient {
  const base = new URL("/api/v1/", o.server);
  const call = <T>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<T> => {
    const url = new URL(path.replace(/^\//, ""), base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          ca: o.ca,
          headers: {
            authorization: `Bearer ${o.token}`,
            accept: "application/json",
            ...(payload ? { "content-type": "application/json", "content-length": String(payload.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown;
            try {
              parsed = JSON.parse(text);
            } catch {
              reject(
                new ApiError(
                  res.statusCode ?? 0,
                  "not_json",
                  `${url.pathname}: ${res.statusCode} ${text.slice(0, 200)}`,
                ),
              );
              return;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve(parsed as T);
            else {
              const e = (parsed as { error?: { code?: string; message?: string } }).error;
              reject(new ApiError(status, e?.code ?? "error", e?.message ?? `HTTP ${status}`));
            }
          });
        },
      );
      req.on("error", (e) => reject(new Error(`cannot reach ${o.server}: ${e.message}`)));
      req.end(payload);
    });
  };
  const query = (q: Record<string, string | number | undefined>) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
    const s = p.toString();
    return s ? `?${s}` : "";
  };
  const id = encodeURIComponent;
  return {
    listDevices: (q) => call("GET", `devices${query(q)}`),
    showDevice: (d) => call("GET", `devices/${id(d)}`),
    revokeDevice: (d, reason, decommission, cascade) =>
      call("POST", `devices/${id(d)}/revoke`, {
        reason,
        ...(decommission ? { decommission } : {}),
        ...(cascade ? { cascade } : {}),
      }),
    reinstateDevice: (d, note) => call("POST", `devices/${id(d)}/reinstate`, note ? { note } : {}),
    bindIdevid: (d, certificate, profile) =>
      call("POST", `devices/${id(d)}/idevid`, { certificate, ...(profile ? { profile } : {}) }),
    showCertificate: (s) => call("GET", `certificates/${id(s)}`),
    revokeCertificate: (s, reason) => call("POST", `certificates/${id(s)}/revoke`, { reason }),
    createTokens: async (batch, opts) =>
      (
        await call<{ tokens: CreatedTokenView[] }>("POST", "tokens", {
          ...batch,
          ...(opts.profile ? { profile: opts.profile } : {}),
          ...(opts.ttl ? { ttl: opts.ttl } : {}),
          ...(opts.names ? { names: opts.names } : {}),
        })
      ).tokens,
    listTokens: (q) => call("GET", `tokens${query(q)}`),
    revokeToken: (t) => call("POST", `tokens/${id(t)}/revoke`, {}),
    listEnrollments: (q) => call("GET", `enrollments${query(q)}`),
    decideEnrollment: (e, decision, reason) =>
      call("POST", `enrollments/${id(e)}/${decision}`, reason ? { reason } : {}),
    listAudit: (q) => call("GET", `audit${query(q)}`),
    verifyAudit: () => call("GET", "audit/verify"),
    createOperator: (op) => call("POST", "operators", op),
    listOperators: async () => (await call<{ items: OperatorView[] }>("GET", "operators")).items,
    revokeOperator: (op) => call("POST", `operators/${id(op)}/revoke`, {}),
    sendCommand: (command, t) => call("POST", "commands", { command, ...t }),
    listCommands: (q) => call("GET", `commands${query(q)}`),
    showCommand: (opId) => call("GET", `commands/${id(opId)}`),
    auditFleet: (o) => call("POST", "fleet/audit", o),
    setMetadata: (d, change) => call("POST", `devices/${id(d)}/metadata`, change),
    signCsr: (d, profile, csr, o) => call("POST", `devices/${id(d)}/certificates`, { profile, csr, ...definedOf(o) }),
    issueWithKey: (d, profile, o) =>
      call("POST", `devices/${id(d)}/certificates`, { profile, generateKey: true, ...definedOf(o) }),
    expiring: (q) => call("GET", `reports/expiring${query(q)}`),
    registerWorkload: (r) => call("POST", "workloads", definedOf({ ...r })),
    listWorkloads: (q) => call("GET", `workloads${query(q)}`),
    deleteWorkload: (w) => call("DELETE", `workloads/${id(w)}`),
    close: async () => undefined,
  };
}
