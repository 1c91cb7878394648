import type { Profile } from "../config/schema.ts";
import { base64url } from "../pki/base64.ts";
import { describeKey } from "../pki/keys.ts";
import type { ClientIdentity } from "../ports/client-identity.ts";
import {
  type DeviceRecord,
  type PendingEnrollment,
  StorageConflictError,
  type TokenRecord,
  type Write,
} from "../ports/storage.ts";
import { auditWrite } from "./audit.ts";
import { type Caller, findOwnCertificate, noteCertificate, type TokenCredentials } from "./caller.ts";
import { type CheckedCsr, checkCsr } from "./csr-check.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import type { Authorized, EnrollRequest, Issued } from "./enrollment-request.ts";
import { forbidden, pending, unauthenticated } from "./errors.ts";
import { issuanceWrites, issueDeviceCertificate } from "./issue.ts";
import { generateDeviceKey } from "./keygen.ts";
import { namesDetail } from "./policy/names.ts";
import { applyGuarded, guard } from "./preconditions.ts";
import { resolveProfile } from "./profiles.ts";
import { authorizeAppliance, brokeringGateway } from "./provisioners/gateway.ts";
import { authenticateIdevid, type IdevidIdentity } from "./provisioners/idevid.ts";
import { authenticateToken, checkTokenUsable } from "./provisioners/token.ts";

/** The audit action of a first issuance: by protocol, and for EST by operation. */
function enrollAction(req: EnrollRequest): string {
  if (req.protocol === "scep") return req.approvedToken ? "scep.certpoll" : "scep.pkcsreq";
  return req.serverKeygen ? "est.serverkeygen" : "est.simpleenroll";
}

/** A certificate we issued renews at simplereenroll; say so instead of "untrusted". */
async function refuseOwnCertificate(deps: AuthorityDeps, client: ClientIdentity, caller: Caller): Promise<void> {
  const ours = await findOwnCertificate(deps, client);
  if (ours) {
    noteCertificate(caller, ours);
    throw forbidden("use_simplereenroll", "this client certificate was issued here: renew it at simplereenroll");
  }
}

/** The token of an approved request, polled for over SCEP: still usable, and named in the record. */
function approvedToken(deps: AuthorityDeps, token: TokenRecord, caller: Caller): TokenRecord {
  caller.actor = `token:${token.id}`;
  caller.deviceId = token.deviceId;
  checkTokenUsable(deps, token);
  return token;
}

/** Who is enrolling, as what: a bootstrap token, else a manufacturer certificate. */
async function authorize(deps: AuthorityDeps, req: EnrollRequest, caller: Caller): Promise<Authorized> {
  const labelled = req.label === undefined ? undefined : resolveProfile(deps, req.label);
  let token: TokenRecord | undefined;
  let idevid: IdevidIdentity | undefined;
  let profile: Profile;
  if (req.credentials || req.approvedToken) {
    token = req.approvedToken
      ? approvedToken(deps, req.approvedToken, caller)
      : await authenticateToken(deps, req.credentials as TokenCredentials, caller);
    if (labelled && labelled.name !== token.profile) {
      const path = token.profile === "device" ? "" : `${token.profile}/`;
      throw forbidden(
        "token_wrong_profile",
        `bootstrap token is for profile ${token.profile}; use /.well-known/est/${path}simpleenroll`,
      );
    }
    profile = resolveProfile(deps, token.profile);
  } else if (req.peer.client) {
    profile = labelled ?? resolveProfile(deps, "device");
    const gateway = await brokeringGateway(deps, req.peer.client, caller);
    if (gateway) return authorizeAppliance(deps, req, labelled, gateway);
    await refuseOwnCertificate(deps, req.peer.client, caller);
    idevid = await authenticateIdevid(deps, profile, req.peer.client);
    caller.actor = `idevid:${idevid.fingerprint.slice(0, 16)}`;
    caller.deviceId = idevid.deviceId;
  } else {
    throw unauthenticated(
      "credentials_missing",
      "enrollment needs a bootstrap token (HTTP Basic: device id and token)",
    );
  }
  const deviceId = token?.deviceId ?? (idevid as IdevidIdentity).deviceId;
  const existing = await deps.storage.getDevice(deviceId);
  if (existing && (existing.status === "revoked" || existing.status === "decommissioned")) {
    throw forbidden("device_not_enrollable", `device ${deviceId} is ${existing.status}; an operator must reinstate it`);
  }
  const bindIdevid = idevid ? await checkIdevidClaim(deps, profile, deviceId, existing, idevid) : false;
  return { profile, deviceId, existing, token, idevid, bindIdevid };
}

/**
 * Whether an IDevID may enroll as the device it names; true when this enrollment binds
 * it for the first time. A manufacturer certificate names a device id, but so can any
 * certificate from a trusted manufacturer CA: it proves the id only for an id nobody
 * holds yet (profile `idevid.binding: "first-use"`) or one an operator bound it to
 * (`edgeid devices bind-idevid`). An id that exists without a binding (enrolled with a
 * token, or by an operator) is never claimed by an IDevID on its say-so.
 */
async function checkIdevidClaim(
  deps: AuthorityDeps,
  profile: Profile,
  deviceId: string,
  existing: DeviceRecord | undefined,
  idevid: IdevidIdentity,
): Promise<boolean> {
  const bound = await deps.storage.getIdevidBinding(deviceId);
  if (bound?.revokedAt) {
    throw forbidden("idevid_revoked", `the manufacturer certificate of ${deviceId} was revoked with the device`);
  }
  if (bound && bound.fingerprint !== idevid.fingerprint) {
    throw forbidden("idevid_mismatch", `device ${deviceId} is bound to a different manufacturer certificate`);
  }
  if (bound) return false;
  if (existing) {
    throw forbidden(
      "idevid_not_bound",
      `device ${deviceId} exists and no manufacturer certificate is bound to it; an operator binds one first (edgeid devices bind-idevid)`,
    );
  }
  if (profile.idevid?.binding === "pre-bound") {
    throw forbidden(
      "idevid_not_bound",
      `profile ${profile.name} enrolls only manufacturer certificates an operator bound first (edgeid devices bind-idevid ${deviceId})`,
    );
  }
  return true;
}

/**
 * simpleenroll (RFC 7030 §4.2.1): authorize (token or IDevID) → shape and validate
 * the CSR → sign → record certificate, device, token redemption and audit in one
 * write set. A refused request consumes nothing.
 */
export async function enroll(deps: AuthorityDeps, req: EnrollRequest, caller: Caller): Promise<Issued> {
  const authorized = await authorize(deps, req, caller);
  const { profile, deviceId, existing, token, idevid, bindIdevid, gateway } = authorized;
  if (req.serverKeygen && !profile.serverKeygen) {
    throw forbidden(
      "serverkeygen_not_allowed",
      `profile ${profile.name} does not allow server-side key generation; generate the key and use simpleenroll`,
    );
  }
  // Declared names: the token's (an operator declared them when creating it), else the device's.
  const names = token?.names ?? existing?.names ?? null;
  const csr = await checkCsr(deps, req.csr, deviceId, profile, !req.serverKeygen, names);
  const approved = profile.approval === "manual" ? await awaitApproval(deps, req, caller, authorized, csr) : undefined;
  // Server-side key generation: a new key pair replaces the CSR's key in the certificate.
  const generated = req.serverKeygen ? await generateDeviceKey(deps.crypto, profile) : undefined;
  const key = generated
    ? {
        spki: generated.spki,
        key: describeKey(generated.spki),
        keyFingerprint: await sha256Hex(deps.digest, generated.spki),
      }
    : { spki: csr.spki, key: csr.key, keyFingerprint: csr.keyFingerprint };
  const { der, record } = await issueDeviceCertificate(deps, {
    deviceId,
    profile,
    spki: key.spki,
    key: key.key,
    keyFingerprint: key.keyFingerprint,
    method: gateway ? "gateway" : token ? "token" : "idevid",
    protocol: req.protocol ?? "est",
    bootstrapTokenId: token?.id ?? null,
    // A gateway renewing an appliance: the new certificate follows the current one.
    replacesSerial: gateway ? (existing?.currentSerial ?? null) : null,
    names,
  });
  const now = record.issuedAt;
  // What the decision rested on, re-checked inside the write set (preconditions.ts).
  const writes: Write[] = [guard({ name: "device_unchanged", deviceId, revision: existing?.revision ?? null })];
  if (token) writes.push(guard({ name: "token_usable", tokenId: token.id, at: now }));
  if (idevid && !bindIdevid) {
    writes.push(guard({ name: "idevid_bound", deviceId, fingerprint: idevid.fingerprint }));
  }
  if (gateway) {
    const serial = gateway.certificate.serial;
    writes.push(
      guard({ name: "device_active", deviceId: gateway.device.id }),
      guard({ name: "certificate_valid", serial, at: now }),
      { kind: "markCertificateUsed", serial, at: now },
    );
  }
  if (approved) writes.push(guard({ name: "pending_status", id: approved.id, status: "approved" }));
  writes.push(...issuanceWrites(record, deviceId, profile.name, existing, names));
  if (approved) {
    writes.push({
      kind: "decidePending",
      id: approved.id,
      from: "approved",
      status: "issued",
      at: now,
      by: null,
      reason: null,
      serial: record.serial,
    });
  }
  if (token) writes.push({ kind: "redeemToken", tokenId: token.id, at: now, serial: record.serial });
  // The quota again, inside the transaction: concurrent enrollments cannot both take the last place.
  if (gateway) writes.push({ kind: "guardApplianceQuota", gatewayId: gateway.device.id, max: gateway.maxAppliances });
  if (idevid && bindIdevid) {
    writes.push({
      kind: "bindIdevid",
      binding: { deviceId, fingerprint: idevid.fingerprint, subject: idevid.subject, boundAt: now, revokedAt: null },
    });
  }
  writes.push(
    auditWrite({
      at: now,
      actor: caller.actor,
      action: enrollAction(req),
      outcome: "success",
      deviceId,
      serial: record.serial,
      remote: req.peer.remoteAddress,
      detail: {
        profile: profile.name,
        keyType: record.keyType,
        method: record.method,
        ...(generated ? { keyGeneratedByServer: true } : {}),
        ...namesDetail(names),
        ...(gateway ? { broker: gateway.device.id, brokerSerial: gateway.certificate.serial } : {}),
        notAfter: record.notAfter.toISOString(),
        ...(approved ? { requestId: approved.id, approvedBy: approved.decidedBy } : {}),
      },
    }),
  );
  try {
    await applyGuarded(deps, writes, async () => {
      await authorize(deps, req, caller);
      const decided = approved && (await deps.storage.getPending(approved.id));
      if (decided && decided.status === "rejected") {
        throw forbidden("enrollment_rejected", "an operator rejected this enrollment request");
      }
    });
  } catch (err) {
    if (err instanceof StorageConflictError && err.constraint.includes("bootstrap_token")) {
      throw unauthenticated("token_used", "bootstrap token has already been used; ask an operator for a new one");
    }
    if (err instanceof StorageConflictError && err.constraint === "appliance_quota" && gateway) {
      throw forbidden(
        "appliance_quota_exceeded",
        `gateway ${gateway.device.id} holds the most appliances its profile allows (${gateway.maxAppliances}); revoke one first`,
      );
    }
    if (err instanceof StorageConflictError && err.constraint.includes("idevid")) {
      throw forbidden("idevid_mismatch", "manufacturer certificate is already bound to another device");
    }
    throw err;
  }
  return {
    certificate: der,
    serial: record.serial,
    deviceId,
    notAfter: record.notAfter,
    ...(generated ? { privateKey: generated.pkcs8 } : {}),
  };
}

/**
 * Manual approval (RFC 7030 §4.2.3): the first request is recorded and answered 202
 * with Retry-After; retries of the same request (same device, same key) wait until an
 * operator decides. An approved request proceeds to issuance; a rejected one is refused.
 */
async function awaitApproval(
  deps: AuthorityDeps,
  req: EnrollRequest,
  caller: Caller,
  a: Authorized,
  csr: CheckedCsr,
): Promise<PendingEnrollment> {
  const found = await deps.storage.findPending(a.deviceId, csr.keyFingerprint);
  if (found?.status === "approved") return found;
  if (found?.status === "rejected") {
    const why = found.decisionReason ? `: ${found.decisionReason}` : "";
    throw forbidden("enrollment_rejected", `an operator rejected this enrollment request${why}`);
  }
  const wait = () =>
    pending(
      "approval_pending",
      `enrollment of ${a.deviceId} waits for an operator's approval; retry in ${a.profile.retryAfter} s`,
      a.profile.retryAfter,
    );
  if (found) throw wait();
  const now = deps.clock.now();
  const id = `enr_${base64url(deps.crypto.getRandomValues(new Uint8Array(9)))}`;
  const max = deps.config.limits.pendingPerDevice;
  try {
    await recordPending(deps, req, caller, a, csr, { id, now, max });
  } catch (err) {
    if (err instanceof StorageConflictError && err.constraint === "pending_quota") {
      throw forbidden(
        "pending_quota_exceeded",
        `device ${a.deviceId} already has ${max} enrollment requests waiting for an operator; wait for a decision (or ask an operator to reject them) before sending another key`,
      );
    }
    throw err;
  }
  throw wait();
}

/** The request, its audit record, and the device's quota of waiting requests, in one write set. */
async function recordPending(
  deps: AuthorityDeps,
  req: EnrollRequest,
  caller: Caller,
  a: Authorized,
  csr: CheckedCsr,
  { id, now, max }: { id: string; now: Date; max: number },
): Promise<void> {
  await deps.storage.apply([
    {
      kind: "insertPending",
      pending: {
        id,
        deviceId: a.deviceId,
        profile: a.profile.name,
        csr: req.csr,
        keyFingerprint: csr.keyFingerprint,
        keyType: csr.key.label,
        status: "pending",
        method: a.gateway ? "gateway" : a.token ? "token" : "idevid",
        requestedBy: caller.actor,
        tokenId: a.token?.id ?? null,
        remote: req.peer.remoteAddress,
        createdAt: now,
        updatedAt: now,
        decidedAt: null,
        decidedBy: null,
        decisionReason: null,
        serial: null,
      },
    },
    auditWrite({
      at: now,
      actor: caller.actor,
      action: enrollAction(req),
      outcome: "pending",
      deviceId: a.deviceId,
      remote: req.peer.remoteAddress,
      detail: { requestId: id, profile: a.profile.name, keyType: csr.key.label },
    }),
    { kind: "guardPendingQuota", deviceId: a.deviceId, max },
  ]);
}
