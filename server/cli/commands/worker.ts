import { createHash, webcrypto } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import { dataPaths, resolvePassphrase } from "../../adapters/node/data-dir.ts";
import { decryptPrivateKey } from "../../adapters/node/encrypted-key.ts";
import { OPERATOR_TOKEN_PREFIX } from "../../authority/operators.ts";
import { base64url } from "../../pki/base64.ts";
import { DEFAULT_DATA } from "../options.ts";
import { printObject } from "../output.ts";
import { writePrivateFile } from "../private-file.ts";

/** Registers `edgeid worker`: the Cloudflare Workers deployment. */
export function registerWorker(program: Command): void {
  const worker = program.command("worker").description("the Cloudflare Workers deployment (wrangler.toml)");
  worker
    .command("dev-vars")
    .description(
      "write the Worker's configuration and CA material for `npm run dev:worker` (.dev.vars): DEVELOPMENT ONLY, the CA keys are written decrypted",
    )
    .option("--data <dir>", "data directory", DEFAULT_DATA)
    .option("--out <file>", "where to write them", ".dev.vars")
    .action((opts) => {
      const paths = dataPaths(opts.data);
      const passphrase = resolvePassphrase(opts.data, process.env, false).passphrase;
      const key = (file: string, what: string) =>
        decryptPrivateKey(readFileSync(file, "utf8"), passphrase, what).export({
          type: "pkcs8",
          format: "pem",
        }) as string;
      const vars: Record<string, string> = {
        // As written (durations as text): the Worker validates it with the same schema.
        EDGEID_CONFIG: JSON.stringify(JSON.parse(readFileSync(paths.config, "utf8"))),
        CA_CHAIN: readFileSync(paths.issuingCert, "utf8") + readFileSync(paths.rootCert, "utf8"),
        CA_KEY: key(paths.issuingKey, "issuing CA issuing-p256"),
      };
      if (existsSync(paths.rsaIssuingCert)) {
        vars.CA_RSA_CHAIN = readFileSync(paths.rsaIssuingCert, "utf8") + readFileSync(paths.rsaRootCert, "utf8");
        vars.CA_RSA_KEY = key(paths.rsaIssuingKey, "issuing CA issuing-rsa");
      }
      // dotenv: PEM in double quotes with \n escapes (JSON string syntax gives exactly
      // that); the configuration on one line in single quotes, taken literally.
      if (vars.EDGEID_CONFIG?.includes("'"))
        throw new Error("edgeid.json contains a single quote, which .dev.vars cannot hold");
      const text = Object.entries(vars)
        .map(([k, v]) => (k === "EDGEID_CONFIG" ? `${k}='${v}'\n` : `${k}=${JSON.stringify(v)}\n`))
        .join("");
      // writeFileSync's mode applies only to a new file, and it follows a symlink.
      writePrivateFile(opts.out, text);
      process.stderr.write(`wrote ${opts.out} (decrypted CA keys: development only; keep it out of version control)\n`);
    });

  worker
    .command("admin")
    .description(
      "the first admin operator of a Workers deployment: SQL for `wrangler d1 execute edgeid --file F`; prints the token once",
    )
    .option("--name <name>", "operator name", "admin")
    .requiredOption("--out <file>", "the SQL file to write")
    .option("--json", "one JSON object")
    .action((opts) => {
      if (!/^[\w .@-]{1,64}$/.test(opts.name))
        throw new Error("an operator name is 1-64 letters, digits, spaces or . _ @ -");
      const id = `op_${base64url(webcrypto.getRandomValues(new Uint8Array(9)))}`;
      const token = `${OPERATOR_TOKEN_PREFIX}${base64url(webcrypto.getRandomValues(new Uint8Array(32)))}`;
      const hash = createHash("sha256").update(token).digest("hex");
      const now = Date.now();
      const q = (v: string) => `'${v.replace(/'/g, "''")}'`;
      const detail = JSON.stringify({ operatorId: id, name: opts.name, role: "admin", expiresAt: null });
      // The audit record goes in unsealed: the Worker's D1 adapter chains it with the next write.
      const sql =
        `INSERT INTO operators (id, name, role, token_hash, created_at, expires_at, revoked_at, created_by) VALUES (${q(id)}, ${q(opts.name)}, 'admin', ${q(hash)}, ${now}, NULL, NULL, 'cli');\n` +
        `INSERT INTO audit_events (at, actor, action, outcome, device_id, serial, remote, detail) VALUES (${now}, 'cli', 'operator.create', 'success', NULL, NULL, NULL, ${q(detail)});\n`;
      writePrivateFile(opts.out, sql);
      if (opts.json) printObject({ id, name: opts.name, role: "admin", token, sql: opts.out }, true);
      else
        process.stdout.write(
          `admin operator token (shown once, store it now): ${token}\nthen: wrangler d1 execute edgeid --local|--remote --file ${opts.out}\n`,
        );
    });
}
