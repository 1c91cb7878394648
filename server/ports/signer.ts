/** The CA private key, wherever it lives (WebCrypto key, Node KeyObject, an HSM). */
export interface Signer {
  /** OID of the signature algorithm, e.g. ecdsa-with-SHA256. */
  readonly signatureAlgorithm: string;
  /** The signature value as it goes inside the BIT STRING (DER ECDSA-Sig-Value for ECDSA). */
  sign(data: Uint8Array): Promise<Uint8Array>;
}
