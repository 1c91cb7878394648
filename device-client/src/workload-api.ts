/**
 * The SPIFFE Workload API (proto/workload.proto) over a Unix domain socket.
 *
 * Connections are accepted here, on a net.Server: the peer's credentials (SO_PEERCRED,
 * the native addon) and its process start time are read at accept, then the connection
 * is handed to a grpc-js Server of its own (`createConnectionInjector`) whose handlers
 * know that connection's caller. Every call is refused without the `workload.spiffe.io:
 * true` metadata (InvalidArgument); the caller is attested per call (selectors from
 * /proc), and its start time is checked again just before each answer, so a pid reused
 * by another process never gets this caller's SVIDs; a caller matching no entry gets
 * PermissionDenied. Streams push the full set again after every change.
 */
import { once } from "node:events";
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server as NetServer, type Socket } from "node:net";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createLocalJWKSet, decodeJwt, jwtVerify } from "jose";
import type { AgentDeps } from "./deps.ts";
import { Attestor, type Caller, loadPeerCred, matchesEntry, type PeerCred } from "./workload-attestor.ts";
import { type SvidManager, type WorkloadEntry, WorkloadError } from "./workload-svids.ts";

export const DEFAULT_WORKLOAD_SOCKET = "/run/edgeid-agent/workload.sock";

export const PROTO_PATH = fileURLToPath(new URL("../proto/workload.proto", import.meta.url));

/** What the API serves from: the SVID manager (or anything shaped like it). */
export type WorkloadSource = Pick<
  SvidManager,
  "trustDomain" | "entries" | "svid" | "x509Bundle" | "federatedX509" | "jwtBundles" | "onChange" | "jwtSvid"
>;

export interface WorkloadApiOptions {
  socketPath: string;
  /** Mode of the socket file (default 0666: any local process may ask; attestation decides). */
  socketMode?: number;
  source: WorkloadSource;
  log: AgentDeps["log"];
  /** The agent's time (JWT-SVID validation). */
  now: () => number;
  attestor?: Attestor;
  /** SO_PEERCRED; by default the native addon. An Error (the addon did not load) refuses to start. */
  peerCred?: ((fd: number) => PeerCred) | Error;
}

class CallError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

interface Connection {
  cred: PeerCred;
  startTime: string;
}

type StructValue =
  | { nullValue: 0 }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: { fields: Record<string, StructValue> } }
  | { listValue: { values: StructValue[] } };

/** A JSON value as a google.protobuf.Value (protobufjs's built-in struct.proto names its fields in camel case). */
export function toValue(v: unknown): StructValue {
  if (v === null || v === undefined) return { nullValue: 0 };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v as Record<string, unknown>) };
}

export const toStruct = (o: Record<string, unknown>) => ({
  fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toValue(v)])),
});

const concat = (parts: readonly Uint8Array[]) => Buffer.concat(parts.map((p) => Buffer.from(p)));
const tdId = (td: string) => `spiffe://${td}`;

function loadService(): grpc.ServiceDefinition {
  const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, enums: Number, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    SpiffeWorkloadAPI: { service: grpc.ServiceDefinition };
  };
  return pkg.SpiffeWorkloadAPI.service;
}

export class WorkloadApi {
  private readonly attestor: Attestor;
  private readonly peerCred: (fd: number) => PeerCred;
  private readonly service: grpc.ServiceDefinition;
  private server: NetServer | undefined;
  private readonly connections = new Map<Socket, grpc.Server>();

  constructor(private readonly o: WorkloadApiOptions) {
    this.attestor = o.attestor ?? new Attestor();
    const loaded = o.peerCred ?? loadPeerCred();
    // Fail closed: without peer credentials no caller can be attested.
    if (loaded instanceof Error) throw new Error(`the Workload API cannot start: ${loaded.message}`);
    this.peerCred = loaded;
    this.service = loadService();
  }

  /** Open connections (tests check that closed ones are released). */
  get connectionCount(): number {
    return this.connections.size;
  }

  async start(): Promise<void> {
    const path = this.o.socketPath;
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    await removeStaleSocket(path);
    const server = createServer((socket) => void this.accept(socket));
    server.listen(path);
    await once(server, "listening");
    chmodSync(path, this.o.socketMode ?? 0o666);
    this.server = server;
    this.o.log("info", "Workload API listening", { socket: path });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const [socket, grpcServer] of this.connections) {
      grpcServer.forceShutdown();
      socket.destroy();
    }
    this.connections.clear();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private async accept(socket: Socket): Promise<void> {
    socket.pause();
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let conn: Connection;
    try {
      if (typeof fd !== "number" || fd < 0) throw new Error("no file descriptor for the connection");
      const cred = this.peerCred(fd);
      conn = { cred, startTime: await this.attestor.startTime(cred.pid) };
    } catch (err) {
      this.o.log("warn", "Workload API connection refused: caller not identified", { error: (err as Error).message });
      socket.destroy();
      return;
    }
    if (socket.destroyed) return;
    const grpcServer = new grpc.Server({ "grpc.enable_channelz": 0 });
    grpcServer.addService(this.service, this.handlers(conn));
    this.connections.set(socket, grpcServer);
    socket.once("close", () => {
      grpcServer.forceShutdown();
      this.connections.delete(socket);
    });
    grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure()).injectConnection(socket);
    socket.resume();
  }

  /** The caller, attested now; refused when it is gone or its pid was reused. */
  private async caller(conn: Connection, metadata: grpc.Metadata): Promise<Caller> {
    const header = metadata.get("workload.spiffe.io");
    if (header.length !== 1 || header[0] !== "true")
      throw new CallError(grpc.status.INVALID_ARGUMENT, "security header missing from request");
    try {
      return await this.attestor.attest(conn.cred, conn.startTime);
    } catch (err) {
      throw new CallError(grpc.status.PERMISSION_DENIED, `caller not attested: ${(err as Error).message}`);
    }
  }

  /** Just before an answer: still the process that connected. */
  private async stillCaller(conn: Connection): Promise<void> {
    if (!(await this.attestor.stillSame(conn.cred.pid, conn.startTime)))
      throw new CallError(grpc.status.PERMISSION_DENIED, "caller changed (process exited or pid reused)");
  }

  private matched(caller: Caller): WorkloadEntry[] {
    const entries = this.o.source.entries.filter((e) => matchesEntry(caller.selectors, e.selectors));
    if (entries.length === 0) throw new CallError(grpc.status.PERMISSION_DENIED, "no identity issued");
    return entries;
  }

  private x509Response(entries: WorkloadEntry[]) {
    const s = this.o.source;
    const bundle = concat(s.x509Bundle);
    const svids = entries.flatMap((e) => {
      const svid = s.svid(e.id);
      if (!svid) return [];
      return [
        {
          spiffe_id: svid.spiffeId,
          x509_svid: concat(svid.chain),
          x509_svid_key: svid.key.export({ type: "pkcs8", format: "der" }),
          bundle,
          hint: "",
        },
      ];
    });
    const federated_bundles: Record<string, Buffer> = {};
    for (const [td, certs] of s.federatedX509) if (certs.length > 0) federated_bundles[tdId(td)] = concat(certs);
    return { svids, crl: [], federated_bundles };
  }

  private x509Bundles() {
    const s = this.o.source;
    const bundles: Record<string, Buffer> = { [tdId(s.trustDomain)]: concat(s.x509Bundle) };
    for (const [td, certs] of s.federatedX509) if (certs.length > 0) bundles[tdId(td)] = concat(certs);
    return { crl: [], bundles };
  }

  private jwtBundles() {
    const bundles: Record<string, Buffer> = {};
    for (const [td, jwks] of this.o.source.jwtBundles) bundles[tdId(td)] = Buffer.from(JSON.stringify(jwks));
    return { bundles };
  }

  /**
   * A server stream: `build` makes the full answer for the caller (attested anew each
   * time); sent at once and after every change of the source, skipped when identical.
   * `build` returning undefined waits (SVIDs not issued yet); a CallError ends the stream.
   */
  private stream<Req, Res>(
    conn: Connection,
    call: grpc.ServerWritableStream<Req, Res>,
    build: (caller: Caller) => Res | undefined,
  ): void {
    let last = "";
    let chain = Promise.resolve();
    let ended = false;
    const end = () => {
      ended = true;
      unsubscribe();
    };
    const push = () => {
      chain = chain.then(async () => {
        if (ended) return;
        try {
          const caller = await this.caller(conn, call.metadata);
          const res = build(caller);
          if (res === undefined) return;
          const key = JSON.stringify(res, (_k, v) =>
            v && typeof v === "object" && v.type === "Buffer" ? Buffer.from(v.data).toString("base64") : v,
          );
          if (key === last) return;
          await this.stillCaller(conn);
          if (ended) return;
          last = key;
          call.write(res);
        } catch (err) {
          end();
          call.emit("error", toServiceError(err));
        }
      });
    };
    const unsubscribe = this.o.source.onChange(push);
    call.on("cancelled", end);
    call.on("close", end);
    call.on("error", end);
    push();
  }

  private handlers(conn: Connection): grpc.UntypedServiceImplementation {
    return {
      FetchX509SVID: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        let had = false;
        this.stream(conn, call, (caller) => {
          const res = this.x509Response(this.matched(caller));
          if (res.svids.length === 0) {
            // Entries match, but none has an SVID yet (first issuance): wait; one that had
            // SVIDs and lost them all is told so, as SPIRE does.
            if (had) throw new CallError(grpc.status.PERMISSION_DENIED, "no identity issued");
            return undefined;
          }
          had = true;
          return res;
        });
      },
      FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        this.stream(conn, call, (caller) => {
          this.matched(caller);
          return this.o.source.x509Bundle.length > 0 ? this.x509Bundles() : undefined;
        });
      },
      FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        this.stream(conn, call, (caller) => {
          this.matched(caller);
          return this.o.source.jwtBundles.size > 0 ? this.jwtBundles() : undefined;
        });
      },
      FetchJWTSVID: (
        call: grpc.ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        void (async () => {
          const caller = await this.caller(conn, call.metadata);
          const audience = call.request.audience ?? [];
          if (audience.length === 0 || audience.some((a) => a === ""))
            throw new CallError(grpc.status.INVALID_ARGUMENT, "audience must be specified");
          let entries = this.matched(caller);
          if (call.request.spiffe_id) entries = entries.filter((e) => e.spiffeId === call.request.spiffe_id);
          entries = entries.filter((e) => audience.every((a) => e.jwtAudiences.includes(a)));
          if (entries.length === 0)
            throw new CallError(grpc.status.PERMISSION_DENIED, "no identity issued for that SPIFFE ID and audience");
          const svids = [];
          for (const e of entries) {
            try {
              const j = await this.o.source.jwtSvid(e, audience);
              svids.push({ spiffe_id: j.spiffeId, svid: j.token, hint: "" });
            } catch (err) {
              if (err instanceof WorkloadError)
                throw new CallError(
                  err.kind === "denied" ? grpc.status.PERMISSION_DENIED : grpc.status.UNAVAILABLE,
                  err.message,
                );
              throw err;
            }
          }
          // The entries may have changed while the server answered: only current ones.
          const current = new Set(this.o.source.entries.map((e) => e.spiffeId));
          const still = svids.filter((s) => current.has(s.spiffe_id));
          if (still.length === 0) throw new CallError(grpc.status.PERMISSION_DENIED, "no identity issued");
          await this.stillCaller(conn);
          return { svids: still };
        })().then(
          (res) => callback(null, res),
          (err) => callback(toServiceError(err)),
        );
      },
      ValidateJWTSVID: (
        call: grpc.ServerUnaryCall<{ audience: string; svid: string }, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        void (async () => {
          const caller = await this.caller(conn, call.metadata);
          this.matched(caller);
          const { audience, svid } = call.request;
          if (!audience) throw new CallError(grpc.status.INVALID_ARGUMENT, "audience must be specified");
          if (!svid) throw new CallError(grpc.status.INVALID_ARGUMENT, "svid must be specified");
          const claims = await this.validate(svid, audience);
          await this.stillCaller(conn);
          return { spiffe_id: claims.sub, claims: toStruct(claims) };
        })().then(
          (res) => callback(null, res),
          (err) => callback(toServiceError(err)),
        );
      },
    };
  }

  /** JWT-SVID validation (SPIFFE JWT-SVID §4): the bundle of the subject's trust domain, aud, exp. */
  private async validate(token: string, audience: string): Promise<Record<string, unknown> & { sub: string }> {
    const bad = (m: string) => new CallError(grpc.status.INVALID_ARGUMENT, m);
    let sub: unknown;
    try {
      sub = decodeJwt(token).sub;
    } catch (err) {
      throw bad(`malformed JWT-SVID: ${(err as Error).message}`);
    }
    const m = typeof sub === "string" ? /^spiffe:\/\/([a-z0-9._-]+)(\/[^?#]*)?$/.exec(sub) : null;
    if (!m?.[2] || m[2] === "/") throw bad("the token's sub is not a SPIFFE ID of a workload");
    const jwks = this.o.source.jwtBundles.get(m[1] as string);
    if (!jwks || jwks.keys.length === 0) throw bad(`no JWT bundle for trust domain ${m[1]}`);
    try {
      // The bundle holds only jwt-svid keys; jose takes a key whose `use` is "sig" or unset.
      const keys = jwks.keys.map(({ use: _use, ...k }) => k);
      const { payload } = await jwtVerify(
        token,
        createLocalJWKSet({ keys } as Parameters<typeof createLocalJWKSet>[0]),
        {
          audience,
          algorithms: ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
          requiredClaims: ["sub", "aud", "exp"],
          currentDate: new Date(this.o.now()),
        },
      );
      return payload as Record<string, unknown> & { sub: string };
    } catch (err) {
      throw bad(`JWT-SVID not valid: ${(err as Error).message}`);
    }
  }
}

function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof CallError) return { code: err.code, details: err.message };
  return { code: grpc.status.INTERNAL, details: (err as Error).message };
}

/**
 * A socket left by an agent that stopped uncleanly is removed; a path that is not a
 * socket is never removed, and one that still answers (another agent serves it) is refused.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket: not removed`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new Error(`${path} is served by another process`);
  unlinkSync(path);
}
