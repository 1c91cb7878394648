import { webcrypto } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { expect } from "vitest";
import { SqliteStorage } from "../../server/adapters/storage/sqlite-storage.ts";
import { WebCryptoEcdsaSigner, WebCryptoRsaSigner } from "../../server/adapters/webcrypto-signer.ts";
import { Authority } from "../../server/authority/authority.ts";
import type { AuthorityDeps, IssuingCa } from "../../server/authority/deps.ts";
import { AuthorityError } from "../../server/authority/errors.ts";
import { RevocationResponders } from "../../server/authority/responders.ts";
import { type ConfigInput, parseConfig, profilesOf } from "../../server/config/schema.ts";
import { buildCaHierarchy } from "../../server/pki/ca-hierarchy.ts";
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  type CertificateSigner,
  encodeName,
  type KeyUsageName,
  keyIdentifier,
  keyUsage,
  readCertificate,
  subjectKeyIdentifier,
} from "../../server/pki/certificate.ts";
import { id_at_commonName, id_at_serialNumber } from "../../server/pki/oids.ts";
import { webCryptoVerifier } from "../../server/pki/verify.ts";
import { webCryptoDigest } from "../../server/pki/webcrypto-digest.ts";
import type { Clock } from "../../server/ports/clock.ts";

export const crypto = webcrypto as Crypto;
x509.cryptoProvider.set(crypto);

/** A clock the test moves by hand. */
export class ManualClock implements Clock {
  constructor(private t: Date) {}
  now(): Date {
    return new Date(this.t);
  }
  advance(seconds: number): void {
    this.t = new Date(this.t.getTime() + seconds * 1000);
  }
}

export const T0 = new Date("2026-03-01T12:00:00.000Z");

async function spkiOf(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", key));
}

export interface TestCa {
  issuing: IssuingCa;
  root: Uint8Array;
  rootKeys: CryptoKeyPair;
}

/**
 * A root and an issuing CA made with WebCrypto keys, as `edgeid init` makes them: P-256,
 * or (rsa) the RSA hierarchy, with 2048-bit keys to keep tests quick.
 */
export async function makeTestCa(now = T0, label = "Test", kind: "p256" | "rsa" = "p256"): Promise<TestCa> {
  const alg =
    kind === "rsa"
      ? { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1), hash: "SHA-256" }
      : { name: "ECDSA", namedCurve: "P-256" };
  const signer = (k: CryptoKey) =>
    kind === "rsa" ? new WebCryptoRsaSigner(k, crypto.subtle) : new WebCryptoEcdsaSigner(k, crypto.subtle);
  const rootKeys = (await crypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
  const issuingKeys = (await crypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
  const issuingName = encodeName([{ type: id_at_commonName, value: `${label} Issuing` }]);
  // Backdated a year so that tests may move their clocks back and forth freely.
  const { root, issuing, issuingKeyId } = await buildCaHierarchy(
    {
      name: encodeName([{ type: id_at_commonName, value: `${label} Root` }]),
      spki: await spkiOf(rootKeys.publicKey),
      serial: Uint8Array.of(1),
    },
    { name: issuingName, spki: await spkiOf(issuingKeys.publicKey), serial: Uint8Array.of(2) },
    signer(rootKeys.privateKey),
    new Date(now.getTime() - 365 * 86400_000),
    crypto.subtle,
  );
  return {
    root,
    rootKeys,
    issuing: {
      name: kind === "rsa" ? "issuing-rsa" : "issuing-p256",
      certificate: issuing,
      subject: issuingName,
      keyId: issuingKeyId,
      signer: signer(issuingKeys.privateKey),
      chain: [issuing, root],
    },
  };
}

export interface Harness {
  authority: Authority;
  responders: RevocationResponders;
  deps: AuthorityDeps;
  storage: SqliteStorage;
  clock: ManualClock;
  ca: TestCa;
  /** The RSA hierarchy, when a profile is issued by it. */
  rsaCa?: TestCa;
  dir: string;
  close(): Promise<void>;
}

export const TEST_CONFIG: ConfigInput = {
  trustDomain: "example.org",
  profiles: {
    device: {},
    rsa: { keyTypes: ["RSA", "P-256"], validity: "30d" },
  },
};

/** A real authority over a real SQLite file in a temporary directory. */
export async function harness(
  opts: {
    config?: ConfigInput;
    ca?: TestCa;
    rsaCa?: TestCa;
    idevidAnchors?: Map<string, Uint8Array[]>;
    /** Prepares the database file before the storage opens (and migrates) it. */
    beforeOpen?: (file: string) => void;
  } = {},
): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "edgeid-test-"));
  opts.beforeOpen?.(join(dir, "edgeid.db"));
  const storage = SqliteStorage.open(join(dir, "edgeid.db"));
  const clock = new ManualClock(T0);
  const ca = opts.ca ?? (await makeTestCa());
  const config = parseConfig(opts.config ?? TEST_CONFIG);
  // The RSA hierarchy only where a profile is issued by it (RSA keys take a while to make).
  const usesRsa = Object.values(config.profiles).some((p) => p.issuer === "issuing-rsa");
  const rsaCa = opts.rsaCa ?? (usesRsa ? await makeTestCa(T0, "Test RSA", "rsa") : undefined);
  const cas = new Map([[ca.issuing.name, ca.issuing]]);
  if (rsaCa) cas.set(rsaCa.issuing.name, rsaCa.issuing);
  const deps: AuthorityDeps = {
    config,
    profiles: profilesOf(config),
    storage,
    ca: ca.issuing,
    cas,
    clock,
    crypto,
    // The portable WebCrypto digest here; the Node server runs node:crypto behind the same port.
    digest: webCryptoDigest(crypto.subtle),
    verifier: webCryptoVerifier(crypto.subtle),
    publicUrl: "https://est.example.org:8443",
    idevidAnchors: new Map(
      [...(opts.idevidAnchors ?? new Map<string, Uint8Array[]>())].map(([k, v]) => [k, v.map(readCertificate)]),
    ),
  };
  const responders = new RevocationResponders(deps);
  deps.onRevocation = () => responders.revoked();
  await responders.start();
  return {
    authority: new Authority(deps),
    responders,
    deps,
    storage,
    clock,
    ca,
    ...(rsaCa ? { rsaCa } : {}),
    dir,
    async close() {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type KeyKind = "P-256" | "P-384" | "Ed25519" | "RSA-2048" | "RSA-1024";

export async function generateKeys(kind: KeyKind): Promise<CryptoKeyPair> {
  if (kind === "Ed25519")
    return (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  if (kind.startsWith("RSA")) {
    return (await crypto.subtle.generateKey(
      {
        name: "RSASSA-PKCS1-v1_5",
        hash: "SHA-256",
        modulusLength: Number(kind.slice(4)),
        publicExponent: Uint8Array.of(1, 0, 1),
      },
      true,
      ["sign", "verify"],
    )) as CryptoKeyPair;
  }
  return (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: kind }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
}

function signingAlgorithm(keys: CryptoKeyPair): Algorithm | EcdsaParams {
  const name = keys.privateKey.algorithm.name;
  if (name === "ECDSA") {
    const curve = (keys.privateKey.algorithm as EcKeyAlgorithm).namedCurve;
    return { name: "ECDSA", hash: curve === "P-384" ? "SHA-384" : "SHA-256" } as EcdsaParams;
  }
  if (name === "Ed25519") return { name: "Ed25519" };
  return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as Algorithm;
}

/** A CSR built by @peculiar/x509, an implementation independent of our parser. */
export async function makeCsr(
  keys: CryptoKeyPair,
  opts: { cn?: string; sans?: x509.JsonGeneralName[] } = {},
): Promise<Uint8Array> {
  const extensions: x509.Extension[] = [];
  if (opts.sans) extensions.push(new x509.SubjectAlternativeNameExtension(opts.sans));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: opts.cn === undefined ? undefined : `CN=${opts.cn}`,
    keys,
    signingAlgorithm: signingAlgorithm(keys),
    extensions,
  });
  return new Uint8Array(csr.rawData);
}

export async function createToken(
  h: Harness,
  deviceId: string,
  opts: { profile?: string; ttl?: number } = {},
): Promise<string> {
  const [t] = await h.authority.createTokens({ deviceIds: [deviceId], actor: "test", ...opts });
  return (t as { token: string }).token;
}

export const peer = (client?: Uint8Array[]) => ({
  remoteAddress: "127.0.0.1",
  ...(client ? { client: { chain: client } } : {}),
});

/** Parses DER with @peculiar/x509, our independent reference parser. */
export function parseCert(der: Uint8Array): x509.X509Certificate {
  return new x509.X509Certificate(der as Uint8Array<ArrayBuffer>);
}

/** The code and reason of the AuthorityError a promise rejects with (fails if it resolves). */
export async function refusal(p: Promise<unknown>): Promise<{ code: string; reason: string }> {
  const err = await p.then(
    () => {
      throw new Error("expected a refusal");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthorityError);
  return { code: (err as AuthorityError).code, reason: (err as AuthorityError).reason };
}

/** A CA of a test manufacturer chain, made to measure (including what RFC 5280 forbids). */
export interface ChainCa {
  subject: Uint8Array;
  der: Uint8Array;
  signer: CertificateSigner;
  /** Its subjectKeyIdentifier: the authorityKeyIdentifier of what it signs. */
  keyId: Uint8Array;
}

export interface ChainCaOptions {
  /** basicConstraints cA (default true); null: no basicConstraints extension. */
  ca?: boolean | null;
  pathLen?: number;
  /** keyUsage (default keyCertSign and cRLSign); null: no keyUsage extension. */
  keyUsage?: KeyUsageName[] | null;
  /** Default: a year before T0. */
  notBefore?: Date;
  /** Default: ten years after T0. */
  notAfter?: Date;
}

const YEAR_MS = 365 * 86400_000;

function randomSerial(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(8)).map((b, i) => (i === 0 ? (b & 0x7f) | 1 : b));
}

/** A P-256 CA certificate `CN=<label>`, self-signed when `issuer` is absent. */
export async function makeChainCa(label: string, issuer?: ChainCa, opts: ChainCaOptions = {}): Promise<ChainCa> {
  const keys = await generateKeys("P-256");
  const subject = encodeName([{ type: id_at_commonName, value: label }]);
  const signer = new WebCryptoEcdsaSigner(keys.privateKey, crypto.subtle);
  const spki = await spkiOf(keys.publicKey);
  const keyId = await keyIdentifier(spki, webCryptoDigest(crypto.subtle));
  // Key identifiers as `openssl verify -x509_strict` wants them on CA certificates.
  const extensions = [subjectKeyIdentifier(keyId), authorityKeyIdentifier(issuer?.keyId ?? keyId)];
  if (opts.ca !== null) extensions.push(basicConstraints(opts.ca ?? true, opts.pathLen));
  if (opts.keyUsage !== null) extensions.push(keyUsage(opts.keyUsage ?? ["keyCertSign", "cRLSign"]));
  const der = await buildCertificate(
    {
      serial: randomSerial(),
      issuer: issuer?.subject ?? subject,
      subject,
      notBefore: opts.notBefore ?? new Date(T0.getTime() - YEAR_MS),
      notAfter: opts.notAfter ?? new Date(T0.getTime() + 10 * YEAR_MS),
      spki,
      extensions,
    },
    issuer?.signer ?? signer,
  );
  return { subject, der, signer, keyId };
}

/**
 * A manufacturer certificate (IDevID) `CN=<commonName>, serialNumber=<serialNumber>`
 * (CN "Acme Sensor" unless given) issued by `issuer` (a ChainCa, or a TestCa's issuing
 * CA), with its key pair.
 */
export async function makeIdevidCert(
  issuer: { subject: Uint8Array; signer: CertificateSigner; keyId: Uint8Array },
  serialNumber: string,
  opts: { notBefore?: Date; notAfter?: Date; commonName?: string } = {},
): Promise<{ der: Uint8Array; keys: CryptoKeyPair }> {
  const keys = await generateKeys("P-256");
  const der = await buildCertificate(
    {
      serial: randomSerial(),
      issuer: issuer.subject,
      subject: encodeName([
        { type: id_at_commonName, value: opts.commonName ?? "Acme Sensor" },
        { type: id_at_serialNumber, value: serialNumber },
      ]),
      notBefore: opts.notBefore ?? new Date(T0.getTime() - 86400_000),
      notAfter: opts.notAfter ?? new Date(T0.getTime() + 10 * YEAR_MS),
      spki: await spkiOf(keys.publicKey),
      extensions: [basicConstraints(false), keyUsage(["digitalSignature"]), authorityKeyIdentifier(issuer.keyId)],
    },
    issuer.signer,
  );
  return { der, keys };
}
