import { formatDuration } from "../config/duration.ts";
import type { Profile } from "../config/schema.ts";
import { describeKey, type KeyDescription } from "../pki/keys.ts";
import type { DeclaredNames, DeviceRecord, Write } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import { checkCsr } from "./csr-check.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { type Issued } from "./enrollment-request.ts";
import { badRequest, conflict, forbidden } from "./errors.ts";
import { DEVICE_ID_RULE, isValidDeviceId } from "./identity.ts";
import { issuanceWrites, issueDeviceCertificate } from "./issue.ts";
import { generateDeviceKey } from "./keygen.ts";
import { declareNames, namesDetail, serverNames } from "./policy/names.ts";
import { applyGuarded, guard, operatorGuards } from "./preconditions.ts";
import { resolveProfile } from "./profiles.ts";

/**
 * An operator signs an appliance's CSR (appliances with no EST client: `edgeid legacy
 * sign`, POST /api/v1/devices/{id}/certificates). The same checks as enrollment — the
 * profile's key policy, names decided by the server, one key per identity — with the
 * operator's role instead of a bootstrap token. The device is created (active) if new.
 */
export async function signForDevice(
  deps: AuthorityDeps,
  actor: Actor,
  req: { deviceId: string; profile: string; csr: Uint8Array } & IssueOptions,
): Promise<Issued> {
  const target = await checkTarget(deps, actor, req.deviceId, req.profile, req);
  const csr = await checkCsr(deps, req.csr, req.deviceId, target.profile, true, target.names);
  return issueFor(deps, actor, target, csr, "certificate.sign", {}, () =>
    checkTarget(deps, actor, req.deviceId, req.profile, req),
  );
}

/**
 * An operator issues a certificate with a key the server makes (`edgeid legacy issue`,
 * for appliances that can make neither a key nor a CSR); only on profiles that allow
 * server-side key generation. The private key is returned, never stored.
 */
export async function issueWithGeneratedKey(
  deps: AuthorityDeps,
  actor: Actor,
  req: { deviceId: string; profile: string } & IssueOptions,
): Promise<Issued & { privateKey: Uint8Array }> {
  const target = await checkTarget(deps, actor, req.deviceId, req.profile, req);
  if (!target.profile.serverKeygen) {
    throw forbidden(
      "serverkeygen_not_allowed",
      `profile ${target.profile.name} does not allow server-side key generation ("serverKeygen": true)`,
    );
  }
  const generated = await generateDeviceKey(deps.crypto, target.profile);
  const key = {
    spki: generated.spki,
    key: describeKey(generated.spki),
    keyFingerprint: await sha256Hex(deps.digest, generated.spki),
  };
  const issued = await issueFor(deps, actor, target, key, "certificate.issue", { keyGeneratedByServer: true }, () =>
    checkTarget(deps, actor, req.deviceId, req.profile, req),
  );
  return { ...issued, privateKey: generated.pkcs8 };
}

/** DNS names and IP addresses the operator declares with the issuance (they replace the device's). */
export interface NamesInput {
  dns?: string[];
  ip?: string[];
}

/** What an operator may set on an issuance besides the profile. */
export interface IssueOptions {
  names?: NamesInput;
  /** Seconds: a shorter life than the profile's validity, which is the maximum. */
  validity?: number;
}

interface Target {
  profile: Profile;
  existing: DeviceRecord | undefined;
  deviceId: string;
  names: DeclaredNames | null;
  validity: number | undefined;
}

async function checkTarget(
  deps: AuthorityDeps,
  actor: Actor,
  deviceId: string,
  profileName: string,
  options: IssueOptions,
): Promise<Target> {
  requireRole(actor, "operator");
  if (!isValidDeviceId(deviceId)) throw badRequest("bad_device_id", `device ids are ${DEVICE_ID_RULE}`);
  if (!deps.profiles.has(profileName)) throw badRequest("unknown_profile", `no profile "${profileName.slice(0, 32)}"`);
  const profile = resolveProfile(deps, profileName);
  const existing = await deps.storage.getDevice(deviceId);
  if (existing && (existing.status === "revoked" || existing.status === "decommissioned")) {
    throw forbidden("device_not_enrollable", `device ${deviceId} is ${existing.status}; reinstate it first`);
  }
  if (existing && existing.status === "active" && existing.profile !== profile.name) {
    throw conflict("wrong_profile", `device ${deviceId} holds a ${existing.profile} certificate`);
  }
  if (options.validity !== undefined && !(options.validity >= 60 && options.validity <= profile.validity)) {
    throw badRequest(
      "validity_out_of_range",
      `validity must be between 1m and the profile's ${formatDuration(profile.validity)}`,
    );
  }
  const declared = options.names
    ? declareNames(options.names, deps.config.limits.maxRequestedNames, serverNames(deps))
    : undefined;
  return { profile, existing, deviceId, names: declared ?? existing?.names ?? null, validity: options.validity };
}

async function issueFor(
  deps: AuthorityDeps,
  actor: Actor,
  { profile, existing, deviceId, names, validity }: Target,
  key: { spki: Uint8Array; key: KeyDescription; keyFingerprint: string },
  action: string,
  detail: Record<string, boolean>,
  /** The target's checks again, on fresh reads, when a precondition failed at write time. */
  recheck: () => Promise<unknown>,
): Promise<Issued> {
  const { der, record } = await issueDeviceCertificate(deps, {
    deviceId,
    profile,
    spki: key.spki,
    key: key.key,
    keyFingerprint: key.keyFingerprint,
    method: "operator",
    replacesSerial: existing?.currentSerial ?? null,
    names,
    ...(validity !== undefined ? { validity } : {}),
  });
  const now = record.issuedAt;
  const writes: Write[] = [
    guard({ name: "device_unchanged", deviceId, revision: existing?.revision ?? null }),
    ...operatorGuards(actor, now),
    ...issuanceWrites(record, deviceId, profile.name, existing, names),
    auditWrite({
      at: now,
      actor: actor.id,
      action,
      outcome: "success",
      deviceId,
      serial: record.serial,
      remote: actor.remote ?? null,
      detail: {
        profile: profile.name,
        keyType: record.keyType,
        notAfter: record.notAfter.toISOString(),
        ...namesDetail(names),
        ...detail,
      },
    }),
  ];
  await applyGuarded(deps, writes, async () => {
    await recheck();
  });
  return { certificate: der, serial: record.serial, deviceId, notAfter: record.notAfter };
}

/** A CSR as operators hand it over: PEM (CERTIFICATE REQUEST) or base64 DER. */
export function decodeCsrText(text: string): Uint8Array {
  const pem = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(
    text,
  );
  const b64 = (pem ? pem[1] : text)?.replace(/\s+/g, "") ?? "";
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw badRequest("csr_malformed", "the CSR is neither PEM nor base64 DER");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}
