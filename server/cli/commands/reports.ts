import type { Command } from "commander";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { durationText } from "../options.ts";
import { EXPIRING_COLUMNS, printCsv, printList } from "../output.ts";

/** Registers `edgeid report`: reports over the inventory. */
export function registerReports(program: Command): void {
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
}
