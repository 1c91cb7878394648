/**
 * Content-encryption algorithms of a SCEP pkcsPKIEnvelope (RFC 8894 §3.5.2): AES; 3DES
 * and single DES only for old clients (RFC 8894 §3.5.2 keeps DES for them; Debian's
 * scepclient 2.1 knows nothing else), where a profile allows them.
 */
export type ContentCipher = "aes-128-cbc" | "aes-192-cbc" | "aes-256-cbc" | "des-ede3-cbc" | "des-cbc";

export type ScepDigest = "SHA-1" | "SHA-256" | "SHA-512";

/**
 * The SCEP registration authority's key (RFC 8894 §2.1): an RSA key certified by the
 * RSA issuing CA, that signs CertReps and to which clients encrypt their requests.
 * RSAES-PKCS1-v1_5 key transport and 3DES are outside WebCrypto, so the runtime does
 * the key operations (node:crypto on Node).
 */
export interface ScepRa {
  /** The RA certificate, DER. */
  readonly certificate: Uint8Array;
  /**
   * The RA this one replaced, while its certificate is valid: a client that fetched
   * GetCACert before the renewal still encrypts to it. It decrypts; it never signs.
   */
  readonly retired?: ScepRa;
  /** An RSA PKCS #1 v1.5 signature with the given digest. */
  sign(data: Uint8Array, digest: ScepDigest): Promise<Uint8Array>;
  /**
   * RSAES-PKCS1-v1_5 decryption of a content-encryption key of `length` bytes, with
   * implicit rejection (RFC 3218 §2.3.2): a ciphertext whose padding is wrong yields a
   * key that looks random (and then fails to decrypt the content), never a distinct error.
   */
  unwrapKey(encryptedKey: Uint8Array, length: number): Promise<Uint8Array>;
  /** RSAES-PKCS1-v1_5 encryption of a content-encryption key to a recipient's RSA key (SPKI, DER). */
  wrapKey(recipientSpki: Uint8Array, key: Uint8Array): Promise<Uint8Array>;
  /** CBC decryption with PKCS #7 padding; undefined when the padding is wrong. */
  decrypt(cipher: ContentCipher, key: Uint8Array, iv: Uint8Array, data: Uint8Array): Promise<Uint8Array | undefined>;
  encrypt(cipher: ContentCipher, key: Uint8Array, iv: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
}
