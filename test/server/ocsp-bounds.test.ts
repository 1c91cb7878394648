import * as pkijs from "pkijs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CLI_ACTOR } from "../../server/authority/actor.ts";
import { revokeCertificate } from "../../server/authority/revoke.ts";
import { fromHex } from "../../server/pki/der.ts";
import { createToken, generateKeys, type Harness, harness, makeCsr, peer } from "../support/fixtures.ts";
import { ocspRequest } from "../support/ocsp.ts";

/** The OCSP responder under replayed spellings: one certificate costs a bounded cache, whatever is sent. */
describe("OCSP cache bounds", () => {
  let h: Harness;
  let serial: string;

  beforeEach(async () => {
    h = await harness();
    const token = await createToken(h, "ocsp-1");
    serial = (
      await h.authority.enroll({
        csr: await makeCsr(await generateKeys("P-256"), { cn: "ocsp-1" }),
        credentials: { type: "bearer", token },
        peer: peer(),
      })
    ).serial;
  });
  afterEach(() => h.close());

  const statusOf = (der: Uint8Array) =>
    pkijs.OCSPResponse.fromBER(der as Uint8Array<ArrayBuffer>).responseStatus.valueBlock.valueDec;

  it("refuses a serial padded beyond its minimal DER INTEGER (malformedRequest) and answers the minimal one", async () => {
    const minimal = fromHex(serial);
    const prefix = (minimal[0] as number) & 0x80 ? [0x00, 0x00] : [0x00];
    for (const pad of [prefix, [...prefix, 0x00, 0x00]]) {
      const padded = Uint8Array.from([...pad, ...minimal]);
      const r = await h.responders.ocsp(await ocspRequest(h, serial, undefined, { serialContent: padded }));
      expect(r.status).toBe("malformedRequest");
      expect(statusOf(r.der)).toBe(1);
    }
    const tooLong = Uint8Array.from([0x01, ...new Uint8Array(21)]);
    expect((await h.responders.ocsp(await ocspRequest(h, serial, undefined, { serialContent: tooLong }))).status).toBe(
      "malformedRequest",
    );
    const ok = await h.responders.ocsp(await ocspRequest(h, serial));
    expect(ok.status).toBe("successful");
  });

  it("keeps at most one cached answer per spelling of a serial (4), and none for nonces or unknown serials", async () => {
    for (let round = 0; round < 50; round++) {
      for (const hash of ["SHA-1", "SHA-256"] as const) {
        for (const params of ["null", "absent"] as const) {
          const r = await h.responders.ocsp(await ocspRequest(h, serial, undefined, { hash, params }));
          expect(r.status).toBe("successful");
        }
      }
      // A nonce makes every answer unique: signed, never kept.
      await h.responders.ocsp(await ocspRequest(h, serial, Uint8Array.of(round, 1, 2, 3, 4, 5, 6, 7)));
      // A serial we never issued: answered unknown, never kept.
      await h.responders.ocsp(await ocspRequest(h, (0x7f000000 + round).toString(16)));
    }
    const size = h.responders.ocspCacheSize();
    expect(size).toMatchObject({ serials: 1, entries: 4 });
    expect(size.bytes).toBeGreaterThan(4 * 100);
    expect(size.bytes).toBeLessThan(4 * 2048);
  });

  it("counts the bytes it holds and gives them back when a revocation drops the answers", async () => {
    await h.responders.ocsp(await ocspRequest(h, serial));
    expect(h.responders.ocspCacheSize().bytes).toBeGreaterThan(0);
    await revokeCertificate(h.deps, { serial, reason: "keyCompromise", actor: CLI_ACTOR });
    expect(h.responders.ocspCacheSize()).toEqual({ serials: 0, entries: 0, bytes: 0 });
    const revoked = await h.responders.ocsp(await ocspRequest(h, serial));
    expect(revoked.status).toBe("successful");
    expect(h.responders.ocspCacheSize()).toMatchObject({ serials: 1, entries: 1 });
  });
});
