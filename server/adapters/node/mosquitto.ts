import { generateKeyPairSync, webcrypto } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join, resolve } from "node:path";
import { type Actor, CLI_ACTOR } from "../../authority/actor.ts";
import { type AuthorityDeps, checkIssuers } from "../../authority/deps.ts";
import { isValidServiceName } from "../../authority/device-reports.ts";
import { listenerUrl, revocationBase } from "../../authority/issue.ts";
import { SERVER_SERVICE_NAME } from "../../authority/mqtt-contract.ts";
import { type PublishedCrl, RevocationResponders } from "../../authority/responders.ts";
import { issueServiceCertificate } from "../../authority/service-identity.ts";
import { type Config } from "../../config/schema.ts";
import { readCertificate } from "../../pki/certificate.ts";
import { pemCertificates, toPem } from "../../pki/pem.ts";
import { webCryptoVerifier } from "../../pki/verify.ts";
import { SqliteStorage } from "../storage/sqlite-storage.ts";
import { nodeCoreDeps } from "./core-deps.ts";
import {
  dataPaths,
  issueServerCertificate,
  loadIssuingCas,
  readConfig,
  readTrustAnchors,
  resolveInDataDir,
  resolvePassphrase,
  spkiOf,
} from "./data-dir.ts";
import { writeFileAtomic } from "./files.ts";

/**
 * An external broker: `edgeid mqtt mosquitto-config` writes a Mosquitto configuration
 * that enforces the same rules as the embedded broker — client certificates from our
 * CA, the certificate's CN (the device id) as the user name, per-device topic ACLs, our
 * CRL — and points the server at it.
 */

export const SERVER_SERVICE = SERVER_SERVICE_NAME;

export interface MosquittoConfigOptions {
  dataDir: string;
  out: string;
  /** HOST:PORT the broker listens on. */
  listen: { host: string; port: number };
  /** The user Mosquitto runs as (it reads the key files): default, whoever runs this. */
  user?: string;
  /** Service identities (`edgeid mqtt service-cert`) that may read every edgeid/v1 topic. */
  readers?: string[];
  env: NodeJS.ProcessEnv;
}

export interface MosquittoConfigResult {
  url: string;
  files: Record<"config" | "acl" | "ca" | "cert" | "key" | "crl" | "clientCert" | "clientKey" | "pidFile", string>;
  serviceSerial: string;
}

/** The ACL: devices on their own topics only; the edgeid server everywhere under edgeid/v1. */
export function mosquittoAcl(readers: readonly string[] = []): string {
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
    ...(readers.length ? ["# Services that read the fleet topics (edgeid mqtt service-cert)."] : []),
    ...readers.flatMap((name) => [`user service:${name}`, "topic read edgeid/v1/#", ""]),
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

/** The public listener's URL as the configuration names it (a wildcard address by the first hostname). */
function publicListenerUrl(config: Config): string | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(config.publicListen);
  if (!m) return undefined;
  return listenerUrl("http", (m[1] ?? m[2]) as string, Number(m[3]), config.hostnames);
}

/**
 * The core's dependencies with the issuing CA, for a CLI command that issues (service
 * certificates, Mosquitto files, `legacy sign`); the database is closed after `run`.
 */
export async function withIssuer<T>(
  dataDir: string,
  env: NodeJS.ProcessEnv,
  run: (deps: AuthorityDeps) => Promise<T>,
): Promise<T> {
  const paths = dataPaths(dataDir);
  const config = readConfig(dataDir);
  const cas = await loadIssuingCas(dataDir, resolvePassphrase(dataDir, env, false).passphrase);
  checkIssuers(config, cas);
  const storage = SqliteStorage.open(paths.database);
  try {
    return await run(
      nodeCoreDeps({
        config,
        storage,
        cas,
        // CSR proof of possession (legacy sign); no manufacturer chains here.
        verifier: webCryptoVerifier(webcrypto.subtle as SubtleCrypto),
        // What `serve` writes into certificates, from the configuration alone (no port is bound here).
        publicUrl: revocationBase(config, {
          https: `https://${config.listen}`,
          publicHttp: publicListenerUrl(config),
        }).url,
      }),
    );
  } finally {
    await storage.close();
  }
}

/** A service identity's key (P-256, generated here) and certificate (with the issuing CA) as PEM files. */
async function writeServiceFiles(
  deps: AuthorityDeps,
  name: string,
  certFile: string,
  keyFile: string,
  actor: Actor = CLI_ACTOR,
): Promise<{ serial: string; notAfter: Date }> {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const service = await issueServiceCertificate(deps, actor, { name, spki: spkiOf(privateKey) });
  writeFileAtomic(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }) as string);
  writeFileAtomic(certFile, toPem("CERTIFICATE", service.der) + toPem("CERTIFICATE", deps.ca.certificate));
  return { serial: service.record.serial, notAfter: service.record.notAfter };
}

/**
 * `edgeid mqtt service-cert`: a client certificate for a service (an integration
 * that reads fleet topics, a dashboard) on the embedded or an external broker.
 */
export async function writeServiceIdentity(o: {
  dataDir: string;
  name: string;
  out: string;
  env: NodeJS.ProcessEnv;
}): Promise<{ cert: string; key: string; ca: string; serial: string; notAfter: string; identity: string }> {
  return withIssuer(o.dataDir, o.env, async (deps) => {
    const dir = resolve(o.out);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const cert = join(dir, `${o.name}.pem`);
    const key = join(dir, `${o.name}.key`);
    const ca = join(dir, "ca.pem");
    const r = await writeServiceFiles(deps, o.name, cert, key);
    writeFileAtomic(ca, trustBundle(o.dataDir, deps), 0o644);
    return {
      cert,
      key,
      ca,
      serial: r.serial,
      notAfter: r.notAfter.toISOString(),
      identity: `spiffe://${deps.config.trustDomain}/service/${o.name}`,
    };
  });
}

function trustBundle(dataDir: string, deps: AuthorityDeps): string {
  const issuing = [...deps.cas.values()].map((c) => c.certificate);
  return [...issuing, ...readTrustAnchors(dataDir)].map((d) => toPem("CERTIFICATE", d)).join("");
}

/** Writes the broker's files and records the external broker in edgeid.json. */
export async function writeMosquittoConfig(o: MosquittoConfigOptions): Promise<MosquittoConfigResult> {
  return withIssuer(o.dataDir, o.env, (deps) => mosquittoFiles(o, deps));
}

async function mosquittoFiles(o: MosquittoConfigOptions, deps: AuthorityDeps): Promise<MosquittoConfigResult> {
  const paths = dataPaths(o.dataDir);
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
  writeFileAtomic(files.ca, trustBundle(o.dataDir, deps), 0o644);
  const brokerHostnames = [o.listen.host, ...deps.config.hostnames];
  await writeBrokerFiles(deps, brokerHostnames, files.cert, files.key);
  const service = await writeServiceFiles(deps, SERVER_SERVICE, files.clientCert, files.clientKey);
  // The current CRL, so the broker starts with it; the server keeps it current.
  const responders = new RevocationResponders(deps);
  await responders.start();
  const crls = [...deps.cas.keys()].map((name) => responders.currentCrl(name));
  if (crls.some((c) => !c)) throw new Error("no CRL was published");
  writeCrlPem(files.crl, crls as PublishedCrl[]);
  for (const name of o.readers ?? []) {
    if (!isValidServiceName(name))
      throw new Error(`--reader ${name}: service names are 1-32 lowercase letters, digits or '-'`);
  }
  writeFileAtomic(files.acl, mosquittoAcl(o.readers), 0o644);
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
      brokerCert: files.cert,
      brokerKey: files.key,
      brokerHostnames,
    },
  };
  writeFileAtomic(paths.config, `${JSON.stringify(raw, null, 2)}\n`);
  readConfig(o.dataDir);
  return { url, files, serviceSerial: service.serial };
}

/** The broker's listener certificate (with the issuing CA after it) and its key. */
async function writeBrokerFiles(deps: AuthorityDeps, hostnames: string[], certFile: string, keyFile: string) {
  const broker = await issueServerCertificate(deps.ca, hostnames);
  writeFileAtomic(keyFile, broker.privateKey.export({ type: "pkcs8", format: "pem" }) as string);
  writeFileAtomic(certFile, toPem("CERTIFICATE", broker.der) + toPem("CERTIFICATE", deps.ca.certificate), 0o644);
}

/** Renewed when less than this is left (a third of the 90 days they are issued for). */
export const RENEW_WITHIN_MS = 30 * 86400_000;

function expiresSoon(certFile: string, now: Date): boolean {
  const [leaf] = existsSync(certFile) ? pemCertificates(readFileSync(certFile, "utf8")) : [];
  return !leaf || readCertificate(leaf).notAfter.getTime() - now.getTime() < RENEW_WITHIN_MS;
}

/** The server renewing its own credentials is an admin act of the server's. */
const SERVER_ADMIN: Actor = { id: "server", role: "admin" };

/**
 * Keeps an external broker's credentials current (the server runs it at start and every
 * 12 hours): the server's client certificate, and — when the configuration names them —
 * the broker's listener certificate, followed by SIGHUP (Mosquitto reloads its
 * certificates on it). Returns what was renewed.
 */
export async function renewExternalCredentials(o: {
  dataDir: string;
  external: NonNullable<Config["mqtt"]["external"]>;
  deps: AuthorityDeps;
  now?: Date;
}): Promise<{ client: boolean; broker: boolean }> {
  const now = o.now ?? o.deps.clock.now();
  const file = (f: string) => resolveInDataDir(o.dataDir, f);
  const out = { client: false, broker: false };
  if (expiresSoon(file(o.external.clientCert), now)) {
    await writeServiceFiles(
      o.deps,
      SERVER_SERVICE,
      file(o.external.clientCert),
      file(o.external.clientKey),
      SERVER_ADMIN,
    );
    out.client = true;
  }
  const { brokerCert, brokerKey, brokerHostnames } = o.external;
  if (brokerCert && brokerKey && brokerHostnames && expiresSoon(file(brokerCert), now)) {
    await writeBrokerFiles(o.deps, brokerHostnames, file(brokerCert), file(brokerKey));
    if (o.external.pidFile) signalBroker(file(o.external.pidFile));
    out.broker = true;
  }
  return out;
}

/** SIGHUP to the broker in the pid file; false when there is none to signal. */
function signalBroker(pidFile: string): boolean {
  if (!existsSync(pidFile)) return false;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 1) return false;
  process.kill(pid, "SIGHUP");
  return true;
}

/**
 * One CRL per issuing CA in one file: OpenSSL's CRL check (Mosquitto's crlfile) needs
 * the CRL of every leaf's issuer, or it refuses the client.
 */
function writeCrlPem(file: string, crls: PublishedCrl[]): void {
  // Mosquitto reads it as its own user: world-readable, like any CRL.
  writeFileAtomic(file, crls.map((c) => toPem("X509 CRL", c.der)).join(""), 0o644);
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
  const latest = new Map<string, PublishedCrl>();
  return (crl) => {
    latest.set(crl.ca, crl);
    try {
      writeCrlPem(o.crlFile, [...latest.values()]);
    } catch (err) {
      o.log("warn", "could not write the broker's CRL file", { file: o.crlFile, error: (err as Error).message });
      return;
    }
    if (!o.pidFile) return;
    try {
      if (signalBroker(o.pidFile)) {
        o.log("info", "told the mqtt broker to reload its CRL", { ca: crl.ca, crlNumber: crl.number.toString() });
      }
    } catch (err) {
      o.log("warn", "could not signal the mqtt broker", { pidFile: o.pidFile, error: (err as Error).message });
    }
  };
}
