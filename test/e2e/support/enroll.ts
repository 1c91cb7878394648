/**
 * A device enrolled the way a plain EST client does it: a token from the CLI, a CSR from openssl, curl.
 */
import { expect } from "vitest";
import { cliCreateToken } from "./cli.ts";
import { estPost } from "./curl.ts";
import { opensslCsrNewKeyP256, pkcs7ToPem, writePem, x509Serial } from "./openssl.ts";
import type { TestServer } from "./server.ts";

/** Token enrollment with openssl and curl: the device's certificate and key files. */
export async function enrollDevice(
  server: TestServer,
  work: string,
  deviceId: string,
): Promise<{ cert: string; key: string; token: string; serial: string }> {
  const { token } = await cliCreateToken(server.dataDir, deviceId);
  const csr = await opensslCsrNewKeyP256(work, deviceId);
  const r = await estPost(server, work, "simpleenroll", csr.base64, { basic: { user: deviceId, password: token } });
  expect(r.status, `body: ${r.text}`).toBe(200);
  const [pem] = await pkcs7ToPem(work, r.body);
  const cert = await writePem(work, `${deviceId}.pem`, pem as string);
  return { cert, key: csr.keyFile, token, serial: await x509Serial(cert) };
}
