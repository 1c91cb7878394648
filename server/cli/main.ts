import "reflect-metadata";
import { createHash, webcrypto } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { Argument, Command, Option } from "commander";
import { pino } from "pino";
import { startBridge } from "../adapters/node/bridge.ts";
import {
  createRsaHierarchy,
  dataPaths,
  ensureTlsCertificates,
  isInitialised,
  loadIssuingCas,
  readConfig,
  resolvePassphrase,
} from "../adapters/node/data-dir.ts";
import { decryptPrivateKey } from "../adapters/node/encrypted-key.ts";
import { writeMosquittoConfig, writeServiceIdentity } from "../adapters/node/mosquitto.ts";
import { buildPkcs12 } from "../adapters/node/pkcs12.ts";
import { AuthorityError } from "../authority/errors.ts";
import { OPERATOR_TOKEN_PREFIX } from "../authority/operators.ts";
import type { RevocationReason } from "../authority/revoke.ts";
import { parseListen, startServer } from "../entry/node.ts";
import { MAX_BRIDGED_MESSAGES } from "../frontends/operator-api/routes.ts";
import { base64url } from "../pki/base64.ts";
import { parsePem } from "../pki/pem.ts";
import type { DeviceStatus } from "../ports/storage.ts";
import type { TokenBatch } from "./fleet-client.ts";
import { fleetCommand, withFleet } from "./fleet-command.ts";
import { initialise, warnDevPassphrase } from "./initialise.ts";
import { collect, DEFAULT_DATA, declaredNamesOf, durationText, positiveInt, REASONS } from "./options.ts";
import {
  AUDIT_COLUMNS,
  COMMAND_COLUMNS,
  DEVICE_COLUMNS,
  ENROLLMENT_COLUMNS,
  EXPIRING_COLUMNS,
  OPERATOR_COLUMNS,
  printChainReport,
  printCsv,
  printDevice,
  printFleetAudit,
  printList,
  printNextCursor,
  printObject,
  TOKEN_COLUMNS,
} from "./output.ts";

/** The DER of every PEM block with this label. */
function pemBlocks(text: string, label: string): Uint8Array[] {
  return parsePem(text)
    .filter((b) => b.label === label)
    .map((b) => b.der);
}

/** A password from the terminal, not echoed. */
async function askPassword(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) throw new Error("no terminal to ask for the password: use --password-file");
  process.stderr.write(prompt);
  process.stdin.setRawMode(true);
  process.stdin.resume();
  let text = "";
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n") {
          done();
          resolve(text);
          return;
        }
        if (ch === "\u0003") {
          done();
          reject(new Error("cancelled"));
          return;
        }
        if (ch === "\u007f") text = text.slice(0, -1);
        else text += ch;
      }
    };
    const done = () => {
      process.stdin.off("data", onData);
      process.stdin.setRawMode(false);
      process.stdin.pause();
      process.stderr.write("\n");
    };
    process.stdin.on("data", onData);
  });
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
  .option(
    "--mqtt-listen <host:port|off>",
    "embedded MQTT broker (default from the configuration: 127.0.0.1:8883; off when an external broker is configured)",
  )
  .option("--mqtt-url <url>", "external broker (mqtts://…) set up by `edgeid mqtt mosquitto-config`")
  .action(async (opts) => {
    const logger = pino({ base: undefined, redact: ["req.headers.authorization", "token", "passphrase"] });
    if (opts.mqttListen !== undefined && opts.mqttListen !== "off") parseListen(opts.mqttListen);
    if (!isInitialised(opts.data)) {
      const r = await initialise(opts.data, opts);
      if (r.passphrase.development) warnDevPassphrase(r.passphrase.origin);
      process.stderr.write(
        `initialised ${r.paths.root}\nadmin operator token (shown once, store it now): ${r.admin.token}\n`,
      );
    }
    const running = await startServer({
      dataDir: opts.data,
      listen: opts.listen,
      mqttListen: opts.mqttListen,
      mqttUrl: opts.mqttUrl,
      logger,
    });
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
  .option("--rsa", "the RSA hierarchy's root (the legacy path's trust anchor)")
  .option("--all", "both roots, P-256 then RSA")
  .action((opts) => {
    const paths = dataPaths(opts.data);
    const files = opts.all ? [paths.rootCert, paths.rsaRootCert] : [opts.rsa ? paths.rsaRootCert : paths.rootCert];
    for (const f of files) {
      if (!existsSync(f)) throw new Error(`${f} does not exist; run \`edgeid ca add-rsa\``);
      process.stdout.write(readFileSync(f, "utf8"));
    }
  });
ca.command("add-rsa")
  .description("create the RSA hierarchy (root and issuing CA) in a data directory made before it existed")
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .action(async (opts) => {
    const config = readConfig(opts.data);
    const passphrase = resolvePassphrase(opts.data, process.env, false).passphrase;
    await createRsaHierarchy(opts.data, config.trustDomain, passphrase);
    const cas = await loadIssuingCas(opts.data, passphrase);
    await ensureTlsCertificates(opts.data, cas, config, passphrase);
    process.stdout.write(`created ${dataPaths(opts.data).rsaIssuingCert}; restart the server to load it\n`);
  });

const token = program.command("token").description("one-time bootstrap tokens");
fleetCommand(token, "create")
  .description("create a bootstrap token for a device, or --count tokens for a production batch")
  .option("--device <id>", "device id")
  .option("--count <n>", "number of devices in a batch", positiveInt)
  .option("--device-prefix <prefix>", "batch device ids: <prefix><sequence number>")
  .option("--start <n>", "first sequence number of a batch", positiveInt, 1)
  .option("--profile <name>", "profile the device enrolls under", "device")
  .option("--ttl <duration>", "token lifetime, e.g. 24h, 7d", durationText)
  .option("--dns <name>", "a DNS name the device's certificates carry (repeatable; one device only)", collect, [])
  .option("--ip <address>", "an IP address the device's certificates carry (repeatable; one device only)", collect, [])
  .option("--json", "one JSON object per token and line")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      let batch: TokenBatch;
      if (opts.device && !opts.count) batch = { deviceIds: [opts.device] };
      else if (opts.count && opts.devicePrefix && !opts.device) {
        batch = { count: opts.count, devicePrefix: opts.devicePrefix, start: opts.start };
      } else {
        throw new Error("give either --device ID, or --count N with --device-prefix PREFIX");
      }
      const names = declaredNamesOf(opts);
      for (const t of await fleet.createTokens(batch, { profile: opts.profile, ttl: opts.ttl, names })) {
        process.stdout.write(
          opts.json ? `${JSON.stringify(t)}\n` : `${t.deviceId}\t${t.token}\texpires ${t.expiresAt}\n`,
        );
      }
    }),
  );
fleetCommand(token, "list")
  .description("bootstrap tokens (never their secrets)")
  .option("--device <id>")
  .addOption(new Option("--state <state>").choices(["unused", "used", "revoked", "expired"]))
  .option("--cursor <cursor>")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
  .option("--json", "one JSON object per token and line")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const page = await fleet.listTokens({
        deviceId: opts.device,
        state: opts.state,
        cursor: opts.cursor,
        limit: opts.limit,
      });
      printList(page.items, Boolean(opts.json), TOKEN_COLUMNS);
      printNextCursor(page.nextCursor);
    }),
  );
fleetCommand(token, "revoke")
  .argument("<token-id>", "tok_…")
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withFleet(opts, async (fleet) => printObject(await fleet.revokeToken(id), Boolean(opts.json))),
  );

const devices = program.command("devices").description("the fleet inventory");
fleetCommand(devices, "list")
  .description("list devices: by id, or by expiry with --expiring-within")
  .addOption(new Option("--status <status>").choices(["pending", "active", "revoked", "decommissioned"]))
  .option("--profile <name>")
  .option("--gateway <id>", "only the appliances this gateway enrolled")
  .option("--expiring-within <duration>", "only devices whose certificate expires within this, e.g. 7d", durationText)
  .option("--after <id>", "continue after this device id")
  .option("--cursor <cursor>", "continue where the previous page ended")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
  .option("--json", "one JSON object per device and line")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const page = await fleet.listDevices({
        status: opts.status as DeviceStatus | undefined,
        profile: opts.profile,
        gateway: opts.gateway,
        expiringWithin: opts.expiringWithin,
        after: opts.after,
        cursor: opts.cursor,
        limit: opts.limit,
      });
      printList(page.items, Boolean(opts.json), DEVICE_COLUMNS);
      printNextCursor(page.nextCursor);
    }),
  );
fleetCommand(devices, "show")
  .description("one device with its certificates, tokens and recent audit records")
  .argument("<id>")
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withFleet(opts, async (fleet) => printDevice(await fleet.showDevice(id), Boolean(opts.json))),
  );
for (const verb of ["revoke", "decommission"] as const) {
  fleetCommand(devices, verb)
    .description(
      verb === "revoke"
        ? "revoke a device: all its unexpired certificates, unused tokens and its IDevID, in one step"
        : "retire a device: revoked like `revoke`, recorded as decommissioned",
    )
    .argument("<id>")
    .addOption(
      new Option("--reason <reason>", "RFC 5280 reason")
        .choices(REASONS)
        .default(verb === "revoke" ? "unspecified" : "cessationOfOperation"),
    )
    .option("--cascade", "a gateway: its appliances too, in the same step")
    .option("--json", "one JSON object")
    .action((id: string, opts) =>
      withFleet(opts, async (fleet) => {
        const r = await fleet.revokeDevice(
          id,
          opts.reason as RevocationReason,
          verb === "decommission",
          Boolean(opts.cascade),
        );
        if (opts.json) printObject(r, true);
        else {
          process.stdout.write(
            `${r.device.id} ${r.device.status}; certificates revoked: ${r.revokedSerials.join(", ") || "none"}\n`,
          );
          if (r.appliances)
            process.stdout.write(`appliances ${r.device.status}: ${r.appliances.join(", ") || "none"}\n`);
        }
      }),
    );
}
fleetCommand(devices, "reinstate")
  .description("let a revoked device enroll again with a new token (its revoked IDevID stays revoked)")
  .argument("<id>")
  .option("--note <text>", "recorded in the audit trail")
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withFleet(opts, async (fleet) => printObject(await fleet.reinstateDevice(id, opts.note), Boolean(opts.json))),
  );

fleetCommand(devices, "bind-idevid")
  .description(
    "bind a manufacturer certificate (IDevID) to a device id, so that it (and no other) may enroll as that id",
  )
  .argument("<id>")
  .requiredOption("--cert <file>", "the IDevID: PEM (then any intermediate CA certificates) or DER")
  .option("--profile <name>", "whose IDevID trust bundle it must chain to (default: the device's, else device)")
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withFleet(opts, async (fleet) => {
      const bytes = readFileSync(opts.cert);
      // A DER file goes on as base64; PEM as it is.
      const text = bytes.includes("-----BEGIN") ? bytes.toString("latin1") : bytes.toString("base64");
      const b = await fleet.bindIdevid(id, text, opts.profile);
      if (opts.json) printObject(b, true);
      else process.stdout.write(`${b.deviceId} bound to ${b.subject} (sha256 ${b.fingerprint})\n`);
    }),
  );

fleetCommand(devices, "rotate")
  .description("ask devices over MQTT to renew now with a new key: one device, a filtered set, or --all")
  .argument("[id]", "one device")
  .option("--profile <name>", "every active device of this profile")
  .option("--expiring-within <duration>", "every active device whose certificate expires within this", durationText)
  .option("--all", "every active device")
  .option("--json", "one JSON object")
  .action((id: string | undefined, opts) =>
    withFleet(opts, async (fleet) => {
      const r = await fleet.sendCommand("rotate", {
        deviceId: id,
        profile: opts.profile,
        expiringWithin: opts.expiringWithin,
        all: opts.all,
      });
      if (opts.json) printObject(r, true);
      else process.stdout.write(`rotate queued for ${r.count} device(s), batch ${r.batchId}\n`);
    }),
  );

fleetCommand(devices, "label")
  .description("set who owns a device and where it is (shown by devices show and the expiring report)")
  .argument("<id>")
  .option("--owner <text>", "owner (team, person, ticket queue)")
  .option("--no-owner", "clear the owner")
  .option("--location <text>", "site, rack, room")
  .option("--no-location", "clear the location")
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withFleet(opts, async (fleet) => {
      const change: { owner?: string | null; location?: string | null } = {};
      // commander: the value, false for --no-…, true (the default of a negatable option) when absent.
      if (opts.owner !== true) change.owner = opts.owner === false ? null : opts.owner;
      if (opts.location !== true) change.location = opts.location === false ? null : opts.location;
      printObject(await fleet.setMetadata(id, change), Boolean(opts.json));
    }),
  );

const report = program.command("report").description("reports over the inventory");
fleetCommand(report, "expiring")
  .description("active devices whose certificate expires within a window, soonest first, with owner and location")
  .requiredOption("--within <duration>", "e.g. 30d", durationText)
  .option("--json", "one JSON object per device and line")
  .option("--csv", "CSV with a header line (RFC 4180)")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      if (opts.json && opts.csv) throw new Error("choose --json or --csv");
      let cursor: string | undefined;
      let first = true;
      do {
        const page = await fleet.expiring({ within: opts.within, cursor, limit: 1000 });
        if (opts.csv) {
          printCsv(
            page.items,
            [
              "deviceId",
              "profile",
              "serial",
              "notAfter",
              "daysLeft",
              "owner",
              "location",
              "lastSeenAt",
              "reportedState",
            ],
            first,
          );
        } else if (opts.json || first || page.items.length > 0) {
          printList(page.items, Boolean(opts.json), EXPIRING_COLUMNS, !first);
        }
        first = false;
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
    }),
  );

const legacy = program.command("legacy").description("appliances with no EST client (the hybrid path)");
fleetCommand(legacy, "sign")
  .description("sign an appliance's CSR for a device: the same checks as enrollment, the operator's authority")
  .requiredOption("--device <id>", "device id (created if new)")
  .requiredOption("--csr <file>", "the CSR, PEM or base64 DER")
  .requiredOption("--profile <name>", "profile to issue under")
  .option("--dns <name>", "declare a DNS name for the device (repeatable; replaces its declared names)", collect, [])
  .option("--ip <address>", "declare an IP address for the device (repeatable)", collect, [])
  .option("--validity <duration>", "a shorter life than the profile's validity (its maximum), e.g. 90d", durationText)
  .option("--out <file>", "write the certificate and its chain (PEM) here instead of stdout")
  .option("--json", "one JSON object")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const r = await fleet.signCsr(opts.device, opts.profile, readFileSync(opts.csr, "latin1"), {
        names: declaredNamesOf(opts),
        validity: opts.validity,
      });
      if (opts.out) writeFileSync(opts.out, r.certificate + r.chain, { mode: 0o644 });
      if (opts.json) printObject(r, true);
      else if (opts.out) process.stdout.write(`${r.deviceId}: serial ${r.serial} until ${r.notAfter} → ${opts.out}\n`);
      else process.stdout.write(r.certificate + r.chain);
    }),
  );

fleetCommand(legacy, "issue")
  .description(
    "make an appliance's key and certificate and write them as a PKCS#12 file (built here: the password never leaves this machine)",
  )
  .requiredOption("--device <id>", "device id (created if new)")
  .requiredOption("--profile <name>", "profile to issue under (it must allow serverKeygen)")
  .requiredOption("--out <file>", "the .p12 file to write (mode 0600)")
  .option("--dns <name>", "declare a DNS name for the device (repeatable; replaces its declared names)", collect, [])
  .option("--ip <address>", "declare an IP address for the device (repeatable)", collect, [])
  .option("--validity <duration>", "a shorter life than the profile's validity (its maximum), e.g. 90d", durationText)
  .option("--password-file <file>", "the PKCS#12 password (else asked for on the terminal)")
  .option(
    "--legacy-encryption",
    "3DES and a SHA-1 MAC for old appliances that cannot read AES (weaker: use only when needed)",
  )
  .option("--json", "one JSON object (without the key)")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const password = opts.passwordFile
        ? readFileSync(opts.passwordFile, "utf8").replace(/\r?\n$/, "")
        : await askPassword("PKCS#12 password: ");
      if (password.length < 8) throw new Error("the PKCS#12 password must be at least 8 characters");
      const r = await fleet.issueWithKey(opts.device, opts.profile, {
        names: declaredNamesOf(opts),
        validity: opts.validity,
      });
      const p12 = buildPkcs12({
        pkcs8: pemBlocks(r.privateKey, "PRIVATE KEY")[0] as Uint8Array,
        certificates: [...pemBlocks(r.certificate, "CERTIFICATE"), ...pemBlocks(r.chain, "CERTIFICATE")],
        password,
        friendlyName: r.deviceId,
        encryption: opts.legacyEncryption ? "legacy" : "modern",
      });
      writeFileSync(opts.out, p12, { mode: 0o600 });
      const { privateKey: _key, ...shown } = r;
      if (opts.json) printObject({ ...shown, out: opts.out }, true);
      else process.stdout.write(`${r.deviceId}: serial ${r.serial} until ${r.notAfter} → ${opts.out}\n`);
    }),
  );

const commands = program.command("commands").description("commands to devices over MQTT and their results");
fleetCommand(commands, "send")
  .description("queue a command (rotate, ca-update) for one device, a filtered set, or --all")
  .addArgument(new Argument("<command>").choices(["rotate", "ca-update"]))
  .option("--device <id>", "one device")
  .option("--profile <name>", "every active device of this profile")
  .option("--expiring-within <duration>", "every active device whose certificate expires within this", durationText)
  .option("--all", "every active device")
  .option("--json", "one JSON object")
  .action((command: "rotate" | "ca-update", opts) =>
    withFleet(opts, async (fleet) => {
      const r = await fleet.sendCommand(command, {
        deviceId: opts.device,
        profile: opts.profile,
        expiringWithin: opts.expiringWithin,
        all: opts.all,
      });
      if (opts.json) printObject(r, true);
      else process.stdout.write(`${command} queued for ${r.count} device(s), batch ${r.batchId}\n`);
    }),
  );
fleetCommand(commands, "list")
  .option("--device <id>")
  .option("--batch <id>")
  .addOption(new Option("--state <state>").choices(["queued", "sent", "succeeded", "failed", "expired"]))
  .option("--cursor <cursor>")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
  .option("--json", "one JSON object per command and line")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const page = await fleet.listCommands({
        deviceId: opts.device,
        batchId: opts.batch,
        state: opts.state,
        cursor: opts.cursor,
        limit: opts.limit,
      });
      printList(page.items, Boolean(opts.json), COMMAND_COLUMNS);
      printNextCursor(page.nextCursor);
    }),
  );
fleetCommand(commands, "show")
  .argument("<op-id>")
  .option("--json", "one JSON object")
  .action((opId: string, opts) =>
    withFleet(opts, async (fleet) => printObject(await fleet.showCommand(opId), Boolean(opts.json))),
  );

const certs = program.command("certs").description("issued certificates");
fleetCommand(certs, "show")
  .argument("<serial>", "hex serial number")
  .option("--json", "one JSON object")
  .action((serial: string, opts) =>
    withFleet(opts, async (fleet) => printObject(await fleet.showCertificate(serial), Boolean(opts.json))),
  );
fleetCommand(certs, "revoke")
  .description("revoke one certificate (the device keeps its status)")
  .argument("<serial>", "hex serial number")
  .addOption(new Option("--reason <reason>", "RFC 5280 reason").choices(REASONS).default("unspecified"))
  .option("--json", "one JSON object")
  .action((serial: string, opts) =>
    withFleet(opts, async (fleet) =>
      printObject(await fleet.revokeCertificate(serial, opts.reason as RevocationReason), Boolean(opts.json)),
    ),
  );

const enrollments = program
  .command("enrollments")
  .description("enrollment requests waiting for approval (profiles with approval: manual)");
fleetCommand(enrollments, "list")
  .addOption(new Option("--status <status>").choices(["pending", "approved", "rejected", "issued"]).default("pending"))
  .option("--cursor <cursor>")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
  .option("--json", "one JSON object per request and line")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const page = await fleet.listEnrollments({ status: opts.status, cursor: opts.cursor, limit: opts.limit });
      printList(page.items, Boolean(opts.json), ENROLLMENT_COLUMNS);
      printNextCursor(page.nextCursor);
    }),
  );
for (const decision of ["approve", "reject"] as const) {
  fleetCommand(enrollments, decision)
    .argument("<request-id>", "enr_…")
    .option("--reason <text>", "why (recorded, and told to the device on rejection)")
    .option("--json", "one JSON object")
    .action((id: string, opts) =>
      withFleet(opts, async (fleet) =>
        printObject(await fleet.decideEnrollment(id, decision, opts.reason), Boolean(opts.json)),
      ),
    );
}

const audit = program.command("audit").description("the hash-chained audit trail");
fleetCommand(audit, "list")
  .description("audit records, newest first")
  .option("--device <id>")
  .option("--action <action>", "e.g. device.revoke, est.simpleenroll")
  .option("--actor <actor>", "e.g. operator:op_…, device:dev-001, cli")
  .option("--cursor <cursor>")
  .option("--limit <n>", "at most this many (1-1000)", positiveInt, 50)
  .option("--json", "one JSON object per record and line")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const page = await fleet.listAudit({
        deviceId: opts.device,
        action: opts.action,
        actor: opts.actor,
        cursor: opts.cursor,
        limit: opts.limit,
      });
      printList(page.items, Boolean(opts.json), AUDIT_COLUMNS);
      printNextCursor(page.nextCursor);
    }),
  );
fleetCommand(audit, "verify")
  .description("check the hash chain from the first record to the newest; exit 1 at the first broken record")
  .option("--json", "one JSON object")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const report = await fleet.verifyAudit();
      printChainReport(report, Boolean(opts.json));
      if (!report.ok) process.exitCode = 1;
    }),
  );

fleetCommand(audit, "fleet")
  .description(
    "fleet audit: expiring certificates, silent devices, revoked-but-connected, clones, unknown certificates, weak keys",
  )
  .option("--expiring-within <duration>", "default per profile: 30d or a quarter of its validity", durationText)
  .option("--not-seen-for <duration>", "default from the configuration (24h)", durationText)
  .option("--clone-window <duration>", "default from the configuration (1h)", durationText)
  .option("--limit <n>", "findings per check", positiveInt)
  .option("--fail-on-findings", "exit 2 when there is any finding")
  .option("--json", "one JSON object")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const report = await fleet.auditFleet({
        expiringWithin: opts.expiringWithin,
        notSeenFor: opts.notSeenFor,
        cloneWindow: opts.cloneWindow,
        limit: opts.limit,
      });
      printFleetAudit(report, Boolean(opts.json));
      if (opts.failOnFindings && report.findings.length > 0) process.exitCode = 2;
    }),
  );

const worker = program.command("worker").description("the Cloudflare Workers deployment (wrangler.toml)");
worker
  .command("dev-vars")
  .description(
    "write the Worker's configuration and CA material for `npm run dev:worker` (.dev.vars): DEVELOPMENT ONLY, the CA keys are written decrypted",
  )
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .option("--out <file>", "where to write them", ".dev.vars")
  .action((opts) => {
    const paths = dataPaths(opts.data);
    const passphrase = resolvePassphrase(opts.data, process.env, false).passphrase;
    const key = (file: string, what: string) =>
      decryptPrivateKey(readFileSync(file, "utf8"), passphrase, what).export({
        type: "pkcs8",
        format: "pem",
      }) as string;
    const vars: Record<string, string> = {
      // As written (durations as text): the Worker validates it with the same schema.
      EDGEID_CONFIG: JSON.stringify(JSON.parse(readFileSync(paths.config, "utf8"))),
      CA_CHAIN: readFileSync(paths.issuingCert, "utf8") + readFileSync(paths.rootCert, "utf8"),
      CA_KEY: key(paths.issuingKey, "issuing CA issuing-p256"),
    };
    if (existsSync(paths.rsaIssuingCert)) {
      vars.CA_RSA_CHAIN = readFileSync(paths.rsaIssuingCert, "utf8") + readFileSync(paths.rsaRootCert, "utf8");
      vars.CA_RSA_KEY = key(paths.rsaIssuingKey, "issuing CA issuing-rsa");
    }
    // dotenv: PEM in double quotes with \n escapes (JSON string syntax gives exactly
    // that); the configuration on one line in single quotes, taken literally.
    if (vars.EDGEID_CONFIG?.includes("'"))
      throw new Error("edgeid.json contains a single quote, which .dev.vars cannot hold");
    const text = Object.entries(vars)
      .map(([k, v]) => (k === "EDGEID_CONFIG" ? `${k}='${v}'\n` : `${k}=${JSON.stringify(v)}\n`))
      .join("");
    writeFileSync(opts.out, text, { mode: 0o600 });
    process.stderr.write(`wrote ${opts.out} (decrypted CA keys: development only; keep it out of version control)\n`);
  });

worker
  .command("admin")
  .description(
    "the first admin operator of a Workers deployment: SQL for `wrangler d1 execute edgeid --file F`; prints the token once",
  )
  .option("--name <name>", "operator name", "admin")
  .requiredOption("--out <file>", "the SQL file to write")
  .option("--json", "one JSON object")
  .action((opts) => {
    if (!/^[\w .@-]{1,64}$/.test(opts.name))
      throw new Error("an operator name is 1-64 letters, digits, spaces or . _ @ -");
    const id = `op_${base64url(webcrypto.getRandomValues(new Uint8Array(9)))}`;
    const token = `${OPERATOR_TOKEN_PREFIX}${base64url(webcrypto.getRandomValues(new Uint8Array(32)))}`;
    const hash = createHash("sha256").update(token).digest("hex");
    const now = Date.now();
    const q = (v: string) => `'${v.replace(/'/g, "''")}'`;
    const detail = JSON.stringify({ operatorId: id, name: opts.name, role: "admin", expiresAt: null });
    // The audit record goes in unsealed: the Worker's D1 adapter chains it with the next write.
    const sql =
      `INSERT INTO operators (id, name, role, token_hash, created_at, expires_at, revoked_at, created_by) VALUES (${q(id)}, ${q(opts.name)}, 'admin', ${q(hash)}, ${now}, NULL, NULL, 'cli');\n` +
      `INSERT INTO audit_events (at, actor, action, outcome, device_id, serial, remote, detail) VALUES (${now}, 'cli', 'operator.create', 'success', NULL, NULL, NULL, ${q(detail)});\n`;
    writeFileSync(opts.out, sql, { mode: 0o600 });
    if (opts.json) printObject({ id, name: opts.name, role: "admin", token, sql: opts.out }, true);
    else
      process.stdout.write(
        `admin operator token (shown once, store it now): ${token}\nthen: wrangler d1 execute edgeid --local|--remote --file ${opts.out}\n`,
      );
  });

program
  .command("bridge")
  .description(
    "relay device status, events and command results from an MQTT broker to a server with no broker of its own (Workers)",
  )
  .requiredOption("--mqtt-url <url>", "the broker, mqtts://HOST:PORT")
  .requiredOption("--cert <file>", "the bridge's service certificate (PEM; `edgeid mqtt service-cert --name bridge`)")
  .requiredOption("--key <file>", "its key (PEM)")
  .requiredOption("--ca <file>", "the broker's CA certificates (PEM)")
  .option("--client-id <id>", "the MQTT client id: the certificate's identity", "service:bridge")
  .option("--server <url>", "the deployment's base URL (or EDGEID_SERVER)")
  .option("--token-file <file>", "file holding an operator token (or EDGEID_OPERATOR_TOKEN[_FILE])")
  .option("--cacert <file>", "trust anchor for the server's TLS certificate (or EDGEID_CACERT)")
  .option("--batch <n>", "most messages per POST (1-500)", positiveInt, 200)
  .option("--flush-ms <n>", "longest a message waits for its batch", positiveInt, 500)
  .action(async (opts) => {
    const server = opts.server ?? process.env.EDGEID_SERVER;
    const tokenFile = opts.tokenFile ?? process.env.EDGEID_OPERATOR_TOKEN_FILE;
    const token = process.env.EDGEID_OPERATOR_TOKEN ?? (tokenFile ? readFileSync(tokenFile, "utf8").trim() : undefined);
    if (!server || !token) throw new Error("the bridge needs --server and an operator token (--token-file)");
    if (opts.batch > MAX_BRIDGED_MESSAGES) throw new Error(`--batch is at most ${MAX_BRIDGED_MESSAGES}`);
    const cacert = opts.cacert ?? process.env.EDGEID_CACERT;
    const logger = pino({ base: undefined, redact: ["token"] });
    const bridge = startBridge({
      mqttUrl: opts.mqttUrl,
      clientCert: opts.cert,
      clientKey: opts.key,
      ca: opts.ca,
      clientId: opts.clientId,
      server,
      token,
      serverCa: cacert ? readFileSync(cacert, "utf8") : undefined,
      batch: opts.batch,
      flushMs: opts.flushMs,
      log: (level, msg, fields) => logger[level](fields ?? {}, msg),
    });
    const stop = async (signal: string) => {
      logger.info({ signal, relayed: bridge.relayed() }, "bridge stopping");
      await bridge.close();
      process.exit(0);
    };
    process.once("SIGINT", () => void stop("SIGINT"));
    process.once("SIGTERM", () => void stop("SIGTERM"));
  });

const mqtt = program.command("mqtt").description("the fleet loop's MQTT broker");
mqtt
  .command("mosquitto-config")
  .description(
    "write a Mosquitto configuration (TLS with our CA, identity = certificate CN, per-device ACL, our CRL) and point the server at it",
  )
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .requiredOption("--out <dir>", "where the broker's files go")
  .option("--listen <host:port>", "the broker's listener", "127.0.0.1:8883")
  .option("--user <name>", "the user Mosquitto runs as (it reads the key files; default: you)")
  .option("--reader <service>", "a service identity that may read every edgeid/v1 topic (repeatable)", collect, [])
  .option("--json", "one JSON object")
  .action(async (opts) => {
    const r = await writeMosquittoConfig({
      dataDir: opts.data,
      out: opts.out,
      listen: parseListen(opts.listen),
      user: opts.user,
      readers: opts.reader,
      env: process.env,
    });
    if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      process.stdout.write(
        `wrote ${r.files.config}\nstart the broker:  mosquitto -c ${r.files.config}\n` +
          `the server now uses ${r.url} (edgeid serve; its embedded broker is off unless --mqtt-listen is given)\n`,
      );
    }
  });

mqtt
  .command("service-cert")
  .description(
    "a client certificate for a service (spiffe://<td>/service/<name>): reads every edgeid/v1 topic and may send commands, on the embedded or an external broker",
  )
  .option("--data <dir>", "data directory", DEFAULT_DATA)
  .requiredOption("--name <name>", "service name: 1-32 lowercase letters, digits or '-'")
  .requiredOption("--out <dir>", "where <name>.pem, <name>.key and ca.pem go")
  .option("--json", "one JSON object")
  .action(async (opts) => {
    const r = await writeServiceIdentity({ dataDir: opts.data, name: opts.name, out: opts.out, env: process.env });
    if (opts.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      process.stdout.write(
        `${r.identity}: ${r.cert} (key ${r.key}, serial ${r.serial}, until ${r.notAfter})\n` +
          `MQTT client id: service:${opts.name} (or service:${opts.name}.<suffix>)\n`,
      );
    }
  });

const operators = program.command("operators").description("operator API tokens and their roles");
fleetCommand(operators, "create")
  .description("create an operator; prints its bearer token once")
  .requiredOption("--name <name>")
  .addOption(new Option("--role <role>").choices(["admin", "operator", "auditor"]).makeOptionMandatory())
  .option("--ttl <duration>", "token lifetime, e.g. 90d (default: until revoked)", durationText)
  .option("--json", "one JSON object")
  .action((opts) =>
    withFleet(opts, async (fleet) => {
      const r = await fleet.createOperator({ name: opts.name, role: opts.role, ttl: opts.ttl });
      if (opts.json) printObject(r, true);
      else process.stdout.write(`${r.id} (${r.role}) token, shown once: ${r.token}\n`);
    }),
  );
fleetCommand(operators, "list")
  .option("--json", "one JSON object per operator and line")
  .action((opts) =>
    withFleet(opts, async (fleet) => printList(await fleet.listOperators(), Boolean(opts.json), OPERATOR_COLUMNS)),
  );
fleetCommand(operators, "revoke")
  .argument("<operator-id>", "op_…")
  .option("--json", "one JSON object")
  .action((id: string, opts) =>
    withFleet(opts, async (fleet) => printObject(await fleet.revokeOperator(id), Boolean(opts.json))),
  );

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof AuthorityError ? err.publicMessage : (err as Error).message;
  process.stderr.write(`edgeid: ${message}\n`);
  process.exit(1);
});
