import { createCipheriv, createPrivateKey, type KeyObject, pbkdf2Sync, randomBytes } from "node:crypto";
import { encodeOid, sequence, TAG, tlv, unsignedInteger } from "../../pki/der.ts";
import { toPem } from "../../pki/pem.ts";

const id_PBES2 = "1.2.840.113549.1.5.13";
const id_PBKDF2 = "1.2.840.113549.1.5.12";
const id_hmacWithSHA256 = "1.2.840.113549.2.9";
const aes256_CBC = "2.16.840.1.101.3.4.1.42";

/**
 * PBKDF2-HMAC-SHA256 iterations for CA and listener keys at rest. Node's own PKCS#8
 * export fixes 2,048 (OpenSSL's default), too few for a passphrase a person chose;
 * 600,000 follows OWASP's 2023 guidance and costs a fraction of a second per start.
 */
export const KEY_ITERATIONS = 600_000;

/**
 * Encrypts a private key as PKCS#8 EncryptedPrivateKeyInfo with PBES2 (RFC 8018
 * §6.2): PBKDF2-HMAC-SHA256 and AES-256-CBC. OpenSSL and Node read it with the
 * passphrase alone.
 *
 * ```asn1
 * EncryptedPrivateKeyInfo ::= SEQUENCE {              -- RFC 5958 §3
 *   encryptionAlgorithm  AlgorithmIdentifier { PBES2, PBES2-params },
 *   encryptedData        OCTET STRING }
 * PBES2-params ::= SEQUENCE {                         -- RFC 8018 A.4
 *   keyDerivationFunc AlgorithmIdentifier { PBKDF2, PBKDF2-params },
 *   encryptionScheme  AlgorithmIdentifier { aes256-CBC, IV OCTET STRING } }
 * PBKDF2-params ::= SEQUENCE {                        -- RFC 8018 A.2
 *   salt OCTET STRING, iterationCount INTEGER, keyLength INTEGER OPTIONAL,
 *   prf AlgorithmIdentifier DEFAULT algid-hmacWithSHA1 }
 * ```
 */
export function encryptPrivateKey(key: KeyObject, passphrase: string, iterations = KEY_ITERATIONS): string {
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const derived = pbkdf2Sync(passphrase, salt, iterations, 32, "sha256");
  const cipher = createCipheriv("aes-256-cbc", derived, iv);
  const plain = key.export({ type: "pkcs8", format: "der" });
  const encrypted = Buffer.concat([cipher.update(plain), cipher.final()]);
  const iterationBytes = Uint8Array.of(
    iterations >>> 24,
    (iterations >>> 16) & 0xff,
    (iterations >>> 8) & 0xff,
    iterations & 0xff,
  );
  const pbkdf2Params = sequence(
    tlv(TAG.OCTET_STRING, salt),
    unsignedInteger(iterationBytes),
    sequence(encodeOid(id_hmacWithSHA256), tlv(TAG.NULL, new Uint8Array(0))),
  );
  const pbes2Params = sequence(
    sequence(encodeOid(id_PBKDF2), pbkdf2Params),
    sequence(encodeOid(aes256_CBC), tlv(TAG.OCTET_STRING, iv)),
  );
  const info = sequence(sequence(encodeOid(id_PBES2), pbes2Params), tlv(TAG.OCTET_STRING, encrypted));
  return toPem("ENCRYPTED PRIVATE KEY", info);
}

export function decryptPrivateKey(pem: string, passphrase: string, what: string): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: "pem", passphrase });
  } catch {
    throw new Error(`cannot decrypt the ${what} key: wrong CA passphrase?`);
  }
}
