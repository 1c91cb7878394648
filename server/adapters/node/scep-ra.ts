import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  sign,
} from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { IssuingCa } from "../../authority/deps.ts";
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  encodeName,
  keyIdentifier,
  keyUsage,
  readCertificate,
  subjectKeyIdentifier,
} from "../../pki/certificate.ts";
import { id_at_commonName, id_at_organizationName } from "../../pki/oids.ts";
import { pemCertificates, toPem } from "../../pki/pem.ts";
import type { ContentCipher, ScepDigest, ScepRa } from "../../ports/scep-ra.ts";
import { dataPaths, RSA_ISSUING_CA_NAME, spkiOf } from "./data-dir.ts";
import { decryptPrivateKey, encryptPrivateKey } from "./encrypted-key.ts";
import { writeFileAtomic } from "./files.ts";
import { nodeDigest } from "./node-digest.ts";

const HASH: Record<ScepDigest, string> = { "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512" };

/**
 * The RA key on Node. Decryption uses the raw RSA operation and removes the PKCS #1
 * v1.5 padding here, without branching on it: Node refuses RSA_PKCS1_PADDING for
 * private decryption (CVE-2023-46809, the Marvin attack), and what CMS needs instead
 * is implicit rejection (RFC 3218 §2.3.2): a bad padding yields a pseudo-random key
 * derived from the ciphertext, so the requester learns nothing from the answer.
 */
export class NodeScepRa implements ScepRa {
  private readonly rejectionKey = randomBytes(32);
  constructor(
    readonly certificate: Uint8Array,
    private readonly key: KeyObject,
    readonly retired?: NodeScepRa,
  ) {
    if (key.asymmetricKeyType !== "rsa") throw new Error("the SCEP RA key must be an RSA key");
  }

  async sign(data: Uint8Array, digest: ScepDigest): Promise<Uint8Array> {
    return new Uint8Array(sign(HASH[digest], data, { key: this.key, padding: constants.RSA_PKCS1_PADDING }));
  }

  async unwrapKey(encryptedKey: Uint8Array, length: number): Promise<Uint8Array> {
    const k = ((this.key.asymmetricKeyDetails?.modulusLength ?? 0) + 7) >> 3;
    // The substitute, computed always: HMAC of the ciphertext under a per-process key.
    const h1 = createHmac("sha256", this.rejectionKey).update(encryptedKey).update(Uint8Array.of(1)).digest();
    const h2 = createHmac("sha256", this.rejectionKey).update(encryptedKey).update(Uint8Array.of(2)).digest();
    const fallback = Buffer.concat([h1, h2]).subarray(0, length);
    let em: Uint8Array;
    try {
      em =
        encryptedKey.length === k
          ? privateDecrypt({ key: this.key, padding: constants.RSA_NO_PADDING }, encryptedKey)
          : new Uint8Array(k);
    } catch {
      em = new Uint8Array(k);
    }
    // EM = 0x00 || 0x02 || PS (>= 8 nonzero octets) || 0x00 || M   (RFC 8017 §7.2.2)
    let bad = (em[0] as number) | ((em[1] as number) ^ 2);
    let separator = 0;
    let found = 0;
    for (let i = 2; i < em.length; i++) {
      const isZero = (((em[i] as number) - 1) >>> 31) & 1;
      const first = isZero & (found ^ 1);
      separator |= -first & i;
      found |= isZero;
    }
    bad |= found ^ 1;
    bad |= ((separator - 10) >>> 31) & 1;
    bad |= k - separator - 1 === length ? 0 : 1;
    const keep = ((bad | -bad) >>> 31) - 1; // -1 (all ones) when good, 0 when bad
    const out = new Uint8Array(length);
    const offset = Math.max(0, k - length);
    for (let j = 0; j < length; j++) {
      out[j] = ((em[offset + j] as number) & keep) | ((fallback[j] as number) & ~keep);
    }
    return out;
  }

  async wrapKey(recipientSpki: Uint8Array, key: Uint8Array): Promise<Uint8Array> {
    const publicKey = createPublicKey({ key: Buffer.from(recipientSpki), format: "der", type: "spki" });
    return new Uint8Array(publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, key));
  }

  async decrypt(cipher: ContentCipher, key: Uint8Array, iv: Uint8Array, data: Uint8Array) {
    try {
      const d = createDecipheriv(...nodeCipher(cipher, key), iv);
      return new Uint8Array(Buffer.concat([d.update(data), d.final()]));
    } catch {
      return undefined;
    }
  }

  async encrypt(cipher: ContentCipher, key: Uint8Array, iv: Uint8Array, data: Uint8Array) {
    const c = createCipheriv(...nodeCipher(cipher, key), iv);
    return new Uint8Array(Buffer.concat([c.update(data), c.final()]));
  }
}

/**
 * OpenSSL 3 keeps single DES in its legacy provider; EDE with three equal keys is
 * single DES (E_K(D_K(E_K(x))) = E_K(x)), which the default provider does.
 */
function nodeCipher(cipher: ContentCipher, key: Uint8Array): [string, Uint8Array] {
  if (cipher !== "des-cbc") return [cipher, key];
  const tripled = new Uint8Array(24);
  tripled.set(key, 0);
  tripled.set(key, 8);
  tripled.set(key, 16);
  return ["des-ede3-cbc", tripled];
}

export function scepRaFiles(dir: string): { cert: string; key: string; retiredCert: string; retiredKey: string } {
  const { root } = dataPaths(dir);
  return {
    cert: join(root, "ca", "scep-ra.pem"),
    key: join(root, "ca", "scep-ra.key"),
    retiredCert: join(root, "ca", "scep-ra-retired.pem"),
    retiredKey: join(root, "ca", "scep-ra-retired.key"),
  };
}

/** An RA from its files, if they are there and its certificate is valid at `now` for more than `margin` ms. */
function loadRa(certFile: string, keyFile: string, passphrase: string, now: Date, margin: number) {
  if (!existsSync(certFile) || !existsSync(keyFile)) return undefined;
  const [leaf] = pemCertificates(readFileSync(certFile, "utf8"));
  if (!leaf || readCertificate(leaf).notAfter.getTime() - now.getTime() <= margin) return undefined;
  return { leaf, key: decryptPrivateKey(readFileSync(keyFile, "utf8"), passphrase, "SCEP RA") };
}

const DAY = 86400_000;

/**
 * The SCEP RA certificate: an RSA-2048 key under the RSA issuing CA (digitalSignature
 * for CertReps, keyEncipherment for the requests encrypted to it), 90 days, key
 * encrypted at rest with the CA passphrase. Issued, and renewed when less than a third
 * of its life is left, like the listener certificate. Undefined without an RSA hierarchy.
 */
export async function ensureScepRa(
  dir: string,
  cas: Map<string, IssuingCa>,
  passphrase: string,
  now = new Date(),
): Promise<{ ra: NodeScepRa; renewed: boolean } | undefined> {
  const ca = cas.get(RSA_ISSUING_CA_NAME);
  if (!ca) return undefined;
  const files = scepRaFiles(dir);
  const current = loadRa(files.cert, files.key, passphrase, now, 30 * DAY);
  if (current) {
    const retired = loadRa(files.retiredCert, files.retiredKey, passphrase, now, 0);
    return {
      ra: new NodeScepRa(current.leaf, current.key, retired && new NodeScepRa(retired.leaf, retired.key)),
      renewed: false,
    };
  }
  // The one being replaced stays, to decrypt what clients still encrypt to it.
  const replaced = loadRa(files.cert, files.key, passphrase, now, 0);
  if (replaced) {
    writeFileAtomic(files.retiredKey, readFileSync(files.key, "utf8"));
    writeFileAtomic(files.retiredCert, readFileSync(files.cert, "utf8"), 0o644);
  }
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const spki = spkiOf(privateKey);
  const serial = new Uint8Array(randomBytes(16));
  serial[0] = (serial[0] as number) & 0x7f || 1;
  const der = await buildCertificate(
    {
      serial,
      issuer: ca.subject,
      subject: encodeName([
        { type: id_at_organizationName, value: "edgeid" },
        { type: id_at_commonName, value: "edgeid SCEP RA" },
      ]),
      notBefore: new Date(now.getTime() - 300_000),
      notAfter: new Date(now.getTime() + 90 * DAY),
      spki,
      extensions: [
        basicConstraints(false),
        keyUsage(["digitalSignature", "keyEncipherment"]),
        subjectKeyIdentifier(await keyIdentifier(spki, nodeDigest)),
        authorityKeyIdentifier(ca.keyId),
      ],
    },
    ca.signer,
  );
  writeFileAtomic(files.key, encryptPrivateKey(privateKey, passphrase));
  writeFileAtomic(files.cert, toPem("CERTIFICATE", der), 0o644);
  return {
    ra: new NodeScepRa(der, privateKey, replaced && new NodeScepRa(replaced.leaf, replaced.key)),
    renewed: true,
  };
}
