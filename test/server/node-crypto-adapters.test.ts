/**
 * The Node server's crypto adapters against the portable WebCrypto ones: the CA signer
 * (node:crypto KeyObject) and the digest behind the Digest port.
 */
import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { nodeDigest } from "../../server/adapters/node/node-digest.ts";
import { NodeEcdsaSigner } from "../../server/adapters/node/node-signer.ts";
import { ecdsa_with_SHA256, ecdsa_with_SHA384 } from "../../server/pki/oids.ts";
import { verifySignature, webCryptoVerifier } from "../../server/pki/verify.ts";
import { webCryptoDigest } from "../../server/pki/webcrypto-digest.ts";
import { crypto } from "../support/fixtures.ts";

describe("NodeEcdsaSigner", () => {
  it.each([
    ["prime256v1", ecdsa_with_SHA256],
    ["secp384r1", ecdsa_with_SHA384],
  ])("signs with %s as X.509 expects (DER ECDSA-Sig-Value), checked by WebCrypto", async (curve, oid) => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: curve });
    const signer = new NodeEcdsaSigner(privateKey);
    expect(signer.signatureAlgorithm).toBe(oid);
    const data = crypto.getRandomValues(new Uint8Array(300));
    const signature = await signer.sign(data);
    expect(signature[0]).toBe(0x30);
    const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
    const signed = { spki, signatureAlgorithm: oid, signature, data };
    const verifier = webCryptoVerifier(crypto.subtle);
    expect(await verifySignature(verifier, signed)).toBe(true);
    const other = data.slice();
    other[0] = (other[0] as number) ^ 1;
    expect(await verifySignature(verifier, { ...signed, data: other })).toBe(false);
  });

  it("refuses keys it cannot sign certificates with", () => {
    expect(() => new NodeEcdsaSigner(generateKeyPairSync("ed25519").privateKey)).toThrow(/EC private key/);
    expect(() => new NodeEcdsaSigner(generateKeyPairSync("ec", { namedCurve: "secp256k1" }).privateKey)).toThrow(
      /unsupported CA curve/,
    );
    expect(() => new NodeEcdsaSigner(generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey)).toThrow();
  });
});

describe("nodeDigest", () => {
  it("gives the same SHA-1 and SHA-256 as WebCrypto", async () => {
    const web = webCryptoDigest(crypto.subtle);
    for (const length of [0, 1, 55, 56, 64, 1000]) {
      const data = crypto.getRandomValues(new Uint8Array(length));
      for (const alg of ["SHA-1", "SHA-256"] as const) {
        expect(await nodeDigest(alg, data)).toEqual(await web(alg, data));
      }
    }
  });
});
