import { readFileSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { buildPkcs12 } from "../../adapters/node/pkcs12.ts";
import { parsePem } from "../../pki/pem.ts";
import { fleetCommand, withFleet } from "../fleet-command.ts";
import { collect, declaredNamesOf, durationText } from "../options.ts";
import { printObject } from "../output.ts";

/** The DER of every PEM block with this label. */
function pemBlocks(text: string, label: string): Uint8Array[] {
  return parsePem(text)
    .filter((b) => b.label === label)
    .map((b) => b.der);
}

/** A password from the terminal, not echoed. */
async function askPassword(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) throw new Error("no terminal to ask for the password: use --password-file");
  process.stderr.write(prompt);
  process.stdin.setRawMode(true);
  process.stdin.resume();
  let text = "";
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n") {
          done();
          resolve(text);
          return;
        }
        if (ch === "\u0003") {
          done();
          reject(new Error("cancelled"));
          return;
        }
        if (ch === "\u007f") text = text.slice(0, -1);
        else text += ch;
      }
    };
    const done = () => {
      process.stdin.off("data", onData);
      process.stdin.setRawMode(false);
      process.stdin.pause();
      process.stderr.write("\n");
    };
    process.stdin.on("data", onData);
  });
}

/** Registers `edgeid legacy`: certificates for appliances with no EST client. */
export function registerLegacy(program: Command): void {
  const legacy = program.command("legacy").description("appliances with no EST client (the hybrid path)");
  fleetCommand(legacy, "sign")
    .description("sign an appliance's CSR for a device: the same checks as enrollment, the operator's authority")
    .requiredOption("--device <id>", "device id (created if new)")
    .requiredOption("--csr <file>", "the CSR, PEM or base64 DER")
    .requiredOption("--profile <name>", "profile to issue under")
    .option("--dns <name>", "declare a DNS name for the device (repeatable; replaces its declared names)", collect, [])
    .option("--ip <address>", "declare an IP address for the device (repeatable)", collect, [])
    .option("--validity <duration>", "a shorter life than the profile's validity (its maximum), e.g. 90d", durationText)
    .option("--out <file>", "write the certificate and its chain (PEM) here instead of stdout")
    .option("--json", "one JSON object")
    .action((opts) =>
      withFleet(opts, async (fleet) => {
        const r = await fleet.signCsr(opts.device, opts.profile, readFileSync(opts.csr, "latin1"), {
          names: declaredNamesOf(opts),
          validity: opts.validity,
        });
        if (opts.out) writeFileSync(opts.out, r.certificate + r.chain, { mode: 0o644 });
        if (opts.json) printObject(r, true);
        else if (opts.out)
          process.stdout.write(`${r.deviceId}: serial ${r.serial} until ${r.notAfter} → ${opts.out}\n`);
        else process.stdout.write(r.certificate + r.chain);
      }),
    );

  fleetCommand(legacy, "issue")
    .description(
      "make an appliance's key and certificate and write them as a PKCS#12 file (built here: the password never leaves this machine)",
    )
    .requiredOption("--device <id>", "device id (created if new)")
    .requiredOption("--profile <name>", "profile to issue under (it must allow serverKeygen)")
    .requiredOption("--out <file>", "the .p12 file to write (mode 0600)")
    .option("--dns <name>", "declare a DNS name for the device (repeatable; replaces its declared names)", collect, [])
    .option("--ip <address>", "declare an IP address for the device (repeatable)", collect, [])
    .option("--validity <duration>", "a shorter life than the profile's validity (its maximum), e.g. 90d", durationText)
    .option("--password-file <file>", "the PKCS#12 password (else asked for on the terminal)")
    .option(
      "--legacy-encryption",
      "3DES and a SHA-1 MAC for old appliances that cannot read AES (weaker: use only when needed)",
    )
    .option("--json", "one JSON object (without the key)")
    .action((opts) =>
      withFleet(opts, async (fleet) => {
        const password = opts.passwordFile
          ? readFileSync(opts.passwordFile, "utf8").replace(/\r?\n$/, "")
          : await askPassword("PKCS#12 password: ");
        if (password.length < 8) throw new Error("the PKCS#12 password must be at least 8 characters");
        const r = await fleet.issueWithKey(opts.device, opts.profile, {
          names: declaredNamesOf(opts),
          validity: opts.validity,
        });
        const p12 = buildPkcs12({
          pkcs8: pemBlocks(r.privateKey, "PRIVATE KEY")[0] as Uint8Array,
          certificates: [...pemBlocks(r.certificate, "CERTIFICATE"), ...pemBlocks(r.chain, "CERTIFICATE")],
          password,
          friendlyName: r.deviceId,
          encryption: opts.legacyEncryption ? "legacy" : "modern",
        });
        writeFileSync(opts.out, p12, { mode: 0o600 });
        const { privateKey: _key, ...shown } = r;
        if (opts.json) printObject({ ...shown, out: opts.out }, true);
        else process.stdout.write(`${r.deviceId}: serial ${r.serial} until ${r.notAfter} → ${opts.out}\n`);
      }),
    );
}
