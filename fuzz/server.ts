/**
 * The real server for the fuzzer: `edgeid serve` as a child process on a fresh data
 * directory (like bench/server.ts), its configuration edited in one place
 * (fuzzServerConfig), bootstrap tokens from the CLI, one enrolled device for the
 * mutual-TLS and MQTT cases, and a monitor that samples the process's RSS and watches
 * its log and its exit.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createPublicKey, webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { certificateFromResponse, certificatePem } from "../bench/requests.ts";
import { createTokens, EDGEID, freePort, run, type Token, waitReady } from "../bench/server.ts";
import { readCertificate } from "../server/pki/certificate.ts";
import { issuerHashes } from "../server/pki/ocsp.ts";
import { pemCertificates } from "../server/pki/pem.ts";
import { generateKey, makeCsr, makeOcspRequests, type OcspIssuer } from "./seeds.ts";

/**
 * Everything the fuzzer changes in the data directory's edgeid.json, in one place. The
 * refused-request budgets are raised tenfold (600 per address and minute over the ~250
 * rotated source addresses, 100 per claimed device id): most malformed input reaches the
 * parsers, and a run still crosses the budgets, so the 429 path is fuzzed too.
 */
export function fuzzServerConfig(config: Record<string, unknown>): Record<string, unknown> {
  const profiles = (config.profiles ?? {}) as Record<string, Record<string, unknown>>;
  // Every key type the CSR reader knows reaches the signature check, RSA included.
  profiles.device = { ...(profiles.device ?? {}), keyTypes: ["P-256", "P-384", "Ed25519", "RSA"] };
  const limits = (config.limits ?? {}) as Record<string, unknown>;
  return { ...config, profiles, limits: { ...limits, refusals: { perAddress: 600, perDevice: 100 } } };
}

export interface FuzzDevice {
  deviceId: string;
  cert: string;
  key: string;
  /** The certificate DER and its serial's INTEGER magnitude. */
  der: Uint8Array;
  serial: Uint8Array;
}

export interface FuzzServer {
  url: string;
  host: string;
  port: number;
  mqttPort: number;
  ca: string;
  pid: number;
  dataDir: string;
  adminToken: string;
  tokens: Token[];
  device: FuzzDevice;
  /** Real OCSP requests for the P-256 issuing CA (the device's serial among them). */
  ocsp: Uint8Array[];
  /** CSRs for simplereenroll, and the private keys of those with a new key (by SPKI). */
  reenrollCsrs: Uint8Array[];
  reenrollKeys: { spki: Uint8Array; key: string }[];
  /** The issuing CA certificate PEM (an IDevID the server will refuse, but must parse). */
  issuingPem: string;
  /** The process exited (code or signal), if it did. */
  exit(): string | undefined;
  /** Log lines at error level or above, or naming an unhandled error or rejection. */
  badLogLines(): string[];
  logLines(): number;
  /** Distinct client addresses in the request log (the source-address rotation at work). */
  remoteAddresses(): number;
  stop(): Promise<void>;
}

function post(url: string, ca: string, headers: Record<string, string>, body: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(url, { method: "POST", ca, headers }, (res) => {
      let text = "";
      res.setEncoding("latin1").on("data", (c: string) => {
        text += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const BAD_LINE = /"level":(5\d|60)|unhandled|uncaught|FATAL|out of memory/i;

/** `edgeid init` on a fresh directory, the fuzz configuration, tokens, `edgeid serve`, one enrolled device. */
export async function startFuzzServer(opts: { tokens: number; log?: (line: string) => void }): Promise<FuzzServer> {
  const say = opts.log ?? (() => {});
  const work = await mkdtemp(join(tmpdir(), "edgeid-fuzz-"));
  const dataDir = join(work, "data");
  const init = await run(process.execPath, [
    EDGEID,
    "init",
    "--data",
    dataDir,
    "--trust-domain",
    "fuzz.test",
    "--hostname",
    "localhost",
    "--json",
  ]);
  const { adminToken } = JSON.parse(init.stdout.trim()) as { adminToken: string };
  const configFile = join(dataDir, "edgeid.json");
  const config = JSON.parse(await readFile(configFile, "utf8")) as Record<string, unknown>;
  await writeFile(configFile, `${JSON.stringify(fuzzServerConfig(config), null, 2)}\n`);
  const tokens = await createTokens(dataDir, opts.tokens + 1, "fuzz-");
  say(`data directory ${dataDir}: ${tokens.length} tokens`);

  const port = await freePort();
  const mqttPort = await freePort();
  const host = "127.0.0.1";
  const child: ChildProcess = spawn(
    process.execPath,
    [
      EDGEID,
      "serve",
      "--data",
      dataDir,
      "--listen",
      `${host}:${port}`,
      "--mqtt-listen",
      `${host}:${mqttPort}`,
      "--public-listen",
      `${host}:0`,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let exit: string | undefined;
  const exited = new Promise<void>((r) =>
    child.once("exit", (code, signal) => {
      exit = `exit code ${code}, signal ${signal}`;
      r();
    }),
  );
  const bad: string[] = [];
  let lines = 0;
  const remotes = new Set<string>();
  let pending = "";
  const onData = (chunk: string) => {
    pending += chunk;
    let nl = pending.indexOf("\n");
    while (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      lines++;
      const remote = line.includes(`"msg":"request"`) ? /"remote":"([^"]+)"/.exec(line) : null;
      if (remote) remotes.add(remote[1] as string);
      if (BAD_LINE.test(line) && bad.length < 100) bad.push(line.slice(0, 2000));
      nl = pending.indexOf("\n");
    }
  };
  child.stdout?.setEncoding("utf8").on("data", onData);
  child.stderr?.setEncoding("utf8").on("data", onData);
  const ca = readFileSync(join(dataDir, "ca", "root-ca.pem"), "utf8");
  const url = `https://${host}:${port}`;
  await waitReady(`${url}/healthz`, ca, () => exit !== undefined);

  // One device enrolled over EST: its certificate is the client certificate of the
  // mutual-TLS and MQTT cases.
  const deviceToken = tokens.pop() as Token;
  const csr = makeCsr("P-256", deviceToken.deviceId);
  const enrolled = await post(
    `${url}/.well-known/est/simpleenroll`,
    ca,
    {
      authorization: `Basic ${Buffer.from(`${deviceToken.deviceId}:${deviceToken.token}`).toString("base64")}`,
      "content-type": "application/pkcs10",
    },
    Buffer.from(csr.der).toString("base64"),
  );
  if (enrolled.status !== 200)
    throw new Error(`enrolling the fuzz device answered ${enrolled.status}: ${enrolled.body}`);
  const der = certificateFromResponse(enrolled.body);
  const serial = Buffer.from(readCertificate(der).serialHex, "hex");
  const device: FuzzDevice = {
    deviceId: deviceToken.deviceId,
    cert: certificatePem(der),
    key: csr.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    der,
    serial: new Uint8Array(serial),
  };

  const issuingPem = await readFile(join(dataDir, "ca", "issuing-p256.pem"), "utf8");
  const digest = async (alg: "SHA-1" | "SHA-256", data: Uint8Array) =>
    new Uint8Array(await webcrypto.subtle.digest(alg, data as Uint8Array<ArrayBuffer>));
  const hashes = await issuerHashes(pemCertificates(issuingPem)[0] as Uint8Array, digest);
  const issuer: OcspIssuer = { sha1: hashes["SHA-1"], sha256: hashes["SHA-256"] };
  const ocsp = makeOcspRequests(issuer, [device.serial, Uint8Array.of(1), new Uint8Array(20).fill(0x41)]);
  // Re-enrollment requests: new keys (the device profile wants a new key each time), the
  // current key (refused: key_reused), and one asking for names nobody declared (refused).
  const reenrollKeys: { spki: Uint8Array; key: string }[] = [];
  const reenrollCsrs = [
    makeCsr("P-256", device.deviceId, {
      key: { publicKey: createPublicKey(csr.privateKey), privateKey: csr.privateKey },
    }).der,
    makeCsr("P-256", device.deviceId, { extensions: true }).der,
  ];
  for (let i = 0; i < 6; i++) {
    const type = i % 2 === 0 ? "P-256" : "Ed25519";
    const key = generateKey(type);
    reenrollCsrs.push(makeCsr(type, device.deviceId, { key }).der);
    reenrollKeys.push({
      spki: new Uint8Array(key.publicKey.export({ type: "spki", format: "der" })),
      key: key.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    });
  }

  return {
    url,
    host,
    port,
    mqttPort,
    ca,
    pid: child.pid as number,
    dataDir,
    adminToken,
    tokens,
    device,
    ocsp,
    reenrollCsrs,
    reenrollKeys,
    issuingPem,
    exit: () => exit,
    badLogLines: () => bad,
    logLines: () => lines,
    remoteAddresses: () => remotes.size,
    stop: async () => {
      if (exit === undefined) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** VmRSS of a process in MiB (Linux /proc); NaN once it is gone. */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
