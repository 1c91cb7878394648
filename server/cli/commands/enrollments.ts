import { type Command, Option } from "commander";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { positiveInt } from "../options.ts";
import { ENROLLMENT_COLUMNS, printList, printNextCursor, printObject } from "../output.ts";

/** Registers `edgeid enrollments`: requests waiting for approval. */
export function registerEnrollments(program: Command): void {
  const enrollments = program
    .command("enrollments")
    .description("enrollment requests waiting for approval (profiles with approval: manual)");
  fleetCommand(enrollments, "list")
    .addOption(
      new Option("--status <status>").choices(["pending", "approved", "rejected", "issued"]).default("pending"),
    )
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
}
