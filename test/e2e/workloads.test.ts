/**
 * Workload identity against a real `edgeid serve`: entries registered, listed and
 * deleted with the CLI (on the data directory and through the operator API), a device
 * enrolled with openssl and curl asking for its entries and X.509-SVIDs over mutual TLS
 * with its certificate, the SVID checked by `openssl verify` against the bundle the
 * server returned, and its revocation seen by `openssl ocsp` once its entry is deleted.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { caFiles } from "./support/ca.ts";
import { edgeid } from "./support/cli.ts";
import { curl, expectOneLineError } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import { openssl, opensslCsr, x509Text } from "./support/openssl.ts";
import { EDGEID_BIN, eventually, makeWorkDir, removeDir, run } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let adminToken: string;
let server: TestServer;
let issuingFile: string;
let chainFile: string;

beforeAll(async () => {
  work = await makeWorkDir("edgeid-workloads-");
  const init = await cliInitDataDir(work, "example.org");
  dataDir = init.dataDir;
  adminToken = init.adminToken;
  server = await startServer(dataDir, work);
  ({ chainFile, issuingFile } = await caFiles(server, work));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

const pem = (b64: string) =>
  `-----BEGIN CERTIFICATE-----\n${b64.replace(/(.{64})/g, "$1\n").trim()}\n-----END CERTIFICATE-----\n`;

interface EntryView {
  id: string;
  spiffeId: string;
  parent: { kind: string; value: string };
  selectors: string[];
}

describe("workload identity", () => {
  it("registers with the CLI, serves the device its entries and SVIDs over mutual TLS, revokes them on delete", async () => {
    const device = await enrollDevice(server, work, "wl-dev-1");
    await enrollDevice(server, work, "wl-dev-2");

    // CLI on the data directory of the running server.
    const registered = JSON.parse(
      (
        await edgeid([
          "workloads",
          "register",
          "--data",
          dataDir,
          "--device",
          "wl-dev-1",
          "--name",
          "web",
          "--selector",
          "unix:uid:1000",
          "--selector",
          `unix:sha256:${"0".repeat(64)}`,
          "--ttl",
          "30m",
          "--jwt-audience",
          "https://api.example.org",
          "--json",
        ])
      ).stdout,
    ) as EntryView;
    expect(registered.spiffeId).toBe("spiffe://example.org/device/wl-dev-1/workload/web");
    const refused = await run(process.execPath, [
      EDGEID_BIN,
      "workloads",
      "register",
      "--data",
      dataDir,
      "--device",
      "wl-dev-1",
      "--name",
      "x",
      "--selector",
      "unix:uid:-1",
    ]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("unix:uid");

    // The CLI through the operator API lists the entries that apply to the device.
    const listed = await run(
      process.execPath,
      [
        EDGEID_BIN,
        "workloads",
        "list",
        "--server",
        server.url,
        "--cacert",
        server.rootPemFile,
        "--device",
        "wl-dev-1",
        "--json",
      ],
      { env: { ...process.env, EDGEID_OPERATOR_TOKEN: adminToken } },
    );
    expect(listed.code, listed.stderr).toBe(0);
    expect(
      listed.stdout
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as EntryView).id),
    ).toEqual([registered.id]);

    // The device's entries, with its certificate.
    const mtls = { cacert: server.rootPemFile, cert: device.cert, key: device.key };
    const entries = await curl(work, `${server.url}/workload/v1/entries`, mtls);
    expect(entries.status, entries.text).toBe(200);
    expect(entries.headers["content-type"]).toMatch(/^application\/json/);
    const body = JSON.parse(entries.text) as {
      trustDomain: string;
      revision: string;
      pollSeconds: number;
      entries: { id: string; spiffeId: string; selectors: string[]; ttlSeconds: number; jwtAudiences: string[] }[];
    };
    expect(body).toMatchObject({ trustDomain: "example.org", pollSeconds: 30 });
    expect(body.entries).toEqual([
      {
        id: registered.id,
        spiffeId: "spiffe://example.org/device/wl-dev-1/workload/web",
        selectors: ["unix:uid:1000", `unix:sha256:${"0".repeat(64)}`],
        ttlSeconds: 1800,
        jwtAudiences: ["https://api.example.org"],
      },
    ]);
    // Without a client certificate: refused, one line.
    expectOneLineError(await curl(work, `${server.url}/workload/v1/entries`, { cacert: server.rootPemFile }), 403);

    // An X.509-SVID for a CSR made by openssl (its subject is ignored).
    const csr = await opensslCsr(work, "wl-web", { subject: "/CN=whatever/O=ignored" });
    const post = (requests: unknown, auth = mtls) =>
      curl(work, `${server.url}/workload/v1/x509-svids`, {
        ...auth,
        method: "POST",
        contentType: "application/json",
        body: JSON.stringify({ requests }),
      });
    const r = await post([{ entryId: registered.id, csr: csr.der.toString("base64") }]);
    expect(r.status, r.text).toBe(200);
    const issued = JSON.parse(r.text) as {
      svids: {
        entryId: string;
        spiffeId: string;
        certificate: string;
        chain: string[];
        serial: string;
        notAfter: string;
      }[];
      bundle: string[];
    };
    expect(issued.svids).toHaveLength(1);
    const svid = issued.svids[0] as (typeof issued.svids)[number];
    expect(svid.spiffeId).toBe("spiffe://example.org/device/wl-dev-1/workload/web");
    const svidFile = join(work, "svid.pem");
    const bundleFile = join(work, "bundle.pem");
    const intermediates = join(work, "svid-chain.pem");
    await writeFile(svidFile, pem(svid.certificate));
    await writeFile(bundleFile, issued.bundle.map(pem).join(""));
    await writeFile(intermediates, svid.chain.map(pem).join(""));
    const verified = await run("openssl", [
      "verify",
      "-CAfile",
      bundleFile,
      "-untrusted",
      intermediates,
      "-purpose",
      "sslclient",
      svidFile,
    ]);
    expect(verified.stdout.trim(), verified.stderr).toBe(`${svidFile}: OK`);
    const text = await x509Text(svidFile);
    expect(text).toContain("URI:spiffe://example.org/device/wl-dev-1/workload/web");
    expect(text).not.toContain("DNS:");
    expect(text).toMatch(/Basic Constraints: critical\s*\n\s*CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    expect(text).toMatch(/Extended Key Usage:\s*\n\s*TLS Web Client Authentication, TLS Web Server Authentication/);
    expect(text).not.toContain("whatever");
    // At most the entry's TTL (30 minutes), and the key is the CSR's.
    const lifetime = new Date(svid.notAfter).getTime() - Date.now();
    expect(lifetime).toBeLessThanOrEqual(1800_000);
    expect(lifetime).toBeGreaterThan(1700_000);
    const keyOfCsr = (await openssl(["pkey", "-in", csr.keyFile, "-pubout"])).stdout;
    const keyOfSvid = (await openssl(["x509", "-in", svidFile, "-noout", "-pubkey"])).stdout;
    expect(keyOfSvid).toBe(keyOfCsr);

    // The device's own key, and another device's entry: refused, one line each.
    const own = await opensslCsr(work, "wl-own", { keyFile: device.key });
    expectOneLineError(await post([{ entryId: registered.id, csr: own.der.toString("base64") }]), 403);
    const other = JSON.parse(
      (
        await edgeid([
          "workloads",
          "register",
          "--data",
          dataDir,
          "--device",
          "wl-dev-2",
          "--name",
          "web",
          "--selector",
          "unix:uid:1",
          "--json",
        ])
      ).stdout,
    ) as EntryView;
    const csr2 = await opensslCsr(work, "wl-other");
    expectOneLineError(await post([{ entryId: other.id, csr: csr2.der.toString("base64") }]), 403);
    // The SVID does not stand for its device.
    expectOneLineError(
      await curl(work, `${server.url}/workload/v1/entries`, {
        cacert: server.rootPemFile,
        cert: svidFile,
        key: csr.keyFile,
      }),
      403,
    );

    // devices show lists the SVID, never a key.
    const shown = (await edgeid(["devices", "show", "wl-dev-1", "--data", dataDir, "--json"])).stdout;
    const detail = JSON.parse(shown) as { workloadSvids: { serial: string; spiffeId: string; status: string }[] };
    expect(detail.workloadSvids.map((w) => [w.serial, w.status])).toEqual([[svid.serial, "valid"]]);
    expect(shown).not.toContain("PRIVATE KEY");

    // Deleting the entry revokes its SVID: OCSP says so.
    const deleted = await edgeid(["workloads", "delete", registered.id, "--data", dataDir]);
    expect(deleted.stdout).toContain(`${registered.id} deleted`);
    const ocsp = async () => {
      const o = await run("openssl", [
        "ocsp",
        "-issuer",
        issuingFile,
        "-url",
        `${server.url}/pki/ocsp`,
        "-CAfile",
        chainFile,
        "-cert",
        svidFile,
      ]);
      return /: (good|revoked|unknown)\b/.exec(o.stdout)?.[1];
    };
    // The CLI wrote to the database; the server finds the revocation by its poll.
    expect(await eventually(ocsp, (s) => s === "revoked")).toBe("revoked");
    const after = JSON.parse((await curl(work, `${server.url}/workload/v1/entries`, mtls)).text) as typeof body;
    expect(after.entries).toEqual([]);
    expect(after.revision).not.toBe(body.revision);
    const list = await edgeid(["workloads", "list", "--data", dataDir]);
    expect(list.stdout).not.toContain(registered.id);
    expect(list.stdout).toContain(other.id);
  }, 120_000);
});
