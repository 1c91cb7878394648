/**
 * Server-side key generation in the core: the certificate carries the key the server
 * made (checked with node:crypto, independent of the WebCrypto code that made it), of
 * the profile's preferred type, and only profiles that allow it do it.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createToken,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  parseCert,
  peer,
  refusal,
} from "../support/fixtures.ts";

describe("serverkeygen", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness({
      config: {
        trustDomain: "example.org",
        profiles: {
          device: {},
          "gen-p256": { serverKeygen: true },
          "gen-ed25519": { serverKeygen: true, keyTypes: ["Ed25519", "P-256"] },
          "gen-rsa": { serverKeygen: true, keyTypes: ["RSA"], rsaMinBits: 3072, rsaMaxBits: 4096 },
        },
      },
    });
  });
  afterEach(() => h.close());

  const keygen = async (deviceId: string, profile: string) => {
    const token = await createToken(h, deviceId, { profile });
    return h.authority.serverkeygen({
      label: profile,
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: deviceId, password: token },
      peer: peer(),
    });
  };

  for (const [profile, expected] of [
    ["gen-p256", { type: "ec", label: "P-256" }],
    ["gen-ed25519", { type: "ed25519", label: "Ed25519" }],
    ["gen-rsa", { type: "rsa", label: "RSA-3072" }],
  ] as const) {
    it(`${profile}: the certificate is for the key returned`, async () => {
      const issued = await keygen(`d-${profile}`, profile);
      const key = createPrivateKey({ key: Buffer.from(issued.privateKey as Uint8Array), format: "der", type: "pkcs8" });
      expect(key.asymmetricKeyType).toBe(expected.type);
      const spki = createPublicKey(key).export({ type: "spki", format: "der" });
      expect(Buffer.from(parseCert(issued.certificate).publicKey.rawData).equals(spki)).toBe(true);
      expect((await h.storage.getCertificate(issued.serial))?.keyType).toBe(expected.label);
    });
  }

  it("is refused by a profile that does not allow it, and consumes nothing", async () => {
    const token = await createToken(h, "plain");
    const req = {
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic" as const, username: "plain", password: token },
      peer: peer(),
    };
    expect(await refusal(h.authority.serverkeygen(req))).toEqual({
      code: "forbidden",
      reason: "serverkeygen_not_allowed",
    });
    expect((await h.authority.enroll(req)).deviceId).toBe("plain");
  });
});
