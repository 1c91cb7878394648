import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

export type { ContentCipher, ScepDigest };

import type { ContentCipher, ScepDigest } from "../ports/scep-ra.ts";
import { bytesEqual, compareBytes, encodeOid, sequence, TAG, tlv } from "./der.ts";
import { id_data, id_sha1, id_sha256, id_signedData, pkcs_9_at_challengePassword, rsaEncryption } from "./oids.ts";

/**
 * SCEP messages (RFC 8894 §3): a pkiMessage is a CMS SignedData (RFC 5652 §5) whose
 * signed attributes carry the SCEP fields and whose content is a pkcsPKIEnvelope, a
 * CMS EnvelopedData (RFC 5652 §6) encrypted to the RA. Parsed and built with pkijs;
 * the signed attributes are sorted as DER requires (X.690 §11.6), because verifiers
 * re-encode them before checking the signature.
 *
 * No key operations here: signatures are checked with WebCrypto (`verifyPkiMessage`),
 * key transport and content encryption belong to the RA port (ports/scep-ra.ts).
 */

/** RFC 8894 §3.2.1.2 messageType values. */
export const MESSAGE_TYPE = {
  CertRep: 3,
  RenewalReq: 17,
  PKCSReq: 19,
  CertPoll: 20,
  GetCert: 21,
  GetCRL: 22,
} as const;

/** RFC 8894 §3.2.1.4 failInfo values. */
export const FAIL_INFO = { badAlg: 0, badMessageCheck: 1, badRequest: 2, badTime: 3, badCertId: 4 } as const;
export type FailInfo = keyof typeof FAIL_INFO;

/** RFC 8894 §3.2.1.3 pkiStatus values. */
export const PKI_STATUS = { SUCCESS: 0, FAILURE: 2, PENDING: 3 } as const;
export type PkiStatus = keyof typeof PKI_STATUS;

// RFC 8894 §3.2.1: id-VeriSign 2.16.840.1.113733, id-pki ... .1.9
const id_messageType = "2.16.840.1.113733.1.9.2";
const id_pkiStatus = "2.16.840.1.113733.1.9.3";
const id_failInfo = "2.16.840.1.113733.1.9.4";
const id_senderNonce = "2.16.840.1.113733.1.9.5";
const id_recipientNonce = "2.16.840.1.113733.1.9.6";
const id_transactionID = "2.16.840.1.113733.1.9.7";
/** RFC 8894 §3.2.1.4: id-scep-failInfoText. */
const id_failInfoText = "1.3.6.1.5.5.7.24.1";
const id_contentType = "1.2.840.113549.1.9.3";
const id_messageDigest = "1.2.840.113549.1.9.4";
const id_signingTime = "1.2.840.113549.1.9.5";
const id_envelopedData = "1.2.840.113549.1.7.3";
const id_sha512 = "2.16.840.1.101.3.4.2.3";
const sha1WithRSAEncryption = "1.2.840.113549.1.1.5";
const sha256WithRSAEncryption = "1.2.840.113549.1.1.11";
const sha512WithRSAEncryption = "1.2.840.113549.1.1.13";

export const CIPHER_OIDS: Record<ContentCipher, string> = {
  "aes-128-cbc": "2.16.840.1.101.3.4.1.2",
  "aes-192-cbc": "2.16.840.1.101.3.4.1.22",
  "aes-256-cbc": "2.16.840.1.101.3.4.1.42",
  "des-ede3-cbc": "1.2.840.113549.3.7",
  "des-cbc": "1.3.14.3.2.7",
};
export const CIPHER_KEY_BYTES: Record<ContentCipher, number> = {
  "aes-128-cbc": 16,
  "aes-192-cbc": 24,
  "aes-256-cbc": 32,
  "des-ede3-cbc": 24,
  "des-cbc": 8,
};
export const CIPHER_BLOCK_BYTES: Record<ContentCipher, number> = {
  "aes-128-cbc": 16,
  "aes-192-cbc": 16,
  "aes-256-cbc": 16,
  "des-ede3-cbc": 8,
  "des-cbc": 8,
};

const DIGEST_OIDS: Record<string, ScepDigest> = { [id_sha1]: "SHA-1", [id_sha256]: "SHA-256", [id_sha512]: "SHA-512" };
const DIGEST_OID_OF: Record<ScepDigest, string> = { "SHA-1": id_sha1, "SHA-256": id_sha256, "SHA-512": id_sha512 };
const RSA_SIGNATURE_OF: Record<ScepDigest, string> = {
  "SHA-1": sha1WithRSAEncryption,
  "SHA-256": sha256WithRSAEncryption,
  "SHA-512": sha512WithRSAEncryption,
};

/** A message that cannot be processed, with the failInfo the CertRep carries. */
export class ScepMessageError extends Error {
  override name = "ScepMessageError";
  constructor(
    readonly failInfo: FailInfo,
    /** Stable reason for the audit record. */
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const fail = (failInfo: FailInfo, reason: string, message: string) => new ScepMessageError(failInfo, reason, message);

function arrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer as ArrayBuffer;
}

const u8 = (b: ArrayBuffer | ArrayBufferView): Uint8Array =>
  b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice();

/** pkijs and asn1js throw whatever they meet on damaged input: one error for all of it. */
function parsed<T>(what: string, failInfo: FailInfo, reason: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof ScepMessageError) throw e;
    throw fail(
      failInfo,
      reason,
      `${what} is not valid DER (${e instanceof Error ? e.message : String(e)})`.slice(0, 200),
    );
  }
}

/** The bytes of an OCTET STRING, constructed (BER) or primitive. */
function octets(value: asn1js.OctetString | undefined): Uint8Array {
  if (!value) return new Uint8Array(0);
  if (value.idBlock.isConstructed) {
    const parts = (value.valueBlock.value as asn1js.OctetString[]).map((p) => octets(p));
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  return u8(value.valueBlock.valueHexView);
}

/**
 * Certificates parsed once per byte array: the RA's for every message, a signer's for
 * each of the few times one message needs it (pkijs parsing is the costly part).
 */
const parsedCertificates = new WeakMap<Uint8Array, pkijs.Certificate>();
function certificateOf(der: Uint8Array): pkijs.Certificate {
  let cert = parsedCertificates.get(der);
  if (!cert) {
    cert = pkijs.Certificate.fromBER(arrayBuffer(der));
    parsedCertificates.set(der, cert);
  }
  return cert;
}
function remember(der: Uint8Array, cert: pkijs.Certificate): Uint8Array {
  parsedCertificates.set(der, cert);
  return der;
}

/** What a request's signer says, as read from its SignedData. */
export interface PkiMessage {
  messageType: number;
  transactionId: string;
  senderNonce: Uint8Array;
  /** The signer's certificate (self-signed for PKCSReq, the current one for RenewalReq). */
  signerCertificate: Uint8Array;
  digest: ScepDigest;
  /** The signed attributes as the signature covers them (SET OF, DER tag 0x31). */
  signedAttributes: Uint8Array;
  signature: Uint8Array;
  messageDigest: Uint8Array;
  signingTime?: Date;
  /** The pkcsPKIEnvelope (a ContentInfo of EnvelopedData). */
  content: Uint8Array;
}

/** The fields that travel back in every CertRep, read before anything else can fail. */
export interface ReplyTo {
  transactionId?: string;
  senderNonce?: Uint8Array;
  digest?: ScepDigest;
}

function attributeValue(attrs: pkijs.Attribute[], oid: string): asn1js.AsnType | undefined {
  const found = attrs.filter((a) => a.type === oid);
  if (found.length > 1) throw fail("badRequest", "duplicate_attribute", `attribute ${oid} occurs more than once`);
  const values = found[0]?.values ?? [];
  if (found[0] && values.length !== 1) throw fail("badRequest", "bad_attribute", `attribute ${oid} needs one value`);
  return values[0];
}

function printable(value: asn1js.AsnType | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof asn1js.PrintableString) && !(value instanceof asn1js.Utf8String)) {
    throw fail("badRequest", "bad_attribute", `${name} must be a PrintableString`);
  }
  return value.valueBlock.value;
}

/**
 * Reads a pkiMessage (RFC 8894 §3.2): one signer, SCEP attributes, the envelope as
 * content. `replyTo` is filled as soon as the transaction id and nonce are known, so a
 * refusal after that point still answers the client's transaction.
 */
export function parsePkiMessage(der: Uint8Array, replyTo: ReplyTo = {}): PkiMessage {
  const signed = parsed("pkiMessage", "badRequest", "not_cms", () => {
    const info = pkijs.ContentInfo.fromBER(arrayBuffer(der));
    if (info.contentType !== id_signedData)
      throw fail("badRequest", "not_signed_data", "pkiMessage must be SignedData");
    return new pkijs.SignedData({ schema: info.content });
  });
  const [signer, ...others] = signed.signerInfos;
  if (!signer || others.length > 0) throw fail("badRequest", "signer_count", "pkiMessage needs exactly one signer");
  const attrs = signer.signedAttrs?.attributes ?? [];
  const transactionId = printable(attributeValue(attrs, id_transactionID), "transactionID");
  const nonce = attributeValue(attrs, id_senderNonce);
  if (transactionId !== undefined && /^[\x20-\x7e]{1,128}$/.test(transactionId)) replyTo.transactionId = transactionId;
  if (nonce instanceof asn1js.OctetString && octets(nonce).length === 16) replyTo.senderNonce = octets(nonce);
  const digest = DIGEST_OIDS[signer.digestAlgorithm.algorithmId];
  if (digest) replyTo.digest = digest;
  if (!signer.signedAttrs) throw fail("badRequest", "no_signed_attributes", "pkiMessage has no signed attributes");
  if (!replyTo.transactionId) throw fail("badRequest", "no_transaction_id", "transactionID is missing or malformed");
  if (!replyTo.senderNonce) throw fail("badRequest", "no_sender_nonce", "senderNonce must be 16 octets");
  const messageType = Number(printable(attributeValue(attrs, id_messageType), "messageType"));
  if (!Number.isInteger(messageType)) throw fail("badRequest", "no_message_type", "messageType is missing");
  if (!digest)
    throw fail("badAlg", "digest_unsupported", `digest ${signer.digestAlgorithm.algorithmId} is not supported`);
  const sigAlg = signer.signatureAlgorithm.algorithmId;
  if (sigAlg !== rsaEncryption && sigAlg !== RSA_SIGNATURE_OF[digest]) {
    throw fail("badAlg", "signature_unsupported", `signature algorithm ${sigAlg} is not supported (RSA PKCS #1 v1.5)`);
  }
  const type = attributeValue(attrs, id_contentType);
  if (
    !(type instanceof asn1js.ObjectIdentifier) ||
    type.valueBlock.toString() !== signed.encapContentInfo.eContentType
  ) {
    throw fail("badMessageCheck", "content_type_mismatch", "the contentType attribute does not match the content");
  }
  const md = attributeValue(attrs, id_messageDigest);
  if (!(md instanceof asn1js.OctetString))
    throw fail("badMessageCheck", "no_message_digest", "messageDigest is missing");
  const time = attributeValue(attrs, id_signingTime);
  const signingTime =
    time instanceof asn1js.UTCTime || time instanceof asn1js.GeneralizedTime ? time.toDate() : undefined;

  // The signer's certificate: the one its SignerIdentifier names.
  const certificates = (signed.certificates ?? []).filter(
    (c): c is pkijs.Certificate => c instanceof pkijs.Certificate,
  );
  const sid = signer.sid;
  const cert = certificates.find((c) =>
    sid instanceof pkijs.IssuerAndSerialNumber
      ? sid.serialNumber.isEqual(c.serialNumber) && sid.issuer.isEqual(c.issuer)
      : false,
  );
  if (!cert) throw fail("badCertId", "signer_certificate_missing", "the signer's certificate is not in the message");
  const encodedAttrs = u8(signer.signedAttrs.encodedValue);
  if (encodedAttrs.length === 0) throw fail("badRequest", "no_signed_attributes", "signed attributes are empty");
  const signedAttributes = encodedAttrs.slice();
  signedAttributes[0] = TAG.SET;
  return {
    messageType,
    transactionId: replyTo.transactionId,
    senderNonce: replyTo.senderNonce,
    signerCertificate: remember(u8(cert.toSchema().toBER()), cert),
    digest,
    signedAttributes,
    signature: octets(signer.signature),
    messageDigest: octets(md),
    ...(signingTime ? { signingTime } : {}),
    content: octets(signed.encapContentInfo.eContent),
  };
}

/** The signer's SubjectPublicKeyInfo (DER). */
export function spkiOfCertificate(der: Uint8Array): Uint8Array {
  const cert = certificateOf(der);
  return u8(cert.subjectPublicKeyInfo.toSchema().toBER());
}

/**
 * Checks the message's integrity (RFC 5652 §5.4, §5.6): the messageDigest attribute is
 * the digest of the content, and the signature over the signed attributes verifies
 * with the signer certificate's RSA key. Throws badMessageCheck when it does not.
 */
export async function verifyPkiMessage(msg: PkiMessage, subtle: SubtleCrypto): Promise<void> {
  const contentDigest = new Uint8Array(await subtle.digest(msg.digest, arrayBuffer(msg.content)));
  if (!bytesEqual(contentDigest, msg.messageDigest)) {
    throw fail("badMessageCheck", "digest_mismatch", "messageDigest does not match the content");
  }
  let key: CryptoKey;
  try {
    key = await subtle.importKey(
      "spki",
      arrayBuffer(spkiOfCertificate(msg.signerCertificate)),
      { name: "RSASSA-PKCS1-v1_5", hash: msg.digest },
      false,
      ["verify"],
    );
  } catch {
    throw fail("badAlg", "signer_key_unsupported", "the signer's key is not an RSA key");
  }
  const ok = await subtle.verify(
    "RSASSA-PKCS1-v1_5",
    key,
    arrayBuffer(msg.signature),
    arrayBuffer(msg.signedAttributes),
  );
  if (!ok) throw fail("badMessageCheck", "signature_invalid", "the pkiMessage signature does not verify");
}

/** What an envelope addressed to the RA holds, still encrypted. */
export interface SealedEnvelope {
  encryptedKey: Uint8Array;
  cipher: ContentCipher;
  iv: Uint8Array;
  ciphertext: Uint8Array;
}

/** IssuerAndSerialNumber of a certificate, as pkijs objects (for recipient and signer ids). */
function issuerAndSerial(certificate: Uint8Array): pkijs.IssuerAndSerialNumber {
  const cert = certificateOf(certificate);
  return new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber });
}

/**
 * Reads a pkcsPKIEnvelope (RFC 8894 §3.2.2) and finds the key-transport recipient that
 * is the RA certificate. A message encrypted to another certificate is badMessageCheck;
 * anything but RSA key transport, or a content cipher outside `ciphers`, is badAlg.
 */
export function openEnvelope(der: Uint8Array, ra: Uint8Array, ciphers: readonly ContentCipher[]): SealedEnvelope {
  const enveloped = parsed("pkcsPKIEnvelope", "badRequest", "envelope_not_cms", () => {
    const info = pkijs.ContentInfo.fromBER(arrayBuffer(der));
    if (info.contentType !== id_envelopedData) {
      throw fail("badRequest", "envelope_not_enveloped_data", "pkcsPKIEnvelope must be EnvelopedData");
    }
    return new pkijs.EnvelopedData({ schema: info.content });
  });
  const me = issuerAndSerial(ra);
  const recipient = enveloped.recipientInfos
    .map((r) => r.value)
    .find(
      (v): v is pkijs.KeyTransRecipientInfo =>
        v instanceof pkijs.KeyTransRecipientInfo &&
        v.rid instanceof pkijs.IssuerAndSerialNumber &&
        v.rid.serialNumber.isEqual(me.serialNumber) &&
        v.rid.issuer.isEqual(me.issuer),
    );
  if (!recipient) {
    throw fail("badMessageCheck", "not_encrypted_to_ra", "the pkcsPKIEnvelope is not encrypted to this RA certificate");
  }
  if (recipient.keyEncryptionAlgorithm.algorithmId !== rsaEncryption) {
    throw fail("badAlg", "key_transport_unsupported", "key transport must be rsaEncryption (PKCS #1 v1.5)");
  }
  const eci = enveloped.encryptedContentInfo;
  const oid = eci.contentEncryptionAlgorithm.algorithmId;
  const cipher = (Object.keys(CIPHER_OIDS) as ContentCipher[]).find((c) => CIPHER_OIDS[c] === oid);
  if (!cipher || !ciphers.includes(cipher)) {
    throw fail("badAlg", "cipher_unsupported", `content encryption ${oid} is not offered (${ciphers.join(", ")})`);
  }
  const params = eci.contentEncryptionAlgorithm.algorithmParams;
  const iv = params instanceof asn1js.OctetString ? octets(params) : new Uint8Array(0);
  if (iv.length !== CIPHER_BLOCK_BYTES[cipher])
    throw fail("badRequest", "bad_iv", "the content IV has the wrong length");
  const ciphertext = octets(eci.encryptedContent);
  if (ciphertext.length === 0 || ciphertext.length % CIPHER_BLOCK_BYTES[cipher] !== 0) {
    throw fail("badRequest", "bad_ciphertext", "the encrypted content is not whole cipher blocks");
  }
  return { encryptedKey: octets(recipient.encryptedKey), cipher, iv, ciphertext };
}

/** Whether an envelope has a key-transport recipient that is this certificate (false for anything unreadable). */
export function encryptedTo(der: Uint8Array, certificate: Uint8Array): boolean {
  try {
    openEnvelope(der, certificate, Object.keys(CIPHER_OIDS) as ContentCipher[]);
    return true;
  } catch (e) {
    return !(e instanceof ScepMessageError && e.reason === "not_encrypted_to_ra");
  }
}

/** EnvelopedData (RFC 5652 §6.1) with one RSA key-transport recipient, as a ContentInfo. */
export function buildEnvelope(
  recipient: Uint8Array,
  sealed: { encryptedKey: Uint8Array; cipher: ContentCipher; iv: Uint8Array; ciphertext: Uint8Array },
): Uint8Array {
  const enveloped = new pkijs.EnvelopedData({
    version: 0,
    recipientInfos: [
      new pkijs.RecipientInfo({
        variant: 1,
        value: new pkijs.KeyTransRecipientInfo({
          version: 0,
          rid: issuerAndSerial(recipient),
          keyEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({
            algorithmId: rsaEncryption,
            algorithmParams: new asn1js.Null(),
          }),
          encryptedKey: new asn1js.OctetString({ valueHex: arrayBuffer(sealed.encryptedKey) }),
        }),
      }),
    ],
    encryptedContentInfo: new pkijs.EncryptedContentInfo({
      contentType: id_data,
      contentEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({
        algorithmId: CIPHER_OIDS[sealed.cipher],
        algorithmParams: new asn1js.OctetString({ valueHex: arrayBuffer(sealed.iv) }),
      }),
      encryptedContent: new asn1js.OctetString({ valueHex: arrayBuffer(sealed.ciphertext) }),
      disableSplit: true,
    }),
  });
  const info = new pkijs.ContentInfo({ contentType: id_envelopedData, content: enveloped.toSchema() });
  return u8(info.toSchema().toBER());
}

/** One attribute, DER: SEQUENCE { type, SET { value } }. */
function attribute(oid: string, value: Uint8Array): Uint8Array {
  return sequence(encodeOid(oid), tlv(TAG.SET, value));
}
const printableString = (s: string) => tlv(TAG.PRINTABLE_STRING, new TextEncoder().encode(s));

export interface CertRepFields {
  /** The RA certificate (the signer) and its signing operation. */
  raCertificate: Uint8Array;
  sign: (data: Uint8Array, digest: ScepDigest) => Promise<Uint8Array>;
  digest: ScepDigest;
  status: PkiStatus;
  failInfo?: FailInfo;
  /** RFC 8894 §3.2.1.4 failInfoText: a human-readable reason. */
  failInfoText?: string;
  transactionId?: string;
  /** The request's senderNonce. */
  recipientNonce?: Uint8Array;
  senderNonce: Uint8Array;
  /** SUCCESS: the pkcsPKIEnvelope for the requester. */
  envelope?: Uint8Array;
}

/**
 * A CertRep (RFC 8894 §3.3.2): SignedData signed by the RA, the SCEP attributes
 * signed, the envelope as content on SUCCESS, no content otherwise.
 */
export async function buildCertRep(f: CertRepFields, subtle: SubtleCrypto): Promise<Uint8Array> {
  const content = f.envelope ?? new Uint8Array(0);
  const messageDigest = new Uint8Array(await subtle.digest(f.digest, arrayBuffer(content)));
  const attrs: Uint8Array[] = [
    attribute(id_contentType, encodeOid(id_data)),
    attribute(id_messageDigest, tlv(TAG.OCTET_STRING, messageDigest)),
    attribute(id_messageType, printableString(String(MESSAGE_TYPE.CertRep))),
    attribute(id_pkiStatus, printableString(String(PKI_STATUS[f.status]))),
    attribute(id_senderNonce, tlv(TAG.OCTET_STRING, f.senderNonce)),
  ];
  if (f.transactionId !== undefined) attrs.push(attribute(id_transactionID, printableString(f.transactionId)));
  if (f.recipientNonce) attrs.push(attribute(id_recipientNonce, tlv(TAG.OCTET_STRING, f.recipientNonce)));
  if (f.failInfo !== undefined) attrs.push(attribute(id_failInfo, printableString(String(FAIL_INFO[f.failInfo]))));
  if (f.failInfoText) {
    attrs.push(
      attribute(id_failInfoText, tlv(TAG.UTF8_STRING, new TextEncoder().encode(f.failInfoText.slice(0, 200)))),
    );
  }
  attrs.sort(compareBytes);
  const signedSet = tlv(TAG.SET, ...attrs);
  const signature = await f.sign(signedSet, f.digest);
  // pkijs reads the attributes back from their DER, so they keep the order signed.
  const parsedAttrs = attrs.map((a) => new pkijs.Attribute({ schema: asn1js.fromBER(arrayBuffer(a)).result }));
  const algorithm = (oid: string) =>
    new pkijs.AlgorithmIdentifier({ algorithmId: oid, algorithmParams: new asn1js.Null() });
  const signedData = new pkijs.SignedData({
    version: 1,
    digestAlgorithms: [algorithm(DIGEST_OID_OF[f.digest])],
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: id_data,
      ...(f.envelope ? { eContent: new asn1js.OctetString({ valueHex: arrayBuffer(f.envelope) }) } : {}),
    }),
    certificates: [certificateOf(f.raCertificate)],
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: issuerAndSerial(f.raCertificate),
        digestAlgorithm: algorithm(DIGEST_OID_OF[f.digest]),
        signedAttrs: new pkijs.SignedAndUnsignedAttributes({ type: 0, attributes: parsedAttrs }),
        signatureAlgorithm: algorithm(rsaEncryption),
        signature: new asn1js.OctetString({ valueHex: arrayBuffer(signature) }),
      }),
    ],
  });
  const info = new pkijs.ContentInfo({ contentType: id_signedData, content: signedData.toSchema(true) });
  return u8(info.toSchema().toBER());
}

/** The challengePassword attribute of a PKCS #10 request (RFC 2985 §5.4.1), if any. */
export function challengePasswordOf(csr: Uint8Array): string | undefined {
  const request = parsed("PKCS #10 request", "badRequest", "bad_csr", () =>
    pkijs.CertificationRequest.fromBER(arrayBuffer(csr)),
  );
  const attr = (request.attributes ?? []).find((a) => a.type === pkcs_9_at_challengePassword);
  const value = attr?.values[0];
  if (!value) return undefined;
  if ("valueBlock" in value && typeof (value.valueBlock as { value?: unknown }).value === "string") {
    return (value.valueBlock as { value: string }).value;
  }
  return undefined;
}

/** IssuerAndSubject (CertPoll, RFC 8894 §3.3.3): the subject Name, DER. */
export function certPollSubject(content: Uint8Array): Uint8Array {
  return parsed("IssuerAndSubject", "badRequest", "bad_cert_poll", () => {
    const seq = asn1js.fromBER(arrayBuffer(content));
    if (seq.offset === -1 || !(seq.result instanceof asn1js.Sequence)) throw new Error("not a SEQUENCE");
    const [, subject] = seq.result.valueBlock.value;
    if (!subject) throw new Error("no subject");
    return u8(subject.toBER());
  });
}

/** IssuerAndSerialNumber (GetCRL, GetCert; RFC 8894 §3.3.4): issuer Name DER and serial, hex. */
export function readIssuerAndSerial(content: Uint8Array): { issuer: Uint8Array; serialHex: string } {
  return parsed("IssuerAndSerialNumber", "badRequest", "bad_issuer_and_serial", () => {
    const ias = new pkijs.IssuerAndSerialNumber({ schema: asn1js.fromBER(arrayBuffer(content)).result });
    let serial = u8(ias.serialNumber.valueBlock.valueHexView);
    while (serial.length > 1 && serial[0] === 0) serial = serial.subarray(1);
    return {
      issuer: u8(ias.issuer.toSchema().toBER()),
      serialHex: Array.from(serial, (b) => b.toString(16).padStart(2, "0")).join(""),
    };
  });
}

/** A Name re-encoded through pkijs, to compare with names read the same way. */
export function normalisedName(name: Uint8Array): Uint8Array {
  return u8(pkijs.RelativeDistinguishedNames.fromBER(arrayBuffer(name)).toSchema().toBER());
}

/** The CN of a Name (DER). */
export function commonNameOf(name: Uint8Array): string | undefined {
  const rdn = parsed("Name", "badRequest", "bad_name", () =>
    pkijs.RelativeDistinguishedNames.fromBER(arrayBuffer(name)),
  );
  const cn = rdn.typesAndValues.find((t) => t.type === "2.5.4.3");
  return cn ? String(cn.value.valueBlock.value) : undefined;
}

/** A degenerate certs-and-CRLs-only SignedData carrying one CRL (GetCRL's answer, RFC 8894 §3.3.2). */
export function crlsOnly(crl: Uint8Array): Uint8Array {
  const signedData = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: id_data }),
    crls: [pkijs.CertificateRevocationList.fromBER(arrayBuffer(crl))],
  });
  const info = new pkijs.ContentInfo({ contentType: id_signedData, content: signedData.toSchema(true) });
  return u8(info.toSchema().toBER());
}
