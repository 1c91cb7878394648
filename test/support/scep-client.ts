/**
 * A SCEP client for tests, built on pkijs and node:crypto directly (not on the server's
 * builders): pkiMessages (PKCSReq, RenewalReq, CertPoll, GetCRL) signed by pkijs's own
 * SignedData.sign, envelopes encrypted to a chosen certificate, and CertReps read back
 * with the signature checked by pkijs and the envelope opened with the device key.
 * Also the request builder of the SCEP benchmark (bench/scep.ts).
 */
// @peculiar/x509 needs the reflect polyfill; the benchmark has no test setup file that loads it.
import "reflect-metadata";
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  webcrypto,
} from "node:crypto";
import * as x509 from "@peculiar/x509";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

// No test framework here: `npm run bench` builds its SCEP requests with this client too.
const crypto = webcrypto as Crypto;
x509.cryptoProvider.set(crypto);

const OID = {
  messageType: "2.16.840.1.113733.1.9.2",
  pkiStatus: "2.16.840.1.113733.1.9.3",
  failInfo: "2.16.840.1.113733.1.9.4",
  senderNonce: "2.16.840.1.113733.1.9.5",
  recipientNonce: "2.16.840.1.113733.1.9.6",
  transactionID: "2.16.840.1.113733.1.9.7",
  contentType: "1.2.840.113549.1.9.3",
  messageDigest: "1.2.840.113549.1.9.4",
  signingTime: "1.2.840.113549.1.9.5",
  data: "1.2.840.113549.1.7.1",
  signedData: "1.2.840.113549.1.7.2",
  envelopedData: "1.2.840.113549.1.7.3",
  rsaEncryption: "1.2.840.113549.1.1.1",
};
const CIPHERS = {
  "aes-128-cbc": { oid: "2.16.840.1.101.3.4.1.2", key: 16, iv: 16 },
  "aes-256-cbc": { oid: "2.16.840.1.101.3.4.1.42", key: 32, iv: 16 },
  "des-ede3-cbc": { oid: "1.2.840.113549.3.7", key: 24, iv: 8 },
  "des-cbc": { oid: "1.3.14.3.2.7", key: 8, iv: 8 },
} as const;
export type TestCipher = keyof typeof CIPHERS;

export const MESSAGE = { PKCSReq: 19, RenewalReq: 17, CertPoll: 20, GetCert: 21, GetCRL: 22 } as const;
export const FAIL = { badAlg: 0, badMessageCheck: 1, badRequest: 2, badTime: 3, badCertId: 4 } as const;

const buf = (b: Uint8Array): ArrayBuffer => b.slice().buffer as ArrayBuffer;

/** A device's RSA key (WebCrypto for signing, node:crypto for decryption) and its current certificate. */
export interface ScepDevice {
  keys: CryptoKeyPair;
  privateKey: KeyObject;
  /** Self-signed at first (RFC 8894 §2.3), then the certificate the CA issued. */
  certificate: Uint8Array;
}

export async function newScepDevice(bits = 2048): Promise<ScepDevice> {
  const alg = {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: bits,
    publicExponent: Uint8Array.of(1, 0, 1),
    hash: "SHA-256",
  };
  const keys = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const self = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=SCEP SIGNER",
    notBefore: new Date("2020-01-01T00:00:00Z"),
    notAfter: new Date("2040-01-01T00:00:00Z"),
    keys,
    signingAlgorithm: alg,
  });
  return {
    keys,
    privateKey: createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" }),
    certificate: new Uint8Array(self.rawData),
  };
}

/** A PKCS #10 request for `cn` with the challengePassword (the bootstrap token). */
export async function scepCsr(device: ScepDevice, cn: string, challenge?: string): Promise<Uint8Array> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}, O=scep-client`,
    keys: device.keys,
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    attributes: challenge === undefined ? [] : [new x509.ChallengePasswordAttribute(challenge)],
  });
  return new Uint8Array(csr.rawData);
}

/** EnvelopedData to `recipient` (RSA key transport, PKCS #1 v1.5), as a ContentInfo. */
export function envelope(content: Uint8Array, recipient: Uint8Array, cipher: TestCipher = "aes-256-cbc"): Uint8Array {
  const c = CIPHERS[cipher];
  const key = randomBytes(c.key);
  const iv = randomBytes(c.iv);
  const nodeCipher = cipher === "des-cbc" ? "des-ede3-cbc" : cipher;
  const nodeKey = cipher === "des-cbc" ? Buffer.concat([key, key, key]) : key;
  const e = createCipheriv(nodeCipher, nodeKey, iv);
  const ciphertext = Buffer.concat([e.update(content), e.final()]);
  const cert = pkijs.Certificate.fromBER(buf(recipient));
  const spki = new Uint8Array(cert.subjectPublicKeyInfo.toSchema().toBER());
  const encryptedKey = publicEncrypt(
    {
      key: createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }),
      padding: constants.RSA_PKCS1_PADDING,
    },
    key,
  );
  const enveloped = new pkijs.EnvelopedData({
    version: 0,
    recipientInfos: [
      new pkijs.RecipientInfo({
        variant: 1,
        value: new pkijs.KeyTransRecipientInfo({
          version: 0,
          rid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
          keyEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({
            algorithmId: OID.rsaEncryption,
            algorithmParams: new asn1js.Null(),
          }),
          encryptedKey: new asn1js.OctetString({ valueHex: buf(new Uint8Array(encryptedKey)) }),
        }),
      }),
    ],
    encryptedContentInfo: new pkijs.EncryptedContentInfo({
      contentType: OID.data,
      contentEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({
        algorithmId: c.oid,
        algorithmParams: new asn1js.OctetString({ valueHex: buf(new Uint8Array(iv)) }),
      }),
      encryptedContent: new asn1js.OctetString({ valueHex: buf(new Uint8Array(ciphertext)) }),
    }),
  });
  return new Uint8Array(
    new pkijs.ContentInfo({ contentType: OID.envelopedData, content: enveloped.toSchema() }).toSchema().toBER(),
  );
}

export interface MessageOptions {
  messageType: number;
  /** The pkcsPKIEnvelope (already encrypted). */
  content: Uint8Array;
  device: ScepDevice;
  transactionId?: string;
  senderNonce?: Uint8Array;
  digest?: "SHA-256" | "SHA-1";
  signingTime?: Date;
  /** Flips a bit of the signature after signing. */
  tamper?: boolean;
}

/** A pkiMessage signed with the device key by pkijs (SignedData.sign). */
export async function pkiMessage(o: MessageOptions): Promise<Uint8Array> {
  const digest = o.digest ?? "SHA-256";
  const messageDigest = new Uint8Array(await crypto.subtle.digest(digest, buf(o.content)));
  const attr = (type: string, value: asn1js.AsnType) => new pkijs.Attribute({ type, values: [value] });
  const attributes = [
    attr(OID.contentType, new asn1js.ObjectIdentifier({ value: OID.data })),
    attr(OID.messageDigest, new asn1js.OctetString({ valueHex: buf(messageDigest) })),
    attr(OID.messageType, new asn1js.PrintableString({ value: String(o.messageType) })),
    attr(OID.transactionID, new asn1js.PrintableString({ value: o.transactionId ?? randomBytes(12).toString("hex") })),
    attr(OID.senderNonce, new asn1js.OctetString({ valueHex: buf(o.senderNonce ?? new Uint8Array(randomBytes(16))) })),
  ];
  if (o.signingTime) attributes.push(attr(OID.signingTime, new asn1js.UTCTime({ valueDate: o.signingTime })));
  // DER orders a SET OF by encoding (X.690 §11.6); pkijs keeps the order given, and a
  // verifier that re-encodes the attributes (Go's pkcs7) checks the signature over DER.
  const encoded = (a: pkijs.Attribute) => Buffer.from(a.toSchema().toBER());
  attributes.sort((a, b) => Buffer.compare(encoded(a), encoded(b)));
  const cert = pkijs.Certificate.fromBER(buf(o.device.certificate));
  const signed = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: OID.data,
      eContent: new asn1js.OctetString({ valueHex: buf(o.content) }),
    }),
    certificates: [cert],
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
        signedAttrs: new pkijs.SignedAndUnsignedAttributes({ type: 0, attributes }),
      }),
    ],
  });
  // pkijs signs with a key whose hash matches the digest asked for.
  const key =
    digest === "SHA-256"
      ? o.device.keys.privateKey
      : await crypto.subtle.importKey(
          "pkcs8",
          await crypto.subtle.exportKey("pkcs8", o.device.keys.privateKey),
          { name: "RSASSA-PKCS1-v1_5", hash: digest },
          false,
          ["sign"],
        );
  await signed.sign(key, 0, digest);
  if (o.tamper) {
    const sig = new Uint8Array(signed.signerInfos[0]?.signature.valueBlock.valueHexView ?? []);
    sig[sig.length - 1] = (sig[sig.length - 1] as number) ^ 1;
    (signed.signerInfos[0] as pkijs.SignerInfo).signature = new asn1js.OctetString({ valueHex: buf(sig) });
  }
  return new Uint8Array(
    new pkijs.ContentInfo({ contentType: OID.signedData, content: signed.toSchema(true) }).toSchema().toBER(),
  );
}

/** A CertRep read back: its attributes, whether the RA's signature verifies, and the opened envelope. */
export interface CertRep {
  status: number;
  failInfo?: number;
  transactionId?: string;
  recipientNonce?: Uint8Array;
  signatureValid: boolean;
  signer: Uint8Array;
  /** The decrypted content (SUCCESS only): a degenerate SignedData. */
  content?: Uint8Array;
}

export async function readCertRep(der: Uint8Array, device: ScepDevice): Promise<CertRep> {
  const info = pkijs.ContentInfo.fromBER(buf(der));
  const signed = new pkijs.SignedData({ schema: info.content });
  // pkijs verifies content it is given; a CertRep without content (FAILURE, PENDING) is
  // checked here: the signature over the signed attributes with the signer's key.
  const signatureValid = signed.encapContentInfo.eContent
    ? await signed.verify({ signer: 0, checkChain: false })
    : await verifyAttributes(signed);
  const attrs = signed.signerInfos[0]?.signedAttrs?.attributes ?? [];
  const value = (oid: string) => attrs.find((a) => a.type === oid)?.values[0];
  const str = (oid: string) => (value(oid) as asn1js.PrintableString | undefined)?.valueBlock.value;
  const octets = (oid: string) => {
    const v = value(oid) as asn1js.OctetString | undefined;
    return v ? new Uint8Array(v.valueBlock.valueHexView) : undefined;
  };
  const rep: CertRep = {
    status: Number(str(OID.pkiStatus)),
    signatureValid,
    signer: new Uint8Array((signed.certificates ?? [])[0]?.toSchema().toBER() ?? new ArrayBuffer(0)),
  };
  const fail = str(OID.failInfo);
  if (fail !== undefined) rep.failInfo = Number(fail);
  const tid = str(OID.transactionID);
  if (tid !== undefined) rep.transactionId = tid;
  const rn = octets(OID.recipientNonce);
  if (rn) rep.recipientNonce = rn;
  const eContent = signed.encapContentInfo.eContent;
  if (eContent) rep.content = openEnvelope(new Uint8Array(eContent.getValue()), device.privateKey);
  return rep;
}

async function verifyAttributes(signed: pkijs.SignedData): Promise<boolean> {
  const signer = signed.signerInfos[0] as pkijs.SignerInfo;
  const cert = (signed.certificates ?? [])[0] as pkijs.Certificate;
  const attrs = new Uint8Array(signer.signedAttrs?.encodedValue ?? new ArrayBuffer(0)).slice();
  attrs[0] = 0x31;
  const digest = signer.digestAlgorithm.algorithmId === "1.3.14.3.2.26" ? "SHA-1" : "SHA-256";
  const key = await crypto.subtle.importKey(
    "spki",
    cert.subjectPublicKeyInfo.toSchema().toBER(),
    { name: "RSASSA-PKCS1-v1_5", hash: digest },
    false,
    ["verify"],
  );
  return crypto.subtle.verify(
    "RSASSA-PKCS1-v1_5",
    key,
    buf(new Uint8Array(signer.signature.valueBlock.valueHexView)),
    buf(attrs),
  );
}

/** Opens an envelope with an RSA key: RSA without padding, the PKCS #1 v1.5 padding removed here. */
function openEnvelope(der: Uint8Array, key: KeyObject): Uint8Array {
  const info = pkijs.ContentInfo.fromBER(buf(der));
  const env = new pkijs.EnvelopedData({ schema: info.content });
  const ktri = env.recipientInfos[0]?.value as pkijs.KeyTransRecipientInfo;
  const em = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, Buffer.from(ktri.encryptedKey.getValue()));
  const cek = em.subarray(em.indexOf(0, 2) + 1);
  const alg = env.encryptedContentInfo.contentEncryptionAlgorithm;
  const cipher = (Object.keys(CIPHERS) as TestCipher[]).find((c) => CIPHERS[c].oid === alg.algorithmId) as TestCipher;
  const iv = Buffer.from((alg.algorithmParams as asn1js.OctetString).getValue());
  const nodeCipher = cipher === "des-cbc" ? "des-ede3-cbc" : cipher;
  const nodeKey = cipher === "des-cbc" ? Buffer.concat([cek, cek, cek]) : cek;
  const d = createDecipheriv(nodeCipher, nodeKey, iv);
  const ct = Buffer.from(env.encryptedContentInfo.getEncryptedContent());
  return new Uint8Array(Buffer.concat([d.update(ct), d.final()]));
}

/** The certificates of a degenerate SignedData. */
export function certificatesOf(der: Uint8Array): Uint8Array[] {
  const signed = new pkijs.SignedData({ schema: pkijs.ContentInfo.fromBER(buf(der)).content });
  return (signed.certificates ?? []).map((c) => new Uint8Array((c as pkijs.Certificate).toSchema().toBER()));
}

/** The CRLs of a degenerate SignedData. */
export function crlsOf(der: Uint8Array): pkijs.CertificateRevocationList[] {
  const signed = new pkijs.SignedData({ schema: pkijs.ContentInfo.fromBER(buf(der)).content });
  return (signed.crls ?? []) as pkijs.CertificateRevocationList[];
}

/** IssuerAndSubject (CertPoll) for `cn` under the CA's subject. */
export function issuerAndSubject(caCertificate: Uint8Array, cn: string): Uint8Array {
  const ca = pkijs.Certificate.fromBER(buf(caCertificate));
  const subject = new pkijs.RelativeDistinguishedNames({
    typesAndValues: [new pkijs.AttributeTypeAndValue({ type: "2.5.4.3", value: new asn1js.Utf8String({ value: cn }) })],
  });
  return new Uint8Array(new asn1js.Sequence({ value: [ca.subject.toSchema(), subject.toSchema()] }).toBER());
}

/** IssuerAndSerialNumber (GetCRL) of a certificate. */
export function issuerAndSerialOf(certificate: Uint8Array): Uint8Array {
  const cert = pkijs.Certificate.fromBER(buf(certificate));
  return new Uint8Array(
    new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }).toSchema().toBER(),
  );
}
