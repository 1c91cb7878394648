import type { SignatureVerifier, VerifyRequest } from "../ports/verifier.ts";
import { DerError } from "./der.ts";
import { derToP1363 } from "./ecdsa-signature.ts";
import { describeKey, type KeyDescription, subjectPublicKeyBits } from "./keys.ts";
import {
  ecdsa_with_SHA256,
  ecdsa_with_SHA384,
  ecdsa_with_SHA512,
  id_Ed25519,
  sha256WithRSAEncryption,
  sha384WithRSAEncryption,
  sha512WithRSAEncryption,
} from "./oids.ts";

export class SignatureAlgorithmError extends Error {
  override name = "SignatureAlgorithmError";
}

interface VerifyAlgorithm {
  keyKind: KeyDescription["kind"];
  hash?: "SHA-256" | "SHA-384" | "SHA-512";
}

const SIGNATURE_ALGORITHMS: Record<string, VerifyAlgorithm> = {
  [ecdsa_with_SHA256]: { keyKind: "EC", hash: "SHA-256" },
  [ecdsa_with_SHA384]: { keyKind: "EC", hash: "SHA-384" },
  [ecdsa_with_SHA512]: { keyKind: "EC", hash: "SHA-512" },
  [sha256WithRSAEncryption]: { keyKind: "RSA", hash: "SHA-256" },
  [sha384WithRSAEncryption]: { keyKind: "RSA", hash: "SHA-384" },
  [sha512WithRSAEncryption]: { keyKind: "RSA", hash: "SHA-512" },
  [id_Ed25519]: { keyKind: "Ed25519" },
};

const COORDINATE_LENGTH: Record<string, number> = { "P-256": 32, "P-384": 48, "P-521": 66 };

export interface SignedData {
  /** Signer's SubjectPublicKeyInfo. */
  spki: Uint8Array;
  signatureAlgorithm: string;
  /** As carried in X.509/PKCS#10 (DER ECDSA-Sig-Value for ECDSA). */
  signature: Uint8Array;
  data: Uint8Array;
}

/** The subjectPublicKey of an EC SPKI when it is an uncompressed point (0x04 ‖ X ‖ Y). */
function uncompressedPoint(spki: Uint8Array, coordinateLength: number): Uint8Array | undefined {
  const point = subjectPublicKeyBits(spki);
  return point[0] === 0x04 && point.length === 2 * coordinateLength + 1 ? point : undefined;
}

export type { SignatureVerifier, VerifyRequest };

/**
 * Verifies an X.509-style signature. Returns false for a signature that does not
 * verify; throws SignatureAlgorithmError for an algorithm we do not accept or one that
 * does not fit the key.
 */
export async function verifySignature(
  verifier: SignatureVerifier,
  s: SignedData,
  key = describeKey(s.spki),
): Promise<boolean> {
  const alg = SIGNATURE_ALGORITHMS[s.signatureAlgorithm];
  if (!alg) throw new SignatureAlgorithmError(`signature algorithm ${s.signatureAlgorithm} is not accepted`);
  if (alg.keyKind !== key.kind) throw new SignatureAlgorithmError("signature algorithm does not match the key");
  if (key.kind === "EC" && !COORDINATE_LENGTH[key.curve]) {
    throw new SignatureAlgorithmError(`curve ${key.curve} is not supported`);
  }
  return verifier.verify({ spki: s.spki, key, hash: alg.hash, signature: s.signature, data: s.data });
}

/** The portable verifier: WebCrypto, on Node and on Workers. */
export function webCryptoVerifier(subtle: SubtleCrypto): SignatureVerifier {
  return {
    async verify({ spki, key, hash, signature, data }: VerifyRequest): Promise<boolean> {
      let imported: CryptoKey;
      try {
        if (key.kind === "EC") {
          // An uncompressed point goes in as "raw": same key, but Node then skips OpenSSL 3's
          // slow generic SPKI decoder.
          const point = uncompressedPoint(spki, COORDINATE_LENGTH[key.curve] ?? 0);
          imported = await subtle.importKey(
            point ? "raw" : "spki",
            (point ?? spki) as BufferSource,
            { name: "ECDSA", namedCurve: key.curve },
            false,
            ["verify"],
          );
        } else if (key.kind === "RSA") {
          imported = await subtle.importKey(
            "spki",
            spki as BufferSource,
            { name: "RSASSA-PKCS1-v1_5", hash: hash as string },
            false,
            ["verify"],
          );
        } else {
          imported = await subtle.importKey("spki", spki as BufferSource, { name: "Ed25519" }, false, ["verify"]);
        }
      } catch {
        throw new SignatureAlgorithmError("public key could not be imported");
      }
      if (key.kind === "EC") {
        let raw: Uint8Array;
        try {
          raw = derToP1363(signature, COORDINATE_LENGTH[key.curve] as number);
        } catch (err) {
          if (err instanceof DerError) return false;
          throw err;
        }
        return subtle.verify(
          { name: "ECDSA", hash: hash as string },
          imported,
          raw as BufferSource,
          data as BufferSource,
        );
      }
      return subtle.verify(
        { name: imported.algorithm.name },
        imported,
        signature as BufferSource,
        data as BufferSource,
      );
    },
  };
}
