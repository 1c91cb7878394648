/**
 * CRLs (pki/crl.ts) and OCSP (pki/ocsp.ts) against independent implementations: OpenSSL
 * (the CLI, on temporary files) parses and verifies the CRL, rejects a revoked certificate
 * with it, makes the OCSP requests and checks the responses, nonce included; pkijs parses
 * and verifies both. The CA key is a real P-256 key behind NodeEcdsaSigner.
 */
import { spawnSync } from "node:child_process";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OctetString } from "@peculiar/asn1-schema";
import { Extension } from "@peculiar/asn1-x509";
import * as pkijs from "pkijs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeEcdsaSigner } from "../../server/adapters/node/node-signer.ts";
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  encodeName,
  extendedKeyUsage,
  keyIdentifier,
  keyUsage,
  subjectKeyIdentifier,
} from "../../server/pki/certificate.ts";
import { encodeTime } from "../../server/pki/certificate-template.ts";
import { buildCrl, type CrlEntry, encodeCrlEntry } from "../../server/pki/crl.ts";
import { encodeOid, readChildren, readTlv, sequence, TAG, tlv } from "../../server/pki/der.ts";
import {
  buildOcspResponse,
  encodeSingleResponse,
  type IssuerHashes,
  issuerHashes,
  OcspError,
  type OcspRequest,
  type OcspStatus,
  ocspErrorResponse,
  parseOcspRequest,
} from "../../server/pki/ocsp.ts";
import {
  id_at_commonName,
  id_kp_OCSPSigning,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nocheck,
  id_pkix_ocsp_nonce,
  id_sha1,
} from "../../server/pki/oids.ts";
import { pemCertificates, toPem } from "../../server/pki/pem.ts";
import { webCryptoDigest } from "../../server/pki/webcrypto-digest.ts";
import { crypto } from "../support/fixtures.ts";

const digest = webCryptoDigest(crypto.subtle);
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

let dir: string;
let caName: Uint8Array;
let caKeyId: Uint8Array;
let caCert: Uint8Array;
let caSigner: NodeEcdsaSigner;
let caHashes: IssuerHashes;
let leafKey: KeyObject;
let leafSpki: Uint8Array;
const caFile = () => join(dir, "ca.pem");

function p256(): { privateKey: KeyObject; spki: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { privateKey, spki: new Uint8Array(publicKey.export({ type: "spki", format: "der" })) };
}

/** Runs openssl; returns its exit status and stdout and stderr together. */
function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync("openssl", args, { cwd: dir });
  return { status: r.status, out: `${r.stdout.toString()}${r.stderr.toString()}` };
}

function write(name: string, data: Uint8Array | string): string {
  const file = join(dir, name);
  writeFileSync(file, data);
  return file;
}

/** An end-entity certificate from the test CA with the given serial, as a PEM file. */
async function leaf(serialHex: string): Promise<string> {
  const now = Date.now();
  const der = await buildCertificate(
    {
      // A Uint8Array, not a pooled Buffer: buildCertificate copies with slice().buffer.
      serial: Uint8Array.from(Buffer.from(serialHex, "hex")),
      issuer: caName,
      subject: encodeName([{ type: id_at_commonName, value: `leaf ${serialHex}` }]),
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + 86400_000),
      spki: leafSpki,
      extensions: [basicConstraints(false), keyUsage(["digitalSignature"]), authorityKeyIdentifier(caKeyId)],
    },
    caSigner,
  );
  return write(`leaf-${serialHex}.pem`, toPem("CERTIFICATE", der));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "edgeid-crl-ocsp-"));
  const ca = p256();
  caSigner = new NodeEcdsaSigner(ca.privateKey);
  caName = encodeName([{ type: id_at_commonName, value: "CRL and OCSP Test CA" }]);
  caKeyId = await keyIdentifier(ca.spki, digest);
  const now = Date.now();
  caCert = await buildCertificate(
    {
      serial: Uint8Array.of(1),
      issuer: caName,
      subject: caName,
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + 365 * 86400_000),
      spki: ca.spki,
      extensions: [
        basicConstraints(true, 0),
        keyUsage(["digitalSignature", "keyCertSign", "cRLSign"]),
        subjectKeyIdentifier(caKeyId),
      ],
    },
    caSigner,
  );
  write("ca.pem", toPem("CERTIFICATE", caCert));
  caHashes = await issuerHashes(caCert, digest);
  const l = p256();
  leafKey = l.privateKey;
  leafSpki = l.spki;
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("DER", () => {
  it("writes each length in the shortest form X.690 allows, and reads it back", () => {
    const cases: [number, string][] = [
      [0, "0400"],
      [0x7f, "047f"],
      [0x80, "048180"],
      [0xff, "0481ff"],
      [0x100, "04820100"],
      [0xffff, "0482ffff"],
      [0x10000, "0483010000"],
      [0x1000000, "048401000000"],
    ];
    for (const [length, header] of cases) {
      // The contents in two parts: tlv concatenates them behind the header.
      const first = new Uint8Array(Math.floor(length / 2)).fill(0xaa);
      const second = new Uint8Array(length - first.length).fill(0xbb);
      const der = tlv(TAG.OCTET_STRING, first, second);
      expect(Buffer.from(der.subarray(0, header.length / 2)).toString("hex"), `length ${length}`).toBe(header);
      expect(der.length).toBe(header.length / 2 + length);
      const read = readTlv(der);
      expect(read.end).toBe(der.length);
      expect(Buffer.from(read.content).equals(Buffer.concat([first, second]))).toBe(true);
    }
  });
});

describe("CRL", () => {
  const revokedAt = new Date(Date.now() - 60_000);
  // High-bit serials (sign byte), a one-byte serial, a 16-byte serial, and every reason code.
  const ENTRIES: CrlEntry[] = [
    { serial: "ff0102", revokedAt, reason: 1 },
    { serial: "0a", revokedAt, reason: null },
    { serial: "7f", revokedAt, reason: 0 },
    { serial: "80", revokedAt, reason: 2 },
    { serial: "5f3a9c0e11d4b2a7c8e9f00112233445", revokedAt, reason: 3 },
    { serial: "0100", revokedAt, reason: 4 },
    { serial: "0101", revokedAt, reason: 5 },
    { serial: "0102", revokedAt, reason: 6 },
    { serial: "0103", revokedAt, reason: 8 },
    { serial: "0104", revokedAt, reason: 9 },
    { serial: "0105", revokedAt, reason: 10 },
  ];
  const REASON_TEXT: Record<number, string> = {
    1: "Key Compromise",
    2: "CA Compromise",
    3: "Affiliation Changed",
    4: "Superseded",
    5: "Cessation Of Operation",
    6: "Certificate Hold",
    8: "Remove From CRL",
    9: "Privilege Withdrawn",
    10: "AA Compromise",
  };

  const crlOf = (entries: readonly CrlEntry[], crlNumber = 4660n) =>
    buildCrl(
      {
        issuer: caName,
        authorityKeyId: caKeyId,
        thisUpdate: new Date(Date.now() - 60_000),
        nextUpdate: new Date(Date.now() + 86400_000),
        crlNumber,
        entries: entries.map(encodeCrlEntry),
        signatureAlgorithm: caSigner.signatureAlgorithm,
      },
      caSigner,
    );

  /** `openssl crl -text`'s revoked list as serial → reason text (null: no reason extension). */
  function revokedList(text: string): Map<string, string | null> {
    const section = text.split("Revoked Certificates:")[1]?.split(/\n\s+Signature Algorithm/)[0] ?? "";
    const out = new Map<string, string | null>();
    for (const chunk of section.split("Serial Number: ").slice(1)) {
      const serial = (chunk.split("\n")[0] as string).trim().toLowerCase();
      out.set(serial, /CRL Reason Code: *\n\s+(.+)/.exec(chunk)?.[1]?.trim() ?? null);
    }
    return out;
  }

  it("is parsed by openssl with its number, serials and reasons, and its signature verifies", async () => {
    const file = write("crl.der", await crlOf(ENTRIES));
    const text = openssl(["crl", "-inform", "DER", "-in", file, "-noout", "-text"]);
    expect(text.status).toBe(0);
    expect(text.out).toContain("Version 2 (0x1)");
    expect(text.out).toContain("Issuer: CN = CRL and OCSP Test CA");
    expect(text.out).toMatch(/X509v3 CRL Number: *\n\s+4660\n/);
    expect(text.out).toMatch(
      new RegExp(
        `X509v3 Authority Key Identifier: *\\n\\s+${hex(caKeyId)
          .toUpperCase()
          .replace(/(..)(?=.)/g, "$1:")}`,
      ),
    );
    expect(revokedList(text.out)).toEqual(
      new Map(ENTRIES.map((e) => [e.serial, e.reason ? (REASON_TEXT[e.reason] as string) : null])),
    );

    const verify = openssl(["crl", "-inform", "DER", "-in", file, "-CAfile", caFile(), "-noout"]);
    expect(verify.out).toContain("verify OK");
    // A changed CRL number (the last byte of the TBSCertList) breaks the signature.
    const tampered = await crlOf(ENTRIES);
    const last = readTlv(tampered, readTlv(tampered).start).end - 1;
    tampered[last] = (tampered[last] as number) ^ 1;
    const bad = openssl(["crl", "-inform", "DER", "-in", write("bad.der", tampered), "-CAfile", caFile(), "-noout"]);
    expect(bad.out).toContain("verify failure");
  });

  it("leaves out revokedCertificates when nothing is revoked", async () => {
    const der = await crlOf([], 0n);
    const tbs = readTlv(readTlv(der).content);
    // version, signature, issuer, thisUpdate, nextUpdate, [0] crlExtensions.
    expect(readChildren(tbs.content).map((c) => c.tag)).toEqual([0x02, 0x30, 0x30, 0x17, 0x17, 0xa0]);
    const text = openssl(["crl", "-inform", "DER", "-in", write("empty.der", der), "-noout", "-text"]).out;
    expect(text).toContain("No Revoked Certificates.");
    expect(text).toMatch(/X509v3 CRL Number: *\n\s+0\n/);
    expect(
      openssl(["crl", "-inform", "DER", "-in", join(dir, "empty.der"), "-CAfile", caFile(), "-noout"]).out,
    ).toContain("verify OK");
    expect(pkijs.CertificateRevocationList.fromBER(der as Uint8Array<ArrayBuffer>).revokedCertificates).toBeUndefined();
  });

  it("is read by pkijs with the same entries and verifies against the CA", async () => {
    const crlNumber = (1n << 64n) + 5n;
    const crl = pkijs.CertificateRevocationList.fromBER((await crlOf(ENTRIES, crlNumber)) as Uint8Array<ArrayBuffer>);
    expect(crl.version).toBe(1);
    const entries = (crl.revokedCertificates ?? []).map((r) => {
      const reason = r.crlEntryExtensions?.extensions.find((x) => x.extnID === "2.5.29.21");
      return {
        serial: r.userCertificate.toBigInt(),
        revokedAt: r.revocationDate.value.getTime(),
        reason: reason ? hex(reason.extnValue.valueBlock.valueHexView) : null,
        extensions: r.crlEntryExtensions?.extensions.length ?? 0,
      };
    });
    expect(entries).toEqual(
      ENTRIES.map((e) => ({
        serial: BigInt(`0x${e.serial}`),
        revokedAt: Math.floor(e.revokedAt.getTime() / 1000) * 1000,
        reason: e.reason ? `0a010${e.reason.toString(16)}` : null,
        extensions: e.reason ? 1 : 0,
      })),
    );
    const number = crl.crlExtensions?.extensions.find((x) => x.extnID === "2.5.29.20");
    expect(number?.critical).toBe(false);
    expect(hex(number?.extnValue.valueBlock.valueHexView ?? new Uint8Array())).toBe("0209010000000000000005");
    const aki = crl.crlExtensions?.extensions.find((x) => x.extnID === "2.5.29.35");
    expect(hex(aki?.extnValue.valueBlock.valueHexView ?? new Uint8Array())).toBe(`30168014${hex(caKeyId)}`);
    const issuerCertificate = pkijs.Certificate.fromBER(caCert as Uint8Array<ArrayBuffer>);
    expect(await crl.verify({ issuerCertificate })).toBe(true);
  });

  it("makes openssl verify reject a listed certificate and accept an unlisted one", async () => {
    write("crl.pem", toPem("X509 CRL", await crlOf(ENTRIES)));
    const verify = (file: string) =>
      openssl(["verify", "-crl_check", "-CAfile", caFile(), "-CRLfile", join(dir, "crl.pem"), file]);
    for (const serial of ["ff0102", "7f", "5f3a9c0e11d4b2a7c8e9f00112233445"]) {
      const r = verify(await leaf(serial));
      expect(r.status, serial).not.toBe(0);
      expect(r.out, serial).toContain("certificate revoked");
    }
    const good = verify(await leaf("0b"));
    expect(good.out).toMatch(/: OK\n/);
    expect(good.status).toBe(0);
  });

  it("encodes serials as minimal positive INTEGERs and a reasonCode only when it says something", () => {
    const at = new Date("2026-03-01T12:00:00.999Z");
    const time = `170d${Buffer.from("260301120000Z").toString("hex")}`;
    expect(hex(encodeCrlEntry({ serial: "80", revokedAt: at, reason: null }))).toBe(`301302020080${time}`);
    expect(encodeCrlEntry({ serial: "80", revokedAt: at, reason: 0 })).toEqual(
      encodeCrlEntry({ serial: "80", revokedAt: at, reason: null }),
    );
    expect(hex(encodeCrlEntry({ serial: "7f", revokedAt: at, reason: 1 }))).toBe(
      `302002017f${time}300c300a0603551d1504030a0101`,
    );
    // RFC 5280 §5.1.2.6: GeneralizedTime from 2050.
    expect(hex(encodeCrlEntry({ serial: "01", revokedAt: new Date("2050-01-01T00:00:00Z"), reason: null }))).toBe(
      `3014020101180f${Buffer.from("20500101000000Z").toString("hex")}`,
    );
    expect(() => encodeCrlEntry({ serial: "01", revokedAt: new Date(Number.NaN), reason: null })).toThrow(RangeError);
    for (const serial of ["", "abc", "00ff", "FF", "zz", "0g"]) {
      expect(() => encodeCrlEntry({ serial, revokedAt: at, reason: null }), serial).toThrow(/invalid serial/);
    }
    for (const reason of [7, 11, -1, 1.5]) {
      expect(() => encodeCrlEntry({ serial: "01", revokedAt: at, reason }), String(reason)).toThrow(RangeError);
    }
  });

  it("writes revocation dates as encodeTime does, UTCTime from 1950 through 2049", () => {
    const dates = ["1950-01-01T00:00:00Z", "1949-12-31T23:59:59Z", "2049-12-31T23:59:59Z", "2050-01-01T00:00:00Z"].map(
      (d) => new Date(d),
    );
    // Every few months from 1900 to 2200, at varying times of day.
    for (let t = Date.UTC(1900, 0, 1); t < Date.UTC(2200, 0, 1); t += 211 * 86400_000 + 3_723_457)
      dates.push(new Date(t));
    for (const d of dates) {
      // SEQUENCE header, INTEGER 1, then the time.
      expect(encodeCrlEntry({ serial: "01", revokedAt: d, reason: null }).subarray(5), d.toISOString()).toEqual(
        encodeTime(d),
      );
    }
  });

  it("refuses an out-of-range CRL number and a signature algorithm that is not the signer's", async () => {
    await expect(crlOf([], -1n)).rejects.toThrow(RangeError);
    await expect(crlOf([], 1n << 159n)).rejects.toThrow(RangeError);
    await expect(
      buildCrl(
        {
          issuer: caName,
          authorityKeyId: caKeyId,
          thisUpdate: new Date(),
          nextUpdate: new Date(),
          crlNumber: 1n,
          entries: [],
          signatureAlgorithm: "1.2.840.10045.4.3.3",
        },
        caSigner,
      ),
    ).rejects.toThrow(/not the signer's/);
  });
});

describe("OCSP", () => {
  /** A request made by `openssl ocsp`; `args` go before the certificates and serials. */
  function opensslRequest(name: string, args: string[]): Uint8Array {
    const file = join(dir, name);
    const r = openssl(["ocsp", "-issuer", caFile(), ...args, "-reqout", file]);
    expect(r.status, r.out).toBe(0);
    return new Uint8Array(readFileSync(file));
  }

  const STATUS: Record<string, OcspStatus> = {
    ff0102: { type: "revoked", revokedAt: new Date(Date.now() - 120_000), reason: 1 },
    "0b": { type: "good" },
  };

  async function respond(
    request: OcspRequest,
    opts: { nonce?: Uint8Array | null; signer?: NodeEcdsaSigner; keyHash?: Uint8Array; certs?: Uint8Array[] } = {},
  ): Promise<Uint8Array> {
    const now = new Date();
    return buildOcspResponse(
      {
        responderKeyHash: opts.keyHash ?? caHashes["SHA-1"].key,
        producedAt: now,
        responses: request.certIds.map((c) =>
          encodeSingleResponse({
            certId: c.raw,
            status: (c.serial && STATUS[c.serial]) || { type: "unknown" },
            thisUpdate: now,
            nextUpdate: new Date(now.getTime() + 3600_000),
          }),
        ),
        nonce: opts.nonce === null ? undefined : (opts.nonce ?? request.nonce),
        certs: opts.certs,
        signatureAlgorithm: (opts.signer ?? caSigner).signatureAlgorithm,
      },
      opts.signer ?? caSigner,
    );
  }

  /** openssl ocsp checking `response` against `request` (signature, nonce), printing it. */
  function check(name: string, response: Uint8Array, trust: string[] = ["-VAfile", caFile()]) {
    write(`${name}-resp.der`, response);
    return openssl(["ocsp", "-respin", `${name}-resp.der`, "-reqin", `${name}-req.der`, ...trust, "-resp_text"]);
  }

  it("parses openssl's SHA-1 request with a nonce and answers it so that openssl verifies the answer", async () => {
    const der = opensslRequest("sha1-req.der", ["-nonce", "-serial", "0xff0102", "-serial", "0x0b", "-serial", "0x0c"]);
    const request = parseOcspRequest(der, 10);
    expect(request.certIds.map((c) => c.serial)).toEqual(["ff0102", "0b", "0c"]);
    for (const id of request.certIds) {
      expect(id.hashAlgorithm).toBe("SHA-1");
      expect(id.issuerNameHash).toEqual(caHashes["SHA-1"].name);
      expect(id.issuerKeyHash).toEqual(caHashes["SHA-1"].key);
      // The CertID as received, for the response to echo.
      expect(hex(der)).toContain(hex(id.raw));
      expect(readChildren(readTlv(id.raw).content)).toHaveLength(4);
    }
    // openssl's nonce: an OCTET STRING of 16 random bytes inside extnValue.
    const reqText = openssl(["ocsp", "-reqin", "sha1-req.der", "-req_text"]).out;
    expect(request.nonce).toHaveLength(18);
    expect(reqText).toMatch(new RegExp(`OCSP Nonce: *\\n\\s+${hex(request.nonce as Uint8Array).toUpperCase()}\\n`));

    const r = check("sha1", await respond(request));
    expect(r.out).toContain("Response verify OK");
    expect(r.out).not.toMatch(/WARNING|Nonce Verify error/);
    expect(r.status).toBe(0);
    expect(r.out).toContain(`Responder Id: ${hex(caHashes["SHA-1"].key).toUpperCase()}`);
    const statuses = r.out.split("Certificate ID:").slice(1);
    expect(statuses[0]).toMatch(
      /Serial Number: FF0102\n\s+Cert Status: revoked\n\s+Revocation Time: .+\n\s+Revocation Reason: keyCompromise \(0x1\)/,
    );
    expect(statuses[1]).toMatch(/Serial Number: 0B\n\s+Cert Status: good\n/);
    expect(statuses[2]).toMatch(/Serial Number: 0C\n\s+Cert Status: unknown\n/);
    expect(r.out).toMatch(
      new RegExp(`Response Extensions:\\n\\s+OCSP Nonce: *\\n\\s+${hex(request.nonce as Uint8Array).toUpperCase()}\\n`),
    );

    // openssl's own per-serial summary also checks thisUpdate / nextUpdate against the clock.
    const summary = openssl([
      "ocsp",
      "-respin",
      "sha1-resp.der",
      "-issuer",
      caFile(),
      "-VAfile",
      caFile(),
      "-no_nonce",
      "-serial",
      "0xff0102",
      "-serial",
      "0x0b",
      "-serial",
      "0x0c",
    ]);
    expect(summary.status).toBe(0);
    expect(summary.out).not.toContain("WARNING");
    expect(summary.out).toMatch(/0xff0102: revoked\n(\t.+\n)*\tReason: keyCompromise\n/);
    expect(summary.out).toMatch(/0x0b: good\n/);
    expect(summary.out).toMatch(/0x0c: unknown\n/);
  });

  it("fails openssl's nonce check with another nonce and warns without one", async () => {
    const request = parseOcspRequest(opensslRequest("nonce-req.der", ["-nonce", "-serial", "0x0b"]), 10);
    const other = Uint8Array.of(0x04, 0x10, ...new Uint8Array(16).fill(7));
    const mismatch = check("nonce", await respond(request, { nonce: other }));
    expect(mismatch.out).toContain("Nonce Verify error");
    expect(mismatch.status).not.toBe(0);
    const missing = check("nonce", await respond(request, { nonce: null }));
    expect(missing.out).toContain("WARNING: no nonce in response");
    expect(missing.out).toContain("Response verify OK");
    const echoed = check("nonce", await respond(request));
    expect(echoed.out).not.toMatch(/WARNING|Nonce Verify error/);
    expect(echoed.status).toBe(0);
  });

  it("parses SHA-256 CertIDs of a certificate and pkijs finds that certificate's status", async () => {
    const serial = "5f3a9c0e11d4b2a7c8e9f00112233445";
    const leafFile = await leaf(serial);
    const request = parseOcspRequest(opensslRequest("sha256-req.der", ["-no_nonce", "-sha256", "-cert", leafFile]), 10);
    expect(request.nonce).toBeUndefined();
    expect(request.certIds).toHaveLength(1);
    const [id] = request.certIds;
    expect(id?.hashAlgorithm).toBe("SHA-256");
    expect(id?.issuerNameHash).toEqual(caHashes["SHA-256"].name);
    expect(id?.issuerKeyHash).toEqual(caHashes["SHA-256"].key);
    expect(id?.serial).toBe(serial);

    const response = await respond(request);
    const r = check("sha256", response);
    expect(r.out).toContain("Response verify OK");
    expect(r.out).toContain("Hash Algorithm: sha256");
    expect(r.out).toContain("Cert Status: unknown");
    expect(r.status).toBe(0);

    const basic = basicOf(response);
    const leafDer = pkijs.Certificate.fromBER(
      pemCertificates(readFileSync(leafFile, "utf8"))[0] as Uint8Array<ArrayBuffer>,
    );
    const status = await basic.getCertificateStatus(
      leafDer,
      pkijs.Certificate.fromBER(caCert as Uint8Array<ArrayBuffer>),
    );
    expect(status).toEqual({ isForCertificate: true, status: 2 });
  });

  function basicOf(response: Uint8Array): pkijs.BasicOCSPResponse {
    const outer = pkijs.OCSPResponse.fromBER(response as Uint8Array<ArrayBuffer>);
    expect(outer.responseStatus.valueBlock.valueDec).toBe(0);
    expect(outer.responseBytes?.responseType).toBe(id_pkix_ocsp_basic);
    return pkijs.BasicOCSPResponse.fromBER(
      outer.responseBytes?.response.valueBlock.valueHexView as Uint8Array<ArrayBuffer>,
    );
  }

  const pkijsCa = () => pkijs.Certificate.fromBER(caCert as Uint8Array<ArrayBuffer>);

  it("is read and verified by pkijs with the same statuses and nonce", async () => {
    const request = parseOcspRequest(
      opensslRequest("pkijs-req.der", ["-nonce", "-serial", "0xff0102", "-serial", "0x0b", "-serial", "0x0c"]),
      10,
    );
    // pkijs looks for the signer among the response's certificates only.
    const basic = basicOf(await respond(request, { certs: [caCert] }));
    expect(await basic.verify({ trustedCerts: [pkijsCa()] })).toBe(true);
    const forged = basicOf(await respond(request, { certs: [caCert], signer: new NodeEcdsaSigner(p256().privateKey) }));
    expect(await forged.verify({ trustedCerts: [pkijsCa()] })).toBe(false);
    const data = basic.tbsResponseData;
    expect(data.responses.map((r) => r.certStatus.idBlock.tagNumber)).toEqual([1, 0, 2]);
    expect(data.responses.map((r) => hex(r.certID.serialNumber.valueBlock.valueHexView))).toEqual([
      "00ff0102",
      "0b",
      "0c",
    ]);
    expect(
      data.responses.every((r) => r.nextUpdate && r.nextUpdate.getTime() - r.thisUpdate.getTime() === 3600_000),
    ).toBe(true);
    const nonce = data.responseExtensions?.find((x) => x.extnID === id_pkix_ocsp_nonce);
    expect(nonce?.extnValue.valueBlock.valueHexView).toEqual(request.nonce);
    expect(data.producedAt.getMilliseconds()).toBe(0);
  });

  it("carries a delegated responder's certificate, which openssl accepts only with id-kp-OCSPSigning", async () => {
    const responder = p256();
    const responderSigner = new NodeEcdsaSigner(responder.privateKey);
    const responderCert = (ekus: string[]) => {
      const now = Date.now();
      return buildCertificate(
        {
          serial: Uint8Array.of(0x42),
          issuer: caName,
          subject: encodeName([{ type: id_at_commonName, value: "OCSP responder" }]),
          notBefore: new Date(now - 3600_000),
          notAfter: new Date(now + 86400_000),
          spki: responder.spki,
          extensions: [
            basicConstraints(false),
            keyUsage(["digitalSignature"]),
            extendedKeyUsage(ekus),
            authorityKeyIdentifier(caKeyId),
            new Extension({
              extnID: id_pkix_ocsp_nocheck,
              critical: false,
              extnValue: new OctetString(Uint8Array.of(5, 0)),
            }),
          ],
        },
        caSigner,
      );
    };
    const request = parseOcspRequest(opensslRequest("delegated-req.der", ["-nonce", "-serial", "0x0b"]), 10);
    const keyHash = await keyIdentifier(responder.spki, digest);
    const trust = ["-CAfile", caFile()];

    const delegated = await respond(request, {
      signer: responderSigner,
      keyHash,
      certs: [await responderCert([id_kp_OCSPSigning])],
    });
    const ok = check("delegated", delegated, trust);
    expect(ok.out).toContain("Response verify OK");
    expect(ok.out).toContain(`Responder Id: ${hex(keyHash).toUpperCase()}`);
    expect(ok.status).toBe(0);
    expect(basicOf(delegated).certs).toHaveLength(1);
    expect(await basicOf(delegated).verify({ trustedCerts: [pkijsCa()] })).toBe(true);

    const wrongUsage = await respond(request, {
      signer: responderSigner,
      keyHash,
      certs: [await responderCert(["1.3.6.1.5.5.7.3.2"])],
    });
    const refused = check("delegated", wrongUsage, trust);
    expect(refused.out).toContain("Response Verify Failure");
    expect(refused.status).not.toBe(0);
    await expect(basicOf(wrongUsage).verify({ trustedCerts: [pkijsCa()] })).rejects.toThrow();
  });

  /** A hand-built OCSPRequest for what openssl will not produce. */
  const certIdOf = (o: { hashOid?: string; params?: boolean; hashLength?: number; serial?: number[] } = {}) =>
    sequence(
      sequence(encodeOid(o.hashOid ?? id_sha1), ...(o.params === false ? [] : [Uint8Array.of(TAG.NULL, 0)])),
      tlv(TAG.OCTET_STRING, caHashes["SHA-1"].name.subarray(0, o.hashLength ?? 20)),
      tlv(TAG.OCTET_STRING, caHashes["SHA-1"].key),
      tlv(TAG.INTEGER, Uint8Array.from(o.serial ?? [0x0b])),
    );
  const requestOf = (o: { version?: number; certIds?: Uint8Array[]; nonce?: Uint8Array; requestor?: boolean } = {}) =>
    sequence(
      sequence(
        ...(o.version === undefined ? [] : [tlv(0xa0, tlv(TAG.INTEGER, Uint8Array.of(o.version)))]),
        ...(o.requestor ? [tlv(0xa1, tlv(0x82, new TextEncoder().encode("client.example")))] : []),
        sequence(...(o.certIds ?? [certIdOf()]).map((c) => sequence(c))),
        ...(o.nonce
          ? [tlv(0xa2, sequence(sequence(encodeOid(id_pkix_ocsp_nonce), tlv(TAG.OCTET_STRING, o.nonce))))]
          : []),
      ),
    );

  it("ignores a signature and requestorName and tolerates an explicit v1 and absent NULL parameters", async () => {
    write("leaf.key", leafKey.export({ type: "pkcs8", format: "pem" }) as string);
    const signed = opensslRequest("signed-req.der", [
      "-signer",
      await leaf("0b"),
      "-signkey",
      join(dir, "leaf.key"),
      "-no_nonce",
      "-serial",
      "0x0b",
    ]);
    const signedText = openssl(["ocsp", "-reqin", "signed-req.der", "-req_text"]).out;
    expect(signedText).toContain("Requestor Name: DirName:CN = leaf 0b");
    expect(signedText).toContain("Signature Algorithm: ecdsa-with-SHA256");
    expect(parseOcspRequest(signed, 1).certIds.map((c) => c.serial)).toEqual(["0b"]);

    const der = requestOf({ version: 0, requestor: true, certIds: [certIdOf({ params: false })] });
    expect(openssl(["ocsp", "-reqin", write("v1.der", der), "-req_text"]).out).toContain("Version: 1 (0x0)");
    const [id] = parseOcspRequest(der, 1).certIds;
    expect(id?.hashAlgorithm).toBe("SHA-1");
    expect(id?.serial).toBe("0b");
    expect(id?.raw).toEqual(certIdOf({ params: false }));
  });

  it("reads serials as the stored form: leading zero bytes stripped, null when zero or negative", () => {
    const serialOf = (serial: number[]) =>
      parseOcspRequest(requestOf({ certIds: [certIdOf({ serial })] }), 1).certIds[0]?.serial;
    expect(serialOf([0x00, 0xff, 0x01])).toBe("ff01");
    expect(serialOf([0x7f, 0x00])).toBe("7f00");
    expect(serialOf([0x00])).toBeNull();
    expect(serialOf([0xff])).toBeNull();
    expect(serialOf([0x80, 0x01])).toBeNull();
  });

  it("echoes a nonce of up to 128 bytes", () => {
    const nonce = Uint8Array.from({ length: 128 }, (_, i) => i);
    expect(parseOcspRequest(requestOf({ nonce }), 1).nonce).toEqual(nonce);
  });

  it("refuses malformed requests with OcspError", () => {
    const good = opensslRequest("bad-req.der", ["-nonce", "-serial", "0x0b", "-serial", "0x0c", "-serial", "0x0d"]);
    expect(parseOcspRequest(good, 3).certIds).toHaveLength(3);
    const withOuterTag = (tag: number) => Uint8Array.from([tag, ...good.subarray(1)]);
    const cases: [string, Uint8Array, number, RegExp][] = [
      ["truncated", good.subarray(0, good.length - 1), 3, /truncated/],
      ["trailing bytes", Uint8Array.from([...good, 0x00]), 3, /trailing bytes/],
      ["not a SEQUENCE", withOuterTag(0x31), 3, /expected OCSPRequest/],
      ["indefinite length", Uint8Array.of(0x30, 0x80, 0x00, 0x00), 3, /indefinite/],
      ["empty", new Uint8Array(0), 3, /truncated/],
      ["more requests than allowed", good, 2, /too many requests/],
      ["empty request list", requestOf({ certIds: [] }), 3, /empty requestList/],
      [
        "CertID not a SEQUENCE",
        requestOf({ certIds: [tlv(TAG.OCTET_STRING, Uint8Array.of(1))] }),
        3,
        /expected CertID/,
      ],
      ["version v2", requestOf({ version: 1 }), 3, /unsupported version/],
      [
        "SHA-1 hash of the wrong length",
        requestOf({ certIds: [certIdOf({ hashLength: 19 })] }),
        3,
        /not SHA-1 digests/,
      ],
      ["nonce over 128 bytes", requestOf({ nonce: new Uint8Array(129) }), 3, /nonce longer than 128/],
      [
        "SHA-384 CertID",
        opensslRequest("sha384-req.der", ["-no_nonce", "-sha384", "-serial", "0x0b"]),
        3,
        /unsupported hash algorithm 2\.16\.840\.1\.101\.3\.4\.2\.2/,
      ],
    ];
    for (const [name, der, max, message] of cases) {
      expect(() => parseOcspRequest(der, max), name).toThrow(OcspError);
      expect(() => parseOcspRequest(der, max), name).toThrow(message);
    }
  });

  it("encodes a revocation without a reason, and times as GeneralizedTime", () => {
    const certId = certIdOf();
    const t = new Date("2026-03-01T12:00:00.500Z");
    const gt = (s: string) => `180f${Buffer.from(s).toString("hex")}`;
    const single = (status: OcspStatus) =>
      hex(encodeSingleResponse({ certId, status, thisUpdate: t, nextUpdate: new Date("2050-01-01T00:00:00Z") }));
    const tail = `${gt("20260301120000Z")}a011${gt("20500101000000Z")}`;
    expect(single({ type: "good" })).toBe(`3062${hex(certId)}8000${tail}`);
    expect(single({ type: "unknown" })).toBe(`3062${hex(certId)}8200${tail}`);
    expect(single({ type: "revoked", revokedAt: t, reason: null })).toBe(
      `3073${hex(certId)}a111${gt("20260301120000Z")}${tail}`,
    );
    expect(single({ type: "revoked", revokedAt: t, reason: 0 })).toBe(
      `3078${hex(certId)}a116${gt("20260301120000Z")}a0030a0100${tail}`,
    );
    expect(() => single({ type: "revoked", revokedAt: t, reason: 7 })).toThrow(RangeError);
    // Four-digit years only: a date past 9999 has no GeneralizedTime, and is refused.
    expect(() =>
      encodeSingleResponse({
        certId,
        status: { type: "good" },
        thisUpdate: t,
        nextUpdate: new Date("+010000-01-01T00:00:00Z"),
      }),
    ).toThrow(RangeError);
  });

  it("answers errors as a bare status that openssl names", () => {
    expect(hex(ocspErrorResponse(1))).toBe("30030a0101");
    const names = { 1: "malformedrequest", 2: "internalerror", 3: "trylater", 5: "sigrequired", 6: "unauthorized" };
    for (const [code, name] of Object.entries(names)) {
      const der = ocspErrorResponse(Number(code) as 1 | 2 | 3 | 5 | 6);
      const text = openssl(["ocsp", "-respin", write(`error-${code}.der`, der), "-resp_text", "-noverify"]).out;
      expect(text).toContain(`Responder Error: ${name} (${code})`);
      const parsed = pkijs.OCSPResponse.fromBER(der as Uint8Array<ArrayBuffer>);
      expect(parsed.responseStatus.valueBlock.valueDec).toBe(Number(code));
      expect(parsed.responseBytes).toBeUndefined();
    }
  });
});
