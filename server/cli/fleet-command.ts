import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { FleetClient } from "./fleet-client.ts";
import { DEFAULT_DATA } from "./options.ts";

/**
 * An operator command: runs on the data directory (--data), or against a server's
 * operator API (--server, with an operator token; see fleetFor).
 */
export function fleetCommand(parent: Command, name: string): Command {
  return parent
    .command(name)
    .option("--data <dir>", "data directory (when no --server is given)", DEFAULT_DATA)
    .option("--server <url>", "a server's base URL: use its operator API (or EDGEID_SERVER)")
    .option("--token-file <file>", "file holding the operator token (or EDGEID_OPERATOR_TOKEN[_FILE])")
    .option("--cacert <file>", "trust anchor for the server's TLS certificate (or EDGEID_CACERT)");
}

/**
 * Where the operator commands go: `--server URL` (or EDGEID_SERVER) with an operator
 * token from EDGEID_OPERATOR_TOKEN or a file (--token-file, EDGEID_OPERATOR_TOKEN_FILE;
 * never on the command line, where `ps` shows it); otherwise the data directory. Each
 * backend is loaded when chosen: the operator API client needs none of the storage,
 * core and views modules a data directory does.
 */
async function fleetFor(
  opts: { data: string; server?: string; tokenFile?: string; cacert?: string },
  env: NodeJS.ProcessEnv,
): Promise<FleetClient> {
  const server = opts.server ?? env.EDGEID_SERVER;
  if (!server) {
    const { localFleet } = await import("./local-fleet.ts");
    return localFleet(opts.data);
  }
  const tokenFile = opts.tokenFile ?? env.EDGEID_OPERATOR_TOKEN_FILE;
  const token = env.EDGEID_OPERATOR_TOKEN ?? (tokenFile ? readFileSync(tokenFile, "utf8").trim() : undefined);
  if (!token) {
    throw new Error(
      "--server needs an operator token: EDGEID_OPERATOR_TOKEN, or --token-file / EDGEID_OPERATOR_TOKEN_FILE",
    );
  }
  const cacert = opts.cacert ?? env.EDGEID_CACERT;
  const { remoteFleet } = await import("./remote-fleet.ts");
  return remoteFleet({ server, token, ca: cacert ? readFileSync(cacert, "utf8") : undefined });
}

/** Runs with the chosen backend, and closes it whatever happens. */
export async function withFleet<T>(
  opts: { data: string; server?: string; tokenFile?: string; cacert?: string },
  run: (fleet: FleetClient) => Promise<T>,
): Promise<T> {
  const fleet = await fleetFor(opts, process.env);
  try {
    return await run(fleet);
  } finally {
    await fleet.close();
  }
}
