import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../server/app.ts";
import { admitMqttClient } from "../../server/authority/device-reports.ts";
import type { AuthorityError } from "../../server/authority/errors.ts";
import { RefusalBudget } from "../../server/authority/refusal-budget.ts";
import { addressKey } from "../../server/authority/refusals.ts";
import { encodeBase64 } from "../../server/pki/base64.ts";
import { createToken, generateKeys, type Harness, harness, makeCsr, TEST_CONFIG } from "../support/fixtures.ts";

describe("refusal budget (pure)", () => {
  const budget = (perKey = 3, maxKeys = 100) => new RefusalBudget({ perKey: () => perKey, windowMs: 60_000, maxKeys });

  it("records refusals within the budget, counts the rest, and aggregates them when the window closes", () => {
    const b = budget(3);
    const dispositions = Array.from({ length: 10 }, (_, i) => b.note(["a"], "est.simpleenroll", "token_unknown", i));
    expect(dispositions.filter((d) => d.record)).toHaveLength(3);
    expect(b.retryAfter(["a"], 10)).toEqual({ key: "a", seconds: 60 });
    expect(b.retryAfter(["a"], 30_000)).toEqual({ key: "a", seconds: 30 });
    expect(b.retryAfter(["b"], 10)).toBeUndefined();
    expect(b.drain(59_999)).toEqual([]);
    expect(b.drain(60_000)).toEqual([
      { key: "a", action: "est.simpleenroll", reason: "token_unknown", count: 7, from: 0, to: 60_000 },
    ]);
    // A new window: the budget again.
    expect(b.retryAfter(["a"], 60_000)).toBeUndefined();
    expect(b.note(["a"], "est.simpleenroll", "token_unknown", 60_001).record).toBe(true);
  });

  it("counts a refusal under every key and aggregates it under the first key past its budget", () => {
    const b = new RefusalBudget({ perKey: (k) => (k.startsWith("d") ? 1 : 5), windowMs: 1000, maxKeys: 10 });
    expect(b.note(["addr", "dev"], "x", "r", 0).record).toBe(true);
    expect(b.note(["addr", "dev"], "x", "r", 1)).toEqual({ record: false, key: "dev" });
    // Another device from the same address is still within both budgets.
    expect(b.note(["addr", "dev2"], "x", "r", 2).record).toBe(true);
    expect(b.drain(0, true)).toEqual([{ key: "dev", action: "x", reason: "r", count: 1, from: 0, to: 0 }]);
  });

  it("keeps memory bounded: keys beyond maxKeys close the oldest windows, distinct reasons beyond maxKinds count as 'other'", () => {
    const b = new RefusalBudget({ perKey: () => 1, windowMs: 60_000, maxKeys: 50, maxKinds: 2 });
    for (let i = 0; i < 10_000; i++) b.note([`k${i}`], "a", "r", i);
    expect(b.size).toBe(50);
    for (const reason of ["r1", "r2", "r3", "r4", "r5"]) b.note(["k9999"], "a", reason, 10_000);
    const closed = b.drain(10_000, true).filter((c) => c.key === "k9999");
    expect(closed.map((c) => [c.reason, c.count])).toEqual([
      ["r1", 1],
      ["r2", 1],
      ["other", 3],
    ]);
  });

  it("keys an address by itself (IPv4, IPv4-mapped) or by its /64 (IPv6, however spelled)", () => {
    expect(addressKey("192.0.2.7")).toBe("192.0.2.7");
    expect(addressKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
    const a = addressKey("2001:db8:0:1::1");
    expect(a).toBe("2001:db8:0:1::/64");
    expect(addressKey("2001:0db8:0000:0001:ffff:ffff:ffff:ffff")).toBe(a);
    expect(addressKey("2001:DB8:0:1:0:0:0:2")).toBe(a);
    expect(addressKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
    expect(addressKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  });
});

/** Through the HTTP frontends, on a real SQLite file: who is limited, what is on record. */
describe("refused-request budgets at the doors", () => {
  let h: Harness;
  let app: ReturnType<typeof createApp>;
  const limits = { refusals: { perAddress: 5, perDevice: 3, window: "60s" } };
  let delays: number[] = [];

  beforeEach(async () => {
    delays = [];
    h = await harness({ config: { ...TEST_CONFIG, limits } });
    app = createApp({
      authority: h.authority,
      responders: h.responders,
      // The test names the client's address per request.
      peer: (c) => ({ remoteAddress: c.req.header("x-test-remote") ?? "192.0.2.1" }),
      logger: { request: () => undefined, error: () => undefined },
      // The tarpit before each 429, recorded instead of waited for.
      delay: async (ms) => {
        delays.push(ms);
      },
    });
  });
  afterEach(() => h.close());

  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
  const enroll = (from: string, user: string, token: string, body = "MAo=") =>
    app.request("https://est.test/.well-known/est/simpleenroll", {
      method: "POST",
      body,
      headers: { "content-type": "application/pkcs10", authorization: basic(user, token), "x-test-remote": from },
    });
  const refusalsOnRecord = async () =>
    (await h.storage.listAudit({ action: "est.simpleenroll", limit: 10_000 })).filter((e) => e.outcome === "denied");

  it("answers 429 with Retry-After past the budget, records one aggregate, and never limits another client", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 200; i++) statuses.push((await enroll("198.51.100.9", `dev-${i}`, "edt_wrong")).status);
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(new Set(statuses.slice(5))).toEqual(new Set([429]));
    // Each 429 was held for the tarpit (1 s by default); the 401s were not.
    expect(delays).toEqual(Array(195).fill(1000));
    const limited = await enroll("198.51.100.9", "dev-x", "edt_wrong");
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(await limited.text()).toMatch(/too many refused requests/);
    // Five refusals on record one by one, nothing for the other 196 yet.
    expect(await refusalsOnRecord()).toHaveLength(5);

    // Meanwhile a device at another address enrolls.
    const token = await createToken(h, "good-1");
    const csr = encodeBase64(await makeCsr(await generateKeys("P-256"), { cn: "good-1" }), 64);
    expect((await enroll("203.0.113.5", "good-1", token, csr)).status).toBe(200);

    h.clock.advance(30);
    expect((await enroll("198.51.100.9", "dev-y", "edt_wrong")).headers.get("retry-after")).toBe("30");
    h.clock.advance(30);
    await h.authority.refusals.flush();
    const records = await refusalsOnRecord();
    const aggregate = records.filter((e) => e.detail?.aggregated !== undefined);
    expect(aggregate).toHaveLength(1);
    expect(aggregate[0]).toMatchObject({
      remote: "198.51.100.9",
      detail: { reason: "rate_limited", aggregated: 197 },
    });
    expect(String(aggregate[0]?.detail?.message)).toMatch(
      /^197 refusals of reason rate_limited from address 198\.51\.100\.9/,
    );
    // The window is over: the client is answered (and audited) again.
    expect((await enroll("198.51.100.9", "dev-z", "edt_wrong")).status).toBe(401);
  });

  it("limits the claimed device id across addresses, without limiting other devices", async () => {
    const token = await createToken(h, "victim");
    for (let i = 0; i < 3; i++) expect((await enroll(`198.51.100.${i}`, "victim", "edt_wrong")).status).toBe(401);
    const limited = await enroll("198.51.100.200", "victim", token);
    expect(limited.status).toBe(429);
    // The token was not spent by the refused request, and another device is not affected.
    expect((await h.storage.listTokens("victim"))[0]?.usedAt ?? null).toBeNull();
    expect((await enroll("198.51.100.200", "other", "edt_wrong")).status).toBe(401);
    // After the window the device enrolls with its token.
    h.clock.advance(60);
    const csr = encodeBase64(await makeCsr(await generateKeys("P-256"), { cn: "victim" }), 64);
    expect((await enroll("198.51.100.200", "victim", token, csr)).status).toBe(200);
  });

  it("counts malformed OCSP requests without auditing each, then answers 429 tryLater", async () => {
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 20; i++) {
      last = await app.request("https://est.test/pki/ocsp", {
        method: "POST",
        body: new Uint8Array([0x30, 0x03, 0x02, 0x01, i]),
        headers: { "content-type": "application/ocsp-request", "x-test-remote": "198.51.100.77" },
      });
      statuses.push(last.status);
    }
    expect(statuses.slice(0, 5)).toEqual([400, 400, 400, 400, 400]);
    expect(new Set(statuses.slice(5))).toEqual(new Set([429]));
    expect(last?.headers.get("retry-after")).toBe("60");
    // OCSPResponse { responseStatus tryLater (3) }
    expect([...new Uint8Array(await (last as Response).arrayBuffer())]).toEqual([0x30, 0x03, 0x0a, 0x01, 0x03]);
    expect(await h.storage.listAudit({ action: "pki.ocsp", limit: 100 })).toHaveLength(0);
    h.clock.advance(60);
    await h.authority.refusals.flush();
    const records = await h.storage.listAudit({ action: "pki.ocsp", limit: 100 });
    expect(records.map((r) => [r.detail?.reason, r.detail?.aggregated])).toEqual([["rate_limited", 15]]);
  });

  it("limits failed operator API authentication and dashboard sign-in by address", async () => {
    const api = (from: string) =>
      app.request("https://est.test/api/v1/devices", {
        headers: { authorization: "Bearer edo_wrong", "x-test-remote": from },
      });
    for (let i = 0; i < 5; i++) expect((await api("198.51.100.50")).status).toBe(401);
    const limited = await api("198.51.100.50");
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("60");
    expect(await limited.json()).toMatchObject({ error: { code: "rate_limited" } });
    expect((await api("198.51.100.51")).status).toBe(401);

    const login = (from: string) =>
      app.request("https://est.test/dashboard/login", {
        method: "POST",
        body: new URLSearchParams({ token: "edo_wrong" }),
        headers: { "content-type": "application/x-www-form-urlencoded", "x-test-remote": from },
      });
    for (let i = 0; i < 5; i++) expect((await login("198.51.100.60")).status).toBe(401);
    const page = await login("198.51.100.60");
    expect(page.status).toBe(429);
    expect(page.headers.get("retry-after")).toBe("60");
  });

  it("drops MQTT CONNECTs past the budget of their address without a record, and aggregates them", async () => {
    const connect = (address: string, port: number) =>
      admitMqttClient(h.deps, h.authority.refusals, {
        certificate: new Uint8Array([0x30, 0x00]),
        clientId: "nobody",
        remote: `${address}:${port}`,
        address,
      }).then(
        () => "admitted",
        (e: AuthorityError) => e.reason,
      );
    const reasons: string[] = [];
    // A new source port each time: the budget is the address's.
    for (let port = 40000; port < 40010; port++) reasons.push(await connect("198.51.100.33", port));
    expect(reasons).toEqual([...Array(5).fill("unknown_certificate"), ...Array(5).fill("rate_limited")]);
    expect(await connect("198.51.100.34", 1)).toBe("unknown_certificate");
    const records = await h.storage.listAudit({ action: "mqtt.connect", limit: 100 });
    expect(records.filter((r) => r.remote?.startsWith("198.51.100.33:"))).toHaveLength(5);
    expect(records[0]?.detail).toMatchObject({ clientId: "nobody", reason: "unknown_certificate" });
    h.clock.advance(60);
    await h.authority.refusals.flush();
    const [aggregate] = await h.storage.listAudit({ action: "mqtt.connect", limit: 1 });
    expect(aggregate).toMatchObject({ remote: "198.51.100.33", detail: { reason: "rate_limited", aggregated: 5 } });
  });

  it("keeps the audit trail small under a flood of distinct refusals: one row per reason past the budget", async () => {
    for (let i = 0; i < 300; i++) {
      await enroll("198.51.100.99", `dev-${i}`, "edt_wrong", i % 2 ? "!!!" : "MAo=");
    }
    h.clock.advance(60);
    await h.authority.refusals.flush();
    const records = await refusalsOnRecord();
    // 5 within the budget (all answered 401 before the body is read), one aggregate for the 429s.
    expect(records.length).toBeLessThanOrEqual(6);
    const counted = records.reduce((n, r) => n + (Number(r.detail?.aggregated) || 1), 0);
    expect(counted).toBe(300);
  });
});
