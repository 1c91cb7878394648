import type { Command } from "commander";
import { initialise, warnDevPassphrase } from "../initialise.ts";
import { collect, DEFAULT_DATA } from "../options.ts";

/** Registers the `init` command. */
export function registerInit(program: Command): void {
  program
    .command("init")
    .description("create a data directory: SQLite database, root and issuing CA, TLS certificate, first admin token")
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .option("--trust-domain <td>", "SPIFFE trust domain", "edgeid.local")
    .option("--hostname <name>", "hostname or IP the listener is reached by (repeatable)", collect, [])
    .option("--listen <host:port>", "listener address stored in the configuration")
    .option("--json", "machine-readable output")
    .action(async (opts) => {
      const r = await initialise(opts.data, opts);
      if (r.passphrase.development) warnDevPassphrase(r.passphrase.origin);
      if (opts.json) {
        process.stdout.write(
          `${JSON.stringify({ dataDir: r.paths.root, trustDomain: opts.trustDomain, adminTokenId: r.admin.id, adminToken: r.admin.token, caPassphrase: r.passphrase.development ? r.passphrase.origin : "external" })}\n`,
        );
      } else {
        process.stdout.write(
          `initialised ${r.paths.root} (trust domain ${opts.trustDomain})\n` +
            `admin operator token (shown once, store it now): ${r.admin.token}\n`,
        );
      }
    });
}
