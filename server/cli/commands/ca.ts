import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import {
  createRsaHierarchy,
  dataPaths,
  ensureTlsCertificates,
  loadIssuingCas,
  readConfig,
  resolvePassphrase,
} from "../../adapters/node/data-dir.ts";
import { DEFAULT_DATA } from "../options.ts";

/** Registers `edgeid ca`: the certificate authority's files. */
export function registerCa(program: Command): void {
  const ca = program.command("ca").description("certificate authority");
  ca.command("export")
    .description("print the trust anchor (root CA certificate) as PEM")
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .option("--rsa", "the RSA hierarchy's root (the legacy path's trust anchor)")
    .option("--all", "both roots, P-256 then RSA")
    .action((opts) => {
      const paths = dataPaths(opts.data);
      const files = opts.all ? [paths.rootCert, paths.rsaRootCert] : [opts.rsa ? paths.rsaRootCert : paths.rootCert];
      for (const f of files) {
        if (!existsSync(f)) throw new Error(`${f} does not exist; run \`edgeid ca add-rsa\``);
        process.stdout.write(readFileSync(f, "utf8"));
      }
    });
  ca.command("add-rsa")
    .description("create the RSA hierarchy (root and issuing CA) in a data directory made before it existed")
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .action(async (opts) => {
      const config = readConfig(opts.data);
      const passphrase = resolvePassphrase(opts.data, process.env, false).passphrase;
      await createRsaHierarchy(opts.data, config.trustDomain, passphrase);
      const cas = await loadIssuingCas(opts.data, passphrase);
      await ensureTlsCertificates(opts.data, cas, config, passphrase);
      process.stdout.write(`created ${dataPaths(opts.data).rsaIssuingCert}; restart the server to load it\n`);
    });
}
