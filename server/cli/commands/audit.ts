import type { Command } from "commander";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { durationText, positiveInt } from "../options.ts";
import { AUDIT_COLUMNS, printChainReport, printFleetAudit, printList, printNextCursor } from "../output.ts";

/** Registers `edgeid audit`: the audit trail and the fleet audit. */
export function registerAudit(program: Command): void {
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
}
