import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Extensions, GeneralNames } from "@peculiar/asn1-x509";
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
import { webCryptoVerifier } from "../../server/pki/verify.ts";
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

  it("asks for an RSA key of the profile's smallest size, with its signature algorithm", () => {
    const der = encodeCsrAttrs(["RSA", "P-256"], 3072);
    const text = execFileSync("openssl", ["asn1parse", "-inform", "DER"], { input: der }).toString();
    const oids = [...text.matchAll(/OBJECT\s+:(\S+)/g)].map((m) => m[1]);
    expect(oids).toEqual(["rsaEncryption", "id-ecPublicKey", "prime256v1", "sha256WithRSAEncryption"]);
    // The size is the value of the rsaEncryption attribute: SEQUENCE { OID, SET { INTEGER } }.
    expect(text).toMatch(/OBJECT\s+:rsaEncryption\n.*SET\s*\n.*INTEGER\s+:0C00\n/);
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
      expect(await verifyCsrSignature(csr, webCryptoVerifier(crypto.subtle))).toBe(true);
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

  it("reads subjects and extension requests as @peculiar/asn1-csr does (OpenSSL-made CSRs)", () => {
    const dir = mkdtempSync(join(tmpdir(), "edgeid-csr-"));
    const keyFile = join(dir, "k.pem");
    execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyFile]);
    const variants: string[][] = [
      ["-subj", "/CN=dev-1"],
      ["-subj", "/C=DE/O=Acme GmbH/OU=Plant 7/CN=dev-1/serialNumber=SN-0042", "-utf8"],
      ["-subj", "/CN=dev-1", "-addext", "subjectAltName=URI:spiffe://td/device/dev-1,DNS:a.example,IP:10.0.0.1"],
      [
        "-subj",
        "/CN=x",
        "-addext",
        "subjectAltName=IP:2001:db8::1,email:ops@example.org",
        "-addext",
        "keyUsage=critical,digitalSignature",
      ],
      ["-subj", "/CN=Grüße", "-utf8", "-addext", "extendedKeyUsage=clientAuth"],
      ["-subj", "/"],
    ];
    try {
      for (const args of variants) {
        const der = new Uint8Array(
          execFileSync("openssl", ["req", "-new", "-key", keyFile, "-outform", "DER", ...args]),
        );
        const ours = parseCsr(der);
        const ref = AsnConvert.parse(der, CertificationRequest).certificationRequestInfo;
        const refSubject = ref.subject.flatMap((rdn) => rdn.map((a) => ({ type: a.type, value: a.value.toString() })));
        const refExtensions: string[] = [];
        const refNames: string[] = [];
        for (const attr of ref.attributes) {
          if (attr.type !== "1.2.840.113549.1.9.14") continue;
          for (const v of attr.values) {
            for (const ext of AsnConvert.parse(v, Extensions)) {
              refExtensions.push(ext.extnID);
              if (ext.extnID !== "2.5.29.17") continue;
              for (const n of AsnConvert.parse(ext.extnValue.buffer, GeneralNames)) {
                refNames.push(n.uniformResourceIdentifier ?? n.dNSName ?? n.rfc822Name ?? n.iPAddress ?? "?");
              }
            }
          }
        }
        expect(ours.subject, args.join(" ")).toEqual(refSubject);
        expect(ours.requestedExtensions).toEqual(refExtensions);
        expect(ours.requestedNames.map((n) => n.value)).toEqual(
          refNames.map((n) => (n === "2001:db8:0:0:0:0:0:1" || n === "2001:db8::1" ? "2001:db8:0:0:0:0:0:1" : n)),
        );
        expect(ours.info).toEqual(new Uint8Array(AsnConvert.serialize(ref)));
      }
    } finally {
      rmSync(dir, { recursive: true });
    }
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
