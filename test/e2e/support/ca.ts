/**
 * Certificates made outside EST enrollment: a throwaway openssl CA and the client
 * certificates it issues, the server's CA chain as files, and `edgeid mqtt service-cert`.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "vitest";
import { edgeid } from "./cli.ts";
import { estGet } from "./curl.ts";
import { openssl, opensslCsr, opensslKey, pkcs7ToPem, writePem, x509Subject } from "./openssl.ts";
import type { TestServer } from "./server.ts";

// ---------------------------------------------------------------------------------
// A throwaway CA made with openssl

export interface OpensslCa {
  certFile: string;
  keyFile: string;
}

export async function opensslCa(dir: string, name: string, subject: string): Promise<OpensslCa> {
  const keyFile = await opensslKey(dir, name, "P-256");
  const certFile = join(dir, `${name}.pem`);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    keyFile,
    "-subj",
    subject,
    "-days",
    "3650",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-addext",
    "subjectKeyIdentifier=hash",
    "-out",
    certFile,
  ]);
  return { certFile, keyFile };
}

/** A clientAuth end-entity certificate issued by `ca` with `openssl x509 -req`. */
export async function issueClientCert(
  dir: string,
  ca: OpensslCa,
  name: string,
  subject: string,
  opts: { keyFile?: string; days?: number } = {},
): Promise<{ certFile: string; keyFile: string }> {
  const csr = await opensslCsr(dir, name, { subject, ...(opts.keyFile ? { keyFile: opts.keyFile } : {}) });
  const extFile = join(dir, `${name}.ext`);
  await writeFile(
    extFile,
    [
      "[ leaf ]",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature",
      "extendedKeyUsage = clientAuth",
      "subjectKeyIdentifier = hash",
      "authorityKeyIdentifier = keyid",
      "",
    ].join("\n"),
  );
  const certFile = join(dir, `${name}.pem`);
  await openssl([
    "x509",
    "-req",
    "-inform",
    "DER",
    "-in",
    csr.derFile,
    "-CA",
    ca.certFile,
    "-CAkey",
    ca.keyFile,
    "-set_serial",
    `0x7${randomBytes(8).toString("hex")}`,
    "-days",
    String(opts.days ?? 365),
    "-extfile",
    extFile,
    "-extensions",
    "leaf",
    "-out",
    certFile,
  ]);
  return { certFile, keyFile: csr.keyFile };
}

// ---------------------------------------------------------------------------------
// The server's CA and service identities

/** The chain from /cacerts as one PEM file, and the issuing CA (the one not self-issued) alone, for openssl ocsp. */
export async function caFiles(server: TestServer, work: string): Promise<{ chainFile: string; issuingFile: string }> {
  const chain = await pkcs7ToPem(work, (await estGet(server, work, "cacerts")).body);
  const chainFile = await writePem(work, "chain.pem", chain);
  let issuingFile: string | undefined;
  for (const [i, pem] of chain.entries()) {
    const file = await writePem(work, `ca-${i}.pem`, pem);
    if ((await x509Subject(file)).includes("Issuing")) issuingFile = file;
  }
  expect(issuingFile).toBeTruthy();
  return { chainFile, issuingFile: issuingFile as string };
}

/** `edgeid mqtt service-cert`: a service identity's certificate and key files. */
export async function serviceCert(
  dataDir: string,
  name: string,
  out: string,
): Promise<{ cert: string; key: string; identity: string }> {
  const r = await edgeid(["mqtt", "service-cert", "--name", name, "--out", out, "--data", dataDir, "--json"]);
  return JSON.parse(r.stdout) as { cert: string; key: string; identity: string };
}
