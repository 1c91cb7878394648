import { type Command, Option } from "commander";
import type { RevocationReason } from "../../authority/revoke.ts";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { REASONS } from "../options.ts";
import { printObject } from "../output.ts";

/** Registers `edgeid certs`: issued certificates. */
export function registerCertificates(program: Command): void {
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
}
