/**
 * CSPRNG output drawn 4 KiB at a time, per `Crypto`: one `getRandomValues` call costs
 * about as much (8–10 µs on Node) for 16 bytes as for 4 KiB, and every issuance draws a
 * serial. Each byte is handed out once; the pool is refilled when it runs short.
 */
const pools = new WeakMap<Crypto, { bytes: Uint8Array; at: number }>();
const POOL_BYTES = 4096;

export function randomBytes(crypto: Crypto, n: number): Uint8Array {
  if (n > POOL_BYTES) return crypto.getRandomValues(new Uint8Array(n));
  let pool = pools.get(crypto);
  if (!pool || pool.at + n > POOL_BYTES) {
    pool = { bytes: crypto.getRandomValues(new Uint8Array(POOL_BYTES)), at: 0 };
    pools.set(crypto, pool);
  }
  const out = pool.bytes.slice(pool.at, pool.at + n);
  // Handed out: zero it, so that the pool never holds bytes someone else already has.
  pool.bytes.fill(0, pool.at, pool.at + n);
  pool.at += n;
  return out;
}
