/**
 * Inputs the fuzzer (fuzz/, `npm run fuzz`) found to make a server/pki parser throw
 * something other than its documented error type, kept as hex. Each test names the
 * parser, the documented error, and what it threw before the fix.
 */
import { describe, expect, it } from "vitest";
import { createApp, type RequestLog } from "../../server/app.ts";
import { readCertificate } from "../../server/pki/certificate.ts";
import { CsrError, parseCsr } from "../../server/pki/csr.ts";
import { DerError, fromHex } from "../../server/pki/der.ts";
import { describeKey } from "../../server/pki/keys.ts";
import { parsePem } from "../../server/pki/pem.ts";
import { readSpki, SpkiError } from "../../server/pki/spki.ts";
import { harness } from "../support/fixtures.ts";

/** What `f` throws (it must throw). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("did not throw");
}

describe("fuzz findings", () => {
  // A SubjectPublicKeyInfo whose AlgorithmIdentifier is an empty SEQUENCE: describeKey
  // read the OID of a missing element (TypeError); parseCsr masked the same TypeError,
  // for an empty signatureAlgorithm too, as "not a DER PKCS#10 certification request".
  it("an empty AlgorithmIdentifier is a DerError in describeKey and a CsrError that names it in parseCsr", () => {
    const spki = fromHex(
      "30463000034200048e46fa5dde760001bd46cc1cd3b5d5e15fadadbfcf4637779c9441b1779e1756cb4270e7b4a80e030b527dd86fec8b65ca44d19b1fe16628249ec23ab760cd88",
    );
    expect(thrown(() => describeKey(spki))).toBeInstanceOf(DerError);
    const csr = fromHex(
      "3081cb307d020100301b310d300b060355040a130466757a7a310a300806035504030c01663059301306072a8648ce3d020106082a8648ce3d030107034200048e46fa5dde760001bd46cc1cd3b5d5e15fadadbfcf4637779c9441b1779e1756cb4270e7b4a80e030b527dd86fec8b65ca44d19b1fe16628249ec23ab760cd88a0003000034800304502200d920f8dd27bbdeedd7103ad50bb366ad87320bf3a7f119f9941c962bddadac9022100ac9f6aed542aa94b3fd2ab8971cf2d401384bd187a46375913d038f19ae6bd3a",
    );
    const e = thrown(() => parseCsr(csr));
    expect(e).toBeInstanceOf(CsrError);
    expect((e as Error).message).toBe("expected an OBJECT IDENTIFIER");
  });

  // An EC key whose namedCurve OID has an arc near 2^62: readSpki decoded it to text
  // that lost digits, then re-encoding it for the canonical form threw a plain Error
  // ("invalid OID 2.4611686018427388000") instead of SpkiError.
  it("an EC curve OID with an arc beyond 2^53 is a SpkiError in readSpki", () => {
    const spki = fromHex(
      "305a301406072a8648ce3d02010609c08080808080808001034200042d19efc6e398f3796c6d2d5d81f4dfa359e7e2881318995d7444749897e572a2a71c1662832d75f412ce4f658d15b331fceded7c56222c4fc5242b4e28a56aaa",
    );
    expect(thrown(() => readSpki(spki))).toBeInstanceOf(SpkiError);
  });

  // Two damaged certificates on which @peculiar/asn1-schema (asn1js) threw RangeError
  // ("Offset is outside the bounds of the DataView", "byte length of Uint32Array should
  // be a multiple of 4"). readCertificate reads client-supplied IDevID certificates.
  it.each([
    "308201cb30820171a00302010202145ae15125d6a2346f8a824c77b33e562f199dff7d300a06082a8648ce3d0403023021310d300b060355040a0c0466757a7a3110300e06035504030c0766757a7a2d6361301e170d3236313230333137333635385a170d3236313230353137333635385a3021310d300b060355040a0c0466757a7a3110300e06035504030c0766757a7a2d63613059301306072a8648ce3d020106082a8648ce3d0301070342000489c6a3d0579bc603964cf89b8fe6a0fc6c2ed93d40544ebe5e3f7b9820ace6052c8a151d507077012e8e98e2838a4178a9d1284bb284b96749e9b6366a8037f3a381863081831e1d0603551d0e041604146e6d61077c45c250e4f86e5f5e0f92a2300e3870301f0603551d230418301680146e6d61077c45c250e4f86e5f5e0f92a2300e3870300f0603551d130101ff040530030101ff30300603551d1104293027820966757a7a2e7465737487047f00000186147370696666653a2f2f66757a7a2e746573742f78300a06082a8648ce3d040302034800304502206923960082b75f9d066d01666d80f98fd0d833fb9c3320eeb3041cc9e45ed67a022100a877dfc294add8a46790159a74da47311c250de1f6300ac042dabc5b28b153ec",
    "30820242308201e8a00302010202145ae15125d6a2346f8a824c77b33e562f199dff7d300a06082a8648ce3d0403023021310d300b060355040a0c0466757a7a3110300e06035504030c0766757a7a2d6361301e170d3236313230333137333635385a170d3236313230353137333635385a308181310d300b060355040a0c0466757a7a3170853e88d447f1977c04feb422784c32705370bdb79b4de8c0f4eeacc6ca587c25bda74d313818ce675f47d02f5a7e152366f223f0bf3574c1f2f0bcb6763c2ef31c3e33489bc844126d58381d82c4f9b2134b5270af9bd8d6570c5ba15263cb223d83a0f7b5a358539c19a54dce5726553059301306072a8648ce3d020106082a8648ce3d0301070342000489c6a3d0579bc603964cf89b8fe6a0fc6c2ed93d40544ebe5e3f7b9820ace6052c8a151d507077012e8e98e2838a4178a9d1284bb284b96749e9b6366a8037f3a3819c308199302f0603551d0e0428042680e7cffb5a0e295fcecd2bd47f014671f5d543579fc00244369935ed5e227f1222b3c4008fce301f0603551d230418301680146e6d61077c45c250e4f86e5f5e0f92a2300e38703013300730050603551d130101ff040530030101ff30300603551d1104293027820966757a7a2e7465737487047f00000186147370696666653a2f2f66757a7a2e746573742f78300a06082a8648ce3d040302034800304502206923960082b75f9d066d01666d80f98fd0d833fb9c3320eeb3041cc9e45ed67a022100a877dfc294add8a46790159a74da47311c250de1f6300ac042dabc5b28b153ec",
  ])("a damaged certificate is a DerError in readCertificate (%#)", (hex) => {
    expect(thrown(() => readCertificate(fromHex(hex)))).toBeInstanceOf(DerError);
  });
});

// The fuzzer's slowest PEM inputs: many BEGIN lines without an END. The lazy body
// pattern scanned from each BEGIN to the end of the text (quadratic): 64 KiB of them, the
// size of an IDevID in the operator API, took 264 ms; 360 KiB took seconds.
describe("fuzz findings: PEM", () => {
  it("BEGIN lines without their END cost linear time in parsePem", () => {
    const block = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
    const text = `${"-----BEGIN CERTIFICATE-----\n".repeat(20_000)}${block}`;
    const start = performance.now();
    const blocks = parsePem(text);
    expect(performance.now() - start).toBeLessThan(1_000);
    expect(blocks.map((b) => Array.from(b.der))).toEqual([[0, 1, 2]]);
  });
});

// The fuzzer's requests that announced a longer body than they sent and then closed the
// connection: reading the body failed with Node's "aborted" (ECONNRESET), and the app
// logged it as an "unhandled error" and answered 500 (counted as an internal error).
describe("fuzz findings: a client that closes its connection mid-body", () => {
  it.each([
    ["/pki/ocsp", "application/ocsp-request"],
    ["/.well-known/est/simpleenroll", "application/pkcs10"],
    ["/dashboard/login", "application/x-www-form-urlencoded"],
  ])("POST %s is no internal error", async (path, type) => {
    const h = await harness();
    try {
      const errors: unknown[] = [];
      const logged: RequestLog[] = [];
      const app = createApp({
        authority: h.authority,
        responders: h.responders,
        peer: () => ({ remoteAddress: "192.0.2.1" }),
        logger: { request: (e) => logged.push(e), error: (e) => errors.push(e) },
      });
      const closed = new AbortController();
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(10));
        },
        pull(controller) {
          // What @hono/node-server does when the socket closes: abort the request, fail its body.
          closed.abort("Client connection prematurely closed.");
          controller.error(Object.assign(new Error("aborted"), { code: "ECONNRESET" }));
        },
      });
      const res = await app.request(`https://fuzz.test${path}`, {
        method: "POST",
        body,
        headers: { "content-type": type, "content-length": "100" },
        signal: closed.signal,
        duplex: "half",
      } as RequestInit);
      expect(res.status).toBe(400);
      expect(errors).toEqual([]);
      expect(logged[0]).toMatchObject({ status: 400, refusal: "client_closed" });
    } finally {
      h.close();
    }
  });
});
