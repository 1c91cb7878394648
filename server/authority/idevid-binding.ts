import { Base64Error, decodeBase64 } from "../pki/base64.ts";
import { pemCertificates } from "../pki/pem.ts";
import { type DeviceRecord, type IdevidBinding, StorageConflictError, type Write } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { AuthorityError, badRequest, conflict, forbidden } from "./errors.ts";
import { DEVICE_ID_RULE, isValidDeviceId } from "./identity.ts";
import { applyGuarded, guard, operatorGuards } from "./preconditions.ts";
import { idevidConfigured, verifyIdevid } from "./provisioners/idevid.ts";

type BindingDeps = Pick<AuthorityDeps, "storage" | "clock" | "profiles" | "idevidAnchors" | "verifier" | "digest">;

export interface BindIdevidRequest {
  deviceId: string;
  /** The manufacturer certificate (IDevID), DER. */
  certificate: Uint8Array;
  /** Intermediate CA certificates between it and the profile's anchors, DER, nearest first. */
  intermediates?: Uint8Array[];
  /** Whose IDevID anchors it must chain to: default the device's profile, else "device". */
  profile?: string;
}

/**
 * An operator binds a manufacturer certificate (IDevID) to a device id ahead of its first
 * boot (`edgeid devices bind-idevid`, POST /api/v1/devices/{id}/idevid). The IDevID then
 * is the one certificate that may enroll as that id: the way to let an IDevID take over
 * an id that exists already (enrolled with a token, say), and the only way in for
 * profiles with `"binding": "pre-bound"`. The device need not exist yet.
 *
 * The certificate must pass the same chain checks as at enrollment, against the
 * profile's anchors, and name this device id in the profile's `deviceIdFrom` field.
 * A binding is never replaced here: a device that has one (even a revoked one) keeps it.
 */
export async function bindIdevid(deps: BindingDeps, actor: Actor, req: BindIdevidRequest): Promise<IdevidBinding> {
  requireRole(actor, "operator");
  const { deviceId } = req;
  if (!isValidDeviceId(deviceId)) throw badRequest("bad_device_id", `device ids are ${DEVICE_ID_RULE}`);
  const existing = await deps.storage.getDevice(deviceId);
  const profileName = req.profile ?? existing?.profile ?? "device";
  const profile = deps.profiles.get(profileName);
  if (!profile) throw badRequest("unknown_profile", `no profile "${profileName.slice(0, 32)}"`);
  if (!idevidConfigured(deps, profile)) {
    throw badRequest(
      "idevid_not_configured",
      `profile ${profile.name} does not accept manufacturer certificates (it has no idevid trust bundle); name one that does with profile`,
    );
  }
  const identity = await verifyIdevid(deps, profile, req.certificate, req.intermediates ?? []).catch((err) => {
    // The refusal a device would get at enrollment; here it is the operator's input that is wrong.
    if (err instanceof AuthorityError && err.code === "forbidden") throw badRequest(err.reason, err.publicMessage);
    throw err;
  });
  if (identity.deviceId !== deviceId) {
    throw badRequest(
      "idevid_device_mismatch",
      `the manufacturer certificate names device ${identity.deviceId} in ${profile.idevid?.deviceIdFrom}, not ${deviceId}`,
    );
  }
  await checkBindable(deps, existing, deviceId, profile.name, identity.fingerprint);

  const now = deps.clock.now();
  const binding: IdevidBinding = {
    deviceId,
    fingerprint: identity.fingerprint,
    subject: identity.subject,
    boundAt: now,
    revokedAt: null,
  };
  const writes: Write[] = [
    // The device as read (or still absent): revoked or enrolled meanwhile, the checks run again.
    guard({ name: "device_unchanged", deviceId, revision: existing?.revision ?? null }),
    ...operatorGuards(actor, now),
    { kind: "bindIdevid", binding },
    auditWrite({
      at: now,
      actor: actor.id,
      action: "device.bind-idevid",
      outcome: "success",
      deviceId,
      remote: actor.remote ?? null,
      detail: { profile: profile.name, fingerprint: identity.fingerprint.slice(0, 16), subject: identity.subject },
    }),
  ];
  try {
    await applyGuarded(deps, writes, async () => {
      await checkBindable(deps, await deps.storage.getDevice(deviceId), deviceId, profile.name, identity.fingerprint);
    });
  } catch (err) {
    if (err instanceof StorageConflictError && err.constraint.includes("idevid")) {
      // A concurrent bind or first-use enrollment won: the fingerprint index, or the device id key.
      throw err.constraint.includes("fingerprint") ? boundElsewhere(null) : alreadyBound(deviceId, false);
    }
    throw err;
  }
  return binding;
}

/** The device may take this binding: not retired, not another profile's, no binding either way. */
async function checkBindable(
  deps: Pick<AuthorityDeps, "storage">,
  existing: DeviceRecord | undefined,
  deviceId: string,
  profile: string,
  fingerprint: string,
): Promise<void> {
  if (existing && (existing.status === "revoked" || existing.status === "decommissioned")) {
    throw forbidden("device_not_enrollable", `device ${deviceId} is ${existing.status}; reinstate it first`);
  }
  if (existing && existing.status === "active" && existing.profile !== profile) {
    throw conflict("wrong_profile", `device ${deviceId} holds a ${existing.profile} certificate`);
  }
  // Hints for a clear answer; the unique indexes on device id and fingerprint decide.
  const bound = await deps.storage.getIdevidBinding(deviceId);
  if (bound) throw alreadyBound(deviceId, bound.revokedAt !== null);
  const elsewhere = await deps.storage.getIdevidBindingByFingerprint(fingerprint);
  if (elsewhere) throw boundElsewhere(elsewhere.deviceId);
}

function alreadyBound(deviceId: string, revoked: boolean): AuthorityError {
  return conflict(
    "idevid_already_bound",
    revoked
      ? `device ${deviceId} is bound to a manufacturer certificate that was revoked with the device; it enrolls with a bootstrap token`
      : `device ${deviceId} is already bound to a manufacturer certificate`,
  );
}

function boundElsewhere(other: string | null): AuthorityError {
  return conflict(
    "idevid_bound_elsewhere",
    `this manufacturer certificate is bound to ${other === null ? "another device" : `device ${other}`}`,
  );
}

/**
 * A manufacturer certificate as operators hand it over: PEM (the IDevID first, then any
 * intermediate CA certificates) or base64 DER of the IDevID alone.
 */
export function decodeCertificateText(text: string): { certificate: Uint8Array; intermediates: Uint8Array[] } {
  let blocks: Uint8Array[];
  try {
    blocks = text.includes("-----BEGIN") ? pemCertificates(text) : [decodeBase64(text)];
  } catch (err) {
    if (err instanceof Base64Error) {
      throw badRequest("certificate_malformed", "the certificate is neither PEM nor base64 DER");
    }
    throw err;
  }
  const [certificate, ...intermediates] = blocks;
  if (!certificate || certificate.length === 0) {
    throw badRequest("certificate_malformed", "no certificate: give a PEM CERTIFICATE block or base64 DER");
  }
  return { certificate, intermediates };
}
