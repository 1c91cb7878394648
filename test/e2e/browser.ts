import { existsSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { runOk } from "./support/process.ts";

/**
 * The system Chromium (Debian's `chromium` package; `.ci/run` installs it). Nothing is
 * downloaded: playwright-core only drives a browser that is already there.
 */
export const CHROMIUM = process.env.EDGEID_CHROMIUM ?? "/usr/bin/chromium";

/** base64(SHA-256(SubjectPublicKeyInfo)) of a certificate, as Chromium's SPKI allow-list wants it. */
export async function spkiHash(certFile: string): Promise<string> {
  const r = await runOk("sh", [
    "-c",
    'openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64',
    "sh",
    certFile,
  ]);
  return r.stdout.trim();
}

/**
 * Headless Chromium that trusts exactly the server's own TLS keys (both of them: P-256
 * and RSA) and nothing else it could not verify: real TLS, no blanket "ignore errors".
 */
export async function launchChromium(dataDir: string): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set EDGEID_CHROMIUM)`);
  }
  const pins = await Promise.all(["server.pem", "server-rsa.pem"].map((f) => spkiHash(join(dataDir, "tls", f))));
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--ignore-certificate-errors-spki-list=${pins.join(",")}`,
    ],
  });
}
