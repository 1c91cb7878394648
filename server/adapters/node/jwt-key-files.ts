import { createPrivateKey, webcrypto } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { JwtKeyVault } from "../../ports/trust-bundles.ts";
import { decryptPrivateKey, encryptPrivateKey } from "./encrypted-key.ts";
import { writeFileAtomic } from "./files.ts";

const subtle = webcrypto.subtle as SubtleCrypto;
const KID = /^[A-Za-z0-9_-]{43}$/;

/**
 * JWT signing keys on Node: one file per key in `<data dir>/jwt/<kid>.key`, mode 0600,
 * PKCS#8 encrypted with the CA passphrase exactly as the CA keys are
 * (encrypted-key.ts). Every loop of the server reads them with the passphrase it has.
 */
export class JwtKeyFiles implements JwtKeyVault {
  constructor(
    private readonly dir: string,
    private readonly passphrase: string,
    private readonly iterations?: number,
  ) {}

  private file(kid: string): string {
    // A kid is a SHA-256 thumbprint, base64url: never a path of its own.
    if (!KID.test(kid)) throw new Error(`not a JWT key id: ${kid}`);
    return join(this.dir, `${kid}.key`);
  }

  async keep(kid: string, privateKey: CryptoKey): Promise<null> {
    const der = Buffer.from(await subtle.exportKey("pkcs8", privateKey));
    const key = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
    der.fill(0);
    writeFileAtomic(this.file(kid), encryptPrivateKey(key, this.passphrase, this.iterations), 0o600);
    return null;
  }

  async discard(kid: string): Promise<void> {
    rmSync(this.file(kid), { force: true });
  }

  async load(kid: string): Promise<CryptoKey> {
    const file = this.file(kid);
    if (!existsSync(file)) throw new Error(`JWT key ${kid}: ${file} is missing`);
    const key = decryptPrivateKey(readFileSync(file, "utf8"), this.passphrase, `JWT ${kid}`);
    const der = key.export({ type: "pkcs8", format: "der" });
    try {
      return await subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
    } finally {
      der.fill(0);
    }
  }
}
