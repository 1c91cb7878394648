import { webcrypto } from "node:crypto";
import { initDataDir } from "../adapters/node/data-dir.ts";
import { nodeDigest } from "../adapters/node/node-digest.ts";
import { SqliteStorage } from "../adapters/storage/sqlite-storage.ts";
import { systemClock } from "../adapters/system-clock.ts";
import { createOperator } from "../authority/operators.ts";

/** A new data directory and its first admin operator (for `init`, and `serve` on first start). */

const crypto = webcrypto as Crypto;

export async function initialise(dataDir: string, opts: { trustDomain: string; hostname: string[]; listen?: string }) {
  const result = await initDataDir(
    dataDir,
    {
      trustDomain: opts.trustDomain,
      hostnames: opts.hostname.length ? opts.hostname : ["localhost"],
      listen: opts.listen,
    },
    process.env,
  );
  const storage = SqliteStorage.open(result.paths.database);
  try {
    const { operator, token } = await createOperator(
      { storage, clock: systemClock, crypto, digest: nodeDigest },
      { name: "admin", role: "admin", actor: { id: "cli:init", role: "admin" } },
    );
    return { ...result, admin: { id: operator.id, token } };
  } finally {
    await storage.close();
  }
}

export function warnDevPassphrase(file: string): void {
  process.stderr.write(
    `\n*** DEVELOPMENT MODE: a CA key passphrase was generated and stored at\n***   ${file}\n` +
      "*** next to the encrypted keys. For production, set EDGEID_CA_PASSPHRASE_FILE\n" +
      "*** (a file outside the data directory) before `edgeid init`.\n\n",
  );
}
