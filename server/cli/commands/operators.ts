import { type Command, Option } from "commander";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { durationText } from "../options.ts";
import { OPERATOR_COLUMNS, printList, printObject } from "../output.ts";

/** Registers `edgeid operators`: operator API tokens. */
export function registerOperators(program: Command): void {
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
}
