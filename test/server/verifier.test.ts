/**
 * The two signature verifiers behind the port give the same answers: WebCrypto (the
 * portable one the core tests run with) and the Node server's worker-thread one.
 */
import { afterAll, describe, expect, it } from "vitest";
import { checkSignature } from "../../server/adapters/node/signature-check.mjs";
import { toCheck, WorkerVerifier } from "../../server/adapters/node/verify-pool.ts";
import { parseCsr } from "../../server/pki/csr.ts";
import { describeKey } from "../../server/pki/keys.ts";
import {
  SignatureAlgorithmError,
  type SignatureVerifier,
  verifySignature,
  webCryptoVerifier,
} from "../../server/pki/verify.ts";
import { crypto, generateKeys, makeCsr } from "../support/fixtures.ts";

const pool = new WorkerVerifier(2);
afterAll(() => pool.close());

const verifiers: [string, SignatureVerifier][] = [
  ["WebCrypto", webCryptoVerifier(crypto.subtle)],
  ["worker threads", pool],
];

const KINDS = ["P-256", "P-384", "Ed25519", "RSA-2048"] as const;

/** Flips the lowest bit of the last (or given) byte of a copy. */
function flipped(bytes: Uint8Array, at = bytes.length - 1): Uint8Array {
  const out = bytes.slice();
  out[at] = (out[at] as number) ^ 1;
  return out;
}

async function signedSamples() {
  const out = [];
  for (const kind of KINDS) {
    const csr = parseCsr(await makeCsr(await generateKeys(kind), { cn: "dev" }));
    out.push({
      kind,
      signed: { spki: csr.spki, signatureAlgorithm: csr.signatureAlgorithm, signature: csr.signature, data: csr.info },
    });
  }
  return out;
}

describe.each(verifiers)("signature verifier: %s", (_name, verifier) => {
  it("accepts good signatures and refuses altered data or signatures", async () => {
    for (const { kind, signed } of await signedSamples()) {
      expect(await verifySignature(verifier, signed), kind).toBe(true);
      const data = flipped(signed.data);
      expect(await verifySignature(verifier, { ...signed, data }), `${kind} altered data`).toBe(false);
      const signature = flipped(signed.signature);
      expect(await verifySignature(verifier, { ...signed, signature }), `${kind} altered signature`).toBe(false);
    }
  });

  it("treats a malformed ECDSA signature as not verifying", async () => {
    const p256 = (await signedSamples()).find((s) => s.kind === "P-256");
    if (!p256) throw new Error("no sample");
    const { signed } = p256;
    for (const signature of [Uint8Array.of(0x30, 0x00), signed.signature.subarray(0, 10), Uint8Array.of(1, 2, 3)]) {
      expect(await verifySignature(verifier, { ...signed, signature })).toBe(false);
    }
  });

  it("refuses a public key that cannot be imported (a point off the curve)", async () => {
    const [p256] = await signedSamples();
    if (!p256) throw new Error("no sample");
    const spki = flipped(p256.signed.spki); // Y no longer matches X
    await expect(verifySignature(verifier, { ...p256.signed, spki })).rejects.toBeInstanceOf(SignatureAlgorithmError);
  });

  it("keeps answers in order when many checks are in flight at once", async () => {
    const samples = await signedSamples();
    const cases = Array.from({ length: 60 }, (_, i) => {
      const { signed } = samples[i % samples.length] as (typeof samples)[number];
      const good = i % 3 !== 0;
      return { signed: { ...signed, data: good ? signed.data : flipped(signed.data, 0) }, good };
    });
    const results = await Promise.all(cases.map((c) => verifySignature(verifier, c.signed)));
    expect(results).toEqual(cases.map((c) => c.good));
  });
});

// The worker imports an uncompressed EC point through WebCrypto's "raw" import on
// OpenSSL before 3.5 and as DER on 3.5 and later (signature-check.mjs): whichever line
// runs the suite, both imports are held to the same answers here.
describe.each([
  ["raw", true],
  ["DER", false],
])("EC public key imported as %s", (_name, rawImport) => {
  const check = (signed: { spki: Uint8Array; signature: Uint8Array; data: Uint8Array }, hash: "SHA-256" | "SHA-384") =>
    checkSignature(toCheck({ ...signed, key: describeKey(signed.spki), hash }), rawImport);

  it("gives the verifier's answers: good, altered data, altered signature, a point off the curve", async () => {
    for (const { kind, signed } of await signedSamples()) {
      if (kind !== "P-256" && kind !== "P-384") continue;
      const hash = kind === "P-256" ? "SHA-256" : "SHA-384";
      expect(await check(signed, hash), kind).toBe(true);
      expect(await check({ ...signed, data: flipped(signed.data) }, hash), `${kind} altered data`).toBe(false);
      expect(await check({ ...signed, signature: flipped(signed.signature) }, hash), `${kind} altered signature`).toBe(
        false,
      );
      expect(await check({ ...signed, spki: flipped(signed.spki) }, hash), `${kind} off the curve`).toBe("bad-key");
    }
  });
});

describe("worker verifier lifecycle", () => {
  it("replaces a worker thread that died, and goes on answering", async () => {
    const v = new WorkerVerifier(1);
    try {
      const [sample] = await signedSamples();
      if (!sample) throw new Error("no sample");
      expect(await verifySignature(v, sample.signed)).toBe(true);
      const lanes = (v as unknown as { lanes: { worker: { terminate(): Promise<number> } }[] }).lanes;
      // terminate() resolves after the pool's own "exit" listener (registered first) replaced the lane.
      await lanes[0]?.worker.terminate();
      expect(await verifySignature(v, sample.signed)).toBe(true);
      expect(await verifySignature(v, { ...sample.signed, data: flipped(sample.signed.data) })).toBe(false);
    } finally {
      await v.close();
    }
  });

  it("refuses work once closed", async () => {
    const v = new WorkerVerifier(1);
    await v.close();
    await expect(
      v.verify({
        spki: new Uint8Array(),
        key: { kind: "Ed25519", label: "Ed25519" },
        signature: new Uint8Array(),
        data: new Uint8Array(),
      }),
    ).rejects.toThrow(/closed/);
  });
});
