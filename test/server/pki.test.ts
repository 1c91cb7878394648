import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pkijs from "pkijs";
import { describe, expect, it } from "vitest";
import { Base64Error, decodeBase64, encodeBase64 } from "../../server/pki/base64.ts";
import { CsrError, parseCsr, verifyCsrSignature } from "../../server/pki/csr.ts";
import { encodeCsrAttrs } from "../../server/pki/csrattrs.ts";
import { DerError, decodeOid, encodeOid, readTlv, unsignedInteger } from "../../server/pki/der.ts";
import { derToP1363, p1363ToDer } from "../../server/pki/ecdsa-signature.ts";
import { describeKey } from "../../server/pki/keys.ts";
import { parsePem, toPem } from "../../server/pki/pem.ts";
import { certsOnly } from "../../server/pki/pkcs7.ts";
import { crypto, generateKeys, makeCsr, makeTestCa } from "../support/fixtures.ts";

describe("base64 (RFC 7030 bodies)", () => {
  it("round-trips every length and tolerates line breaks and missing padding", () => {
    for (let n = 0; n < 70; n++) {
      const bytes = crypto.getRandomValues(new Uint8Array(n));
      const text = encodeBase64(bytes, 16);
      expect(decodeBase64(text)).toEqual(bytes);
      expect(decodeBase64(text.replace(/=+$/, ""))).toEqual(bytes);
      expect(text).toBe(
        Buffer.from(bytes)
          .toString("base64")
          .replace(/(.{16})(?=.)/g, "$1\r\n"),
      );
    }
  });

  it.each(["ab$d", "a", "abcde", "ab=c", "abc==="])("refuses %j", (text) => {
    expect(() => decodeBase64(text)).toThrow(Base64Error);
  });
});

describe("DER helpers", () => {
  it("encodes and decodes OIDs like OpenSSL", () => {
    for (const oid of ["1.2.840.10045.4.3.2", "2.5.29.17", "1.3.6.1.4.1.311.21.7", "2.999.1"]) {
      const der = encodeOid(oid);
      expect(decodeOid(readTlv(der).content)).toBe(oid);
    }
    expect(Buffer.from(encodeOid("1.2.840.10045.4.3.2")).toString("hex")).toBe("06082a8648ce3d040302");
  });

  it("makes minimal positive INTEGERs", () => {
    expect(Buffer.from(unsignedInteger(Uint8Array.of(0, 0, 0x7f))).toString("hex")).toBe("02017f");
    expect(Buffer.from(unsignedInteger(Uint8Array.of(0x80))).toString("hex")).toBe("02020080");
    expect(Buffer.from(unsignedInteger(Uint8Array.of(0))).toString("hex")).toBe("020100");
  });

  it("refuses indefinite, non-minimal and truncated lengths", () => {
    expect(() => readTlv(Uint8Array.of(0x30, 0x80, 0, 0))).toThrow(DerError);
    expect(() => readTlv(Uint8Array.of(0x30, 0x81, 0x05, 1, 2, 3, 4, 5))).toThrow(DerError);
    expect(() => readTlv(Uint8Array.of(0x30, 0x05, 1))).toThrow(DerError);
  });

  it("converts ECDSA signatures between P1363 and DER and WebCrypto verifies them", async () => {
    const keys = await generateKeys("P-256");
    const data = new TextEncoder().encode("hello");
    for (let i = 0; i < 20; i++) {
      const raw = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, data));
      const der = p1363ToDer(raw);
      expect(derToP1363(der, 32)).toEqual(raw);
    }
  });
});

describe("PKCS#7 certs-only", () => {
  it("is read by pkijs and by openssl pkcs7", async () => {
    const ca = await makeTestCa();
    const der = certsOnly(ca.issuing.chain);
    const info = pkijs.ContentInfo.fromBER(der as Uint8Array<ArrayBuffer>);
    expect(info.contentType).toBe(pkijs.ContentInfo.SIGNED_DATA);
    const signed = new pkijs.SignedData({ schema: info.content });
    expect(signed.signerInfos).toHaveLength(0);
    expect(signed.certificates).toHaveLength(2);
    const out = execFileSync("openssl", ["pkcs7", "-inform", "DER", "-print_certs", "-noout"], {
      input: der,
    }).toString();
    expect(out).toContain("subject=CN = Test Issuing");
    expect(out).toContain("subject=CN = Test Root");
  });
});

describe("csrattrs", () => {
  it("lists the preferred key first and is valid DER for openssl", () => {
    const der = encodeCsrAttrs(["P-256", "Ed25519"]);
    const text = execFileSync("openssl", ["asn1parse", "-inform", "DER"], { input: der }).toString();
    const oids = [...text.matchAll(/OBJECT\s+:(\S+)/g)].map((m) => m[1]);
    expect(oids).toEqual(["id-ecPublicKey", "prime256v1", "ED25519", "ecdsa-with-SHA256"]);
  });
});

describe("CSR parsing", () => {
  it("reads keys of every accepted type and verifies their signatures", async () => {
    for (const [kind, label] of [
      ["P-256", "P-256"],
      ["P-384", "P-384"],
      ["Ed25519", "Ed25519"],
      ["RSA-2048", "RSA-2048"],
    ] as const) {
      const csr = parseCsr(await makeCsr(await generateKeys(kind), { cn: "x" }));
      expect(csr.key.label).toBe(label);
      expect(csr.commonName).toBe("x");
      expect(await verifyCsrSignature(csr, crypto.subtle)).toBe(true);
    }
  });

  it("describes an OpenSSL P-192 key as P-192 (so policy can name it)", () => {
    const dir = mkdtempSync(join(tmpdir(), "edgeid-p192-"));
    const keyFile = join(dir, "p192.pem");
    execFileSync("openssl", ["ecparam", "-name", "prime192v1", "-genkey", "-noout", "-out", keyFile]);
    const csr = execFileSync("openssl", ["req", "-new", "-key", keyFile, "-subj", "/CN=x", "-outform", "DER"]);
    rmSync(dir, { recursive: true });
    expect(describeKey(parseCsr(new Uint8Array(csr)).spki)).toMatchObject({ kind: "EC", curve: "P-192" });
  });

  it("reads the requested SANs from the extensionRequest", async () => {
    const csr = parseCsr(
      await makeCsr(await generateKeys("P-256"), {
        sans: [
          { type: "url", value: "spiffe://td/device/a" },
          { type: "dns", value: "a.example" },
          { type: "ip", value: "10.0.0.1" },
        ],
      }),
    );
    expect(csr.requestedNames).toEqual([
      { type: "uri", value: "spiffe://td/device/a" },
      { type: "dns", value: "a.example" },
      { type: "ip", value: "10.0.0.1" },
    ]);
  });

  it("refuses trailing bytes and non-CSR DER", async () => {
    const csr = await makeCsr(await generateKeys("P-256"));
    expect(() => parseCsr(Uint8Array.of(...csr, 0))).toThrow(CsrError);
    const ca = await makeTestCa();
    expect(() => parseCsr(ca.root)).toThrow(CsrError);
  });

  it("PEM round-trips", () => {
    const der = crypto.getRandomValues(new Uint8Array(100));
    const [block] = parsePem(`junk\n${toPem("CERTIFICATE", der)}more`);
    expect(block).toEqual({ label: "CERTIFICATE", der });
  });
});
