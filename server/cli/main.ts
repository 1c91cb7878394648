import { nodeDigest } from "../adapters/node/node-digest.ts";
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { pino } from "pino";
import { dataPaths, initDataDir, isInitialised, readConfig } from "../adapters/node/data-dir.ts";
import { SqliteStorage } from "../adapters/storage/sqlite-storage.ts";
import { createOperator } from "../authority/operators.ts";
import { createTokens } from "../authority/tokens.ts";
import { parseDuration } from "../config/duration.ts";
import { profilesOf } from "../config/schema.ts";
import { startServer } from "../entry/node.ts";
import { systemClock } from "../ports/clock.ts";
import type { DeviceStatus } from "../ports/storage.ts";
import { printDevice, printDevices } from "./output.ts";

const crypto = webcrypto as Crypto;
const DEFAULT_DATA = "./edgeid-data";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

function duration(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function openStorage(dataDir: string): SqliteStorage {
  if (!isInitialised(dataDir))
    throw new Error(`${dataPaths(dataDir).root} is not an edgeid data directory; run edgeid init`);
  return SqliteStorage.open(dataPaths(dataDir).database);
}

async function initialise(dataDir: string, opts: { trustDomain: string; hostname: string[]; listen?: string }) {
  const result = await initDataDir(
    dataDir,
    {
      trustDomain: opts.trustDomain,
      hostnames: opts.hostname.length ? opts.hostname : ["localhost"],
      listen: opts.listen,
    },
    process.env,
  );
  const storage = SqliteStorage.open(result.paths.database);
  try {
    const admin = await createOperator(
      { storage, clock: systemClock, crypto, digest: nodeDigest },
      { name: "admin", role: "admin", actor: "cli:init" },
    );
    return { ...result, admin };
  } finally {
    await storage.close();
  }
}

function warnDevPassphrase(file: string): void {
  process.stderr.write(
    `\n*** DEVELOPMENT MODE: a CA key passphrase was generated and stored at\n***   ${file}\n` +
      "*** next to the encrypted keys. For production, set EDGEID_CA_PASSPHRASE_FILE\n" +
      "*** (a file outside the data directory) before `edgeid init`.\n\n",
  );
}

const program = new Command("edgeid")
  .description("edgeid: identity enrollment for edge fleets (EST, RFC 7030)")
  .showHelpAfterError();

program
  .command("init")
  .description("create a data directory: SQLite database, root and issuing CA, TLS certificate, first admin token")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--trust-domain <td>", "SPIFFE trust domain", "edgeid.local")
  .option("--hostname <name>", "hostname or IP the listener is reached by (repeatable)", collect, [])
  .option("--listen <host:port>", "listener address stored in the configuration")
  .option("--json", "machine-readable output")
  .action(async (opts) => {
    const r = await initialise(opts.data, opts);
    if (r.passphrase.development) warnDevPassphrase(r.passphrase.origin);
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({ dataDir: r.paths.root, trustDomain: opts.trustDomain, adminTokenId: r.admin.id, adminToken: r.admin.token, caPassphrase: r.passphrase.development ? r.passphrase.origin : "external" })}\n`,
      );
    } else {
      process.stdout.write(
        `initialised ${r.paths.root} (trust domain ${opts.trustDomain})\n` +
          `admin operator token (shown once, store it now): ${r.admin.token}\n`,
      );
    }
  });

program
  .command("serve")
  .description("run the HTTPS server (EST); initialises the data directory on first start")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--listen <host:port>", "listener (default from the configuration: 127.0.0.1:8443)")
  .option("--trust-domain <td>", "trust domain when initialising on first start", "edgeid.local")
  .option("--hostname <name>", "hostname when initialising on first start (repeatable)", collect, [])
  .addOption(
    new Option(
      "--mqtt-listen <host:port|off>",
      "embedded MQTT broker (not part of this release; only 'off' is accepted)",
    ).default("off"),
  )
  .action(async (opts) => {
    const logger = pino({ base: undefined, redact: ["req.headers.authorization", "token", "passphrase"] });
    if (opts.mqttListen !== "off") {
      throw new Error("the embedded MQTT broker is not part of this release; use --mqtt-listen off");
    }
    if (!isInitialised(opts.data)) {
      const r = await initialise(opts.data, opts);
      if (r.passphrase.development) warnDevPassphrase(r.passphrase.origin);
      process.stderr.write(
        `initialised ${r.paths.root}\nadmin operator token (shown once, store it now): ${r.admin.token}\n`,
      );
    }
    const running = await startServer({ dataDir: opts.data, listen: opts.listen, logger });
    const stop = async (signal: string) => {
      logger.info({ signal }, "shutting down");
      await running.close();
      process.exit(0);
    };
    process.once("SIGINT", () => void stop("SIGINT"));
    process.once("SIGTERM", () => void stop("SIGTERM"));
  });

const ca = program.command("ca").description("certificate authority");
ca.command("export")
  .description("print the trust anchor (root CA certificate) as PEM")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .action((opts) => {
    process.stdout.write(readFileSync(dataPaths(opts.data).rootCert, "utf8"));
  });

const token = program.command("token").description("one-time bootstrap tokens");
token
  .command("create")
  .description("create a bootstrap token for a device, or --count tokens for a production batch")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--device <id>", "device id")
  .option("--count <n>", "number of devices in a batch", positiveInt)
  .option("--device-prefix <prefix>", "batch device ids: <prefix><sequence number>")
  .option("--start <n>", "first sequence number of a batch", positiveInt, 1)
  .option("--profile <name>", "profile the device enrolls under", "device")
  .option("--ttl <duration>", "token lifetime, e.g. 24h, 7d", duration)
  .option("--json", "one JSON object per token and line")
  .action(async (opts) => {
    let deviceIds: string[];
    if (opts.device && !opts.count) deviceIds = [opts.device];
    else if (opts.count && opts.devicePrefix && !opts.device) {
      const last = opts.start + opts.count - 1;
      const width = Math.max(4, String(last).length);
      deviceIds = Array.from(
        { length: opts.count },
        (_, i) => `${opts.devicePrefix}${String(opts.start + i).padStart(width, "0")}`,
      );
    } else {
      throw new Error("give either --device ID, or --count N with --device-prefix PREFIX");
    }
    const config = readConfig(opts.data);
    const storage = openStorage(opts.data);
    try {
      const created = await createTokens(
        { storage, clock: systemClock, crypto, digest: nodeDigest, config, profiles: profilesOf(config) },
        { deviceIds, profile: opts.profile, ttl: opts.ttl, actor: "cli" },
      );
      for (const t of created) {
        const row = {
          deviceId: t.deviceId,
          profile: t.profile,
          tokenId: t.tokenId,
          token: t.token,
          expiresAt: t.expiresAt.toISOString(),
        };
        process.stdout.write(
          opts.json ? `${JSON.stringify(row)}\n` : `${t.deviceId}\t${t.token}\texpires ${row.expiresAt}\n`,
        );
      }
    } finally {
      await storage.close();
    }
  });

const devices = program.command("devices").description("the fleet inventory");
devices
  .command("list")
  .description("list devices (ordered by id)")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .addOption(new Option("--status <status>").choices(["pending", "active", "revoked", "decommissioned"]))
  .option("--profile <name>")
  .option("--after <id>", "continue after this device id")
  .option("--limit <n>", "at most this many", positiveInt, 100)
  .option("--json", "one JSON object per device and line")
  .action(async (opts) => {
    const storage = openStorage(opts.data);
    try {
      const rows = await storage.listDevices({
        status: opts.status as DeviceStatus | undefined,
        profile: opts.profile,
        after: opts.after,
        limit: opts.limit,
      });
      printDevices(rows, Boolean(opts.json));
    } finally {
      await storage.close();
    }
  });
devices
  .command("show")
  .description("one device with its certificates and recent audit records")
  .argument("<id>")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--json", "one JSON object")
  .action(async (id: string, opts) => {
    const storage = openStorage(opts.data);
    try {
      const device = await storage.getDevice(id);
      if (!device) {
        process.stderr.write(`no device ${id}\n`);
        process.exitCode = 1;
        return;
      }
      const config = readConfig(opts.data);
      printDevice(
        {
          device,
          trustDomain: config.trustDomain,
          certificates: await storage.listCertificates(id),
          tokens: await storage.listTokens(id),
          audit: await storage.listAudit({ deviceId: id, limit: 20 }),
        },
        Boolean(opts.json),
      );
    } finally {
      await storage.close();
    }
  });

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`edgeid: ${err.message}\n`);
  process.exit(1);
});
