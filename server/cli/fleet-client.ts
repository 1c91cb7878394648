import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import type { z } from "@hono/zod-openapi";
import { dataPaths, isInitialised, readConfig, resolveInDataDir } from "../adapters/node/data-dir.ts";
import { withIssuer } from "../adapters/node/mosquitto.ts";
import { nodeDigest } from "../adapters/node/node-digest.ts";
import { SqliteStorage } from "../adapters/storage/sqlite-storage.ts";
import { systemClock } from "../adapters/system-clock.ts";
import { CLI_ACTOR } from "../authority/actor.ts";
import { decideEnrollment } from "../authority/approvals.ts";
import { type ChainReport, verifyAuditChain } from "../authority/audit-chain.ts";
import { getCommand, issueCommands, listCommands, type OperatorCommand } from "../authority/commands.ts";
import { type AuthorityDeps, caFor } from "../authority/deps.ts";
import { type Issued } from "../authority/enrollment-request.ts";
import { runFleetAudit } from "../authority/fleet-audit.ts";
import { bindIdevid, decodeCertificateText } from "../authority/idevid-binding.ts";
import {
  getCertificate,
  issueTokens,
  listDevices,
  listEnrollments,
  listTokens,
  readAudit,
  revokeToken,
  showDevice,
} from "../authority/inventory.ts";
import { expiringReport, setDeviceMetadata } from "../authority/lifecycle.ts";
import type { NamesInput } from "../authority/operator-issue.ts";
import { decodeCsrText, issueWithGeneratedKey, signForDevice } from "../authority/operator-issue.ts";
import { createOperator, listOperators, revokeOperator } from "../authority/operators.ts";
import { resolveProfile } from "../authority/profiles.ts";
import { type RevocationReason, reinstateDevice, revokeCertificate, revokeDevice } from "../authority/revoke.ts";
import { batchDeviceIds } from "../authority/tokens.ts";
import { parseDuration } from "../config/duration.ts";
import { type Config, profilesOf } from "../config/schema.ts";
import {
  type AuditEventSchema,
  auditView,
  type CertificateSchema,
  type CommandSchema,
  certificateView,
  commandView,
  type DeviceDetailSchema,
  type DeviceIdevidSchema,
  type DeviceSchema,
  deviceDetailView,
  deviceIdevidView,
  deviceView,
  type EnrollmentSchema,
  type ExpiringSchema,
  enrollmentView,
  expiringView,
  type FleetAuditSchema,
  fleetAuditView,
  type MetadataSchema,
  metadataView,
  type OperatorSchema,
  operatorView,
  type TokenSchema,
  tokenView,
} from "../frontends/http/views.ts";
import { type CertificateSummary, readCertificate } from "../pki/certificate.ts";
import { pemCertificates, toPem } from "../pki/pem.ts";
import { webCryptoVerifier } from "../pki/verify.ts";
import type { CommandState, DeviceStatus, OperatorRole, PendingStatus } from "../ports/storage.ts";

export type DeviceView = z.infer<typeof DeviceSchema>;
export type DeviceDetailView = z.infer<typeof DeviceDetailSchema>;
export type CertificateView = z.infer<typeof CertificateSchema>;
export type TokenView = z.infer<typeof TokenSchema>;
export type EnrollmentView = z.infer<typeof EnrollmentSchema>;
export type AuditView = z.infer<typeof AuditEventSchema>;
export type OperatorView = z.infer<typeof OperatorSchema>;
export type CommandView = z.infer<typeof CommandSchema>;
export type MetadataView = z.infer<typeof MetadataSchema>;
export type IdevidBindingView = z.infer<typeof DeviceIdevidSchema>;
export type SignedView = { deviceId: string; serial: string; notAfter: string; certificate: string; chain: string };
export type ExpiringView = z.infer<typeof ExpiringSchema>;
export type FleetAuditView = z.infer<typeof FleetAuditSchema>;
export type CommandBatchView = {
  batchId: string;
  command: string;
  count: number;
  opIds: string[];
};
export interface CommandTargetsInput {
  deviceId?: string;
  profile?: string;
  expiringWithin?: string;
  all?: boolean;
}
export interface FleetAuditInput {
  expiringWithin?: string;
  notSeenFor?: string;
  cloneWindow?: string;
  limit?: number;
}
export interface PageView<T> {
  items: T[];
  nextCursor: string | null;
}
export interface CreatedTokenView {
  deviceId: string;
  profile: string;
  tokenId: string;
  token: string;
  expiresAt: string;
}

export type TokenBatch = { deviceIds: string[] } | { count: number; devicePrefix: string; start: number };

/**
 * What the operator commands of the CLI need, in the operator API's JSON shapes. Two
 * implementations: on a data directory (the core's verbs, acting as `cli`), or against
 * a server's operator API with an operator token (its role rules apply).
 */
export interface FleetClient {
  listDevices(q: {
    status?: DeviceStatus;
    profile?: string;
    gateway?: string;
    expiringWithin?: string;
    after?: string;
    cursor?: string;
    limit?: number;
  }): Promise<PageView<DeviceView>>;
  showDevice(id: string): Promise<DeviceDetailView>;
  /** cascade: a gateway's appliances too. */
  revokeDevice(
    id: string,
    reason: RevocationReason,
    decommission: boolean,
    cascade?: boolean,
  ): Promise<{ device: DeviceView; revokedSerials: string[]; appliances?: string[] }>;
  reinstateDevice(id: string, note?: string): Promise<DeviceView>;
  /**
   * Binds a manufacturer certificate (PEM: the IDevID, then any intermediates; or base64
   * DER) to a device id; `profile`: whose IDevID anchors it must chain to.
   */
  bindIdevid(id: string, certificate: string, profile?: string): Promise<IdevidBindingView>;
  showCertificate(serial: string): Promise<CertificateView>;
  revokeCertificate(serial: string, reason: RevocationReason): Promise<CertificateView>;
  /** `names`: DNS names and IP addresses declared for the (single) device. */
  createTokens(
    batch: TokenBatch,
    opts: { profile?: string; ttl?: string; names?: NamesInput },
  ): Promise<CreatedTokenView[]>;
  listTokens(q: {
    deviceId?: string;
    state?: TokenView["state"];
    cursor?: string;
    limit?: number;
  }): Promise<PageView<TokenView>>;
  revokeToken(id: string): Promise<TokenView>;
  listEnrollments(q: { status?: PendingStatus; cursor?: string; limit?: number }): Promise<PageView<EnrollmentView>>;
  decideEnrollment(id: string, decision: "approve" | "reject", reason?: string): Promise<EnrollmentView>;
  listAudit(q: {
    deviceId?: string;
    actor?: string;
    action?: string;
    cursor?: string;
    limit?: number;
  }): Promise<PageView<AuditView>>;
  verifyAudit(): Promise<ChainReport>;
  createOperator(o: { name: string; role: OperatorRole; ttl?: string }): Promise<OperatorView & { token: string }>;
  listOperators(): Promise<OperatorView[]>;
  revokeOperator(id: string): Promise<OperatorView>;
  sendCommand(command: OperatorCommand, targets: CommandTargetsInput): Promise<CommandBatchView>;
  listCommands(q: {
    deviceId?: string;
    batchId?: string;
    state?: CommandState;
    cursor?: string;
    limit?: number;
  }): Promise<PageView<CommandView>>;
  showCommand(opId: string): Promise<CommandView>;
  /**
   * Runs the fleet audit. Through the server, findings are also published on MQTT; on
   * a data directory they are only returned (no broker is reachable from here).
   */
  auditFleet(o: FleetAuditInput): Promise<FleetAuditView>;
  setMetadata(id: string, change: { owner?: string | null; location?: string | null }): Promise<MetadataView>;
  /** An operator signs an appliance's CSR (PEM or base64 DER). */
  /** `validity`: a duration such as 90d, at most the profile's. */
  signCsr(
    deviceId: string,
    profile: string,
    csr: string,
    o?: { names?: NamesInput; validity?: string },
  ): Promise<SignedView>;
  /** An operator has the server make the appliance's key: the certificate and the key (PKCS#8 PEM). */
  issueWithKey(
    deviceId: string,
    profile: string,
    o?: { names?: NamesInput; validity?: string },
  ): Promise<SignedView & { privateKey: string }>;
  /** One page of the expiring-certificates report (`within`: a duration such as 30d). */
  expiring(q: { within: string; cursor?: string; limit?: number }): Promise<PageView<ExpiringView>>;
  close(): Promise<void>;
}

function signedView(issuer: AuthorityDeps, issued: Issued, profile: string): SignedView {
  return {
    deviceId: issued.deviceId,
    serial: issued.serial,
    notAfter: issued.notAfter.toISOString(),
    certificate: toPem("CERTIFICATE", issued.certificate),
    chain: caFor(issuer, resolveProfile(issuer, profile))
      .chain.map((d) => toPem("CERTIFICATE", d))
      .join(""),
  };
}

const seconds = (d: string | undefined) => (d === undefined ? undefined : parseDuration(d));

/** The options that were given, for a JSON body. */
function definedOf(o: Record<string, unknown> | undefined): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined));
}

/**
 * The manufacturer CA certificates of each IDevID profile, as `serve` loads them (the
 * trust bundle, relative to the data directory); read only by the commands that need them.
 */
function manufacturerAnchors(dataDir: string, config: Config): Map<string, CertificateSummary[]> {
  const out = new Map<string, CertificateSummary[]>();
  for (const [name, profile] of Object.entries(config.profiles)) {
    if (!profile.idevid) continue;
    const file = resolveInDataDir(dataDir, profile.idevid.trustBundle);
    out.set(name, pemCertificates(readFileSync(file, "utf8")).map(readCertificate));
  }
  return out;
}

/** The core's verbs on a data directory, acting as `cli` (an admin). */
export function localFleet(dataDir: string): FleetClient {
  if (!isInitialised(dataDir)) {
    throw new Error(`${dataPaths(dataDir).root} is not an edgeid data directory; run edgeid init`);
  }
  const config = readConfig(dataDir);
  const storage = SqliteStorage.open(dataPaths(dataDir).database);
  const deps = {
    storage,
    config,
    profiles: profilesOf(config),
    clock: systemClock,
    crypto: webcrypto as Crypto,
    digest: nodeDigest,
  };
  const td = config.trustDomain;
  const now = () => deps.clock.now();
  const page = <R, V>(p: { items: R[]; nextCursor: string | null }, view: (r: R) => V) => ({
    items: p.items.map(view),
    nextCursor: p.nextCursor,
  });
  return {
    listDevices: async (q) =>
      page(
        await listDevices(deps, CLI_ACTOR, {
          ...q,
          afterId: q.after,
          expiringWithin: seconds(q.expiringWithin),
        }),
        (d) => deviceView(d, td),
      ),
    showDevice: async (id) => deviceDetailView(await showDevice(deps, CLI_ACTOR, id), td, now()),
    revokeDevice: async (id, reason, decommission, cascade) => {
      const r = await revokeDevice(deps, {
        deviceId: id,
        reason,
        status: decommission ? "decommissioned" : "revoked",
        cascade,
        actor: CLI_ACTOR,
      });
      return {
        device: deviceView(r.device, td),
        revokedSerials: r.serials,
        ...(r.appliances ? { appliances: r.appliances } : {}),
      };
    },
    reinstateDevice: async (id, note) =>
      deviceView(await reinstateDevice(deps, { deviceId: id, note, actor: CLI_ACTOR }), td),
    bindIdevid: async (id, certificate, profile) =>
      deviceIdevidView(
        await bindIdevid(
          {
            ...deps,
            idevidAnchors: manufacturerAnchors(dataDir, config),
            verifier: webCryptoVerifier(deps.crypto.subtle),
          },
          CLI_ACTOR,
          { deviceId: id, ...decodeCertificateText(certificate), ...(profile ? { profile } : {}) },
        ),
      ),
    showCertificate: async (serial) => certificateView(await getCertificate(deps, CLI_ACTOR, serial)),
    revokeCertificate: async (serial, reason) =>
      certificateView(await revokeCertificate(deps, { serial, reason, actor: CLI_ACTOR })),
    createTokens: async (batch, opts) => {
      const deviceIds =
        "deviceIds" in batch ? batch.deviceIds : batchDeviceIds(batch.devicePrefix, batch.start, batch.count);
      const created = await issueTokens(deps, CLI_ACTOR, {
        deviceIds,
        profile: opts.profile,
        ttl: seconds(opts.ttl),
        names: opts.names,
      });
      return created.map((t) => ({ ...t, expiresAt: t.expiresAt.toISOString() }));
    },
    listTokens: async (q) => page(await listTokens(deps, CLI_ACTOR, q), (t) => tokenView(t, now())),
    revokeToken: async (id) => tokenView(await revokeToken(deps, CLI_ACTOR, id), now()),
    listEnrollments: async (q) => page(await listEnrollments(deps, CLI_ACTOR, q), enrollmentView),
    decideEnrollment: async (id, decision, reason) =>
      enrollmentView(await decideEnrollment(deps, { id, decision, reason, actor: CLI_ACTOR })),
    listAudit: async (q) => page(await readAudit(deps, CLI_ACTOR, q), auditView),
    verifyAudit: () => verifyAuditChain(deps, CLI_ACTOR),
    createOperator: async (o) => {
      const r = await createOperator(deps, { name: o.name, role: o.role, ttl: seconds(o.ttl), actor: CLI_ACTOR });
      return { ...operatorView(r.operator), token: r.token };
    },
    listOperators: async () => (await listOperators(deps, CLI_ACTOR)).map(operatorView),
    revokeOperator: async (id) => operatorView(await revokeOperator(deps, id, CLI_ACTOR)),
    // Queued in the database; the server's fleet loop publishes them (its poll finds them).
    sendCommand: (command, t) =>
      issueCommands(deps, CLI_ACTOR, command, { ...t, expiringWithin: seconds(t.expiringWithin) }),
    listCommands: async (q) => page(await listCommands(deps, CLI_ACTOR, q), commandView),
    showCommand: async (opId) => commandView(await getCommand(deps, CLI_ACTOR, opId)),
    auditFleet: async (o) =>
      fleetAuditView(
        await runFleetAudit(deps, CLI_ACTOR, {
          expiringWithin: seconds(o.expiringWithin),
          notSeenFor: seconds(o.notSeenFor) ?? config.fleet.notSeenFor,
          cloneWindow: seconds(o.cloneWindow) ?? config.fleet.cloneWindow,
          cloneTakeovers: config.fleet.cloneTakeovers,
          limit: o.limit,
        }),
      ),
    setMetadata: async (id, change) => metadataView(await setDeviceMetadata(deps, CLI_ACTOR, id, change)),
    // Signing needs the CA key: opened for this command only (the passphrase as for serve).
    signCsr: (deviceId, profile, csr, o) =>
      withIssuer(dataDir, process.env, async (issuer) =>
        signedView(
          issuer,
          await signForDevice(issuer, CLI_ACTOR, {
            deviceId,
            profile,
            csr: decodeCsrText(csr),
            names: o?.names,
            validity: seconds(o?.validity),
          }),
          profile,
        ),
      ),
    issueWithKey: (deviceId, profile, o) =>
      withIssuer(dataDir, process.env, async (issuer) => {
        const issued = await issueWithGeneratedKey(issuer, CLI_ACTOR, {
          deviceId,
          profile,
          names: o?.names,
          validity: seconds(o?.validity),
        });
        return { ...signedView(issuer, issued, profile), privateKey: toPem("PRIVATE KEY", issued.privateKey) };
      }),
    expiring: async (q) =>
      page(
        await expiringReport(deps, CLI_ACTOR, { within: parseDuration(q.within), cursor: q.cursor, limit: q.limit }),
        expiringView,
      ),
    close: () => storage.close(),
  };
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
  const call = <T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> => {
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
    close: async () => undefined,
  };
}

/**
 * Where the operator commands go: `--server URL` (or EDGEID_SERVER) with an operator
 * token from EDGEID_OPERATOR_TOKEN or a file (--token-file, EDGEID_OPERATOR_TOKEN_FILE;
 * never on the command line, where `ps` shows it); otherwise the data directory.
 */
export function fleetFor(
  opts: { data: string; server?: string; tokenFile?: string; cacert?: string },
  env: NodeJS.ProcessEnv,
): FleetClient {
  const server = opts.server ?? env.EDGEID_SERVER;
  if (!server) return localFleet(opts.data);
  const tokenFile = opts.tokenFile ?? env.EDGEID_OPERATOR_TOKEN_FILE;
  const token = env.EDGEID_OPERATOR_TOKEN ?? (tokenFile ? readFileSync(tokenFile, "utf8").trim() : undefined);
  if (!token) {
    throw new Error(
      "--server needs an operator token: EDGEID_OPERATOR_TOKEN, or --token-file / EDGEID_OPERATOR_TOKEN_FILE",
    );
  }
  const cacert = opts.cacert ?? env.EDGEID_CACERT;
  return remoteFleet({ server, token, ca: cacert ? readFileSync(cacert, "utf8") : undefined });
}
