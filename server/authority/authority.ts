import type { Config, Profile } from "../config/schema.ts";
import { encodeCsrAttrs } from "../pki/csrattrs.ts";
import type { PeerInfo } from "../ports/client-identity.ts";
import { asAuthorityError } from "./audit.ts";
import type { TokenCredentials } from "./caller.ts";
import { type Caller, identify } from "./caller.ts";
import { type AuthorityDeps, caFor } from "./deps.ts";
import { enroll } from "./enroll.ts";
import { type EnrollRequest, type Issued } from "./enrollment-request.ts";
import type { AuthorityError } from "./errors.ts";
import { resolveProfile } from "./profiles.ts";
import { type ReenrollRequest, reenroll } from "./reenroll.ts";
import { Refusals } from "./refusals.ts";
import { Audit } from "./resources/audit.ts";
import { Broker } from "./resources/broker.ts";
import { Certificates } from "./resources/certificates.ts";
import { Commands } from "./resources/commands.ts";
import { Devices } from "./resources/devices.ts";
import { Door } from "./resources/door.ts";
import { Enrollments } from "./resources/enrollments.ts";
import { Fleet } from "./resources/fleet.ts";
import { Operators } from "./resources/operators.ts";
import { Tokens } from "./resources/tokens.ts";
import { TrustBundles } from "./resources/trust-bundles.ts";
import { Workloads } from "./resources/workloads.ts";
import { type ScepReply, type ScepRequest, scepCaCertificates, scepCapabilities, scepOperation } from "./scep.ts";
import { type CreatedToken, type CreateTokensRequest, createTokens } from "./tokens.ts";
import { WorkloadSvids } from "./workload-svids.ts";

export interface RejectedRequest {
  action: string;
  peer: PeerInfo;
  /** Credentials, if they could be read before the refusal. */
  credentials?: TokenCredentials;
  error: AuthorityError;
}

/**
 * The verbs the frontends call. Every refusal is audited here, with whatever the
 * authority had learned about the caller when it refused. Operator actions go through
 * one door per resource; each verb takes the acting operator, checks its role and
 * audits its refusals once.
 */
export class Authority {
  readonly devices: Devices;
  readonly certificates: Certificates;
  readonly tokens: Tokens;
  readonly enrollments: Enrollments;
  readonly commands: Commands;
  readonly audit: Audit;
  readonly operators: Operators;
  readonly fleet: Fleet;
  /** Workload registration entries (operators). */
  readonly workloads: Workloads;
  /** Workload entries and SVIDs for devices (mutual TLS with the device certificate). */
  readonly workloadSvids: WorkloadSvids;
  /** The server's side of the MQTT contract, for the fleet loop. */
  readonly broker: Broker;
  /** The SPIFFE bundle, the JWT-SVID keys and the federated bundles. */
  readonly trustBundles: TrustBundles;
  /** Refused requests: audited within a budget per client, aggregated past it. */
  readonly refusals: Refusals;

  constructor(readonly deps: AuthorityDeps) {
    this.refusals = new Refusals(deps);
    const door = new Door(deps, this.refusals);
    this.devices = new Devices(door);
    this.certificates = new Certificates(door);
    this.tokens = new Tokens(door);
    this.enrollments = new Enrollments(door);
    this.commands = new Commands(door);
    this.audit = new Audit(door);
    this.operators = new Operators(door);
    this.fleet = new Fleet(door);
    this.broker = new Broker(door);
    this.trustBundles = new TrustBundles(deps, this.refusals);
    this.workloads = new Workloads(door);
    this.workloadSvids = new WorkloadSvids(deps, this.refusals, (r) => this.trustBundles.signJwtSvid(r));
  }

  /** The configuration the frontends render by (trust domain, limits, fleet settings). */
  get config(): Config {
    return this.deps.config;
  }

  /** The enrollment profiles by name. */
  get profiles(): ReadonlyMap<string, Profile> {
    return this.deps.profiles;
  }

  /** The authority's clock: what views compare expiry against. */
  now(): Date {
    return this.deps.clock.now();
  }

  /** RFC 7030 §4.1: the label's issuing CA and the chain up to its root. */
  cacerts(label?: string): Uint8Array[] {
    return caFor(this.deps, resolveProfile(this.deps, label ?? "device")).chain;
  }

  /**
   * An issuing CA's certificate and the chain up to its root, by the CA's name (the name
   * in its CRL's URL), for relying parties that fetch it (RFC 5280 §4.2.2.1); undefined
   * for a name that is not an issuing CA here.
   */
  issuingChain(caName: string): Uint8Array[] | undefined {
    return this.deps.cas.get(caName)?.chain;
  }

  /** RFC 7030 §4.5: what the profile wants in a CSR. */
  csrattrs(label?: string): Uint8Array {
    const profile = resolveProfile(this.deps, label ?? "device");
    return encodeCsrAttrs(profile.keyTypes, profile.rsaMinBits);
  }

  async enroll(req: EnrollRequest): Promise<Issued> {
    const caller: Caller = { actor: "anonymous" };
    return this.audited("est.simpleenroll", req.peer.remoteAddress, caller, () => enroll(this.deps, req, caller));
  }

  /** RFC 7030 §4.4: like simpleenroll, but the server makes the key pair. */
  async serverkeygen(req: EnrollRequest): Promise<Issued> {
    const caller: Caller = { actor: "anonymous" };
    return this.audited("est.serverkeygen", req.peer.remoteAddress, caller, () =>
      enroll(this.deps, { ...req, serverKeygen: true }, caller),
    );
  }

  async reenroll(req: ReenrollRequest): Promise<Issued> {
    const caller: Caller = { actor: "anonymous" };
    return this.audited("est.simplereenroll", req.peer.remoteAddress, caller, () => reenroll(this.deps, req, caller));
  }

  /** RFC 8894 §3.5.2 GetCACaps for a label. */
  scepCapabilities(label?: string): string[] {
    return scepCapabilities(this.deps, label);
  }

  /** RFC 8894 §4.2.1.2 GetCACert: the RA certificate and the label's CA chain. */
  scepCaCertificates(label?: string): Uint8Array[] {
    return scepCaCertificates(this.deps, label);
  }

  /**
   * RFC 8894 §3.3 PKIOperation: always a CertRep (FAILURE with a failInfo for a
   * refusal, which is audited here once, like EST's refusals).
   */
  async scepOperation(req: ScepRequest): Promise<ScepReply> {
    const reply = await scepOperation(this.deps, req);
    if (reply.refusal) {
      await this.refusals.record(
        { action: reply.action, remote: req.peer.remoteAddress, ...reply.caller },
        reply.refusal,
      );
    }
    return reply;
  }

  createTokens(req: CreateTokensRequest): Promise<CreatedToken[]> {
    return createTokens(this.deps, req);
  }

  /** For refusals decided before any verb ran (size, media type, encoding). */
  async rejectRequest(r: RejectedRequest): Promise<void> {
    const caller = await identify(this.deps, r.credentials, r.peer.client);
    await this.refusals.record({ action: r.action, remote: r.peer.remoteAddress, ...caller }, r.error);
  }

  private async audited<T>(action: string, remote: string, caller: Caller, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      const e = asAuthorityError(err);
      // A request waiting for approval is not a refusal; it was recorded when it arrived.
      if (e.code !== "pending") await this.refusals.record({ action, remote, ...caller }, e);
      throw e;
    }
  }
}
