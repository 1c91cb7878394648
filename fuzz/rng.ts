/**
 * A small seeded generator (sfc32): every input of a run is derived from the run's seed
 * and its index, so one input can be regenerated alone (`--only <index>`).
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = 0) {
    this.a = 0x9e3779b9 ^ seed;
    this.b = 0x243f6a88 ^ stream;
    this.c = 0xb7e15162 ^ Math.imul(seed, 0x85ebca6b);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** 0 ≤ n < max. */
  int(max: number): number {
    return max <= 0 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * max);
  }

  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** Small sizes often, large ones sometimes. */
  size(max: number): number {
    const r = this.int(10);
    if (r < 6) return this.int(Math.min(max, 16) + 1);
    if (r < 9) return this.int(Math.min(max, 256) + 1);
    return this.int(max + 1);
  }
}

/** The generator of input `index` of a run with `seed`. */
export function inputRng(seed: number, index: number, stream = 0): Rng {
  return new Rng((seed ^ Math.imul(index + 1, 0x27d4eb2d)) | 0, (index ^ Math.imul(stream + 1, 0x165667b1)) | 0);
}
