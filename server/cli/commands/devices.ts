import { readFileSync } from "node:fs";
import { type Command, Option } from "commander";
import type { RevocationReason } from "../../authority/revoke.ts";
import type { DeviceStatus } from "../../ports/storage.ts";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { durationText, positiveInt, REASONS } from "../options.ts";
import { DEVICE_COLUMNS, printDevice, printList, printNextCursor, printObject } from "../output.ts";

/** Registers `edgeid devices`: the fleet inventory. */
export function registerDevices(program: Command): void {
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
}
