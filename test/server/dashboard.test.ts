import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../server/app.ts";
import { CLI_ACTOR } from "../../server/authority/actor.ts";
import { setDeviceMetadata } from "../../server/authority/lifecycle.ts";
import { createOperator, revokeOperator } from "../../server/authority/operators.ts";
import { SESSION_IDLE_SECONDS, SESSION_MAX_SECONDS } from "../../server/authority/sessions.ts";
import { niceMax } from "../../server/frontends/dashboard/chart.tsx";
import { csvField, relative, span } from "../../server/frontends/dashboard/format.ts";
import { encodeBase64 } from "../../server/pki/base64.ts";
import { generateKeys, type Harness, harness, makeCsr, TEST_CONFIG } from "../support/fixtures.ts";

const ORIGIN = "https://edgeid.test";

/**
 * The dashboard in process, over a real SQLite file and the real authority: sign-in,
 * the session cookie, CSRF and origin checks, roles, and what each page shows.
 * (test/e2e/dashboard.test.ts drives the same pages in Chromium against `edgeid serve`.)
 */
describe("dashboard", () => {
  let h: Harness;
  let app: ReturnType<typeof createApp>;
  const tokens: Record<string, string> = {};
  const operatorIds: Record<string, string> = {};

  beforeEach(async () => {
    h = await harness({
      config: {
        ...TEST_CONFIG,
        profiles: {
          ...TEST_CONFIG.profiles,
          vetted: { approval: "manual", retryAfter: "30s" },
          legacy: { validity: "365d", expiryAlerts: ["30d", "7d"] },
        },
      },
    });
    app = createApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "192.0.2.9" }),
      logger: { request: () => undefined, error: () => undefined },
    });
    for (const role of ["admin", "operator", "auditor"] as const) {
      const created = await createOperator(h.deps, { name: `${role}-1`, role, actor: CLI_ACTOR });
      tokens[role] = created.token;
      operatorIds[role] = created.operator.id;
    }
  });
  afterEach(() => h.close());

  interface Browser {
    cookie?: string;
    csrf?: string;
  }

  const request = (
    path: string,
    opts: { method?: string; browser?: Browser; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ) =>
    app.request(`${ORIGIN}${path}`, {
      method: opts.method ?? (opts.form ? "POST" : "GET"),
      headers: {
        host: "edgeid.test",
        ...(opts.form ? { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN } : {}),
        ...(opts.browser?.cookie ? { cookie: opts.browser.cookie } : {}),
        ...opts.headers,
      },
      body: opts.form ? new URLSearchParams(opts.form).toString() : undefined,
    });

  const csrfOf = (html: string) => /name="_csrf" value="([^"]+)"/.exec(html)?.[1];

  /** Signs in and reads the CSRF token from the overview, as a browser would. */
  async function signIn(role: string): Promise<Browser> {
    const r = await request("/dashboard/login", { form: { token: tokens[role] ?? "" } });
    expect(r.status).toBe(303);
    const cookie = (r.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const browser: Browser = { cookie };
    const overview = await request("/dashboard", { browser });
    expect(overview.status).toBe(200);
    browser.csrf = csrfOf(await overview.text());
    expect(browser.csrf).toBeTruthy();
    return browser;
  }

  const post = (browser: Browser, path: string, form: Record<string, string>, headers?: Record<string, string>) =>
    request(path, { browser, form: { _csrf: browser.csrf ?? "", ...form }, headers });

  async function enroll(id: string, profile = "device"): Promise<string> {
    const [t] = await h.authority.createTokens({ deviceIds: [id], profile, actor: "test" });
    const issued = await h.authority.enroll({
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: id, password: t?.token ?? "" },
      peer: { remoteAddress: "127.0.0.1" },
      ...(profile !== "device" ? { label: profile } : {}),
    });
    return issued.serial;
  }

  const audit = async (action: string) => h.storage.listAudit({ action, limit: 20 });

  it("signs in with an operator token into a __Host- cookie that is HttpOnly, Secure and SameSite=Strict", async () => {
    // No session: a page sends the browser to sign in, and says where it was going.
    const anonymous = await request("/dashboard/devices");
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.get("location")).toBe("/dashboard/login?next=%2Fdashboard%2Fdevices");

    const wrong = await request("/dashboard/login", { form: { token: "edo_not-a-token" } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    expect(await wrong.text()).toContain("operator token is not valid");
    const [denied] = await audit("dashboard.login");
    expect(denied).toMatchObject({ outcome: "denied", actor: "anonymous", remote: "192.0.2.9" });
    expect(denied?.detail?.reason).toBe("operator_token_unknown");

    const ok = await request("/dashboard/login", { form: { token: tokens.operator ?? "", next: "/dashboard/tokens" } });
    expect(ok.status).toBe(303);
    expect(ok.headers.get("location")).toBe("/dashboard/tokens");
    const cookie = ok.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/^__Host-edgeid_session=eds_[\w-]{43}; /);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("Secure");
    expect(cookie).toContain("SameSite=Strict");
    expect(cookie).toContain("Path=/");
    expect(cookie).not.toContain("Domain");
    expect(cookie).toContain(`Max-Age=${SESSION_MAX_SECONDS}`);
    // Only the secret's hash is stored.
    const secret = /=(eds_[^;]+)/.exec(cookie)?.[1] ?? "";
    const raw = (await import("better-sqlite3")).default;
    const db = new raw(`${h.dir}/edgeid.db`, { readonly: true });
    const stored = db.prepare("SELECT id_hash FROM dashboard_sessions").all() as { id_hash: string }[];
    db.close();
    expect(stored).toHaveLength(1);
    expect(stored[0]?.id_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored[0]?.id_hash).not.toContain(secret);
    const [login] = (await audit("dashboard.login")).filter((a) => a.outcome === "success");
    expect(login?.actor).toBe(`operator:${operatorIds.operator}`);

    // An open redirect is not possible through `next`.
    const evil = await request("/dashboard/login", {
      form: { token: tokens.operator ?? "", next: "https://evil.test/" },
    });
    expect(evil.headers.get("location")).toBe("/dashboard");
  });

  it("answers every page with a strict Content-Security-Policy and no caching", async () => {
    const browser = await signIn("auditor");
    for (const path of [
      "/dashboard",
      "/dashboard/devices",
      "/dashboard/tokens",
      "/dashboard/login",
      "/dashboard/nope",
    ]) {
      const r = await request(path, { browser });
      expect(r.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(r.headers.get("content-security-policy")).toContain("form-action 'self'");
      expect(r.headers.get("x-frame-options")).toBe("DENY");
      expect(r.headers.get("cache-control")).toBe("no-store");
    }
    const css = await request("/dashboard/static/app.css");
    expect([css.status, css.headers.get("content-type")]).toEqual([200, "text/css; charset=utf-8"]);
    const missing = await request("/dashboard/nope", { browser });
    expect(missing.status).toBe(404);
  });

  it("refuses a form without this session's CSRF token, or from another origin, and audits it", async () => {
    await enroll("csrf-dev");
    const browser = await signIn("operator");
    const other = await signIn("admin");
    const revoke = { reason: "keyCompromise", confirm: "yes" };

    const none = await request("/dashboard/devices/csrf-dev/revoke", { browser, form: revoke });
    expect(none.status).toBe(403);
    expect(await none.text()).toContain("csrf_token_invalid");
    const foreign = await request("/dashboard/devices/csrf-dev/revoke", {
      browser,
      form: { ...revoke, _csrf: other.csrf ?? "" },
    });
    expect(foreign.status).toBe(403);
    const crossOrigin = await post(browser, "/dashboard/devices/csrf-dev/revoke", revoke, {
      origin: "https://evil.test",
    });
    expect(crossOrigin.status).toBe(403);
    expect(await crossOrigin.text()).toContain("cross_origin_post");
    const crossSite = await request("/dashboard/devices/csrf-dev/revoke", {
      browser,
      form: { ...revoke, _csrf: browser.csrf ?? "" },
      headers: { "sec-fetch-site": "cross-site" },
    });
    expect(crossSite.status).toBe(403);
    const json = await request("/dashboard/devices/csrf-dev/revoke", {
      method: "POST",
      browser,
      headers: { "content-type": "application/json", origin: ORIGIN },
    });
    expect(json.status).toBe(415);
    expect((await h.storage.getDevice("csrf-dev"))?.status).toBe("active");

    const denials = (await audit("device.revoke")).filter((a) => a.outcome === "denied");
    expect(denials.map((a) => a.detail?.reason)).toEqual([
      "wrong_content_type",
      "cross_origin_post",
      "cross_origin_post",
      "csrf_token_invalid",
      "csrf_token_invalid",
    ]);
    expect(denials.every((a) => a.deviceId === "csrf-dev")).toBe(true);

    const done = await post(browser, "/dashboard/devices/csrf-dev/revoke", revoke);
    expect(done.status).toBe(303);
    expect((await h.storage.getDevice("csrf-dev"))?.status).toBe("revoked");
  });

  it("says which protocol a device enrolled with, on its page and in the list", async () => {
    await enroll("est-dev");
    const browser = await signIn("auditor");
    const page = await (await request("/dashboard/devices/est-dev", { browser })).text();
    expect(page).toMatch(/<dt>Enrolled with<\/dt><dd>EST<\/dd>/);
    const list = await (await request("/dashboard/devices", { browser })).text();
    expect(list).toMatch(/data-device="est-dev"[\s\S]*?<td>EST<\/td>/);
  });

  it("shows an auditor no action, and refuses the actions when an auditor crafts them", async () => {
    const serial = await enroll("audited-dev");
    const [t] = await h.authority.createTokens({ deviceIds: ["tok-dev"], actor: "test" });
    const browser = await signIn("auditor");
    const page = await (await request("/dashboard/devices/audited-dev", { browser })).text();
    expect(page).toContain(serial);
    expect(page).not.toContain("Revoke…");
    expect(page).not.toContain("/revoke");
    expect(page).not.toContain("Rotate now");
    const tokensPage = await (await request("/dashboard/tokens", { browser })).text();
    expect(tokensPage).toContain(t?.tokenId);
    expect(tokensPage).not.toContain("Create token");

    for (const [path, form] of [
      ["/dashboard/devices/audited-dev/revoke", { reason: "keyCompromise", confirm: "yes" }],
      ["/dashboard/devices/audited-dev/revoke", { reason: "keyCompromise" }],
      ["/dashboard/devices/audited-dev/rotate", {}],
      ["/dashboard/tokens", { mode: "single", deviceId: "x-1" }],
      [`/dashboard/tokens/${t?.tokenId}/revoke`, {}],
    ] as const) {
      const r = await post(browser, path, form);
      expect(r.status, path).toBe(403);
      expect(await r.text()).toContain("role_forbidden");
    }
    expect((await h.storage.getDevice("audited-dev"))?.status).toBe("active");
    const denied = (await h.storage.listAudit({ actor: `operator:${operatorIds.auditor}`, limit: 50 })).filter(
      (a) => a.outcome === "denied",
    );
    expect(denied.map((a) => a.action).sort()).toEqual([
      "command.create",
      "device.revoke",
      "device.revoke",
      "token.create",
      "token.revoke",
    ]);
  });

  it("ends a session when idle, at its absolute limit, at sign-out, and when its operator is revoked", async () => {
    const idle = await signIn("operator");
    h.clock.advance(SESSION_IDLE_SECONDS - 60);
    expect((await request("/dashboard", { browser: idle })).status).toBe(200); // use moves the idle expiry on
    h.clock.advance(SESSION_IDLE_SECONDS - 60);
    expect((await request("/dashboard", { browser: idle })).status).toBe(200);
    h.clock.advance(SESSION_IDLE_SECONDS + 1);
    const ended = await request("/dashboard", { browser: idle });
    expect(ended.status).toBe(303);
    expect(ended.headers.get("location")).toContain("notice=session-ended");
    expect(ended.headers.get("set-cookie")).toContain("__Host-edgeid_session=;");
    const [expired] = await audit("dashboard.session");
    expect(expired?.detail?.reason).toBe("session_expired");

    const busy = await signIn("operator");
    for (let t = 0; t < SESSION_MAX_SECONDS; t += SESSION_IDLE_SECONDS / 2) {
      h.clock.advance(SESSION_IDLE_SECONDS / 2);
      if (t + SESSION_IDLE_SECONDS / 2 < SESSION_MAX_SECONDS) {
        expect((await request("/dashboard", { browser: busy })).status).toBe(200);
      }
    }
    expect((await request("/dashboard", { browser: busy })).status).toBe(303);

    const leaving = await signIn("operator");
    expect((await post(leaving, "/dashboard/logout", {})).headers.get("location")).toBe(
      "/dashboard/login?notice=signed-out",
    );
    expect((await request("/dashboard", { browser: leaving })).status).toBe(303);
    // A form from the ended session: refused, not redirected.
    expect((await post(leaving, "/dashboard/audit/run", {})).status).toBe(401);

    const victim = await signIn("auditor");
    await revokeOperator(h.deps, operatorIds.auditor ?? "", CLI_ACTOR);
    const after = await request("/dashboard", { browser: victim });
    expect(after.status).toBe(303);
    const reasons = (await audit("dashboard.session")).map((a) => a.detail?.reason);
    expect(reasons).toContain("operator_token_revoked");
  });

  it("lists devices with search by id prefix, filters and keyset pages", async () => {
    const ids = Array.from({ length: 120 }, (_, i) => `fleet-${String(i).padStart(3, "0")}`);
    await h.authority.createTokens({ deviceIds: ids, actor: "test" });
    await h.authority.createTokens({ deviceIds: ["other-1"], actor: "test" });
    await enroll("fleet-active");
    const browser = await signIn("auditor");
    const rowsOf = (html: string) => [...html.matchAll(/data-device="([^"]+)"/g)].map((m) => m[1]);

    const seen: string[] = [];
    let path: string | undefined = "/dashboard/devices?q=fleet-";
    while (path) {
      const html = await (await request(path, { browser })).text();
      seen.push(...(rowsOf(html) as string[]));
      path = /href="([^"]+)" rel="next"/.exec(html)?.[1]?.replace(/&amp;/g, "&");
    }
    expect(seen).toEqual([...ids.slice(0, 120), "fleet-active"].sort());
    expect(seen).not.toContain("other-1");

    const one = await (await request("/dashboard/devices?q=fleet-01", { browser })).text();
    expect(rowsOf(one)).toEqual(ids.slice(10, 20));
    const active = await (await request("/dashboard/devices?status=active", { browser })).text();
    expect(rowsOf(active)).toEqual(["fleet-active"]);
    const expiring = await (await request("/dashboard/devices?expiring=7d", { browser })).text();
    expect(rowsOf(expiring)).toEqual(["fleet-active"]);
    const expired = await (await request("/dashboard/devices?expiring=0s", { browser })).text();
    expect(rowsOf(expired)).toEqual([]);
    h.clock.advance(73 * 3600);
    const later = await signIn("auditor");
    expect(rowsOf(await (await request("/dashboard/devices?expiring=0s", { browser: later })).text())).toEqual([
      "fleet-active",
    ]);

    for (const bad of ["status=lost", "profile=nope", "expiring=3y", "cursor=notacursor", "q=has%20space"]) {
      const r = await request(`/dashboard/devices?${bad}`, { browser: later });
      expect(r.status, bad).toBe(400);
    }
    const unknown = await request("/dashboard/devices/no-such-device", { browser: later });
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toContain("unknown_device");
  });

  it("revokes only after a confirmation step, then the certificate's status is revoked", async () => {
    const serial = await enroll("gone-dev");
    const browser = await signIn("operator");
    const confirm = await post(browser, "/dashboard/devices/gone-dev/revoke", { reason: "keyCompromise" });
    expect(confirm.status).toBe(200);
    const text = await confirm.text();
    expect(text).toContain(serial);
    expect(text).toContain('name="confirm" value="yes"');
    expect((await h.storage.getDevice("gone-dev"))?.status).toBe("active");

    const done = await post(browser, "/dashboard/devices/gone-dev/revoke", { reason: "keyCompromise", confirm: "yes" });
    expect(done.status).toBe(303);
    expect(done.headers.get("location")).toBe("/dashboard/devices/gone-dev?notice=revoked");
    const page = await (await request("/dashboard/devices/gone-dev?notice=revoked", { browser })).text();
    expect(page).toContain('data-testid="device-status">revoked<');
    expect(page).toContain("keyCompromise");
    expect(page).toContain("its certificates are on the CRL");
    expect(await h.storage.getCertificateStatus(serial)).toMatchObject({ status: "revoked", revocationReason: 1 });
    const [record] = await audit("device.revoke");
    expect(record).toMatchObject({ outcome: "success", actor: `operator:${operatorIds.operator}` });

    // Twice: a clear refusal, not a crash.
    const again = await post(browser, "/dashboard/devices/gone-dev/revoke", {
      reason: "keyCompromise",
      confirm: "yes",
    });
    expect(again.status).toBe(409);
    const bad = await post(browser, "/dashboard/devices/gone-dev/revoke", { reason: "because" });
    expect(bad.status).toBe(400);
  });

  it("creates tokens: one shown once, many as a CSV download; lists them without secrets; revokes", async () => {
    const browser = await signIn("operator");
    const single = await post(browser, "/dashboard/tokens", {
      mode: "single",
      deviceId: "single-1",
      profile: "device",
      ttl: "2d",
      dns: "single-1.example.org",
    });
    expect(single.status).toBe(201);
    const shown = /class="secret">([^<]+)</.exec(await single.text())?.[1] ?? "";
    expect(shown).toMatch(/^\S{20,}$/);

    const bulk = await post(browser, "/dashboard/tokens", {
      mode: "bulk",
      prefix: "cmd-",
      start: "7",
      count: "3",
      profile: "device",
      ttl: "30d",
      format: "csv",
    });
    expect(bulk.status).toBe(200);
    expect(bulk.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    expect(bulk.headers.get("content-disposition")).toMatch(/^attachment; filename="edgeid-tokens-[\w-]+\.csv"$/);
    const lines = (await bulk.text()).trimEnd().split("\r\n");
    expect(lines[0]).toBe("device_id,profile,token_id,token,expires_at");
    expect(lines).toHaveLength(4);
    expect(lines.slice(1).map((l) => l.split(",")[0])).toEqual(["cmd-0007", "cmd-0008", "cmd-0009"]);

    // The CSV's tokens are real: one enrolls its device.
    const [, , , token] = (lines[1] ?? "").split(",");
    const issued = await h.authority.enroll({
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: "cmd-0007", password: token ?? "" },
      peer: { remoteAddress: "127.0.0.1" },
    });
    expect(issued.serial).toBeTruthy();

    const list = await (await request("/dashboard/tokens", { browser })).text();
    expect(list).not.toContain(shown);
    expect(list).not.toContain(token);
    const unusedId =
      list
        .split("<tr ")
        .filter((row) => row.includes("badge unused"))
        .map((row) => /^data-token="([^"]+)"/.exec(row)?.[1])
        .find(Boolean) ?? "";
    expect(unusedId).toMatch(/^tok_/);
    const revoked = await post(browser, `/dashboard/tokens/${unusedId}/revoke`, {});
    expect(revoked.headers.get("location")).toBe("/dashboard/tokens?notice=token-revoked");
    expect((await h.storage.getToken(unusedId))?.revokedAt).toBeInstanceOf(Date);

    for (const form of [
      { mode: "single" } as Record<string, string>,
      { mode: "bulk" },
      { mode: "bulk", prefix: "p-", count: "0" },
      { mode: "bulk", deviceIds: "a\nb", prefix: "p-", count: "2" },
      { mode: "single", deviceId: "x", ttl: "soon" },
      { mode: "single", deviceId: "x", profile: "nope" },
    ]) {
      expect((await post(browser, "/dashboard/tokens", form)).status, JSON.stringify(form)).toBe(400);
    }
  });

  it("approves and rejects enrollments that wait for an operator", async () => {
    const browser = await signIn("operator");
    const ask = async (id: string, csr: Uint8Array) => {
      const r = await app.request(`${ORIGIN}/.well-known/est/vetted/simpleenroll`, {
        method: "POST",
        headers: {
          "content-type": "application/pkcs10",
          "content-transfer-encoding": "base64",
          authorization: `Basic ${btoa(`${id}:${tokensFor[id]}`)}`,
        },
        body: encodeBase64(csr),
      });
      return r.status;
    };
    const tokensFor: Record<string, string> = {};
    const csrs: Record<string, Uint8Array> = {};
    for (const id of ["vet-a", "vet-b"]) {
      const [t] = await h.authority.createTokens({ deviceIds: [id], profile: "vetted", actor: "test" });
      tokensFor[id] = t?.token ?? "";
      csrs[id] = await makeCsr(await generateKeys("P-256"), { cn: id });
      expect(await ask(id, csrs[id] as Uint8Array)).toBe(202);
    }
    const overview = await (await request("/dashboard", { browser })).text();
    expect(overview).toContain("vet-a");
    expect(overview).toContain("vet-b");
    const [a, b] = await h.storage
      .listPending({ status: "pending", limit: 10 })
      .then((l) => ["vet-a", "vet-b"].map((id) => l.find((p) => p.deviceId === id)?.id ?? ""));
    const approved = await post(browser, `/dashboard/enrollments/${a}/decide`, {
      decision: "approve",
      back: "/dashboard/devices/vet-a",
    });
    expect(approved.headers.get("location")).toBe("/dashboard/devices/vet-a?notice=approved");
    const rejected = await post(browser, `/dashboard/enrollments/${b}/decide`, {
      decision: "reject",
      reason: "not on the manifest",
      back: "https://evil.test/",
    });
    expect(rejected.headers.get("location")).toBe("/dashboard?notice=rejected");
    expect(await ask("vet-a", csrs["vet-a"] as Uint8Array)).toBe(200);
    expect(await ask("vet-b", csrs["vet-b"] as Uint8Array)).toBe(403);
    expect((await h.storage.getDevice("vet-a"))?.status).toBe("active");
    const again = await post(browser, `/dashboard/enrollments/${a}/decide`, { decision: "approve" });
    expect(again.status).toBe(409);
  });

  it("shows counts, certificate expiry per day, devices not seen, approvals and the latest fleet audit", async () => {
    await enroll("ov-1"); // expires in 72 h: day 2 (counted from now)
    h.clock.advance(86_400);
    await enroll("ov-2");
    await enroll("ov-3"); // both expire in 72 h from a day later
    await h.authority.createTokens({ deviceIds: ["ov-pending"], actor: "test" });
    const browser = await signIn("auditor");
    const html = await (await request("/dashboard?days=7", { browser })).text();
    const count = (s: string) => new RegExp(`data-status="${s}"><span class="n">(\\d+)<`).exec(html)?.[1];
    expect([count("active"), count("pending"), count("revoked")]).toEqual(["3", "1", "0"]);
    const bars = [...html.matchAll(/data-day="(\d+)" data-count="(\d+)"/g)].map((m) => Number(m[2]));
    // Day i is [now + i days, now + i + 1 days): ov-1 has 48 h left, ov-2 and ov-3 72 h.
    expect(bars).toEqual([0, 0, 1, 2, 0, 0, 0]);
    expect(html).toContain("No fleet audit has run yet");

    // The whole-table counts are kept 10 s (a change made in the dashboard drops them sooner).
    await enroll("ov-4");
    const activeOf = (text: string) => /data-status="active"><span class="n">(\d+)</.exec(text)?.[1];
    expect(activeOf(await (await request("/dashboard?days=7", { browser })).text())).toBe("3");
    h.clock.advance(10);
    expect(activeOf(await (await request("/dashboard?days=7", { browser })).text())).toBe("4");

    // The audit (run from the page, with the auditor's session) is stored and shown.
    h.clock.advance(2 * 86_400 + 3600); // ov-1 has expired by now
    const auditor = await signIn("auditor");
    const run = await post(auditor, "/dashboard/audit/run", {});
    expect(run.headers.get("location")).toBe("/dashboard?notice=audit-done");
    const after = await (await request("/dashboard?notice=audit-done", { browser: auditor })).text();
    expect(after).toContain("The fleet audit ran");
    // ov-1 has expired; ov-2 to ov-4 have 23 h left, more than the default window (a quarter of 72 h).
    expect(after).toMatch(/certificate-expiring: 1</);
    const soon = [...after.matchAll(/data-day="(\d+)" data-count="(\d+)"/g)].map((m) => Number(m[2]));
    expect(soon.slice(0, 3)).toEqual([3, 0, 0]);
    expect(after).toMatch(
      /<span class="badge critical">critical<\/span><\/td><td>certificate-expiring<\/td><td><a href="\/dashboard\/devices\/ov-1">/,
    );
    expect(/data-status="expired"><span class="n">(\d+)</.exec(after)?.[1]).toBe("1");
    const stored = await h.storage.latestFleetAudit();
    expect(stored?.counts["certificate-expiring"]).toBe(1);
    expect(stored?.actor).toBe(`operator:${operatorIds.auditor}`);
  });

  it("reports legacy certificates by expiry with their owners, on the page and as CSV", async () => {
    await enroll("plc-1", "legacy");
    await enroll("plc-2", "legacy");
    await enroll("modern-1");
    // Owner and location from the device page's form (an operator's; an auditor's is refused).
    const operator = await signIn("operator");
    const saved = await post(operator, "/dashboard/devices/plc-2/metadata", {
      owner: "Plant ops, Line 2",
      location: " Hall B ",
    });
    expect(saved.headers.get("location")).toBe("/dashboard/devices/plc-2?notice=metadata-saved");
    expect((await post(operator, "/dashboard/devices/plc-2/metadata", { owner: "x".repeat(201) })).status).toBe(400);
    expect(await h.storage.getDeviceMetadata("plc-2")).toMatchObject({
      owner: "Plant ops, Line 2",
      location: "Hall B",
      updatedBy: `operator:${operatorIds.operator}`,
    });
    await setDeviceMetadata(h.deps, CLI_ACTOR, "plc-1", { owner: '=HYPERLINK("https://evil.test")', location: null });
    const browser = await signIn("auditor");
    const refused = await post(browser, "/dashboard/devices/plc-1/metadata", { owner: "me" });
    expect(refused.status).toBe(403);
    const html = await (await request("/dashboard/legacy?within=400d", { browser })).text();
    expect(html).toContain("plc-1");
    expect(html).toContain("Plant ops, Line 2");
    expect(html).toContain("Hall B");
    expect(html).not.toContain("modern-1");
    expect((await (await request("/dashboard/legacy?within=30d", { browser })).text()).includes("plc-1")).toBe(false);
    const file = await request("/dashboard/legacy.csv?profile=legacy&within=400d", { browser });
    expect(file.headers.get("content-disposition")).toBe('attachment; filename="edgeid-expiring-legacy-400d.csv"');
    const rows = (await file.text()).trimEnd().split("\r\n");
    expect(rows[0]).toBe("device_id,profile,serial,not_after,days_left,owner,location,last_seen");
    expect(rows.slice(1).map((r) => r.split(",")[0])).toEqual(["plc-1", "plc-2"]);
    expect(rows[2]).toContain('"Plant ops, Line 2",Hall B');
    // A spreadsheet would run an owner that starts with "=": the field is defused.
    expect(rows[1]).toContain(`"'=HYPERLINK(""https://evil.test"")"`);
  });

  it("shows the audit trail with filters, and verifies its hash chain", async () => {
    await request("/dashboard/login", { form: { token: "edo_guess" } });
    await enroll("aud-dev");
    const browser = await signIn("auditor");
    const refusals = await (await request("/dashboard/audit?action=dashboard.login", { browser })).text();
    expect(refusals).toContain("operator_token_unknown");
    expect(refusals).not.toContain("est.simpleenroll");
    const device = await (await request("/dashboard/audit?deviceId=aud-dev", { browser })).text();
    expect(device).toContain("est.simpleenroll");
    expect(device).not.toContain("dashboard.login");
    const intact = await (await request("/dashboard/audit?verify=1", { browser })).text();
    expect(intact).toMatch(/The chain is intact: \d+ records verified/);

    const raw = (await import("better-sqlite3")).default;
    const db = new raw(`${h.dir}/edgeid.db`);
    db.exec("DROP TRIGGER audit_events_no_update");
    db.prepare("UPDATE audit_events SET actor = 'someone-else' WHERE action = 'est.simpleenroll'").run();
    db.close();
    const broken = await (await request("/dashboard/audit?verify=1", { browser })).text();
    expect(broken).toMatch(/The chain is broken at record \d+/);
    expect((await request(`/dashboard/audit?actor=${"a".repeat(200)}`, { browser })).status).toBe(400);
  });

  it("lets an admin create and revoke operators; a revoked operator's session ends at once", async () => {
    const operator = await signIn("operator");
    expect(await (await request("/dashboard", { browser: operator })).text()).not.toContain("/dashboard/operators");
    expect((await request("/dashboard/operators", { browser: operator })).status).toBe(403);
    expect((await post(operator, "/dashboard/operators", { name: "eve", role: "admin" })).status).toBe(403);

    const admin = await signIn("admin");
    expect(await (await request("/dashboard", { browser: admin })).text()).toContain('href="/dashboard/operators"');
    const created = await post(admin, "/dashboard/operators", { name: "night shift", role: "auditor", ttl: "30d" });
    expect(created.status).toBe(201);
    const token = /class="secret">(edo_[^<]+)</.exec(await created.text())?.[1] ?? "";
    tokens.night = token;
    const night = await signIn("night");
    expect(await (await request("/dashboard", { browser: night })).text()).toContain("night shift (auditor)");

    const listed = await (await request("/dashboard/operators", { browser: admin })).text();
    expect(listed).not.toContain(token);
    const id = (await h.storage.listOperators()).find((o) => o.name === "night shift")?.id ?? "";
    const revoked = await post(admin, `/dashboard/operators/${id}/revoke`, {});
    expect(revoked.headers.get("location")).toBe("/dashboard/operators?notice=operator-revoked");
    expect((await request("/dashboard", { browser: night })).status).toBe(303);

    // The last admin cannot revoke itself, even by a crafted form.
    const self = await post(admin, `/dashboard/operators/${operatorIds.admin}/revoke`, {});
    expect(self.status).toBe(409);
    expect(await self.text()).toContain("last_admin");
    expect((await post(admin, "/dashboard/operators", { name: "x", role: "root" })).status).toBe(400);
    expect((await post(admin, "/dashboard/operators", { name: "bad/name", role: "auditor" })).status).toBe(400);
  });

  it("refuses an oversized form with 413 and keeps the server up", async () => {
    const browser = await signIn("operator");
    const big = "x".repeat(h.deps.config.limits.maxBodyBytes + 10);
    const r = await post(browser, "/dashboard/tokens", { mode: "bulk", deviceIds: big });
    expect(r.status).toBe(413);
    expect((await request("/dashboard", { browser })).status).toBe(200);
  });
});

describe("dashboard formatting", () => {
  it("writes spans in whole units, CSV fields per RFC 4180 without formulas, and round chart maxima", () => {
    expect([45, 5399, 5400, 86_400, 2 * 86_400 + 86_399, 10 * 86_400].map(span)).toEqual([
      "45 s",
      "90 min",
      "1 h 30 min",
      "24 h",
      "3 d",
      "10 d",
    ]);
    expect(["plain", "a,b", 'say "hi"', "=1+1", "-2", "@SUM(A1)", "line\nbreak", null].map(csvField)).toEqual([
      "plain",
      '"a,b"',
      '"say ""hi"""',
      "'=1+1",
      "'-2",
      "'@SUM(A1)",
      '"line\nbreak"',
      "",
    ]);
    const now = new Date("2026-11-24T09:00:00Z");
    expect(
      ["2026-11-24T09:00:03Z", "2026-11-24T08:58:00Z", "2026-11-26T09:00:00Z", null].map((t) => relative(t, now)),
    ).toEqual(["just now", "2 min ago", "in 2 d", ""]);
    expect([0, 3, 6, 11, 20, 21, 99, 101, 4999].map(niceMax)).toEqual([5, 5, 10, 20, 20, 50, 100, 200, 5000]);
  });
});
