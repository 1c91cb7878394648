import { generateKeyPairSync, webcrypto } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join, resolve } from "node:path";
import { CLI_ACTOR } from "../../authority/actor.ts";
import type { AuthorityDeps } from "../../authority/deps.ts";
import { type PublishedCrl, RevocationResponders } from "../../authority/responders.ts";
import { issueServiceCertificate } from "../../authority/service-identity.ts";
import { profilesOf } from "../../config/schema.ts";
import { toPem } from "../../pki/pem.ts";
import { systemClock } from "../../ports/clock.ts";
import type { SignatureVerifier } from "../../ports/verifier.ts";
import { SqliteStorage } from "../storage/sqlite-storage.ts";
import {
  dataPaths,
  issueServerCertificate,
  loadIssuingCa,
  readConfig,
  readTrustAnchors,
  resolvePassphrase,
  spkiOf,
} from "./data-dir.ts";
import { writeFileAtomic } from "./files.ts";
import { nodeDigest } from "./node-digest.ts";

/**
 * An external broker: `edgeid mqtt mosquitto-config` writes a Mosquitto configuration
 * that enforces the same rules as the embedded broker — client certificates from our
 * CA, the certificate's CN (the device id) as the user name, per-device topic ACLs, our
 * CRL — and points the server at it.
 */

export const SERVER_SERVICE = "edgeid";

export interface MosquittoConfigOptions {
  dataDir: string;
  out: string;
  /** HOST:PORT the broker listens on. */
  listen: { host: string; port: number };
  /** The user Mosquitto runs as (it reads the key files): default, whoever runs this. */
  user?: string;
  env: NodeJS.ProcessEnv;
}

export interface MosquittoConfigResult {
  url: string;
  files: Record<"config" | "acl" | "ca" | "cert" | "key" | "crl" | "clientCert" | "clientKey" | "pidFile", string>;
  serviceSerial: string;
}

/** The ACL: devices on their own topics only; the edgeid server everywhere under edgeid/v1. */
export function mosquittoAcl(): string {
  return [
    "# Written by edgeid (edgeid mqtt mosquitto-config). The user name is the client",
    "# certificate's CN, which is the device id (use_identity_as_username).",
    "pattern write edgeid/v1/devices/%u/status",
    "pattern write edgeid/v1/devices/%u/events",
    "pattern write edgeid/v1/devices/%u/cmd-result/+",
    "pattern read edgeid/v1/devices/%u/cmd/+",
    "",
    "# The edgeid server: reads every device, sends commands, overwrites revoked statuses.",
    `user service:${SERVER_SERVICE}`,
    "topic readwrite edgeid/v1/#",
    "",
  ].join("\n");
}

export function mosquittoConf(o: { dir: string; host: string; port: number; user: string }): string {
  const f = (name: string) => join(o.dir, name);
  return [
    "# Written by edgeid (edgeid mqtt mosquitto-config): mosquitto -c this-file",
    "per_listener_settings false",
    "allow_anonymous false",
    `user ${o.user}`,
    `pid_file ${f("mosquitto.pid")}`,
    "persistence false",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
    "",
    `listener ${o.port} ${o.host}`,
    "protocol mqtt",
    `cafile ${f("ca.pem")}`,
    `certfile ${f("broker.pem")}`,
    `keyfile ${f("broker.key")}`,
    "tls_version tlsv1.2",
    "require_certificate true",
    "use_identity_as_username true",
    // Rewritten by the server on every CRL it publishes, followed by a SIGHUP (reload).
    `crlfile ${f("crl.pem")}`,
    `acl_file ${f("acl")}`,
    "",
  ].join("\n");
}

/** Writes the broker's files and records the external broker in edgeid.json. */
export async function writeMosquittoConfig(o: MosquittoConfigOptions): Promise<MosquittoConfigResult> {
  const paths = dataPaths(o.dataDir);
  const config = readConfig(o.dataDir);
  const passphrase = resolvePassphrase(o.dataDir, o.env, false).passphrase;
  const ca = await loadIssuingCa(o.dataDir, passphrase);
  const dir = resolve(o.out);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = (name: string) => join(dir, name);
  const files = {
    config: file("mosquitto.conf"),
    acl: file("acl"),
    ca: file("ca.pem"),
    cert: file("broker.pem"),
    key: file("broker.key"),
    crl: file("crl.pem"),
    clientCert: file("edgeid-client.pem"),
    clientKey: file("edgeid-client.key"),
    pidFile: file("mosquitto.pid"),
  };
  const hostPart = o.listen.host.includes(":") ? `[${o.listen.host}]` : o.listen.host;
  const url = `mqtts://${hostPart}:${o.listen.port}`;
  const storage = SqliteStorage.open(paths.database);
  try {
    const deps: AuthorityDeps = {
      config,
      profiles: profilesOf(config),
      storage,
      ca,
      clock: systemClock,
      crypto: webcrypto as Crypto,
      digest: nodeDigest,
      verifier: undefined as unknown as SignatureVerifier,
      publicUrl: config.publicUrl ?? `https://${config.listen}`,
      idevidAnchors: new Map(),
    };
    const anchors = [ca.certificate, ...readTrustAnchors(o.dataDir)];
    writeFileAtomic(files.ca, anchors.map((d) => toPem("CERTIFICATE", d)).join(""), 0o644);
    const broker = await issueServerCertificate(ca, [o.listen.host, ...config.hostnames]);
    writeFileAtomic(files.cert, toPem("CERTIFICATE", broker.der) + toPem("CERTIFICATE", ca.certificate), 0o644);
    writeFileAtomic(files.key, broker.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const service = await issueServiceCertificate(deps, CLI_ACTOR, { name: SERVER_SERVICE, spki: spkiOf(privateKey) });
    writeFileAtomic(files.clientCert, toPem("CERTIFICATE", service.der) + toPem("CERTIFICATE", ca.certificate));
    writeFileAtomic(files.clientKey, privateKey.export({ type: "pkcs8", format: "pem" }) as string);
    // The current CRL, so the broker starts with it; the server keeps it current.
    const responders = new RevocationResponders(deps);
    await responders.start();
    const crl = responders.currentCrl(ca.name);
    if (!crl) throw new Error("no CRL was published");
    writeCrlPem(files.crl, crl);
    writeFileAtomic(files.acl, mosquittoAcl(), 0o644);
    writeFileAtomic(
      files.config,
      mosquittoConf({ dir, host: o.listen.host, port: o.listen.port, user: o.user ?? userInfo().username }),
      0o644,
    );
    // Point the server at the broker (other settings in edgeid.json are kept as written).
    const raw = JSON.parse(readFileSync(paths.config, "utf8")) as Record<string, unknown>;
    const mqtt = (raw.mqtt ?? {}) as Record<string, unknown>;
    raw.mqtt = {
      ...mqtt,
      external: {
        url,
        clientCert: files.clientCert,
        clientKey: files.clientKey,
        ca: files.ca,
        crlFile: files.crl,
        pidFile: files.pidFile,
      },
    };
    writeFileAtomic(paths.config, `${JSON.stringify(raw, null, 2)}\n`);
    readConfig(o.dataDir);
    return { url, files, serviceSerial: service.record.serial };
  } finally {
    await storage.close();
  }
}

function writeCrlPem(file: string, crl: PublishedCrl): void {
  // Mosquitto reads it as its own user: world-readable, like any CRL.
  writeFileAtomic(file, toPem("X509 CRL", crl.der), 0o644);
}

/**
 * Keeps an external broker's CRL file current: every CRL the server publishes is
 * written, then the broker is sent SIGHUP (Mosquitto reloads its TLS files on it).
 */
export function crlFileSink(o: {
  crlFile: string;
  pidFile?: string;
  log: (level: "info" | "warn", msg: string, fields?: Record<string, unknown>) => void;
}): (crl: PublishedCrl) => void {
  return (crl) => {
    try {
      writeCrlPem(o.crlFile, crl);
    } catch (err) {
      o.log("warn", "could not write the broker's CRL file", { file: o.crlFile, error: (err as Error).message });
      return;
    }
    if (!o.pidFile || !existsSync(o.pidFile)) return;
    const pid = Number(readFileSync(o.pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return;
    try {
      process.kill(pid, "SIGHUP");
      o.log("info", "told the mqtt broker to reload its CRL", { pid, crlNumber: crl.number.toString() });
    } catch (err) {
      o.log("warn", "could not signal the mqtt broker", { pid, error: (err as Error).message });
    }
  };
}
