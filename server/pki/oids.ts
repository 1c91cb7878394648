/** Object identifiers, named as their RFCs name them. */

// RFC 5480 / RFC 5758 / RFC 8410 / RFC 8017
export const id_ecPublicKey = "1.2.840.10045.2.1";
export const secp256r1 = "1.2.840.10045.3.1.7";
export const secp384r1 = "1.3.132.0.34";
export const secp521r1 = "1.3.132.0.35";
export const secp192r1 = "1.2.840.10045.3.1.1";
export const id_Ed25519 = "1.3.101.112";
export const id_Ed448 = "1.3.101.113";
export const rsaEncryption = "1.2.840.113549.1.1.1";
export const id_RSASSA_PSS = "1.2.840.113549.1.1.10";
export const sha256WithRSAEncryption = "1.2.840.113549.1.1.11";
export const sha384WithRSAEncryption = "1.2.840.113549.1.1.12";
export const sha512WithRSAEncryption = "1.2.840.113549.1.1.13";
export const ecdsa_with_SHA256 = "1.2.840.10045.4.3.2";
export const ecdsa_with_SHA384 = "1.2.840.10045.4.3.3";
export const ecdsa_with_SHA512 = "1.2.840.10045.4.3.4";

// RFC 5280 §4.1.2.4 attribute types
export const id_at_commonName = "2.5.4.3";
export const id_at_serialNumber = "2.5.4.5";
export const id_at_organizationName = "2.5.4.10";

// RFC 5280 §4.2 extensions
export const id_ce_subjectKeyIdentifier = "2.5.29.14";
export const id_ce_keyUsage = "2.5.29.15";
export const id_ce_subjectAltName = "2.5.29.17";
export const id_ce_basicConstraints = "2.5.29.19";
export const id_ce_cRLDistributionPoints = "2.5.29.31";
export const id_ce_authorityKeyIdentifier = "2.5.29.35";
export const id_ce_extKeyUsage = "2.5.29.37";
export const id_pe_authorityInfoAccess = "1.3.6.1.5.5.7.1.1";
export const id_ad_ocsp = "1.3.6.1.5.5.7.48.1";
export const id_ad_caIssuers = "1.3.6.1.5.5.7.48.2";
export const id_kp_serverAuth = "1.3.6.1.5.5.7.3.1";
export const id_kp_clientAuth = "1.3.6.1.5.5.7.3.2";

// RFC 2985 (PKCS #9) attributes
export const pkcs_9_at_challengePassword = "1.2.840.113549.1.9.7";
export const pkcs_9_at_extensionRequest = "1.2.840.113549.1.9.14";

// RFC 5652 content types
export const id_data = "1.2.840.113549.1.7.1";
export const id_signedData = "1.2.840.113549.1.7.2";

// RFC 5280 §5.2 / §5.3 CRL and CRL entry extensions
export const id_ce_cRLNumber = "2.5.29.20";
export const id_ce_cRLReasons = "2.5.29.21";

// RFC 6960 OCSP
export const id_pkix_ocsp_basic = "1.3.6.1.5.5.7.48.1.1";
export const id_pkix_ocsp_nonce = "1.3.6.1.5.5.7.48.1.2";
export const id_pkix_ocsp_nocheck = "1.3.6.1.5.5.7.48.1.5";
export const id_kp_OCSPSigning = "1.3.6.1.5.5.7.3.9";

// RFC 3279 / RFC 5754 hash algorithms (OCSP CertID)
export const id_sha1 = "1.3.14.3.2.26";
export const id_sha256 = "2.16.840.1.101.3.4.2.1";

/** RSA PKCS #1 v1.5 signature algorithms: their AlgorithmIdentifier carries NULL parameters (RFC 4055 §5). */
export const RSA_PKCS1_SIGNATURES: ReadonlySet<string> = new Set([
  sha256WithRSAEncryption,
  sha384WithRSAEncryption,
  sha512WithRSAEncryption,
]);
