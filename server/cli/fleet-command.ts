import type { Command } from "commander";
import { type FleetClient, fleetFor } from "./fleet-client.ts";
import { DEFAULT_DATA } from "./options.ts";

/**
 * An operator command: runs on the data directory (--data), or against a server's
 * operator API (--server, with an operator token; see fleet-client.ts).
 */
export function fleetCommand(parent: Command, name: string): Command {
  return parent
    .command(name)
    .option("--data <dir>", "data directory (when no --server is given)", DEFAULT_DATA)
    .option("--server <url>", "a server's base URL: use its operator API (or EDGEID_SERVER)")
    .option("--token-file <file>", "file holding the operator token (or EDGEID_OPERATOR_TOKEN[_FILE])")
    .option("--cacert <file>", "trust anchor for the server's TLS certificate (or EDGEID_CACERT)");
}

/** Runs with the chosen backend, and closes it whatever happens. */
export async function withFleet<T>(
  opts: { data: string; server?: string; tokenFile?: string; cacert?: string },
  run: (fleet: FleetClient) => Promise<T>,
): Promise<T> {
  const fleet = fleetFor(opts, process.env);
  try {
    return await run(fleet);
  } finally {
    await fleet.close();
  }
}
