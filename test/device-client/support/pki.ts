/**
 * Certificates for the agent's tests (@peculiar/x509 over WebCrypto) and an agent
 * directory holding an identity from them.
 */
import { createPrivateKey, webcrypto, X509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { AgentStore, INITIAL_STATE } from "../../../device-client/src/store.ts";
import { certsOnly } from "../../../server/pki/pkcs7.ts";

const crypto = webcrypto as Crypto;
x509.cryptoProvider.set(crypto);
export const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
export const DAY = 86_400_000;
export const HOUR = 3_600_000;

export async function keyPair() {
  return (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}
async function pkcs8Pem(key: CryptoKey) {
  const der = Buffer.from(await crypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString("base64")}\n-----END PRIVATE KEY-----\n`;
}

/** basicConstraints cA (with `pathLen`) and keyUsage keyCertSign: what a CA certificate has. */
export const CA_EXTENSIONS = (pathLen?: number) => [
  new x509.BasicConstraintsExtension(true, pathLen, true),
  new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
];
export const SERVER_AUTH = new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]);
export const CLIENT_AUTH = new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]);
export const SAN_IP = new x509.SubjectAlternativeNameExtension([{ type: "ip", value: "127.0.0.1" }]);
export const SAN_LOCALHOST = new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "localhost" }]);

export interface Issuer {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

export interface Issued extends Issuer {
  /** PEM */
  pem: string;
  /** PKCS#8 PEM */
  key: string;
  node: X509Certificate;
}

/** A certificate for `subject` signed by `issuer`. */
export async function issue(
  issuer: Issuer,
  subject: string,
  extensions: x509.Extension[],
  from: number,
  to: number,
): Promise<Issued> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: Buffer.from(crypto.getRandomValues(new Uint8Array(8)))
      .toString("hex")
      .replace(/^./, "4"),
    subject,
    issuer: issuer.cert.subject,
    notBefore: new Date(from),
    notAfter: new Date(to),
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: ALG,
    extensions,
  });
  const pem = cert.toString("pem");
  return { cert, keys, pem, key: await pkcs8Pem(keys.privateKey), node: new X509Certificate(pem) };
}

export async function selfSigned(
  name: string,
  from: number,
  to: number,
  extensions: x509.Extension[] = CA_EXTENSIONS(),
): Promise<Issued> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name,
    notBefore: new Date(from),
    notAfter: new Date(to),
    keys,
    signingAlgorithm: ALG,
    extensions,
  });
  const pem = cert.toString("pem");
  return { cert, keys, pem, key: await pkcs8Pem(keys.privateKey), node: new X509Certificate(pem) };
}

/** A CA, a server certificate for 127.0.0.1 (serverAuth, SAN) and a device certificate valid [now-1h, now+23h]. */
export async function pki(now: number) {
  const root = await selfSigned("CN=Agent Test CA", now - DAY, now + 30 * DAY);
  const server = await issue(root, "CN=127.0.0.1", [SERVER_AUTH, SAN_IP], now - DAY, now + 30 * DAY);
  const device = await issue(root, "CN=gw-t", [CLIENT_AUTH], now - HOUR, now + 23 * HOUR);
  return { ca: root.pem, root, server, device };
}

/** An agent directory for device gw-t: trust, identity (arrived an hour ago), configuration and state. */
export function agentDir(
  dir: string,
  p: Awaited<ReturnType<typeof pki>>,
  now: number,
  config: { server: string; mqtt?: string },
): AgentStore {
  const store = new AgentStore(dir);
  store.init();
  store.saveTrust([p.root.node]);
  store.saveIdentity({ key: createPrivateKey(p.device.key), chain: [p.device.node] });
  store.saveConfig({
    server: config.server,
    deviceId: "gw-t",
    label: "",
    keyType: "P-256",
    renewFraction: 2 / 3,
    jitter: 0,
    caRefreshMs: 365 * DAY,
    ...(config.mqtt ? { mqtt: config.mqtt } : {}),
  });
  store.saveState({ ...INITIAL_STATE, timeFloor: now, session: 1, identityReceivedAt: now - HOUR });
  return store;
}

/**
 * The EST server's 200 to a CSR (base64 DER, as sent): a certificate for its key from
 * `issuer`, valid [now-1h, now+23h], with `serial`, as certs-only PKCS#7 in base64.
 */
export async function issuedAnswer(
  issuer: Issuer,
  csrBase64: string,
  serial: string,
  now: number,
): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const csr = new x509.Pkcs10CertificateRequest(Buffer.from(csrBase64, "base64"));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: "CN=gw-t",
    issuer: issuer.cert.subject,
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 23 * HOUR),
    publicKey: await csr.publicKey.export(),
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: ALG,
    extensions: [CLIENT_AUTH],
  });
  return {
    status: 200,
    headers: { "content-type": "application/pkcs7-mime; smime-type=certs-only" },
    body: Buffer.from(certsOnly([new Uint8Array(cert.rawData)])).toString("base64"),
  };
}
