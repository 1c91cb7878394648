import { createCipheriv, createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { concat, encodeOid, sequence, setOf, TAG, tlv, unsignedInteger } from "../../pki/der.ts";

/**
 * PKCS#12 (RFC 7292) files for appliances that only import a key and certificate by
 * hand (`edgeid legacy issue`). Encoded here with node:crypto: the PKCS#12 object
 * libraries at hand offer only PBES2, and old appliances need the PKCS#12 PBE with
 * 3DES and a SHA-1 MAC. Checked against `openssl pkcs12` in the tests.
 *
 * - "modern" (default): the key bag and the certificate bag encrypted with PBES2
 *   (PBKDF2-HMAC-SHA256, AES-256-CBC), the MAC HMAC-SHA256 — what OpenSSL 3 writes.
 * - "legacy": pbeWithSHAAnd3-KeyTripleDES-CBC for both bags and an HMAC-SHA1 MAC —
 *   what appliances from before ~2018 read; weaker, so only on request.
 */
export type Pkcs12Encryption = "modern" | "legacy";

const OID = {
  data: "1.2.840.113549.1.7.1",
  encryptedData: "1.2.840.113549.1.7.6",
  pkcs8ShroudedKeyBag: "1.2.840.113549.1.12.10.1.2",
  certBag: "1.2.840.113549.1.12.10.1.3",
  x509Certificate: "1.2.840.113549.1.9.22.1",
  friendlyName: "1.2.840.113549.1.9.20",
  localKeyId: "1.2.840.113549.1.9.21",
  pbes2: "1.2.840.113549.1.5.13",
  pbkdf2: "1.2.840.113549.1.5.12",
  hmacWithSHA256: "1.2.840.113549.2.9",
  aes256Cbc: "2.16.840.1.101.3.4.1.42",
  pbeSha3Des: "1.2.840.113549.1.12.1.3",
  sha1: "1.3.14.3.2.26",
  sha256: "2.16.840.1.101.3.4.2.1",
};

export const PKCS12_ITERATIONS = 10_000;

const oid = (o: string) => encodeOid(o);
const octets = (b: Uint8Array) => tlv(TAG.OCTET_STRING, b);
const integer = (n: number) => unsignedInteger(bigEndian(n));
const explicit0 = (...c: Uint8Array[]) => tlv(0xa0, ...c);
const contentInfo = (type: string, content: Uint8Array) => sequence(oid(type), explicit0(content));

function bigEndian(n: number): Uint8Array {
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v % 256);
  return Uint8Array.from(out.length ? out : [0]);
}

/** BMPString of the password with a terminating zero (RFC 7292 B.1). */
function bmpPassword(password: string): Uint8Array {
  const out = new Uint8Array((password.length + 1) * 2);
  for (let i = 0; i < password.length; i++) {
    const c = password.charCodeAt(i);
    out[2 * i] = c >> 8;
    out[2 * i + 1] = c & 0xff;
  }
  return out;
}

/** The PKCS#12 key derivation (RFC 7292 Appendix B.2): id 1 key, 2 IV, 3 MAC key. */
export function pkcs12Kdf(
  hash: "sha1" | "sha256",
  password: string,
  salt: Uint8Array,
  iterations: number,
  id: 1 | 2 | 3,
  length: number,
): Uint8Array {
  const v = 64;
  const u = hash === "sha1" ? 20 : 32;
  const fill = (src: Uint8Array) => {
    if (src.length === 0) return new Uint8Array(0);
    const out = new Uint8Array(v * Math.ceil(src.length / v));
    for (let i = 0; i < out.length; i++) out[i] = src[i % src.length] as number;
    return out;
  };
  const d = new Uint8Array(v).fill(id);
  const i = concat([fill(salt), fill(bmpPassword(password))]);
  const out = new Uint8Array(length);
  for (let done = 0; done < length; done += u) {
    let a: Uint8Array = createHash(hash).update(d).update(i).digest();
    for (let r = 1; r < iterations; r++) a = createHash(hash).update(a).digest();
    out.set(a.subarray(0, Math.min(u, length - done)), done);
    if (done + u >= length) break;
    const b = new Uint8Array(v);
    for (let k = 0; k < v; k++) b[k] = a[k % u] as number;
    for (let j = 0; j < i.length; j += v) {
      // Ij = (Ij + B + 1) mod 2^(8v), big-endian.
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = (i[j + k] as number) + (b[k] as number) + carry;
        i[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return out;
}

interface Encrypted {
  algorithm: Uint8Array;
  ciphertext: Uint8Array;
}

function encrypt(kind: Pkcs12Encryption, password: string, plaintext: Uint8Array): Encrypted {
  const salt = randomBytes(16);
  if (kind === "legacy") {
    const key = pkcs12Kdf("sha1", password, salt, PKCS12_ITERATIONS, 1, 24);
    const iv = pkcs12Kdf("sha1", password, salt, PKCS12_ITERATIONS, 2, 8);
    const c = createCipheriv("des-ede3-cbc", key, iv);
    return {
      algorithm: sequence(oid(OID.pbeSha3Des), sequence(octets(salt), integer(PKCS12_ITERATIONS))),
      ciphertext: concat([c.update(plaintext), c.final()]),
    };
  }
  const iv = randomBytes(16);
  const key = pbkdf2Sync(Buffer.from(password, "utf8"), salt, PKCS12_ITERATIONS, 32, "sha256");
  const c = createCipheriv("aes-256-cbc", key, iv);
  return {
    algorithm: sequence(
      oid(OID.pbes2),
      sequence(
        sequence(
          oid(OID.pbkdf2),
          sequence(octets(salt), integer(PKCS12_ITERATIONS), sequence(oid(OID.hmacWithSHA256), tlv(TAG.NULL))),
        ),
        sequence(oid(OID.aes256Cbc), octets(iv)),
      ),
    ),
    ciphertext: concat([c.update(plaintext), c.final()]),
  };
}

/** A PFX holding one private key and its certificate chain (leaf first). */
export function buildPkcs12(o: {
  pkcs8: Uint8Array;
  certificates: Uint8Array[];
  password: string;
  friendlyName: string;
  encryption?: Pkcs12Encryption;
}): Uint8Array {
  const kind = o.encryption ?? "modern";
  const leaf = o.certificates[0];
  if (!leaf) throw new Error("a PKCS#12 file needs the certificate");
  // The key and its certificate are paired by localKeyId, as OpenSSL pairs them.
  const keyId = createHash("sha1").update(leaf).digest();
  const nameChars = Uint8Array.from(bmpPassword(o.friendlyName).subarray(0, o.friendlyName.length * 2));
  const attributes = (withName: boolean) =>
    setOf([
      sequence(oid(OID.localKeyId), setOf([octets(keyId)])),
      ...(withName ? [sequence(oid(OID.friendlyName), setOf([tlv(0x1e, nameChars)]))] : []),
    ]);

  // The key bag: EncryptedPrivateKeyInfo (RFC 5208) under the chosen scheme.
  const sealedKey = encrypt(kind, o.password, o.pkcs8);
  const key = sequence(sealedKey.algorithm, octets(sealedKey.ciphertext));
  const keyBag = sequence(oid(OID.pkcs8ShroudedKeyBag), explicit0(key), attributes(true));
  const keyContents = contentInfo(OID.data, octets(sequence(keyBag)));

  const certBags = o.certificates.map((der, i) =>
    sequence(
      oid(OID.certBag),
      explicit0(sequence(oid(OID.x509Certificate), explicit0(octets(der)))),
      ...(i === 0 ? [attributes(true)] : []),
    ),
  );
  const sealed = encrypt(kind, o.password, sequence(...certBags));
  const certContents = contentInfo(
    OID.encryptedData,
    sequence(integer(0), sequence(oid(OID.data), sealed.algorithm, tlv(0x80, sealed.ciphertext))),
  );

  const authSafe = sequence(certContents, keyContents);
  const macSalt = randomBytes(16);
  const macHash = kind === "legacy" ? "sha1" : "sha256";
  const macKey = pkcs12Kdf(macHash, o.password, macSalt, PKCS12_ITERATIONS, 3, macHash === "sha1" ? 20 : 32);
  const mac = createHmac(macHash, macKey).update(authSafe).digest();
  const macData = sequence(
    sequence(sequence(oid(macHash === "sha1" ? OID.sha1 : OID.sha256), tlv(TAG.NULL)), octets(mac)),
    octets(macSalt),
    integer(PKCS12_ITERATIONS),
  );
  return sequence(integer(3), contentInfo(OID.data, octets(authSafe)), macData);
}
