import { createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, webcrypto } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import type { IssuingCa } from "../../authority/deps.ts";
import { type Config, type ConfigInput, parseConfig } from "../../config/schema.ts";
import { buildCaHierarchy } from "../../pki/ca-hierarchy.ts";
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  encodeName,
  extendedKeyUsage,
  keyIdentifier,
  keyUsage,
  readCertificate,
  type SanEntry,
  subjectAltName,
  subjectKeyIdentifier,
} from "../../pki/certificate.ts";
import { id_at_commonName, id_at_organizationName, id_kp_serverAuth } from "../../pki/oids.ts";
import { pemCertificates, toPem } from "../../pki/pem.ts";
import type { Signer } from "../../ports/signer.ts";
import { decryptPrivateKey, encryptPrivateKey } from "./encrypted-key.ts";
import { writeFileAtomic } from "./files.ts";
import { nodeDigest } from "./node-digest.ts";
import { NodeEcdsaSigner } from "./node-signer.ts";

const subtle = webcrypto.subtle as SubtleCrypto;

/** Where everything lives inside a data directory. */
export function dataPaths(dir: string) {
  const root = resolve(dir);
  return {
    root,
    config: join(root, "edgeid.json"),
    database: join(root, "edgeid.db"),
    rootCert: join(root, "ca", "root-ca.pem"),
    rootKey: join(root, "ca", "root-ca.key"),
    issuingCert: join(root, "ca", "issuing-p256.pem"),
    issuingKey: join(root, "ca", "issuing-p256.key"),
    tlsCert: join(root, "tls", "server.pem"),
    tlsKey: join(root, "tls", "server.key"),
    devPassphrase: join(root, "secrets", "ca-passphrase"),
  };
}

export type DataPaths = ReturnType<typeof dataPaths>;

export const ISSUING_CA_NAME = "issuing-p256";

export function isInitialised(dir: string): boolean {
  return existsSync(dataPaths(dir).config);
}

export function readConfig(dir: string): Config {
  const paths = dataPaths(dir);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(paths.config, "utf8"));
  } catch (err) {
    throw new Error(`cannot read ${paths.config}: ${(err as Error).message}`);
  }
  try {
    return parseConfig(raw);
  } catch (err) {
    throw new Error(`${paths.config}: ${(err as Error).message}`);
  }
}

export interface PassphraseSource {
  passphrase: string;
  /** True when the generated development passphrase file is in use. */
  development: boolean;
  origin: string;
}

/**
 * The CA key passphrase: EDGEID_CA_PASSPHRASE, else the file named by
 * EDGEID_CA_PASSPHRASE_FILE, else the development file inside the data directory
 * (created at init when neither is set).
 */
export function resolvePassphrase(dir: string, env: NodeJS.ProcessEnv, create: boolean): PassphraseSource {
  if (env.EDGEID_CA_PASSPHRASE) {
    return { passphrase: env.EDGEID_CA_PASSPHRASE, development: false, origin: "EDGEID_CA_PASSPHRASE" };
  }
  if (env.EDGEID_CA_PASSPHRASE_FILE) {
    const passphrase = readFileSync(env.EDGEID_CA_PASSPHRASE_FILE, "utf8").trim();
    if (passphrase.length < 12) throw new Error("EDGEID_CA_PASSPHRASE_FILE holds fewer than 12 characters");
    return { passphrase, development: false, origin: env.EDGEID_CA_PASSPHRASE_FILE };
  }
  const file = dataPaths(dir).devPassphrase;
  if (existsSync(file)) return { passphrase: readFileSync(file, "utf8").trim(), development: true, origin: file };
  if (!create) {
    throw new Error("no CA passphrase: set EDGEID_CA_PASSPHRASE or EDGEID_CA_PASSPHRASE_FILE");
  }
  const passphrase = randomBytes(32).toString("base64url");
  writeFileAtomic(file, `${passphrase}\n`, 0o600);
  return { passphrase, development: true, origin: file };
}

async function signerFor(key: KeyObject): Promise<Signer> {
  return new NodeEcdsaSigner(key);
}

export function spkiOf(privateKey: KeyObject): Uint8Array {
  return new Uint8Array(createPublicKey(privateKey).export({ type: "spki", format: "der" }));
}

function serial(): Uint8Array {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f || 0x01;
  return new Uint8Array(b);
}

export interface InitOptions {
  trustDomain: string;
  hostnames: string[];
  listen?: string;
  now?: Date;
}

export interface InitResult {
  paths: DataPaths;
  passphrase: PassphraseSource;
}

/**
 * Creates a data directory: configuration, a P-256 root CA and issuing CA (keys
 * encrypted with the CA passphrase), and the listener's TLS certificate. The
 * database is created by the storage adapter on open.
 */
export async function initDataDir(dir: string, opts: InitOptions, env: NodeJS.ProcessEnv): Promise<InitResult> {
  const paths = dataPaths(dir);
  if (existsSync(paths.config)) throw new Error(`${paths.root} is already initialised`);
  const config: ConfigInput = {
    trustDomain: opts.trustDomain,
    hostnames: opts.hostnames,
    ...(opts.listen ? { listen: opts.listen } : {}),
  };
  parseConfig(config);
  const passphrase = resolvePassphrase(dir, env, true);
  const now = opts.now ?? new Date();
  const { privateKey: rootKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const { privateKey: issuingKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const { root: rootCert, issuing: issuingCert } = await buildCaHierarchy(
    {
      name: encodeName([
        { type: id_at_organizationName, value: opts.trustDomain },
        { type: id_at_commonName, value: "edgeid Root CA" },
      ]),
      spki: spkiOf(rootKey),
      serial: serial(),
    },
    {
      name: encodeName([
        { type: id_at_organizationName, value: opts.trustDomain },
        { type: id_at_commonName, value: "edgeid Issuing CA P-256" },
      ]),
      spki: spkiOf(issuingKey),
      serial: serial(),
    },
    await signerFor(rootKey),
    now,
    subtle,
  );
  writeFileAtomic(paths.rootKey, encryptPrivateKey(rootKey, passphrase.passphrase));
  writeFileAtomic(paths.issuingKey, encryptPrivateKey(issuingKey, passphrase.passphrase));
  writeFileAtomic(paths.rootCert, toPem("CERTIFICATE", rootCert), 0o644);
  writeFileAtomic(paths.issuingCert, toPem("CERTIFICATE", issuingCert), 0o644);
  await issueTlsCertificate(
    paths,
    await loadIssuingCa(dir, passphrase.passphrase),
    opts.hostnames,
    passphrase.passphrase,
    now,
  );
  writeFileAtomic(paths.config, `${JSON.stringify(config, null, 2)}\n`, 0o644);
  return { paths, passphrase };
}

/** Reads the issuing CA and decrypts its key into a non-extractable WebCrypto key. */
export async function loadIssuingCa(dir: string, passphrase: string): Promise<IssuingCa> {
  const paths = dataPaths(dir);
  const [certificate] = pemCertificates(readFileSync(paths.issuingCert, "utf8"));
  const [root] = pemCertificates(readFileSync(paths.rootCert, "utf8"));
  if (!certificate || !root) throw new Error(`missing CA certificates in ${paths.root}/ca`);
  const key = decryptPrivateKey(readFileSync(paths.issuingKey, "utf8"), passphrase, "issuing CA");
  const summary = readCertificate(certificate);
  return {
    name: ISSUING_CA_NAME,
    certificate,
    subject: summary.subject,
    keyId: await keyIdentifier(summary.spki, nodeDigest),
    signer: await signerFor(key),
    chain: [certificate, root],
  };
}

export function readTrustAnchors(dir: string): Uint8Array[] {
  return pemCertificates(readFileSync(dataPaths(dir).rootCert, "utf8"));
}

/**
 * A TLS server certificate from the issuing CA: serverAuth, covering the hostnames
 * plus localhost, 127.0.0.1 and ::1. Used by the HTTPS listener, the embedded broker
 * (the same certificate) and an external broker (its own).
 */
export async function issueServerCertificate(
  ca: IssuingCa,
  hostnames: string[],
  now = new Date(),
): Promise<{ der: Uint8Array; privateKey: KeyObject }> {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = spkiOf(privateKey);
  const dns = [...new Set([...hostnames.filter((h) => !isIp(h)), "localhost"])];
  const ips = [...new Set([...hostnames.filter(isIp), "127.0.0.1", "::1"])];
  const names: SanEntry[] = [
    ...dns.map((value) => ({ type: "dns" as const, value })),
    ...ips.map((value) => ({ type: "ip" as const, value })),
  ];
  const der = await buildCertificate(
    {
      serial: serial(),
      issuer: ca.subject,
      subject: encodeName([{ type: id_at_commonName, value: dns[0] ?? "localhost" }]),
      notBefore: new Date(now.getTime() - 300_000),
      notAfter: new Date(now.getTime() + 90 * 86400_000),
      spki,
      extensions: [
        basicConstraints(false),
        keyUsage(["digitalSignature"]),
        extendedKeyUsage([id_kp_serverAuth]),
        subjectKeyIdentifier(await keyIdentifier(spki, nodeDigest)),
        authorityKeyIdentifier(ca.keyId),
        subjectAltName(names),
      ],
    },
    ca.signer,
  );
  return { der, privateKey };
}

/** The listener's certificate (key encrypted at rest), with the issuing CA after it. */
export async function issueTlsCertificate(
  paths: DataPaths,
  ca: IssuingCa,
  hostnames: string[],
  passphrase: string,
  now = new Date(),
): Promise<void> {
  const { der, privateKey } = await issueServerCertificate(ca, hostnames, now);
  writeFileAtomic(paths.tlsKey, encryptPrivateKey(privateKey, passphrase));
  // The chain a TLS client needs besides its trust anchor: leaf, then the issuing CA.
  writeFileAtomic(paths.tlsCert, toPem("CERTIFICATE", der) + toPem("CERTIFICATE", ca.certificate), 0o644);
}

/** Renews the listener certificate when less than a third of its 90 days is left. */
export async function ensureTlsCertificate(
  dir: string,
  ca: IssuingCa,
  config: Config,
  passphrase: string,
  now = new Date(),
): Promise<boolean> {
  const paths = dataPaths(dir);
  const [leaf] = existsSync(paths.tlsCert) ? pemCertificates(readFileSync(paths.tlsCert, "utf8")) : [];
  if (leaf && readCertificate(leaf).notAfter.getTime() - now.getTime() > 30 * 86400_000) return false;
  await issueTlsCertificate(paths, ca, config.hostnames, passphrase, now);
  return true;
}

function isIp(h: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(":");
}

export function resolveInDataDir(dir: string, path: string): string {
  return isAbsolute(path) ? path : join(resolve(dir), path);
}
