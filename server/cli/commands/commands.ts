import { Argument, type Command, Option } from "commander";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { durationText, positiveInt } from "../options.ts";
import { COMMAND_COLUMNS, printList, printNextCursor, printObject } from "../output.ts";

/** Registers `edgeid commands`: commands to devices over MQTT. */
export function registerDeviceCommands(program: Command): void {
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
}
