import {
  createPublicKey,
  generateKeyPair,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  webcrypto,
} from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { promisify } from "node:util";
import type { IssuingCa } from "../../authority/deps.ts";
import { type Config, type ConfigInput, INIT_PROFILES, parseConfig } from "../../config/schema.ts";
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
import { id_at_commonName, id_at_organizationName, id_kp_serverAuth, sha256WithRSAEncryption } from "../../pki/oids.ts";
import { pemCertificates, toPem } from "../../pki/pem.ts";
import type { Signer } from "../../ports/signer.ts";
import { decryptPrivateKey, encryptPrivateKey } from "./encrypted-key.ts";
import { writeFileAtomic } from "./files.ts";
import { nodeDigest } from "./node-digest.ts";
import { nodeSigner } from "./node-signer.ts";

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
    rsaRootCert: join(root, "ca", "root-ca-rsa.pem"),
    rsaRootKey: join(root, "ca", "root-ca-rsa.key"),
    rsaIssuingCert: join(root, "ca", "issuing-rsa.pem"),
    rsaIssuingKey: join(root, "ca", "issuing-rsa.key"),
    tlsCert: join(root, "tls", "server.pem"),
    tlsKey: join(root, "tls", "server.key"),
    tlsRsaCert: join(root, "tls", "server-rsa.pem"),
    tlsRsaKey: join(root, "tls", "server-rsa.key"),
    devPassphrase: join(root, "secrets", "ca-passphrase"),
    /** JWT-SVID signing keys, one encrypted file per kid (adapters/node/jwt-key-files.ts). */
    jwtKeys: join(root, "jwt"),
  };
}

export type DataPaths = ReturnType<typeof dataPaths>;

export const ISSUING_CA_NAME = "issuing-p256";
/** The RSA hierarchy's issuing CA: the legacy path's issuer (see createRsaHierarchy). */
export const RSA_ISSUING_CA_NAME = "issuing-rsa";

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
  return nodeSigner(key);
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
    profiles: INIT_PROFILES,
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
  await createRsaHierarchy(dir, opts.trustDomain, passphrase.passphrase, now);
  for (const ca of (await loadIssuingCas(dir, passphrase.passphrase)).values()) {
    await issueTlsCertificate(paths, ca, opts.hostnames, passphrase.passphrase, now);
  }
  writeFileAtomic(paths.config, `${JSON.stringify(config, null, 2)}\n`, 0o644);
  return { paths, passphrase };
}

/**
 * The RSA hierarchy for appliances that cannot validate ECDSA: its own self-signed
 * RSA-4096 root (20 years) and an RSA-3072 issuing CA (10 years), all signatures
 * sha256WithRSAEncryption. A separate root, not an RSA issuing CA under the P-256
 * root: the issuing CA's certificate would then carry an ECDSA signature, and a stack
 * that cannot verify ECDSA could not build the chain. 3072 bits for the issuing CA
 * because it signs past 2030 (NIST SP 800-57: 2048-bit RSA until 2030). Used by `init`,
 * and by `edgeid ca add-rsa` for a data directory made before it existed.
 */
export async function createRsaHierarchy(dir: string, trustDomain: string, passphrase: string, now = new Date()) {
  const paths = dataPaths(dir);
  if (existsSync(paths.rsaIssuingCert)) throw new Error(`${paths.rsaIssuingCert} already exists`);
  const rsa = promisify(generateKeyPair);
  const [{ privateKey: rootKey }, { privateKey: issuingKey }] = await Promise.all([
    rsa("rsa", { modulusLength: 4096 }),
    rsa("rsa", { modulusLength: 3072 }),
  ]);
  const { root, issuing } = await buildCaHierarchy(
    {
      name: encodeName([
        { type: id_at_organizationName, value: trustDomain },
        { type: id_at_commonName, value: "edgeid Root CA RSA" },
      ]),
      spki: spkiOf(rootKey),
      serial: serial(),
    },
    {
      name: encodeName([
        { type: id_at_organizationName, value: trustDomain },
        { type: id_at_commonName, value: "edgeid Issuing CA RSA" },
      ]),
      spki: spkiOf(issuingKey),
      serial: serial(),
    },
    await signerFor(rootKey),
    now,
    subtle,
  );
  writeFileAtomic(paths.rsaRootKey, encryptPrivateKey(rootKey, passphrase));
  writeFileAtomic(paths.rsaIssuingKey, encryptPrivateKey(issuingKey, passphrase));
  writeFileAtomic(paths.rsaRootCert, toPem("CERTIFICATE", root), 0o644);
  writeFileAtomic(paths.rsaIssuingCert, toPem("CERTIFICATE", issuing), 0o644);
}

async function loadCa(name: string, certFile: string, rootFile: string, keyFile: string, passphrase: string) {
  const [certificate] = pemCertificates(readFileSync(certFile, "utf8"));
  const [root] = pemCertificates(readFileSync(rootFile, "utf8"));
  if (!certificate || !root) throw new Error(`missing CA certificates for ${name} (${certFile})`);
  const key = decryptPrivateKey(readFileSync(keyFile, "utf8"), passphrase, `issuing CA ${name}`);
  const summary = readCertificate(certificate);
  return {
    name,
    certificate,
    subject: summary.subject,
    keyId: await keyIdentifier(summary.spki, nodeDigest),
    signer: await signerFor(key),
    chain: [certificate, root],
  } satisfies IssuingCa;
}

/** Reads the P-256 issuing CA (the default issuer) and decrypts its key. */
export async function loadIssuingCa(dir: string, passphrase: string): Promise<IssuingCa> {
  const paths = dataPaths(dir);
  return loadCa(ISSUING_CA_NAME, paths.issuingCert, paths.rootCert, paths.issuingKey, passphrase);
}

/** Every issuing CA of the data directory by name: the P-256 one, and the RSA one where it exists. */
export async function loadIssuingCas(dir: string, passphrase: string): Promise<Map<string, IssuingCa>> {
  const paths = dataPaths(dir);
  const cas = new Map<string, IssuingCa>([[ISSUING_CA_NAME, await loadIssuingCa(dir, passphrase)]]);
  if (existsSync(paths.rsaIssuingCert)) {
    cas.set(
      RSA_ISSUING_CA_NAME,
      await loadCa(RSA_ISSUING_CA_NAME, paths.rsaIssuingCert, paths.rsaRootCert, paths.rsaIssuingKey, passphrase),
    );
  }
  return cas;
}

/** The roots that clients are verified against: the P-256 root, and the RSA root where it exists. */
export function readTrustAnchors(dir: string): Uint8Array[] {
  const paths = dataPaths(dir);
  const roots = pemCertificates(readFileSync(paths.rootCert, "utf8"));
  if (existsSync(paths.rsaRootCert)) roots.push(...pemCertificates(readFileSync(paths.rsaRootCert, "utf8")));
  return roots;
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
  // The RSA CA's listener certificate has an RSA key: a client that cannot verify
  // ECDSA can neither verify an ECDSA handshake signature.
  const { privateKey } =
    ca.signer.signatureAlgorithm === sha256WithRSAEncryption
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : generateKeyPairSync("ec", { namedCurve: "P-256" });
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
  const files = tlsFilesOf(paths, ca.name);
  writeFileAtomic(files.key, encryptPrivateKey(privateKey, passphrase));
  // The chain a TLS client needs besides its trust anchor: leaf, then the issuing CA.
  writeFileAtomic(files.cert, toPem("CERTIFICATE", der) + toPem("CERTIFICATE", ca.certificate), 0o644);
}

/** The listener's certificate and key issued by this CA: one pair per issuing CA. */
export function tlsFilesOf(paths: DataPaths, caName: string): { cert: string; key: string } {
  return caName === RSA_ISSUING_CA_NAME
    ? { cert: paths.tlsRsaCert, key: paths.tlsRsaKey }
    : { cert: paths.tlsCert, key: paths.tlsKey };
}

/**
 * Renews the listener certificates (one per issuing CA) when less than a third of
 * their 90 days is left; returns the names of the CAs whose certificate was renewed.
 */
export async function ensureTlsCertificates(
  dir: string,
  cas: Map<string, IssuingCa>,
  config: Config,
  passphrase: string,
  now = new Date(),
): Promise<string[]> {
  const paths = dataPaths(dir);
  const renewed: string[] = [];
  for (const ca of cas.values()) {
    const file = tlsFilesOf(paths, ca.name).cert;
    const [leaf] = existsSync(file) ? pemCertificates(readFileSync(file, "utf8")) : [];
    if (leaf && readCertificate(leaf).notAfter.getTime() - now.getTime() > 30 * 86400_000) continue;
    await issueTlsCertificate(paths, ca, config.hostnames, passphrase, now);
    renewed.push(ca.name);
  }
  return renewed;
}

function isIp(h: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(":");
}

export function resolveInDataDir(dir: string, path: string): string {
  return isAbsolute(path) ? path : join(resolve(dir), path);
}
