import { nodeDigest } from "../adapters/node/node-digest.ts";
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { pino } from "pino";
import { dataPaths, initDataDir, isInitialised, readConfig } from "../adapters/node/data-dir.ts";
import { SqliteStorage } from "../adapters/storage/sqlite-storage.ts";
import { CLI_ACTOR } from "../authority/actor.ts";
import { decideEnrollment } from "../authority/approvals.ts";
import { verifyAuditChain } from "../authority/audit-chain.ts";
import { AuthorityError } from "../authority/errors.ts";
import {
  getCertificate,
  issueTokens,
  listDevices,
  listEnrollments,
  listTokens,
  readAudit,
  revokeToken,
  showDevice,
} from "../authority/fleet.ts";
import { createOperator, listOperators, revokeOperator } from "../authority/operators.ts";
import {
  REVOCATION_REASONS,
  type RevocationReason,
  reinstateDevice,
  revokeCertificate,
  revokeDevice,
} from "../authority/revoke.ts";
import { batchDeviceIds } from "../authority/tokens.ts";
import { parseDuration } from "../config/duration.ts";
import { profilesOf } from "../config/schema.ts";
import { startServer } from "../entry/node.ts";
import {
  auditView,
  certificateView,
  deviceDetailView,
  deviceView,
  enrollmentView,
  operatorView,
  tokenView,
} from "../frontends/operator-api/views.ts";
import { systemClock } from "../ports/clock.ts";
import type { DeviceStatus } from "../ports/storage.ts";
import {
  AUDIT_COLUMNS,
  DEVICE_COLUMNS,
  ENROLLMENT_COLUMNS,
  OPERATOR_COLUMNS,
  printChainReport,
  printDevice,
  printList,
  printNextCursor,
  printObject,
  TOKEN_COLUMNS,
} from "./output.ts";

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
    const { operator, token } = await createOperator(
      { storage, clock: systemClock, crypto, digest: nodeDigest },
      { name: "admin", role: "admin", actor: { id: "cli:init", role: "admin" } },
    );
    return { ...result, admin: { id: operator.id, token } };
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
      deviceIds = batchDeviceIds(opts.devicePrefix, opts.start, opts.count);
    } else {
      throw new Error("give either --device ID, or --count N with --device-prefix PREFIX");
    }
    const config = readConfig(opts.data);
    const storage = openStorage(opts.data);
    try {
      const created = await issueTokens(
        { storage, clock: systemClock, crypto, digest: nodeDigest, config, profiles: profilesOf(config) },
        CLI_ACTOR,
        { deviceIds, profile: opts.profile, ttl: opts.ttl },
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

/** The core's dependencies for verbs run from the command line on a data directory. */
function cliDeps(dataDir: string) {
  const config = readConfig(dataDir);
  const storage = openStorage(dataDir);
  return { storage, config, profiles: profilesOf(config), clock: systemClock, crypto, digest: nodeDigest };
}

/** Runs a verb with the data directory's storage, and closes it whatever happens. */
async function withCore<T>(dataDir: string, run: (deps: ReturnType<typeof cliDeps>) => Promise<T>): Promise<T> {
  const deps = cliDeps(dataDir);
  try {
    return await run(deps);
  } finally {
    await deps.storage.close();
  }
}

const REASONS = Object.keys(REVOCATION_REASONS);

const devices = program.command("devices").description("the fleet inventory");
devices
  .command("list")
  .description("list devices: by id, or by expiry with --expiring-within")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .addOption(new Option("--status <status>").choices(["pending", "active", "revoked", "decommissioned"]))
  .option("--profile <name>")
  .option("--expiring-within <duration>", "only devices whose certificate expires within this, e.g. 7d", duration)
  .option("--after <id>", "continue after this device id")
  .option("--cursor <cursor>", "continue where the previous page ended")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
  .option("--json", "one JSON object per device and line")
  .action((opts) =>
    withCore(opts.data, async (deps) => {
      const page = await listDevices(deps, CLI_ACTOR, {
        status: opts.status as DeviceStatus | undefined,
        profile: opts.profile,
        expiringWithin: opts.expiringWithin,
        afterId: opts.after,
        cursor: opts.cursor,
        limit: opts.limit,
      });
      printList(
        page.items.map((d) => deviceView(d, deps.config.trustDomain)),
        Boolean(opts.json),
        DEVICE_COLUMNS,
      );
      printNextCursor(page.nextCursor);
    }),
  );
devices
  .command("show")
  .description("one device with its certificates, tokens and recent audit records")
  .argument("<id>")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withCore(opts.data, async (deps) => {
      const detail = await showDevice(deps, CLI_ACTOR, id);
      printDevice(deviceDetailView(detail, deps.config.trustDomain, deps.clock.now()), Boolean(opts.json));
    }),
  );
for (const verb of ["revoke", "decommission"] as const) {
  devices
    .command(verb)
    .description(
      verb === "revoke"
        ? "revoke a device: all its unexpired certificates, unused tokens and its IDevID, in one step"
        : "retire a device: revoked like `revoke`, recorded as decommissioned",
    )
    .argument("<id>")
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .addOption(
      new Option("--reason <reason>", "RFC 5280 reason")
        .choices(REASONS)
        .default(verb === "revoke" ? "unspecified" : "cessationOfOperation"),
    )
    .option("--json", "one JSON object")
    .action((id: string, opts) =>
      withCore(opts.data, async (deps) => {
        const r = await revokeDevice(deps, {
          deviceId: id,
          reason: opts.reason as RevocationReason,
          status: verb === "revoke" ? "revoked" : "decommissioned",
          actor: CLI_ACTOR,
        });
        if (opts.json)
          printObject({ device: deviceView(r.device, deps.config.trustDomain), revokedSerials: r.serials }, true);
        else
          process.stdout.write(
            `${r.device.id} ${r.device.status}; certificates revoked: ${r.serials.join(", ") || "none"}\n`,
          );
      }),
    );
}

devices
  .command("reinstate")
  .description("let a revoked device enroll again with a new token (its revoked IDevID stays revoked)")
  .argument("<id>")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--note <text>", "recorded in the audit trail")
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withCore(opts.data, async (deps) =>
      printObject(
        deviceView(
          await reinstateDevice(deps, { deviceId: id, note: opts.note, actor: CLI_ACTOR }),
          deps.config.trustDomain,
        ),
        Boolean(opts.json),
      ),
    ),
  );

const certs = program.command("certs").description("issued certificates");
certs
  .command("show")
  .argument("<serial>", "hex serial number")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--json", "one JSON object")
  .action((serial: string, opts) =>
    withCore(opts.data, async (deps) =>
      printObject(certificateView(await getCertificate(deps, CLI_ACTOR, serial)), Boolean(opts.json)),
    ),
  );
certs
  .command("revoke")
  .description("revoke one certificate (the device keeps its status)")
  .argument("<serial>", "hex serial number")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .addOption(new Option("--reason <reason>", "RFC 5280 reason").choices(REASONS).default("unspecified"))
  .option("--json", "one JSON object")
  .action((serial: string, opts) =>
    withCore(opts.data, async (deps) => {
      const cert = await revokeCertificate(deps, { serial, reason: opts.reason as RevocationReason, actor: CLI_ACTOR });
      printObject(certificateView(cert), Boolean(opts.json));
    }),
  );

token
  .command("list")
  .description("bootstrap tokens (never their secrets)")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--device <id>")
  .addOption(new Option("--state <state>").choices(["unused", "used", "revoked", "expired"]))
  .option("--cursor <cursor>")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
  .option("--json", "one JSON object per token and line")
  .action((opts) =>
    withCore(opts.data, async (deps) => {
      const page = await listTokens(deps, CLI_ACTOR, {
        deviceId: opts.device,
        state: opts.state,
        cursor: opts.cursor,
        limit: opts.limit,
      });
      const now = deps.clock.now();
      printList(
        page.items.map((t) => tokenView(t, now)),
        Boolean(opts.json),
        TOKEN_COLUMNS,
      );
      printNextCursor(page.nextCursor);
    }),
  );
token
  .command("revoke")
  .argument("<token-id>", "tok_…")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withCore(opts.data, async (deps) =>
      printObject(tokenView(await revokeToken(deps, CLI_ACTOR, id), deps.clock.now()), Boolean(opts.json)),
    ),
  );

const enrollments = program
  .command("enrollments")
  .description("enrollment requests waiting for approval (profiles with approval: manual)");
enrollments
  .command("list")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .addOption(new Option("--status <status>").choices(["pending", "approved", "rejected", "issued"]).default("pending"))
  .option("--cursor <cursor>")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
  .option("--json", "one JSON object per request and line")
  .action((opts) =>
    withCore(opts.data, async (deps) => {
      const page = await listEnrollments(deps, CLI_ACTOR, {
        status: opts.status,
        cursor: opts.cursor,
        limit: opts.limit,
      });
      printList(page.items.map(enrollmentView), Boolean(opts.json), ENROLLMENT_COLUMNS);
      printNextCursor(page.nextCursor);
    }),
  );
for (const decision of ["approve", "reject"] as const) {
  enrollments
    .command(decision)
    .argument("<request-id>", "enr_…")
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .option("--reason <text>", "why (recorded, and told to the device on rejection)")
    .option("--json", "one JSON object")
    .action((id: string, opts) =>
      withCore(opts.data, async (deps) =>
        printObject(
          enrollmentView(await decideEnrollment(deps, { id, decision, reason: opts.reason, actor: CLI_ACTOR })),
          Boolean(opts.json),
        ),
      ),
    );
}

const audit = program.command("audit").description("the hash-chained audit trail");
audit
  .command("list")
  .description("audit records, newest first")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--device <id>")
  .option("--action <action>", "e.g. device.revoke, est.simpleenroll")
  .option("--actor <actor>", "e.g. operator:op_…, device:dev-001, cli")
  .option("--cursor <cursor>")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 50)
  .option("--json", "one JSON object per record and line")
  .action((opts) =>
    withCore(opts.data, async (deps) => {
      const page = await readAudit(deps, CLI_ACTOR, {
        deviceId: opts.device,
        action: opts.action,
        actor: opts.actor,
        cursor: opts.cursor,
        limit: opts.limit,
      });
      printList(page.items.map(auditView), Boolean(opts.json), AUDIT_COLUMNS);
      printNextCursor(page.nextCursor);
    }),
  );
audit
  .command("verify")
  .description("check the hash chain from the first record to the newest; exit 1 at the first broken record")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--json", "one JSON object")
  .action((opts) =>
    withCore(opts.data, async (deps) => {
      const report = await verifyAuditChain(deps, CLI_ACTOR);
      printChainReport(report, Boolean(opts.json));
      if (!report.ok) process.exitCode = 1;
    }),
  );

const operators = program.command("operators").description("operator API tokens and their roles");
operators
  .command("create")
  .description("create an operator; prints its bearer token once")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .requiredOption("--name <name>")
  .addOption(new Option("--role <role>").choices(["admin", "operator", "auditor"]).makeOptionMandatory())
  .option("--ttl <duration>", "token lifetime, e.g. 90d (default: until revoked)", duration)
  .option("--json", "one JSON object")
  .action((opts) =>
    withCore(opts.data, async (deps) => {
      const r = await createOperator(deps, { name: opts.name, role: opts.role, ttl: opts.ttl, actor: CLI_ACTOR });
      if (opts.json) printObject({ ...operatorView(r.operator), token: r.token }, true);
      else process.stdout.write(`${r.operator.id} (${r.operator.role}) token, shown once: ${r.token}\n`);
    }),
  );
operators
  .command("list")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--json", "one JSON object per operator and line")
  .action((opts) =>
    withCore(opts.data, async (deps) =>
      printList((await listOperators(deps, CLI_ACTOR)).map(operatorView), Boolean(opts.json), OPERATOR_COLUMNS),
    ),
  );
operators
  .command("revoke")
  .argument("<operator-id>", "op_…")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withCore(opts.data, async (deps) =>
      printObject(operatorView(await revokeOperator(deps, id, CLI_ACTOR)), Boolean(opts.json)),
    ),
  );

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof AuthorityError ? err.publicMessage : (err as Error).message;
  process.stderr.write(`edgeid: ${message}\n`);
  process.exit(1);
});
