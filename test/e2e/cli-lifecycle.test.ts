import { statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { cliCreateToken, cliCreateTokenBatch, edgeid } from "./support/cli.ts";
import { estGet, estPost } from "./support/curl.ts";
import { opensslCsrNewKeyP256, pkcs7ToPem, writePem } from "./support/openssl.ts";
import { EDGEID_BIN, makeWorkDir, removeDir, run } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

/** The `edgeid` command's life cycle: first start, restart, secrets, listing. */
describe("edgeid serve and the data directory", () => {
  let work: string;
  let dataDir: string;
  let server: TestServer | undefined;

  beforeAll(async () => {
    work = await makeWorkDir("cli");
    dataDir = join(work, "data");
  });
  afterAll(async () => {
    await server?.stop();
    await removeDir(work);
  });

  it("initialises the data directory on first start, with secrets 0600", async () => {
    server = await startServer(dataDir, work);
    expect(server.log()).toMatch(/admin operator token \(shown once, store it now\): edo_[A-Za-z0-9_-]{43}/);
    expect(server.log()).toContain("DEVELOPMENT MODE");
    for (const file of [
      "ca/root-ca.key",
      "ca/issuing-p256.key",
      "tls/server.key",
      "secrets/ca-passphrase",
      "edgeid.db",
    ]) {
      expect((statSync(join(dataDir, file)).mode & 0o777).toString(8), file).toBe("600");
    }
    expect((statSync(dataDir).mode & 0o777).toString(8)).toBe("700");
    const key = await run("grep", ["-c", "BEGIN ENCRYPTED PRIVATE KEY", join(dataDir, "ca/issuing-p256.key")]);
    expect(key.stdout.trim()).toBe("1");
  });

  it("keeps its CA and its devices across a restart", async () => {
    const s1 = server as TestServer;
    const before = await estGet(s1, work, "cacerts");
    const token = await cliCreateToken(dataDir, "restart-1");
    const csr = await opensslCsrNewKeyP256(work, "restart-1");
    const enrolled = await estPost(s1, work, "simpleenroll", csr.base64, {
      basic: { user: "restart-1", password: token.token },
    });
    expect(enrolled.status).toBe(200);
    const certFile = await writePem(work, "restart-1.pem", await pkcs7ToPem(work, enrolled.text));
    await s1.stop();

    server = await startServer(dataDir, work);
    expect(server.log()).not.toContain("admin operator token");
    const after = await estGet(server, work, "cacerts");
    expect(after.text).toBe(before.text);
    const next = await opensslCsrNewKeyP256(work, "restart-1b", "/CN=restart-1");
    const renewed = await estPost(server, work, "simplereenroll", next.base64, { cert: certFile, key: csr.keyFile });
    expect(renewed.status).toBe(200);
  });

  it("refuses to start with a wrong CA passphrase and says why", async () => {
    const r = await run(process.execPath, [EDGEID_BIN, "serve", "--data", dataDir, "--listen", "127.0.0.1:0"], {
      env: { ...process.env, EDGEID_CA_PASSPHRASE: "definitely-not-the-passphrase" },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot decrypt the issuing CA issuing-p256 key: wrong CA passphrase?");
    expect(r.stderr).not.toContain("definitely-not-the-passphrase");
  });

  it("refuses a second init and unusable token arguments", async () => {
    const again = await run(process.execPath, [EDGEID_BIN, "init", "--data", dataDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already initialised/);
    const neither = await run(process.execPath, [EDGEID_BIN, "token", "create", "--data", dataDir]);
    expect(neither.code).toBe(1);
    expect(neither.stderr).toContain("give either --device ID, or --count N with --device-prefix PREFIX");
    const badId = await run(process.execPath, [EDGEID_BIN, "token", "create", "--data", dataDir, "--device", "a/b"]);
    expect(badId.code).toBe(1);
    expect(badId.stderr).toContain('device id "a/b" is invalid');
    const badTtl = await run(process.execPath, [
      EDGEID_BIN,
      "token",
      "create",
      "--data",
      dataDir,
      "--device",
      "x",
      "--ttl",
      "soon",
    ]);
    expect(badTtl.code).not.toBe(0);
    expect(badTtl.stderr).toContain("invalid duration");
  });

  it("creates a batch larger than one request as several write sets, numbered alike", async () => {
    // 10,001 tokens: two requests (10,000 + 1); the numbers are padded to the whole series' width.
    // A data directory of its own: the other tests list the pending devices of theirs.
    const own = await makeWorkDir("cli-batch");
    onTestFinished(() => removeDir(own));
    const { dataDir: batchDir } = await cliInitDataDir(own, "batch.example");
    const rows = await cliCreateTokenBatch(batchDir, "lot-", 10_001);
    expect(rows).toHaveLength(10_001);
    expect(new Set(rows.map((r) => r.deviceId)).size).toBe(10_001);
    expect(rows[0]?.deviceId).toBe("lot-00001");
    expect(rows.at(-1)?.deviceId).toBe("lot-10001");
    expect(rows.every((r) => /^lot-\d{5}$/.test(r.deviceId))).toBe(true);
    const audit = await edgeid(["audit", "list", "--data", batchDir, "--device", "lot-10001", "--json"]);
    expect(audit.stdout).toContain("token.create");
  }, 60_000);

  it("lists devices page by page with --after and --limit", async () => {
    await cliCreateTokenBatch(dataDir, "page-", 5);
    const page = async (after?: string) => {
      const args = [EDGEID_BIN, "devices", "list", "--data", dataDir, "--json", "--status", "pending", "--limit", "2"];
      if (after) args.push("--after", after);
      const r = await run(process.execPath, args);
      return r.stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { id: string }).id);
    };
    const first = await page();
    const second = await page(first.at(-1));
    const third = await page(second.at(-1));
    expect([...first, ...second, ...third]).toEqual(["page-0001", "page-0002", "page-0003", "page-0004", "page-0005"]);
  });

  it("reports an unknown device with exit status 1", async () => {
    const r = await run(process.execPath, [EDGEID_BIN, "devices", "show", "nope", "--data", dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("edgeid: no device nope\n");
  });
});
