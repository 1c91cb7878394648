import { type ChildProcess, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "./browser.ts";
import { AGENT_BIN, AGENT_ENV, agentEnrollArgs } from "./support/agent.ts";
import { caFiles } from "./support/ca.ts";
import { cliCreateToken, edgeid, expectDeniedAudit, showDevice } from "./support/cli.ts";
import { curl } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import { normalizeSerial } from "./support/openssl.ts";
import { eventually, freePort, makeWorkDir, ROOT, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

/**
 * The operator dashboard in a real browser: Debian's Chromium, driven by
 * playwright-core, against `edgeid serve` over real TLS (Chromium trusts exactly the
 * server's keys). The device is enrolled with openssl and curl, OCSP is asked by
 * `openssl ocsp`, and the approval is waited out by the real device agent.
 * Screenshots go to test-artifacts/dashboard/.
 */

const ARTIFACTS = join(ROOT, "test-artifacts", "dashboard");

let work: string;
let dataDir: string;
let adminToken: string;
let auditorToken: string;
let server: TestServer;
let browser: Browser;
let chainFile: string;
let issuingFile: string;
let fingerprint: string;
const certs: Record<string, { cert: string; serial: string }> = {};
let liveAgent: ChildProcess | undefined;
let agentLog = "";

async function ocsp(cert: string) {
  const r = await run("openssl", [
    "ocsp",
    "-issuer",
    issuingFile,
    "-cert",
    cert,
    "-url",
    `${server.url}/pki/ocsp`,
    "-CAfile",
    chainFile,
  ]);
  const out = `${r.stdout}${r.stderr}`;
  expect(out, out).toContain("Response verify OK");
  return { status: /: (good|revoked|unknown)\b/.exec(r.stdout)?.[1], out };
}

const agentArgs = (deviceId: string, token: string, extra: string[] = []) => [
  AGENT_BIN,
  ...agentEnrollArgs(server, fingerprint, deviceId, token, join(work, `agent-${deviceId}`), extra),
];

async function signIn(token: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // A missing element fails in 10 s rather than Playwright's 30 s.
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  await page.goto(`${server.url}/dashboard`);
  expect(new URL(page.url()).pathname).toBe("/dashboard/login");
  await page.fill("#token", token);
  await page.click("button:has-text('Sign in')");
  await page.waitForURL(`${server.url}/dashboard`);
  return { context, page };
}

/**
 * A request written by hand with curl (trusting only our root), carrying the browser's
 * session cookie: what a script could send once it holds someone's cookie.
 */
async function craft(context: BrowserContext, path: string, form: Record<string, string>) {
  const cookie = (await context.cookies()).find((c) => c.name === "__Host-edgeid_session");
  expect(cookie).toBeDefined();
  return curl(work, `${server.url}${path}`, {
    cacert: server.rootPemFile,
    method: "POST",
    body: new URLSearchParams(form).toString(),
    contentType: "application/x-www-form-urlencoded",
    extraArgs: ["-H", `Cookie: ${cookie?.name}=${cookie?.value}`],
  });
}

const statusOf = (page: Page) => page.locator('[data-testid="device-status"]').textContent();

beforeAll(async () => {
  work = await makeWorkDir("edgeid-dashboard-");
  await mkdir(ARTIFACTS, { recursive: true });
  const init = await cliInitDataDir(work, "example.org");
  dataDir = init.dataDir;
  adminToken = init.adminToken;
  await addProfiles(dataDir, { vetted: { approval: "manual", retryAfter: "1s" } });
  auditorToken = (
    JSON.parse(
      (
        await edgeid([
          "operators",
          "create",
          "--data",
          dataDir,
          "--name",
          "night-auditor",
          "--role",
          "auditor",
          "--json",
        ])
      ).stdout,
    ) as { token: string }
  ).token;
  server = await startServer(dataDir, work);
  ({ chainFile, issuingFile } = await caFiles(server, work));
  fingerprint = new X509Certificate(await readFile(server.rootPemFile, "utf8")).fingerprint256
    .replace(/:/g, "")
    .toLowerCase();
  for (const id of ["plant7-gw-001", "plant7-gw-002", "plant7-gw-003", "plant7-cam-12"]) {
    const d = await enrollDevice(server, work, id);
    certs[id] = { cert: d.cert, serial: d.serial };
  }
  for (const id of ["plant7-spare-01", "plant7-spare-02"]) await cliCreateToken(dataDir, id);
  // One device runs the real agent, which reports its status over the embedded broker.
  const { token } = await cliCreateToken(dataDir, "plant7-edge-01");
  const enrolled = await run(process.execPath, agentArgs("plant7-edge-01", token, ["--mqtt", server.mqttUrl ?? ""]), {
    env: AGENT_ENV,
  });
  expect(enrolled.code, enrolled.stderr).toBe(0);
  liveAgent = spawn(process.execPath, [AGENT_BIN, "run", "--dir", join(work, "agent-plant7-edge-01")], {
    env: AGENT_ENV,
    stdio: ["ignore", "pipe", "pipe"],
  });
  liveAgent.stdout?.setEncoding("utf8").on("data", (c: string) => {
    agentLog += c;
  });
  liveAgent.stderr?.setEncoding("utf8").on("data", (c: string) => {
    agentLog += c;
  });
  browser = await launchChromium(dataDir);
}, 120_000);

afterAll(async () => {
  liveAgent?.kill("SIGTERM");
  await browser?.close();
  await server?.stop();
  await removeDir(work);
});

describe("operator dashboard in Chromium", { timeout: 90_000 }, () => {
  it("signs in, finds a device, revokes it with a reason; the page and OCSP say revoked", async () => {
    const { context, page } = await signIn(adminToken);
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: "__Host-edgeid_session", httpOnly: true, secure: true, sameSite: "Strict" });

    expect(await page.locator('[data-status="active"] .n').textContent()).toBe("5");
    expect(await page.locator('[data-status="pending"] .n').textContent()).toBe("2");
    // Five certificates of 72 h: three days from now, on the chart.
    expect(await page.locator('svg[data-testid="expiry-chart"] rect[data-count="5"]').count()).toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, "overview.png"), fullPage: true });

    // The device page of the agent's device, once its status has arrived over MQTT.
    await page.goto(`${server.url}/dashboard/devices/plant7-edge-01`);
    await eventually(
      async () => {
        await page.reload();
        return (await page.locator('[data-testid="live-status"]').textContent()) ?? "";
      },
      (text) => text.includes("Agent version") && text.includes("Next renewal"),
      30_000,
    ).catch((e: unknown) => {
      throw new Error(`${e}\nagent:\n${agentLog}`);
    });
    await page.screenshot({ path: join(ARTIFACTS, "device.png"), fullPage: true });

    // Find the device by id and open it.
    await page.click("nav >> text=Devices");
    await page.fill("#q", "plant7-cam");
    await page.click("form.filters button:has-text('Search')");
    expect(
      await page.locator("tr[data-device]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-device"))),
    ).toEqual(["plant7-cam-12"]);
    await page.click("a:text-is('plant7-cam-12')");
    expect(await statusOf(page)).toBe("active");
    const serial = normalizeSerial(certs["plant7-cam-12"]?.serial ?? "");
    // The page writes serials as stored, which keep a leading zero nibble (1 serial in 16):
    // the row is found in either spelling. Regression: failed in CI for serial 0bead4c9….
    const row = `tr[data-serial="${serial}"], tr[data-serial="0${serial}"]`;
    expect(await page.locator(row).locator(".badge").textContent()).toBe("valid");

    // Revoke, with a reason and a confirmation step.
    await page.selectOption("#reason", "keyCompromise");
    await page.click("button:has-text('Revoke…')");
    expect(await page.locator('[data-testid="confirm"]').textContent()).toContain(serial);
    // Not revoked yet: this page is the question (it has no device state on it).
    expect(await page.locator('[data-testid="device-status"]').count()).toBe(0);
    await page.click("button:has-text('Yes, revoke plant7-cam-12')");
    await page.waitForURL(/\/dashboard\/devices\/plant7-cam-12\?notice=revoked$/);
    expect(await statusOf(page)).toBe("revoked");
    expect(await page.locator(row).textContent()).toContain("keyCompromise");
    expect(await page.locator(".notice").textContent()).toContain("OCSP answers revoked");
    expect(await page.locator('[data-testid="device-audit"]').textContent()).toContain("device.revoke");
    await page.screenshot({ path: join(ARTIFACTS, "device-revoked.png"), fullPage: true });

    const answer = await ocsp(certs["plant7-cam-12"]?.cert ?? "");
    expect(answer.status).toBe("revoked");
    expect(answer.out).toContain("Reason: keyCompromise");
    await context.close();
  });

  it("shows an auditor no revoke action, and refuses the auditor's crafted revoke", async () => {
    const { context, page } = await signIn(auditorToken);
    expect(await page.locator('[data-testid="whoami"]').textContent()).toBe("night-auditor (auditor)");
    await page.goto(`${server.url}/dashboard/devices/plant7-gw-002`);
    expect(await statusOf(page)).toBe("active");
    expect(await page.locator('[data-testid="actions"]').count()).toBe(0);
    expect(await page.locator("button", { hasText: "Revoke" }).count()).toBe(0);
    expect(await page.locator("form[action$='/revoke']").count()).toBe(0);
    await page.goto(`${server.url}/dashboard/tokens`);
    expect(await page.locator('[data-testid="token-single"]').count()).toBe(0);

    // The auditor's own session and CSRF token, and a revoke request written by hand.
    const csrf = await page.locator('input[name="_csrf"]').first().getAttribute("value");
    const crafted = await craft(context, "/dashboard/devices/plant7-gw-002/revoke", {
      _csrf: csrf ?? "",
      reason: "keyCompromise",
      confirm: "yes",
    });
    expect(crafted.status).toBe(403);
    expect(crafted.text).toContain("role_forbidden");
    expect((await ocsp(certs["plant7-gw-002"]?.cert ?? "")).status).toBe("good");
    await expectDeniedAudit(dataDir, "plant7-gw-002", "device.revoke", "role_forbidden");
    await context.close();
  });

  it("refuses a forged POST: without the CSRF token, and from another site's page", async () => {
    const { context, page } = await signIn(adminToken);
    const target = `${server.url}/dashboard/devices/plant7-gw-003/revoke`;
    const noToken = await craft(context, "/dashboard/devices/plant7-gw-003/revoke", {
      reason: "keyCompromise",
      confirm: "yes",
    });
    expect(noToken.status).toBe(403);
    expect(noToken.text).toContain("csrf_token_invalid");

    // Another site's page, with a form aimed at the dashboard, submitted in the signed-in browser.
    const evilPort = await freePort();
    const evil: Server = createServer((_req, res) => {
      res.setHeader("content-type", "text/html");
      res.end(
        `<!doctype html><form method="post" action="${target}">` +
          `<input type="hidden" name="reason" value="keyCompromise"><input type="hidden" name="confirm" value="yes">` +
          `<button type="submit">Win a prize</button></form>`,
      );
    });
    await new Promise<void>((r) => evil.listen(evilPort, "127.0.0.1", r));
    try {
      await page.goto(`http://127.0.0.1:${evilPort}/`);
      await page.click("button:has-text('Win a prize')");
      await page.waitForLoadState();
      expect(await page.locator('[data-testid="error"]').textContent()).toContain("cross_origin_post");
    } finally {
      await new Promise((r) => evil.close(r));
    }
    expect((await ocsp(certs["plant7-gw-003"]?.cert ?? "")).status).toBe("good");
    const device = await expectDeniedAudit(dataDir, "plant7-gw-003", "device.revoke", "csrf_token_invalid");
    expect(device.audit.map((a) => a.detail?.reason)).toContain("cross_origin_post");
    expect(device.status).toBe("active");
    await context.close();
  });

  it("approves a pending enrollment and watches the device complete it", async () => {
    const { token } = await cliCreateToken(dataDir, "plant7-vet-01", { profile: "vetted" });
    const enrolling = run(process.execPath, agentArgs("plant7-vet-01", token, ["--label", "vetted"]), {
      env: AGENT_ENV,
      timeoutMs: 90_000,
    });
    const { context, page } = await signIn(adminToken);
    await page.goto(`${server.url}/dashboard/enrollments`);
    const row = page.locator("tr", { hasText: "plant7-vet-01" });
    await eventually(
      async () => {
        await page.reload();
        return row.count();
      },
      (n) => n === 1,
      30_000,
    );
    // The overview lists it too; with a fleet audit run from there, it makes the second screenshot.
    await page.goto(`${server.url}/dashboard`);
    expect(await page.locator('[data-testid="pending"]').textContent()).toContain("plant7-vet-01");
    await page.click("button:has-text('Run the fleet audit now')");
    await page.waitForURL(/notice=audit-done/);
    expect(await page.locator('[data-testid="audit"]').textContent()).toContain("by operator:");
    await page.screenshot({ path: join(ARTIFACTS, "overview-pending-approval.png"), fullPage: true });
    await page.goto(`${server.url}/dashboard/enrollments`);

    // The device page follows the device meanwhile (it reloads itself while enrollment is open).
    const watcher = await context.newPage();
    await watcher.goto(`${server.url}/dashboard/devices/plant7-vet-01`);
    expect(await statusOf(watcher)).toBe("pending");
    expect(await watcher.locator("tr", { hasText: "plant7-vet-01" }).locator(".badge").first().textContent()).toBe(
      "pending",
    );

    await row.locator("input[name=reason]").fill("on the plant 7 manifest");
    await row.locator("button:has-text('Approve')").click();
    await page.waitForURL(/notice=approved/);

    // The agent's next retry gets the certificate; the watching page shows it without a click.
    await watcher.locator('[data-testid="device-status"]', { hasText: "active" }).waitFor({ timeout: 30_000 });
    await watcher.locator('[data-testid="certificates"] .badge', { hasText: "valid" }).waitFor({ timeout: 10_000 });
    const done = await enrolling;
    expect(done.code, done.stderr).toBe(0);
    const device = await showDevice(dataDir, "plant7-vet-01");
    expect(device.status).toBe("active");
    expect(device.audit.map((a) => a.action)).toContain("enrollment.approve");
    await context.close();
  });
  it("registers a workload entry from the Workloads page and deletes it; the CLI sees both", async () => {
    const { context, page } = await signIn(adminToken);
    await page.click("nav a:has-text('Workloads')");
    await page.waitForURL(`${server.url}/dashboard/workloads`);
    const form = page.locator('[data-testid="workload-register"]');
    await form.locator("select[name=parentKind]").selectOption("device");
    await form.locator("input[name=parent]").fill("plant7-gw-001");
    await form.locator("input[name=name]").fill("historian");
    await form.locator("textarea[name=selectors]").fill("unix:uid:1000\nsystemd:unit:historian.service");
    await form.locator("input[name=ttl]").fill("30m");
    await form.locator("textarea[name=jwtAudiences]").fill("https://api.example.org");
    await form.locator("button:has-text('Register')").click();
    await page.waitForURL(/notice=workload-registered/);
    const row = page.locator("tr", { hasText: "spiffe://example.org/device/plant7-gw-001/workload/historian" });
    expect(await row.count()).toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, "workloads.png"), fullPage: true });
    const listed = (
      await edgeid(["workloads", "list", "--device", "plant7-gw-001", "--data", dataDir, "--json"])
    ).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; name: string; selectors: string[]; ttlSeconds: number });
    expect(listed.map((e) => [e.name, e.selectors, e.ttlSeconds])).toEqual([
      ["historian", ["unix:uid:1000", "systemd:unit:historian.service"], 1800],
    ]);

    await row.locator("button:has-text('Delete')").click();
    await page.waitForURL(/notice=workload-deleted/);
    expect(await page.locator(`tr[data-entry="${listed[0]?.id}"]`).count()).toBe(0);
    const after = (await edgeid(["workloads", "list", "--device", "plant7-gw-001", "--data", dataDir, "--json"]))
      .stdout;
    expect(after.trim()).toBe("");
    await context.close();
  });
});
