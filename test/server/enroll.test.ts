import * as x509 from "@peculiar/x509";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuthorityError } from "../../server/authority/errors.ts";
import { toHex } from "../../server/pki/der.ts";
import {
  createToken,
  generateKeys,
  type Harness,
  harness,
  type KeyKind,
  makeCsr,
  parseCert,
  peer,
  T0,
} from "../support/fixtures.ts";

async function expectRefusal(p: Promise<unknown>, code: string, reason: string): Promise<AuthorityError> {
  const err = await p.then(
    () => {
      throw new Error("expected a refusal");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthorityError);
  expect({ code: (err as AuthorityError).code, reason: (err as AuthorityError).reason }).toEqual({ code, reason });
  return err as AuthorityError;
}

describe("simpleenroll with a bootstrap token", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(() => h.close());

  it("issues a certificate with the device identity, profile validity and extensions", async () => {
    const token = await createToken(h, "dev-1");
    const keys = await generateKeys("P-256");
    const issued = await h.authority.enroll({
      csr: await makeCsr(keys, { cn: "dev-1" }),
      credentials: { type: "basic", username: "dev-1", password: token },
      peer: peer(),
    });
    const cert = parseCert(issued.certificate);
    expect(cert.subject).toBe("CN=dev-1");
    expect(cert.issuer).toBe("CN=Test Issuing");
    expect(cert.notBefore.toISOString()).toBe(new Date(T0.getTime() - 300_000).toISOString());
    expect(cert.notAfter.toISOString()).toBe(new Date(T0.getTime() + 72 * 3600_000).toISOString());
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    expect(san?.names.toJSON()).toEqual([{ type: "url", value: "spiffe://example.org/device/dev-1" }]);
    expect(san?.critical).toBe(false);
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.ca).toBe(false);
    expect(bc?.critical).toBe(true);
    expect(cert.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth]);
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    const expectedSki = toHex(
      new Uint8Array(await crypto.subtle.digest("SHA-1", await crypto.subtle.exportKey("raw", keys.publicKey))),
    ).toLowerCase();
    expect(ski).toBe(expectedSki);
    expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(toHex(h.ca.issuing.keyId));
    const cdp = cert.getExtension(x509.CRLDistributionPointsExtension);
    expect(cdp?.distributionPoints[0]?.distributionPoint?.fullName?.[0]?.uniformResourceIdentifier).toBe(
      "https://est.example.org:8443/pki/crl/issuing-p256.crl",
    );
    const aia = cert.getExtension(x509.AuthorityInfoAccessExtension);
    expect(aia?.ocsp.map((n) => n.value)).toEqual(["https://est.example.org:8443/pki/ocsp"]);
    // Signed by the issuing CA, and the public key is the CSR's.
    const issuing = parseCert(h.ca.issuing.certificate);
    expect(await cert.verify({ publicKey: issuing, signatureOnly: true })).toBe(true);
    expect(new Uint8Array(cert.publicKey.rawData)).toEqual(
      new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
    );
    // 128-bit random serial, positive, recorded.
    expect(cert.serialNumber.replace(/^00/, "").length).toBeLessThanOrEqual(32);
    const stored = await h.storage.getCertificate(issued.serial);
    expect(stored?.deviceId).toBe("dev-1");
    expect(stored?.der).toEqual(issued.certificate);
    expect((await h.storage.getDevice("dev-1"))?.status).toBe("active");
  });

  it.each<KeyKind>(["P-256", "P-384", "Ed25519"])("accepts %s keys in the device profile", async (kind) => {
    const token = await createToken(h, "dev-k");
    const issued = await h.authority.enroll({
      csr: await makeCsr(await generateKeys(kind)),
      credentials: { type: "bearer", token },
      peer: peer(),
    });
    expect(parseCert(issued.certificate).subject).toBe("CN=dev-k");
  });

  it("refuses RSA in the device profile and accepts RSA-2048 where the profile allows it", async () => {
    const rsaKeys = await generateKeys("RSA-2048");
    const deviceToken = await createToken(h, "dev-r");
    await expectRefusal(
      h.authority.enroll({
        csr: await makeCsr(rsaKeys),
        credentials: { type: "bearer", token: deviceToken },
        peer: peer(),
      }),
      "bad_request",
      "key_not_allowed",
    );
    const rsaToken = await createToken(h, "appliance-1", { profile: "rsa" });
    const issued = await h.authority.enroll({
      label: "rsa",
      csr: await makeCsr(rsaKeys),
      credentials: { type: "basic", username: "appliance-1", password: rsaToken },
      peer: peer(),
    });
    const cert = parseCert(issued.certificate);
    expect(cert.getExtension(x509.KeyUsagesExtension)?.usages).toBe(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
    );
    expect(cert.notAfter.getTime() - T0.getTime()).toBe(30 * 86400_000);
  });

  it("refuses RSA-1024 even where RSA is allowed", async () => {
    const token = await createToken(h, "appliance-2", { profile: "rsa" });
    const err = await expectRefusal(
      h.authority.enroll({
        label: "rsa",
        csr: await makeCsr(await generateKeys("RSA-1024")),
        credentials: { type: "bearer", token },
        peer: peer(),
      }),
      "bad_request",
      "key_not_allowed",
    );
    expect(err.publicMessage).toContain("RSA key size 1024");
  });

  it("refuses names that are not the device's", async () => {
    const token = await createToken(h, "dev-2");
    const creds = { type: "basic" as const, username: "dev-2", password: token };
    const keys = await generateKeys("P-256");
    await expectRefusal(
      h.authority.enroll({
        csr: await makeCsr(keys, { sans: [{ type: "url", value: "spiffe://example.org/device/dev-3" }] }),
        credentials: creds,
        peer: peer(),
      }),
      "forbidden",
      "name_not_allowed",
    );
    await expectRefusal(
      h.authority.enroll({ csr: await makeCsr(keys, { cn: "dev-3" }), credentials: creds, peer: peer() }),
      "forbidden",
      "name_not_allowed",
    );
    await expectRefusal(
      h.authority.enroll({
        csr: await makeCsr(keys, { sans: [{ type: "dns", value: "bank.example" }] }),
        credentials: creds,
        peer: peer(),
      }),
      "forbidden",
      "name_not_allowed",
    );
    // Asking for exactly its own name is fine, and none of the refusals used the token.
    const ok = await h.authority.enroll({
      csr: await makeCsr(keys, { cn: "dev-2", sans: [{ type: "url", value: "spiffe://example.org/device/dev-2" }] }),
      credentials: creds,
      peer: peer(),
    });
    expect(ok.deviceId).toBe("dev-2");
  });

  it("refuses a key that another device already holds a certificate for", async () => {
    const shared = await generateKeys("P-256");
    const first = await createToken(h, "clone-a");
    await h.authority.enroll({
      csr: await makeCsr(shared),
      credentials: { type: "bearer", token: first },
      peer: peer(),
    });
    const second = await createToken(h, "clone-b");
    await expectRefusal(
      h.authority.enroll({ csr: await makeCsr(shared), credentials: { type: "bearer", token: second }, peer: peer() }),
      "forbidden",
      "key_in_use",
    );
    // The same device may bootstrap again with its own key (e.g. after a factory reset).
    const again = await createToken(h, "clone-a");
    const ok = await h.authority.enroll({
      csr: await makeCsr(shared),
      credentials: { type: "bearer", token: again },
      peer: peer(),
    });
    expect(ok.deviceId).toBe("clone-a");
  });

  it("refuses a CSR whose signature does not verify, and garbage", async () => {
    const token = await createToken(h, "dev-4");
    const csr = await makeCsr(await generateKeys("P-256"), { cn: "dev-4" });
    // Change the signed subject from CN=dev-4 to CN=dev-5 after signing.
    const tampered = csr.slice();
    const at = Buffer.from(tampered).indexOf("dev-4");
    tampered[at + 4] = "5".charCodeAt(0);
    const creds = { type: "bearer" as const, token };
    await expectRefusal(
      h.authority.enroll({ csr: tampered, credentials: creds, peer: peer() }),
      "bad_request",
      "csr_signature_invalid",
    );
    await expectRefusal(
      h.authority.enroll({ csr: Uint8Array.of(1, 2, 3, 4), credentials: creds, peer: peer() }),
      "bad_request",
      "csr_malformed",
    );
    const sigFlipped = csr.slice();
    sigFlipped[sigFlipped.length - 3] = (sigFlipped[sigFlipped.length - 3] as number) ^ 0x40;
    await expectRefusal(
      h.authority.enroll({ csr: sigFlipped, credentials: creds, peer: peer() }),
      "bad_request",
      "csr_signature_invalid",
    );
    expect((await h.authority.enroll({ csr, credentials: creds, peer: peer() })).deviceId).toBe("dev-4");
  });
});

describe("bootstrap token lifecycle", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(() => h.close());

  const enrollWith = async (username: string, password: string, label?: string) =>
    h.authority.enroll({
      label,
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username, password },
      peer: peer(),
    });

  it("is single-use, and a second use is refused and audited", async () => {
    const token = await createToken(h, "dev-a");
    await enrollWith("dev-a", token);
    await expectRefusal(enrollWith("dev-a", token), "unauthenticated", "token_used");
    const audit = await h.storage.listAudit({ deviceId: "dev-a", limit: 10 });
    expect(audit[0]).toMatchObject({ action: "est.simpleenroll", outcome: "denied", detail: { reason: "token_used" } });
    expect(JSON.stringify(audit)).not.toContain(token);
  });

  it("audits a token presented for another device against the token's device", async () => {
    const token = await createToken(h, "dev-owner");
    await expectRefusal(enrollWith("intruder", token), "forbidden", "token_wrong_device");
    const [owner] = await h.storage.listAudit({ deviceId: "dev-owner", limit: 1 });
    expect(owner).toMatchObject({
      outcome: "denied",
      actor: expect.stringMatching(/^token:tok_/),
      detail: { reason: "token_wrong_device", claimedDevice: "intruder" },
    });
  });

  it("expires at its ttl by the injected clock", async () => {
    const token = await createToken(h, "dev-b", { ttl: 3600 });
    h.clock.advance(3600);
    await expectRefusal(enrollWith("dev-b", token), "unauthenticated", "token_expired");
    h.clock.advance(-1);
    expect((await enrollWith("dev-b", token)).deviceId).toBe("dev-b");
  });

  it("is bound to its device and profile", async () => {
    const token = await createToken(h, "dev-c");
    await createToken(h, "dev-d");
    await expectRefusal(enrollWith("dev-d", token), "forbidden", "token_wrong_device");
    await expectRefusal(enrollWith("dev-c", token, "rsa"), "forbidden", "token_wrong_profile");
    await expectRefusal(enrollWith("dev-c", token, "nope"), "not_found", "unknown_label");
    expect((await enrollWith("dev-c", token)).deviceId).toBe("dev-c");
  });

  it("refuses unknown tokens and requests without credentials", async () => {
    await expectRefusal(enrollWith("dev-e", "edt_not-a-real-token"), "unauthenticated", "token_unknown");
    await expectRefusal(enrollWith("dev-e", "password"), "unauthenticated", "token_unknown");
    await expectRefusal(
      h.authority.enroll({ csr: await makeCsr(await generateKeys("P-256")), peer: peer() }),
      "unauthenticated",
      "credentials_missing",
    );
  });

  it("stores only the hash of the secret", async () => {
    const token = await createToken(h, "dev-f");
    const rows = h.storage.sqlite.prepare("select * from bootstrap_tokens").all();
    expect(JSON.stringify(rows)).not.toContain(token);
    expect(rows).toHaveLength(1);
  });

  it("succeeds exactly once when the same token is sent concurrently", async () => {
    const token = await createToken(h, "dev-g");
    const csrs = await Promise.all(Array.from({ length: 8 }, async () => makeCsr(await generateKeys("P-256"))));
    const results = await Promise.allSettled(
      csrs.map((csr) => h.authority.enroll({ csr, credentials: { type: "bearer", token }, peer: peer() })),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    expect(ok).toHaveLength(1);
    for (const r of results) {
      if (r.status === "rejected") expect((r.reason as AuthorityError).reason).toBe("token_used");
    }
    const count = h.storage.sqlite
      .prepare("select count(*) as n from certificates where device_id = 'dev-g'")
      .get() as { n: number };
    expect(count.n).toBe(1);
  });

  it("creates bulk tokens with pending devices and refuses bad device ids", async () => {
    const created = await h.authority.createTokens({ deviceIds: ["b-0001", "b-0002", "b-0003"], actor: "test" });
    expect(new Set(created.map((t) => t.token)).size).toBe(3);
    expect((await h.storage.listDevices({ limit: 10 })).map((d) => [d.id, d.status])).toEqual([
      ["b-0001", "pending"],
      ["b-0002", "pending"],
      ["b-0003", "pending"],
    ]);
    await expectRefusal(
      h.authority.createTokens({ deviceIds: ["../etc"], actor: "test" }),
      "bad_request",
      "bad_device_id",
    );
    await expectRefusal(
      h.authority.createTokens({ deviceIds: ["x"], profile: "nope", actor: "test" }),
      "bad_request",
      "unknown_profile",
    );
  });
});
