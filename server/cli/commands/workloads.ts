import type { Command } from "commander";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { durationText, positiveInt } from "../options.ts";
import { printList, printNextCursor, printObject } from "../output.ts";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Registers `edgeid workloads`: workload registration entries (SPIFFE identities of workloads on devices). */
export function registerWorkloads(program: Command): void {
  const workloads = program
    .command("workloads")
    .description("workload registration entries: which workload, on which devices, gets which SPIFFE ID");
  fleetCommand(workloads, "register")
    .description(
      "register a workload entry; its parent is one device, a profile's devices, or the devices whose id starts with a prefix",
    )
    .option("--device <id>", "parent: this device")
    .option("--profile <name>", "parent: every device of this profile")
    .option("--device-prefix <prefix>", "parent: every device whose id starts with this")
    .requiredOption("--name <name>", "the workload's name: spiffe://<td>/device/<id>/workload/<name>")
    .option(
      "--selector <selector>",
      "repeatable; a workload must have all: unix:uid:N, unix:gid:N, unix:path:/abs, unix:sha256:<hex>, systemd:unit:NAME",
      collect,
    )
    .option("--ttl <duration>", "X.509-SVID lifetime (default 1h; at most the profile's maximum)", durationText)
    .option("--jwt-audience <audience>", "repeatable; an audience the workload may get JWT-SVIDs for", collect)
    .option("--fleet-wide", "the same SPIFFE ID on every device: spiffe://<td>/workload/<name>")
    .option("--json", "one JSON object")
    .action((opts) =>
      withFleet(opts, async (fleet) => {
        const e = await fleet.registerWorkload({
          device: opts.device,
          profile: opts.profile,
          devicePrefix: opts.devicePrefix,
          name: opts.name,
          selectors: opts.selector ?? [],
          ttl: opts.ttl,
          jwtAudiences: opts.jwtAudience,
          fleetWide: opts.fleetWide ? true : undefined,
        });
        if (opts.json) printObject(e, true);
        else process.stdout.write(`${e.id} ${e.spiffeId} (${e.parent.kind} ${e.parent.value})\n`);
      }),
    );
  fleetCommand(workloads, "list")
    .description("list workload entries; with --device, the entries that apply to that device")
    .option("--device <id>", "only the entries whose parent matches this device")
    .option("--cursor <cursor>", "continue where the previous page ended")
    .option("--limit <n>", "at most this many (1-1000)", positiveInt, 100)
    .option("--json", "one JSON object per entry and line")
    .action((opts) =>
      withFleet(opts, async (fleet) => {
        const page = await fleet.listWorkloads({ device: opts.device, cursor: opts.cursor, limit: opts.limit });
        const rows = page.items.map((e) => ({
          ...e,
          parentText: `${e.parent.kind}:${e.parent.value}`,
          selectorsText: e.selectors.join(","),
        }));
        if (opts.json) printList(page.items, true, []);
        else {
          printList(rows, false, [
            ["ID", "id", 22],
            ["PARENT", "parentText", 24],
            ["SPIFFE ID", "spiffeId", 56],
            ["TTL", "ttlSeconds", 6],
            ["SELECTORS", "selectorsText", 0],
          ]);
        }
        printNextCursor(page.nextCursor);
      }),
    );
  fleetCommand(workloads, "delete")
    .description("delete a workload entry; its SVIDs are revoked and its devices told at once")
    .argument("<entry-id>")
    .option("--json", "one JSON object")
    .action((id: string, opts) =>
      withFleet(opts, async (fleet) => {
        const e = await fleet.deleteWorkload(id);
        if (opts.json) printObject(e, true);
        else process.stdout.write(`${e.id} deleted; its SVIDs are revoked\n`);
      }),
    );
}
