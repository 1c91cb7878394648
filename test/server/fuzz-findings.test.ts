/**
 * Inputs the fuzzer (fuzz/, `npm run fuzz`) found to make a server/pki parser throw
 * something other than its documented error type, kept as hex. Each test names the
 * parser, the documented error, and what it threw before the fix.
 */
import { describe, expect, it } from "vitest";
import { CsrError, parseCsr } from "../../server/pki/csr.ts";
import { DerError, fromHex } from "../../server/pki/der.ts";
import { describeKey } from "../../server/pki/keys.ts";
import { readSpki, SpkiError } from "../../server/pki/spki.ts";

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
});
