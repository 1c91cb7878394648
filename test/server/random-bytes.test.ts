import { webcrypto } from "node:crypto";
import { describe, expect, it } from "vitest";
import { randomSerial } from "../../server/authority/issue.ts";
import { randomBytes } from "../../server/authority/random-bytes.ts";

/** Node's CSPRNG, with every buffer it filled kept in order. */
function recordingCrypto(): { crypto: Crypto; filled: Uint8Array[] } {
  const filled: Uint8Array[] = [];
  const crypto = {
    getRandomValues<T extends ArrayBufferView | null>(array: T): T {
      webcrypto.getRandomValues(array as unknown as Uint8Array);
      filled.push(new Uint8Array((array as unknown as Uint8Array).slice()));
      return array;
    },
  } as unknown as Crypto;
  return { crypto, filled };
}

describe("randomBytes (the CSPRNG drawn in 4 KiB pools)", () => {
  it("hands out the generator's bytes in order, each byte once, refilling when short", () => {
    const { crypto, filled } = recordingCrypto();
    const out: Uint8Array[] = [];
    for (let i = 0; i < 1000; i++) out.push(randomBytes(crypto, 16));
    // 16,000 bytes from 4 KiB fills: 4 calls, not 1,000.
    expect(filled.length).toBe(4);
    const drawn = Buffer.concat(out);
    const source = Buffer.concat(filled.map((f) => f.subarray(0, Math.floor(4096 / 16) * 16)));
    expect(drawn.equals(source.subarray(0, drawn.length))).toBe(true);
  });

  it("does not split a draw across two fills: a draw that does not fit starts a new pool", () => {
    const { crypto, filled } = recordingCrypto();
    randomBytes(crypto, 4000);
    const next = randomBytes(crypto, 100);
    expect(filled.length).toBe(2);
    expect(Buffer.from(next).equals(Buffer.from(filled[1]?.subarray(0, 100) ?? []))).toBe(true);
  });

  it("draws more than a pool directly from the generator", () => {
    const { crypto, filled } = recordingCrypto();
    const big = randomBytes(crypto, 10_000);
    expect(big.length).toBe(10_000);
    expect(filled.map((f) => f.length)).toEqual([10_000]);
  });

  it("keeps one pool per Crypto: two generators never share bytes", () => {
    const a = recordingCrypto();
    const b = recordingCrypto();
    randomBytes(a.crypto, 16);
    randomBytes(b.crypto, 16);
    expect(a.filled.length).toBe(1);
    expect(b.filled.length).toBe(1);
  });

  it("gives 100,000 distinct positive serials of at most 16 octets", () => {
    const seen = new Set<string>();
    const lengths = new Set<number>();
    for (let i = 0; i < 100_000; i++) {
      const s = randomSerial(webcrypto as unknown as Crypto);
      lengths.add(s.length);
      seen.add(Buffer.from(s).toString("hex"));
    }
    expect(seen.size).toBe(100_000);
    expect(Math.max(...lengths)).toBeLessThanOrEqual(16);
    expect(Math.min(...lengths)).toBeGreaterThan(0);
  });
});
