/**
 * An external broker's credentials are renewed by the server before they expire: its
 * own client certificate (a service identity in the inventory) and the broker's listener
 * certificate, after which the broker is told to reload (SIGHUP to its pid file).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { initDataDir, readConfig } from "../../server/adapters/node/data-dir.ts";
import { renewExternalCredentials, withIssuer, writeMosquittoConfig } from "../../server/adapters/node/mosquitto.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { parseCert } from "../support/fixtures.ts";

describe("external broker credentials", () => {
  const root = mkdtempSync(join(tmpdir(), "edgeid-ext-"));
  const dir = join(root, "data");
  const env = { EDGEID_CA_PASSPHRASE: "a test passphrase of some length" };
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const serial = (file: string) => parseCert(pemCertificates(readFileSync(file, "utf8"))[0] as Uint8Array).serialNumber;

  it("are renewed when less than 30 days are left, and the broker is told to reload", async () => {
    await initDataDir(dir, { trustDomain: "example.org", hostnames: ["mqtt.example.org"] }, env);
    const written = await writeMosquittoConfig({
      dataDir: dir,
      out: join(root, "broker"),
      listen: { host: "127.0.0.1", port: 18883 },
      env,
    });
    const external = readConfig(dir).mqtt.external;
    if (!external) throw new Error("mqtt.external was not recorded");
    expect(external).toMatchObject({
      brokerCert: written.files.cert,
      brokerHostnames: ["127.0.0.1", "mqtt.example.org"],
    });
    const before = { client: serial(external.clientCert), broker: serial(written.files.cert) };

    // A stand-in for Mosquitto: reports the SIGHUP it gets.
    const broker = spawn(process.execPath, [
      "-e",
      "process.on('SIGHUP', () => { console.log('HUP'); process.exit(0) }); console.log('READY'); setInterval(() => {}, 1000)",
    ]);
    let out = "";
    // Its SIGHUP handler is in place once it says READY.
    const ready = new Promise<void>((resolve) =>
      broker.stdout.on("data", (c: Buffer) => {
        out += c.toString();
        if (out.includes("READY")) resolve();
      }),
    );
    const exited = new Promise((r) => broker.once("exit", r));
    writeFileSync(written.files.pidFile, `${broker.pid}\n`);
    await ready;

    const day = 86400_000;
    const early = await withIssuer(dir, env, (deps) =>
      renewExternalCredentials({ dataDir: dir, external, deps, now: new Date(Date.now() + 59 * day) }),
    );
    expect(early).toEqual({ client: false, broker: false });
    expect(serial(external.clientCert)).toBe(before.client);

    const late = await withIssuer(dir, env, (deps) =>
      renewExternalCredentials({ dataDir: dir, external, deps, now: new Date(Date.now() + 61 * day) }),
    );
    expect(late).toEqual({ client: true, broker: true });
    expect(serial(external.clientCert)).not.toBe(before.client);
    expect(serial(written.files.cert)).not.toBe(before.broker);
    await exited;
    expect(out).toContain("HUP");
    // The new client certificate is a service identity the inventory knows.
    const recorded = await withIssuer(dir, env, (deps) =>
      deps.storage.getCertificate(serial(external.clientCert).toLowerCase()),
    );
    expect(recorded).toMatchObject({ deviceId: "service:edgeid", profile: "service", method: "operator" });
  });
});
