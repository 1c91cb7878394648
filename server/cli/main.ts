import "reflect-metadata";
import { Command } from "commander";
import { AuthorityError } from "../authority/errors.ts";
import { registerAudit } from "./commands/audit.ts";
import { registerBridge } from "./commands/bridge.ts";
import { registerCa } from "./commands/ca.ts";
import { registerCertificates } from "./commands/certificates.ts";
import { registerDeviceCommands } from "./commands/commands.ts";
import { registerDevices } from "./commands/devices.ts";
import { registerEnrollments } from "./commands/enrollments.ts";
import { registerInit } from "./commands/init.ts";
import { registerLegacy } from "./commands/legacy.ts";
import { registerMqtt } from "./commands/mqtt.ts";
import { registerOperators } from "./commands/operators.ts";
import { registerReports } from "./commands/reports.ts";
import { registerServe } from "./commands/serve.ts";
import { registerTokens } from "./commands/tokens.ts";
import { registerWorker } from "./commands/worker.ts";
import { registerWorkloads } from "./commands/workloads.ts";

/**
 * The `edgeid` command: one file per command group under commands/, registered here
 * in the order `edgeid --help` lists them.
 */

const program = new Command("edgeid")
  .description("edgeid: identity enrollment for edge fleets (EST, RFC 7030)")
  .showHelpAfterError();

for (const register of [
  registerInit,
  registerServe,
  registerCa,
  registerTokens,
  registerDevices,
  registerReports,
  registerLegacy,
  registerDeviceCommands,
  registerCertificates,
  registerEnrollments,
  registerAudit,
  registerWorker,
  registerBridge,
  registerWorkloads,
  registerMqtt,
  registerOperators,
]) {
  register(program);
}

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof AuthorityError ? err.publicMessage : (err as Error).message;
  process.stderr.write(`edgeid: ${message}\n`);
  process.exit(1);
});
