/**
 * Keys, CSRs, PKCS#7, PEM and X.509 through the `openssl` CLI.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { nextFileSeq, type RunOptions, type RunResult, run, runOk } from "./process.ts";

export const openssl = (args: readonly string[], opts?: RunOptions) => runOk("openssl", args, opts);

// ---------------------------------------------------------------------------------
// Keys and CSRs

export type KeyAlg = "P-256" | "P-384" | "P-192" | "Ed25519" | "RSA-1024" | "RSA-2048";

/** Generates a private key with openssl genpkey; returns the PEM file path. */
export async function opensslKey(dir: string, name: string, alg: KeyAlg): Promise<string> {
  const keyFile = join(dir, `${name}.key`);
  const algArgs: Record<KeyAlg, string[]> = {
    "P-256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "P-384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "P-192": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-192"],
    Ed25519: ["-algorithm", "ed25519"],
    "RSA-1024": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "RSA-2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
  };
  await openssl(["genpkey", ...algArgs[alg], "-out", keyFile]);
  return keyFile;
}

export interface Csr {
  keyFile: string;
  derFile: string;
  der: Buffer;
  /** The request body: base64 of the DER, wrapped at 64 columns like `openssl base64`. */
  base64: string;
}

export interface CsrOptions {
  /** openssl -subj, e.g. "/CN=dev1"; default "/CN=<name>". */
  subject?: string;
  /** Existing key to sign with; default a fresh one of `alg`. */
  keyFile?: string;
  alg?: KeyAlg;
  /** -addext values, e.g. "subjectAltName=URI:spiffe://x/device/y". */
  addext?: string[];
}

/** A PKCS#10 request made by `openssl req`, with a new or given key. */
export async function opensslCsr(dir: string, name: string, opts: CsrOptions = {}): Promise<Csr> {
  const keyFile = opts.keyFile ?? (await opensslKey(dir, name, opts.alg ?? "P-256"));
  const derFile = join(dir, `${name}.csr.der`);
  const args = ["req", "-new", "-key", keyFile, "-subj", opts.subject ?? `/CN=${name}`, "-outform", "DER"];
  for (const e of opts.addext ?? []) args.push("-addext", e);
  args.push("-out", derFile);
  await openssl(args);
  return finishCsr(dir, name, keyFile, derFile);
}

/**
 * The brief's recipe: `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256`
 * (key and request in one step).
 */
export async function opensslCsrNewKeyP256(dir: string, name: string, subject = `/CN=${name}`): Promise<Csr> {
  const keyFile = join(dir, `${name}.key`);
  const derFile = join(dir, `${name}.csr.der`);
  await openssl([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyFile,
    "-subj",
    subject,
    "-outform",
    "DER",
    "-out",
    derFile,
  ]);
  return finishCsr(dir, name, keyFile, derFile);
}

async function finishCsr(dir: string, name: string, keyFile: string, derFile: string): Promise<Csr> {
  // The request body is produced by openssl too (base64 with 64-column lines).
  const b64File = join(dir, `${name}.csr.b64`);
  await openssl(["base64", "-e", "-in", derFile, "-out", b64File]);
  // Self-check: openssl itself accepts the request's signature.
  await openssl(["req", "-inform", "DER", "-in", derFile, "-noout", "-verify"]);
  return { keyFile, derFile, der: await readFile(derFile), base64: await readFile(b64File, "utf8") };
}

// ---------------------------------------------------------------------------------
// PKCS#7 and certificates

/** base64 PKCS#7 certs-only → PEM certificates, via `openssl base64 -d` and `openssl pkcs7 -print_certs`. */
export async function pkcs7ToPem(work: string, base64Body: string | Buffer): Promise<string[]> {
  const n = nextFileSeq();
  const b64File = join(work, `p7-${n}.b64`);
  const derFile = join(work, `p7-${n}.der`);
  // openssl base64 -d wants lines of at most 64 (76) characters and LF line ends.
  const text = (typeof base64Body === "string" ? base64Body : base64Body.toString("latin1")).replace(/\r/g, "");
  await writeFile(b64File, text.endsWith("\n") ? text : `${text}\n`);
  await openssl(["base64", "-d", "-in", b64File, "-out", derFile]);
  const r = await openssl(["pkcs7", "-inform", "DER", "-in", derFile, "-print_certs"]);
  return splitPem(r.stdout);
}

export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

export async function writePem(work: string, name: string, pems: string | string[]): Promise<string> {
  const file = join(work, name);
  const list = Array.isArray(pems) ? pems : [pems];
  await writeFile(file, list.map((p) => (p.endsWith("\n") ? p : `${p}\n`)).join(""));
  return file;
}

export async function x509Text(certFile: string): Promise<string> {
  return (await openssl(["x509", "-in", certFile, "-noout", "-text"])).stdout;
}

/** `openssl x509 -noout -serial` as lowercase hex without leading zeros. */
export async function x509Serial(certFile: string): Promise<string> {
  const out = (await openssl(["x509", "-in", certFile, "-noout", "-serial"])).stdout.trim();
  return normalizeSerial(out.replace(/^serial=/, "")) as string;
}

/**
 * Serials compared as numbers: lowercase hex without leading zeros (openssl prints
 * whole octets, the inventory may keep a leading zero nibble).
 */
export function normalizeSerial<T extends string | null | undefined>(hex: T): T {
  return (typeof hex === "string" ? hex.toLowerCase().replace(/^0+(?=.)/, "") : hex) as T;
}

export async function x509PublicKey(certFile: string): Promise<string> {
  return (await openssl(["x509", "-in", certFile, "-noout", "-pubkey"])).stdout;
}

export async function keyPublicKey(keyFile: string): Promise<string> {
  return (await openssl(["pkey", "-in", keyFile, "-pubout"])).stdout;
}

export async function x509Subject(certFile: string): Promise<string> {
  return (await openssl(["x509", "-in", certFile, "-noout", "-subject", "-nameopt", "RFC2253"])).stdout.trim();
}

/** `openssl verify` of a leaf against a CA file; returns the combined output. */
export function opensslVerify(caFile: string, certFile: string, extra: string[] = []): Promise<RunResult> {
  return run("openssl", ["verify", ...extra, "-CAfile", caFile, certFile]);
}
