import { execFileSync } from "node:child_process";
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decryptPrivateKey, encryptPrivateKey, KEY_ITERATIONS } from "../../server/adapters/node/encrypted-key.ts";

describe("CA keys at rest (PKCS#8 PBES2)", () => {
  const dir = mkdtempSync(join(tmpdir(), "edgeid-key-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const pem = encryptPrivateKey(privateKey, "correct horse battery staple");
  const file = join(dir, "ca.key");
  writeFileSync(file, pem);

  it("uses PBKDF2-HMAC-SHA256 with the configured iterations and AES-256-CBC", () => {
    const text = execFileSync("openssl", ["asn1parse", "-in", file]).toString();
    expect(text).toMatch(/:PBES2/);
    expect(text).toMatch(/:PBKDF2/);
    expect(text).toMatch(/:hmacWithSHA256/);
    expect(text).toMatch(/:aes-256-cbc/);
    expect(text).toContain(`INTEGER           :${KEY_ITERATIONS.toString(16).toUpperCase().padStart(6, "0")}`);
  });

  it("is read back by OpenSSL and Node with the passphrase, and by neither without it", () => {
    const pub = execFileSync("openssl", [
      "pkey",
      "-in",
      file,
      "-passin",
      "pass:correct horse battery staple",
      "-pubout",
    ]).toString();
    expect(pub).toBe(createPublicKey(privateKey).export({ type: "spki", format: "pem" }));
    expect(() =>
      execFileSync("openssl", ["pkey", "-in", file, "-passin", "pass:wrong", "-noout"], { stdio: "pipe" }),
    ).toThrow();
    const back = decryptPrivateKey(pem, "correct horse battery staple", "test");
    expect(back.export({ type: "pkcs8", format: "der" })).toEqual(privateKey.export({ type: "pkcs8", format: "der" }));
    expect(() => decryptPrivateKey(pem, "wrong", "test")).toThrow("cannot decrypt the test key: wrong CA passphrase?");
  });
});
