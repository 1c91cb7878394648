/**
 * The dashboard's Workloads page in process, over a real SQLite file and the real
 * authority: the list and its device filter, registering and deleting entries through
 * `authority.workloads` with the signed-in operator, the role rules, CSRF and origin.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../server/app.ts";
import { CLI_ACTOR } from "../../server/authority/actor.ts";
import { createOperator } from "../../server/authority/operators.ts";
import { generateKeys, type Harness, harness, makeCsr, TEST_CONFIG } from "../support/fixtures.ts";

const ORIGIN = "https://edgeid.test";

describe("dashboard: workload entries", () => {
  let h: Harness;
  let app: ReturnType<typeof createApp>;
  const tokens: Record<string, string> = {};
  const operatorIds: Record<string, string> = {};

  beforeEach(async () => {
    h = await harness({ config: { ...TEST_CONFIG, profiles: { ...TEST_CONFIG.profiles, sensor: {} } } });
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
    opts: { browser?: Browser; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ) =>
    app.request(`${ORIGIN}${path}`, {
      method: opts.form ? "POST" : "GET",
      headers: {
        host: "edgeid.test",
        ...(opts.form ? { "content-type": "application/x-www-form-urlencoded", origin: ORIGIN } : {}),
        ...(opts.browser?.cookie ? { cookie: opts.browser.cookie } : {}),
        ...opts.headers,
      },
      body: opts.form ? new URLSearchParams(opts.form).toString() : undefined,
    });

  async function signIn(role: string): Promise<Browser> {
    const r = await request("/dashboard/login", { form: { token: tokens[role] ?? "" } });
    expect(r.status).toBe(303);
    const browser: Browser = { cookie: (r.headers.get("set-cookie") ?? "").split(";")[0] ?? "" };
    const html = await (await request("/dashboard/workloads", { browser })).text();
    browser.csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
    expect(browser.csrf).toBeTruthy();
    return browser;
  }

  const post = (browser: Browser, path: string, form: Record<string, string>, headers?: Record<string, string>) =>
    request(path, { browser, form: { _csrf: browser.csrf ?? "", ...form }, headers });

  async function enroll(id: string, profile = "device"): Promise<void> {
    const [t] = await h.authority.createTokens({ deviceIds: [id], profile, actor: "test" });
    await h.authority.enroll({
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: id, password: t?.token ?? "" },
      peer: { remoteAddress: "127.0.0.1" },
      ...(profile !== "device" ? { label: profile } : {}),
    });
  }

  const entries = () => h.storage.listWorkloadEntries({ limit: 100 });

  it("registers an entry from the form (selectors one per line) as the signed-in operator, lists it, deletes it", async () => {
    await enroll("gw-1");
    const browser = await signIn("operator");
    const page = await (await request("/dashboard/workloads", { browser })).text();
    expect(page).toContain('href="/dashboard/workloads" class="current"');
    expect(page).toContain('data-testid="workload-register"');

    const r = await post(browser, "/dashboard/workloads", {
      parentKind: "device",
      parent: "gw-1",
      name: "web",
      selectors: "unix:uid:1000\r\n\r\n  systemd:unit:web.service  \r\n",
      ttl: "30m",
      jwtAudiences: "https://api.example.org\nhttps://b.example.org",
    });
    expect(r.status, await r.clone().text()).toBe(303);
    expect(r.headers.get("location")).toBe("/dashboard/workloads?notice=workload-registered&device=gw-1");
    const [entry] = await entries();
    expect(entry).toMatchObject({
      parentKind: "device",
      parentValue: "gw-1",
      name: "web",
      selectors: ["unix:uid:1000", "systemd:unit:web.service"],
      ttlSeconds: 1800,
      jwtAudiences: ["https://api.example.org", "https://b.example.org"],
      fleetWide: false,
      createdBy: `operator:${operatorIds.operator}`,
    });
    const [registered] = await h.storage.listAudit({ action: "workload.register", limit: 1 });
    expect(registered).toMatchObject({ outcome: "success", actor: `operator:${operatorIds.operator}` });

    const listed = await (await request(r.headers.get("location") ?? "", { browser })).text();
    expect(listed).toContain(`data-entry="${entry?.id}"`);
    expect(listed).toContain("spiffe://example.org/device/gw-1/workload/web");
    expect(listed).toContain("<code>systemd:unit:web.service</code>");
    expect(listed).toContain("30m");
    expect(listed).toContain("The entry is registered");

    const deleted = await post(browser, `/dashboard/workloads/${entry?.id}/delete`, {});
    expect(deleted.status).toBe(303);
    expect(deleted.headers.get("location")).toBe("/dashboard/workloads?notice=workload-deleted");
    expect(await entries()).toEqual([]);
    const after = await (await request("/dashboard/workloads?notice=workload-deleted", { browser })).text();
    expect(after).not.toContain(`data-entry="${entry?.id}"`);
    expect(after).toContain("The entry is deleted");
  });

  it("registers profile, prefix and fleet-wide entries; filters by the device they apply to", async () => {
    await enroll("plant-a-1", "sensor");
    await enroll("other-1");
    const browser = await signIn("admin");
    for (const form of <Record<string, string>[]>[
      { parentKind: "profile", parent: "sensor", name: "collector", selectors: "unix:gid:50" },
      { parentKind: "prefix", parent: "plant-a-", name: "metrics", selectors: "unix:uid:7", fleetWide: "1" },
      { parentKind: "device", parent: "other-1", name: "x", selectors: "unix:uid:8" },
    ]) {
      const r = await post(browser, "/dashboard/workloads", { ttl: "1h", ...form });
      expect(r.status, await r.clone().text()).toBe(303);
    }
    const all = await entries();
    expect(all.map((e) => [e.parentKind, e.parentValue, e.name, e.fleetWide]).sort()).toEqual([
      ["device", "other-1", "x", false],
      ["prefix", "plant-a-", "metrics", true],
      ["profile", "sensor", "collector", false],
    ]);
    const devicePage = await (await request("/dashboard/devices/plant-a-1", { browser })).text();
    expect(devicePage).toContain('href="/dashboard/workloads?device=plant-a-1"');
    const plant = await (await request("/dashboard/workloads?device=plant-a-1", { browser })).text();
    expect(plant).toContain("spiffe://example.org/workload/metrics");
    expect(plant).toContain("collector");
    expect(plant).not.toContain("other-1");
    const unknown = await request("/dashboard/workloads?device=nobody", { browser });
    expect(unknown.status).toBe(404);
  });

  it("answers a refused form with a page that says why, and registers nothing", async () => {
    await enroll("gw-1");
    const browser = await signIn("operator");
    const cases: [Record<string, string>, number, string][] = [
      [{ parentKind: "device", parent: "gw-1", name: "w", selectors: "unix:uid:abc" }, 400, "bad_selector"],
      [{ parentKind: "device", parent: "gw-1", name: "w", selectors: "" }, 400, "selectors_missing"],
      [{ parentKind: "device", parent: "nobody", name: "w", selectors: "unix:uid:1" }, 404, "unknown_device"],
      [{ parentKind: "profile", parent: "nope", name: "w", selectors: "unix:uid:1" }, 400, "unknown_profile"],
      [{ parentKind: "elsewhere", parent: "gw-1", name: "w", selectors: "unix:uid:1" }, 400, "invalid_request"],
      [
        { parentKind: "device", parent: "gw-1", name: "w", selectors: "unix:uid:1", ttl: "soon" },
        400,
        "invalid_request",
      ],
    ];
    for (const [form, status, code] of cases) {
      const r = await post(browser, "/dashboard/workloads", form);
      expect(r.status, JSON.stringify(form)).toBe(status);
      expect(await r.text()).toContain(`(${code})`);
    }
    expect(await entries()).toEqual([]);
    const denied = (await h.storage.listAudit({ action: "workload.register", limit: 20 })).filter(
      (a) => a.outcome === "denied",
    );
    expect(denied).toHaveLength(cases.length);
  });

  it("shows an auditor the entries and no form, and refuses crafted register and delete; CSRF and origin are checked", async () => {
    await enroll("gw-1");
    const entry = await h.authority.workloads.register(
      { id: `operator:${operatorIds.operator}`, role: "operator" },
      { device: "gw-1", name: "web", selectors: ["unix:uid:1000"] },
    );
    const auditor = await signIn("auditor");
    const page = await (await request("/dashboard/workloads", { browser: auditor })).text();
    expect(page).toContain(`data-entry="${entry.id}"`);
    expect(page).not.toContain('data-testid="workload-register"');
    expect(page).not.toContain("/delete");
    const form = { parentKind: "device", parent: "gw-1", name: "other", selectors: "unix:uid:1" };
    for (const [path, body] of [
      ["/dashboard/workloads", form],
      [`/dashboard/workloads/${entry.id}/delete`, {}],
    ] as const) {
      const r = await post(auditor, path, body);
      expect(r.status, path).toBe(403);
      expect(await r.text()).toContain("role_forbidden");
    }

    const operator = await signIn("operator");
    const noToken = await request(`/dashboard/workloads/${entry.id}/delete`, { browser: operator, form: {} });
    expect(noToken.status).toBe(403);
    expect(await noToken.text()).toContain("csrf_token_invalid");
    const crossOrigin = await post(operator, "/dashboard/workloads", form, { origin: "https://evil.test" });
    expect(crossOrigin.status).toBe(403);
    expect(await crossOrigin.text()).toContain("cross_origin_post");
    expect((await entries()).map((e) => e.id)).toEqual([entry.id]);

    const denied = (await h.storage.listAudit({ limit: 50 })).filter(
      (a) => a.outcome === "denied" && a.action.startsWith("workload."),
    );
    expect(denied.map((a) => [a.action, a.detail?.reason]).sort()).toEqual([
      ["workload.delete", "csrf_token_invalid"],
      ["workload.delete", "role_forbidden"],
      ["workload.register", "cross_origin_post"],
      ["workload.register", "role_forbidden"],
    ]);
  });
});
