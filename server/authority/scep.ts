import type { Profile } from "../config/schema.ts";
import { parseCsr } from "../pki/csr.ts";
import { bytesEqual, toHex } from "../pki/der.ts";
import { certsOnly } from "../pki/pkcs7.ts";
import {
  buildCertRep,
  buildEnvelope,
  CIPHER_BLOCK_BYTES,
  CIPHER_KEY_BYTES,
  type ContentCipher,
  certPollSubject,
  challengePasswordOf,
  commonNameOf,
  crlsOnly,
  encryptedTo,
  type FailInfo,
  MESSAGE_TYPE,
  normalisedName,
  openEnvelope,
  type PkiMessage,
  type PkiStatus,
  parsePkiMessage,
  type ReplyTo,
  readIssuerAndSerial,
  type ScepDigest,
  ScepMessageError,
  spkiOfCertificate,
  verifyPkiMessage,
} from "../pki/scep.ts";
import type { PeerInfo } from "../ports/client-identity.ts";
import type { ScepRa } from "../ports/scep-ra.ts";
import { StorageConflictError, type TokenRecord } from "../ports/storage.ts";
import type { Caller } from "./caller.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { enroll } from "./enroll.ts";
import { AuthorityError, badRequest, forbidden, notFound, pending } from "./errors.ts";
import { resolveProfile } from "./profiles.ts";
import { SUPERSEDED } from "./provisioners/client-certificate.ts";
import { reenroll } from "./reenroll.ts";

/** The audit actions of SCEP (RFC 8894 §3.3): one per messageType. */
export const SCEP_ACTIONS: Record<number, string> = {
  [MESSAGE_TYPE.PKCSReq]: "scep.pkcsreq",
  [MESSAGE_TYPE.RenewalReq]: "scep.renewalreq",
  [MESSAGE_TYPE.CertPoll]: "scep.certpoll",
  [MESSAGE_TYPE.GetCert]: "scep.getcert",
  [MESSAGE_TYPE.GetCRL]: "scep.getcrl",
};
export const SCEP_UNKNOWN_ACTION = "scep.pkioperation";

/** How long a transactionID/senderNonce pair is remembered, and how far signingTime may be from now. */
export const SCEP_NONCE_RETENTION_S = 7 * 86400;

const AES: readonly ContentCipher[] = ["aes-128-cbc", "aes-192-cbc", "aes-256-cbc"];
const LEGACY: readonly ContentCipher[] = [...AES, "des-ede3-cbc", "des-cbc"];

export interface ScepRequest {
  label?: string;
  message: Uint8Array;
  peer: PeerInfo;
  /** The current CRL of an issuing CA (by name), for GetCRL. */
  crlOf: (caName: string) => Uint8Array | undefined;
}

export interface ScepReply {
  /** The CertRep, DER. */
  body: Uint8Array;
  status: PkiStatus;
  failInfo?: FailInfo;
  /** The audit action the message was (scep.pkcsreq, …). */
  action: string;
  /** A refusal, for the caller to audit (already mapped to failInfo in `body`). */
  refusal?: AuthorityError;
  caller: Caller;
}

/** The profile a SCEP label names; profiles without `scep` are not offered over SCEP. */
export function scepProfile(deps: AuthorityDeps, label: string | undefined): { profile: Profile; ra: ScepRa } {
  const ra = deps.scepRa?.();
  if (!ra) {
    throw notFound("scep_not_configured", "SCEP is not offered: this server has no RSA hierarchy (edgeid ca add-rsa)");
  }
  const profile = resolveProfile(deps, label ?? "device");
  if (!profile.scep) throw notFound("scep_not_offered", `profile ${profile.name} is not offered over SCEP`);
  return { profile, ra };
}

/** RFC 8894 §3.5.2 GetCACaps: what this label's SCEP service does. */
export function scepCapabilities(deps: AuthorityDeps, label: string | undefined): string[] {
  const { profile } = scepProfile(deps, label);
  const caps = ["POSTPKIOperation", "SHA-256", "SHA-512", "AES", "SCEPStandard", "Renewal"];
  if (profile.scep?.legacyCiphers) caps.push("DES3", "SHA-1");
  return caps;
}

/** RFC 8894 §4.2.1.2 GetCACert: the RA certificate, then the label's issuing CA and its chain. */
export function scepCaCertificates(deps: AuthorityDeps, label: string | undefined): Uint8Array[] {
  const { profile, ra } = scepProfile(deps, label);
  const chain = deps.cas.get(profile.issuer)?.chain ?? [];
  return [ra.certificate, ...chain];
}

/** failInfo of a refusal decided by the enrollment verbs (RFC 8894 §3.2.1.4). */
export function failInfoOf(err: AuthorityError): FailInfo {
  switch (err.reason) {
    case "client_certificate_not_yet_valid":
    case "client_certificate_expired":
      return "badTime";
    case "client_certificate_missing":
    case "client_certificate_unknown":
    case SUPERSEDED:
      return "badCertId";
    default:
      return "badRequest";
  }
}

const asRefusal = (e: ScepMessageError) => new AuthorityError("bad_request", e.message, e.reason);

/**
 * One PKIOperation (RFC 8894 §3.3): verify, decrypt, do what the messageType asks
 * through the same verbs as EST, and answer a CertRep signed by the RA — SUCCESS with
 * the certificate (or CRL) encrypted to the requester, PENDING while an operator has
 * to approve, FAILURE with a failInfo for every refusal.
 */
export async function scepOperation(deps: AuthorityDeps, req: ScepRequest): Promise<ScepReply> {
  const { profile, ra } = scepProfile(deps, req.label);
  const legacy = profile.scep?.legacyCiphers === true;
  const caller: Caller = { actor: "anonymous" };
  const replyTo: ReplyTo = {};
  let action = SCEP_UNKNOWN_ACTION;
  let msg: PkiMessage | undefined;
  const senderNonce = deps.crypto.getRandomValues(new Uint8Array(16));
  const digestOf = (): ScepDigest =>
    replyTo.digest && (replyTo.digest !== "SHA-1" || legacy) ? replyTo.digest : "SHA-256";
  const reply = async (status: PkiStatus, extra: { failInfo?: FailInfo; text?: string; envelope?: Uint8Array }) =>
    buildCertRep(
      {
        raCertificate: ra.certificate,
        sign: (data, digest) => ra.sign(data, digest),
        digest: digestOf(),
        status,
        ...(extra.failInfo !== undefined ? { failInfo: extra.failInfo } : {}),
        ...(extra.text ? { failInfoText: extra.text } : {}),
        ...(replyTo.transactionId !== undefined ? { transactionId: replyTo.transactionId } : {}),
        ...(replyTo.senderNonce ? { recipientNonce: replyTo.senderNonce } : {}),
        senderNonce,
        ...(extra.envelope ? { envelope: extra.envelope } : {}),
      },
      deps.crypto.subtle,
    );
  const refuse = async (failInfo: FailInfo, refusal: AuthorityError): Promise<ScepReply> => ({
    body: await reply("FAILURE", { failInfo, text: refusal.publicMessage }),
    status: "FAILURE",
    failInfo,
    action,
    refusal,
    caller,
  });

  let plaintext: Uint8Array;
  let cipher: ContentCipher = "aes-256-cbc";
  try {
    msg = parsePkiMessage(req.message, replyTo);
    action = SCEP_ACTIONS[msg.messageType] ?? SCEP_UNKNOWN_ACTION;
    if (msg.digest === "SHA-1" && !legacy) {
      throw new ScepMessageError("badAlg", "digest_unsupported", `profile ${profile.name} does not accept SHA-1`);
    }
    await verifyPkiMessage(msg, deps.crypto.subtle);
    const now = deps.clock.now().getTime();
    if (msg.signingTime && Math.abs(msg.signingTime.getTime() - now) > SCEP_NONCE_RETENTION_S * 1000) {
      throw new ScepMessageError("badTime", "signing_time", "signingTime is too far from the server's time");
    }
    await rememberNonce(deps, msg);
    // Encrypted to the RA, or to the one it replaced (GetCACert fetched before the renewal).
    const recipient = ra.retired && !encryptedTo(msg.content, ra.certificate) ? ra.retired : ra;
    const sealed = openEnvelope(msg.content, recipient.certificate, legacy ? LEGACY : AES);
    const cek = await recipient.unwrapKey(sealed.encryptedKey, CIPHER_KEY_BYTES[sealed.cipher]);
    const opened = await recipient.decrypt(sealed.cipher, cek, sealed.iv, sealed.ciphertext);
    if (!opened)
      throw new ScepMessageError("badMessageCheck", "cannot_decrypt", "the pkcsPKIEnvelope cannot be decrypted");
    plaintext = opened;
    // The answer goes back encrypted with the request's cipher (what the client can read).
    cipher = sealed.cipher;
  } catch (e) {
    if (e instanceof ScepMessageError) return refuse(e.failInfo, asRefusal(e));
    throw e;
  }

  const sealTo = async (content: Uint8Array): Promise<Uint8Array> => {
    const key = deps.crypto.getRandomValues(new Uint8Array(CIPHER_KEY_BYTES[cipher]));
    const iv = deps.crypto.getRandomValues(new Uint8Array(CIPHER_BLOCK_BYTES[cipher]));
    const signer = (msg as PkiMessage).signerCertificate;
    return buildEnvelope(signer, {
      encryptedKey: await ra.wrapKey(spkiOfCertificate(signer), key),
      cipher,
      iv,
      ciphertext: await ra.encrypt(cipher, key, iv, content),
    });
  };
  const success = async (content: Uint8Array): Promise<ScepReply> => ({
    body: await reply("SUCCESS", { envelope: await sealTo(content) }),
    status: "SUCCESS",
    action,
    caller,
  });

  try {
    switch (msg.messageType) {
      case MESSAGE_TYPE.PKCSReq: {
        const request = await pkcsReq(msg, plaintext);
        const issued = await enroll(
          deps,
          { ...request, label: req.label, peer: localPeer(req.peer), protocol: "scep" },
          caller,
        );
        return await success(certsOnly([issued.certificate]));
      }
      case MESSAGE_TYPE.RenewalReq: {
        const issued = await reenroll(
          deps,
          {
            label: req.label,
            csr: plaintext,
            // The CMS signature proved possession of this certificate's key, as a TLS handshake would.
            peer: { remoteAddress: req.peer.remoteAddress, client: { chain: [msg.signerCertificate] } },
            protocol: "scep",
          },
          caller,
        );
        return await success(certsOnly([issued.certificate]));
      }
      case MESSAGE_TYPE.CertPoll: {
        const approved = await certPoll(deps, msg, plaintext, caller);
        const issued = await enroll(
          deps,
          {
            label: req.label,
            csr: approved.csr,
            approvedToken: approved.token,
            peer: localPeer(req.peer),
            protocol: "scep",
          },
          caller,
        );
        return await success(certsOnly([issued.certificate]));
      }
      case MESSAGE_TYPE.GetCRL: {
        const { issuer } = readIssuerAndSerial(plaintext);
        const wanted = normalisedName(issuer);
        const ca = [...deps.cas.values()].find((c) => bytesEqual(normalisedName(c.subject), wanted));
        const crl = ca ? req.crlOf(ca.name) : undefined;
        if (!ca || !crl) {
          return refuse("badCertId", badRequest("crl_unknown_issuer", "no CRL is published for that issuer"));
        }
        return await success(crlsOnly(crl));
      }
      default:
        return refuse(
          "badRequest",
          badRequest("message_type_unsupported", `messageType ${msg.messageType} is not supported here`),
        );
    }
  } catch (e) {
    if (e instanceof ScepMessageError) return refuse(e.failInfo, asRefusal(e));
    if (e instanceof AuthorityError && e.code === "pending") {
      // Waiting is no answer yet: clients that resend the same message while they wait
      // (RFC 8894 §3.3.3 allows resending the request; Debian's scepclient does) may.
      await deps.storage.apply([
        { kind: "forgetScepNonce", transactionId: msg.transactionId, senderNonce: toHex(msg.senderNonce) },
      ]);
      return { body: await reply("PENDING", {}), status: "PENDING", action, caller };
    }
    if (e instanceof AuthorityError && e.code !== "internal") return refuse(failInfoOf(e), e);
    throw e;
  }
}

/** The peer without a TLS client certificate: a PKCSReq authenticates with its challenge alone. */
function localPeer(peer: PeerInfo): PeerInfo {
  return { remoteAddress: peer.remoteAddress };
}

/**
 * PKCSReq (RFC 8894 §3.3.1): the challengePassword is the device's bootstrap token and
 * the subject CN its device id, presented as EST's HTTP Basic would be. The message is
 * signed with the key the CSR certifies (proof of possession, §2.3).
 */
async function pkcsReq(msg: PkiMessage, csr: Uint8Array) {
  const challenge = challengePasswordOf(csr);
  const parsed = (() => {
    try {
      return parseCsr(csr);
    } catch (e) {
      throw new ScepMessageError(
        "badRequest",
        "bad_csr",
        `the PKCS #10 request cannot be read (${String(e)})`.slice(0, 200),
      );
    }
  })();
  if (!bytesEqual(parsed.spki, spkiOfCertificate(msg.signerCertificate))) {
    throw new ScepMessageError(
      "badMessageCheck",
      "signer_key_mismatch",
      "the message is not signed with the requested key",
    );
  }
  if (!challenge) {
    throw new ScepMessageError(
      "badRequest",
      "challenge_missing",
      "the request has no challengePassword (the bootstrap token)",
    );
  }
  return { csr, credentials: { type: "basic" as const, username: parsed.commonName ?? "", password: challenge } };
}

/**
 * CertPoll (RFC 8894 §3.3.3): a request waiting for approval, found by the CN of the
 * IssuerAndSubject (the device id) and the key that signs the poll (the request's key).
 * Waiting: PENDING; rejected: FAILURE. Approved: the request's CSR and token, for the
 * enrollment verb to issue (which checks the token and the approval again).
 */
async function certPoll(
  deps: AuthorityDeps,
  msg: PkiMessage,
  content: Uint8Array,
  caller: Caller,
): Promise<{ csr: Uint8Array; token: TokenRecord }> {
  const deviceId = commonNameOf(certPollSubject(content)) ?? "";
  caller.deviceId = deviceId.slice(0, 64);
  const keyFingerprint = await sha256Hex(deps.digest, spkiOfCertificate(msg.signerCertificate));
  const found = await deps.storage.findPending(deviceId, keyFingerprint);
  if (!found) throw new ScepMessageError("badCertId", "no_pending_request", "no enrollment request waits for this key");
  if (found.status === "rejected") {
    throw forbidden("enrollment_rejected", "an operator rejected this enrollment request");
  }
  if (found.status !== "approved") {
    throw pending("approval_pending", `enrollment of ${deviceId} waits for an operator's approval`, 60);
  }
  const token = found.tokenId ? await deps.storage.getToken(found.tokenId) : undefined;
  if (!token) throw forbidden("pending_without_token", "this request was not made with a bootstrap token");
  return { csr: found.csr, token };
}

/** Refuses a replayed transactionID/senderNonce pair (RFC 8894 §3.2.1.5), remembered for a week. */
async function rememberNonce(deps: AuthorityDeps, msg: PkiMessage): Promise<void> {
  const at = deps.clock.now();
  try {
    await deps.storage.apply([
      {
        kind: "recordScepNonce",
        transactionId: msg.transactionId,
        senderNonce: toHex(msg.senderNonce),
        at,
        forgetBefore: new Date(at.getTime() - SCEP_NONCE_RETENTION_S * 1000),
      },
    ]);
  } catch (e) {
    if (e instanceof StorageConflictError) {
      throw new ScepMessageError("badRequest", "replayed_nonce", "this transactionID and senderNonce were seen before");
    }
    throw e;
  }
}
