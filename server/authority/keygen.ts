import type { Profile } from "../config/schema.ts";

/**
 * Server-side key generation (RFC 7030 §4.4) for devices that cannot make a key: the
 * profile's preferred key type, with WebCrypto (portable to Workers). The private key
 * leaves in the response only; nothing here stores it.
 */
export async function generateDeviceKey(
  crypto: Crypto,
  profile: Profile,
): Promise<{ spki: Uint8Array; pkcs8: Uint8Array }> {
  const type = profile.keyTypes[0];
  let algorithm: RsaHashedKeyGenParams | EcKeyGenParams | Algorithm;
  switch (type) {
    case "P-256":
    case "P-384":
      algorithm = { name: "ECDSA", namedCurve: type };
      break;
    case "Ed25519":
      algorithm = { name: "Ed25519" };
      break;
    case "RSA":
      algorithm = {
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: profile.rsaMinBits,
        publicExponent: Uint8Array.of(1, 0, 1),
        hash: "SHA-256",
      };
      break;
    default:
      throw new Error(`no key generation for ${String(type)}`);
  }
  const keys = (await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
  const [spki, pkcs8] = await Promise.all([
    crypto.subtle.exportKey("spki", keys.publicKey),
    crypto.subtle.exportKey("pkcs8", keys.privateKey),
  ]);
  return { spki: new Uint8Array(spki), pkcs8: new Uint8Array(pkcs8) };
}
