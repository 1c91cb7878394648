import type { z } from "@hono/zod-openapi";
import type { ChainReport } from "../authority/audit-chain.ts";
import type { OperatorCommand } from "../authority/commands.ts";
import type { NamesInput } from "../authority/operator-issue.ts";
import type { RevocationReason } from "../authority/revoke.ts";
import type {
  AuditEventSchema,
  CertificateSchema,
  CommandSchema,
  DeviceDetailSchema,
  DeviceIdevidSchema,
  DeviceSchema,
  EnrollmentSchema,
  ExpiringSchema,
  FleetAuditSchema,
  MetadataSchema,
  OperatorSchema,
  TokenSchema,
  WorkloadEntrySchema,
} from "../frontends/http/views.ts";
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
export type WorkloadEntryView = z.infer<typeof WorkloadEntrySchema>;
export interface RegisterWorkloadInput {
  device?: string;
  profile?: string;
  devicePrefix?: string;
  name: string;
  selectors: string[];
  /** A duration such as 1h. */
  ttl?: string;
  jwtAudiences?: string[];
  fleetWide?: boolean;
}
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

export type TokenBatch =
  | { deviceIds: string[] }
  | { count: number; devicePrefix: string; start: number; width?: number };

/**
 * What the operator commands of the CLI need, in the operator API's JSON shapes. Two
 * implementations: on a data directory (the core's verbs, acting as `cli`), or against
 * a server's operator API with an operator token (its role rules apply).
 * (local-fleet.ts and remote-fleet.ts).
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
  registerWorkload(r: RegisterWorkloadInput): Promise<WorkloadEntryView>;
  /** With `device`: the entries that apply to it. */
  listWorkloads(q: { device?: string; cursor?: string; limit?: number }): Promise<PageView<WorkloadEntryView>>;
  deleteWorkload(id: string): Promise<WorkloadEntryView>;
  close(): Promise<void>;
}
