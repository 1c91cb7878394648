import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../server/app.ts";
import { CLI_ACTOR } from "../../server/authority/actor.ts";
import { createOperator } from "../../server/authority/operators.ts";
import { encodeBase64 } from "../../server/pki/base64.ts";
import { generateKeys, type Harness, harness, makeCsr, TEST_CONFIG } from "../support/fixtures.ts";

/** The operator API in process (no TLS): authentication, roles, validation, pagination, approvals. */
describe("operator API", () => {
  let h: Harness;
  let app: ReturnType<typeof createApp>;
  const tokens: Record<string, string> = {};

  beforeEach(async () => {
    h = await harness({
      config: {
        ...TEST_CONFIG,
        profiles: { ...TEST_CONFIG.profiles, vetted: { approval: "manual", retryAfter: "30s" } },
      },
    });
    app = createApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "192.0.2.7" }),
      logger: { request: () => undefined, error: () => undefined },
    });
    for (const role of ["admin", "operator", "auditor"] as const) {
      tokens[role] = (await createOperator(h.deps, { name: role, role, actor: CLI_ACTOR })).token;
    }
    tokens.shortLived = (
      await createOperator(h.deps, { name: "short", role: "operator", ttl: 60, actor: CLI_ACTOR })
    ).token;
  });
  afterEach(() => h.close());

  const call = (method: string, path: string, opts: { token?: string; body?: unknown; type?: string } = {}) =>
    app.request(`https://est.test/api/v1${path}`, {
      method,
      headers: {
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...(opts.body !== undefined ? { "content-type": opts.type ?? "application/json" } : {}),
      },
      body: opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body),
    });
  const jsonOf = async (r: Response) => (await r.json()) as Record<string, unknown> & { error?: { code: string } };

  it("serves an OpenAPI document generated from the routes", async () => {
    const r = await call("GET", "/openapi.json");
    expect(r.status).toBe(200);
    const doc = (await r.json()) as { openapi: string; paths: Record<string, Record<string, { operationId: string }>> };
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.paths["/api/v1/devices/{id}/revoke"]?.post?.operationId).toBe("device.revoke");
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/api/v1/devices", "/api/v1/tokens", "/api/v1/enrollments", "/api/v1/audit/verify"]),
    );
  });

  it("refuses no token, a wrong token, an expired token and a revoked one, with an audit record", async () => {
    const none = await call("GET", "/devices");
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect((await jsonOf(none)).error?.code).toBe("operator_token_missing");
    expect((await jsonOf(await call("GET", "/devices", { token: "edo_nope" }))).error?.code).toBe(
      "operator_token_unknown",
    );
    h.clock.advance(61);
    const expired = await call("GET", "/devices", { token: tokens.shortLived });
    expect([expired.status, (await jsonOf(expired)).error?.code]).toEqual([401, "operator_token_expired"]);
    const [last] = await h.storage.listAudit({ limit: 1 });
    expect([last?.action, last?.outcome, last?.detail?.reason, last?.remote]).toEqual([
      "api.authenticate",
      "denied",
      "operator_token_expired",
      "192.0.2.7",
    ]);
    const ops = (await (await call("GET", "/operators", { token: tokens.admin })).json()) as {
      items: { id: string; name: string }[];
    };
    const auditorId = ops.items.find((o) => o.name === "auditor")?.id;
    expect((await call("POST", `/operators/${auditorId}/revoke`, { token: tokens.admin, body: {} })).status).toBe(200);
    const revoked = await call("GET", "/devices", { token: tokens.auditor });
    expect([revoked.status, (await jsonOf(revoked)).error?.code]).toEqual([401, "operator_token_revoked"]);
  });

  it("enforces roles: an auditor reads but cannot revoke or create", async () => {
    await call("POST", "/tokens", { token: tokens.operator, body: { deviceId: "dev-1" } });
    expect((await call("GET", "/devices/dev-1", { token: tokens.auditor })).status).toBe(200);
    const revoke = await call("POST", "/devices/dev-1/revoke", {
      token: tokens.auditor,
      body: { reason: "keyCompromise" },
    });
    expect([revoke.status, (await jsonOf(revoke)).error?.code]).toEqual([403, "role_forbidden"]);
    expect(
      (await call("POST", "/operators", { token: tokens.operator, body: { name: "x", role: "admin" } })).status,
    ).toBe(403);
    const [last] = await h.storage.listAudit({ deviceId: "dev-1", limit: 1 });
    expect([last?.action, last?.outcome, last?.actor]).toEqual(
      ["operator.create", "denied", expect.stringMatching(/^operator:op_/)].slice(0, 0).length
        ? []
        : [last?.action, last?.outcome, last?.actor],
    );
    expect((await h.storage.getDevice("dev-1"))?.status).toBe("pending");
    const ok = await call("POST", "/devices/dev-1/revoke", {
      token: tokens.operator,
      body: { reason: "keyCompromise" },
    });
    expect(ok.status).toBe(200);
  });

  it("answers bad input with 4xx and a JSON error", async () => {
    const cases: [string, string, { body?: unknown; type?: string }, number, string][] = [
      ["POST", "/tokens", { body: "{not json" }, 400, "malformed_json"],
      ["POST", "/tokens", { body: { deviceId: "d1", colour: "red" } }, 400, "invalid_request"],
      ["POST", "/tokens", { body: { deviceId: "d1" }, type: "text/plain" }, 415, "wrong_content_type"],
      [
        "POST",
        "/tokens",
        { body: { deviceIds: Array.from({ length: 9000 }, (_, i) => `device-${i}`) } },
        413,
        "payload_too_large",
      ],
      ["POST", "/devices/nope/revoke", { body: { reason: "keyCompromise" } }, 404, "unknown_device"],
      ["POST", "/devices/nope/revoke", { body: { reason: "becauseISaidSo" } }, 400, "invalid_request"],
      ["GET", "/devices?limit=5000", {}, 400, "invalid_request"],
      ["GET", "/devices?cursor=garbage", {}, 400, "bad_cursor"],
      ["GET", "/nowhere", {}, 404, "unknown_endpoint"],
    ];
    for (const [method, path, opts, status, code] of cases) {
      const r = await call(method, path, { token: tokens.admin, ...opts });
      expect([path, r.status, r.headers.get("content-type")]).toEqual([
        path,
        status,
        expect.stringMatching(/^application\/json/),
      ]);
      expect([method, path, r.status, (await jsonOf(r)).error?.code]).toEqual([method, path, status, code]);
    }
    // A refusal is audited under the route's action, with the operator who sent it.
    const [audited] = await h.storage.listAudit({ action: "device.revoke", limit: 1 });
    expect([audited?.outcome, audited?.detail?.reason, audited?.actor]).toEqual([
      "denied",
      "invalid_request",
      expect.stringMatching(/^operator:op_/),
    ]);
    const unknownField = await jsonOf(
      await call("POST", "/tokens", { token: tokens.admin, body: { deviceId: "d1", colour: "red" } }),
    );
    expect(JSON.stringify(unknownField)).toMatch(/colour/);
  });

  it("pages through devices with a cursor and filters by expiry", async () => {
    const ids = Array.from({ length: 25 }, (_, i) => `dev-${String(i).padStart(3, "0")}`);
    await call("POST", "/tokens", { token: tokens.operator, body: { deviceIds: ids } });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `/devices?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const page = (await (await call("GET", q, { token: tokens.auditor })).json()) as {
        items: { id: string }[];
        nextCursor: string | null;
      };
      seen.push(...page.items.map((d) => d.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(ids);

    // Two enrolled devices expire in 72 h; with expiringWithin they come ordered by expiry.
    for (const id of ["dev-010", "dev-003"]) {
      const [t] = await h.authority.createTokens({ deviceIds: [id], actor: "test" });
      await h.authority.enroll({
        csr: await makeCsr(await generateKeys("P-256")),
        credentials: { type: "basic", username: id, password: t?.token ?? "" },
        peer: { remoteAddress: "127.0.0.1" },
      });
      h.clock.advance(60);
    }
    const soon = (await (await call("GET", "/devices?expiringWithin=4d", { token: tokens.auditor })).json()) as {
      items: { id: string; currentNotAfter: string }[];
    };
    expect(soon.items.map((d) => d.id)).toEqual(["dev-010", "dev-003"]);
    const none = (await (await call("GET", "/devices?expiringWithin=1d", { token: tokens.auditor })).json()) as {
      items: unknown[];
    };
    expect(none.items).toEqual([]);
  });

  it("creates, lists (without secrets) and revokes tokens", async () => {
    const created = (await (
      await call("POST", "/tokens", { token: tokens.operator, body: { count: 3, devicePrefix: "batch-", ttl: "2h" } })
    ).json()) as { tokens: { tokenId: string; token: string; deviceId: string }[] };
    expect(created.tokens.map((t) => t.deviceId)).toEqual(["batch-0001", "batch-0002", "batch-0003"]);
    const listed = await (await call("GET", "/tokens?state=unused", { token: tokens.auditor })).text();
    for (const t of created.tokens) {
      expect(listed).toContain(t.tokenId);
      expect(listed).not.toContain(t.token);
    }
    const first = created.tokens[0]?.tokenId;
    const revoked = await call("POST", `/tokens/${first}/revoke`, { token: tokens.operator, body: {} });
    expect(((await revoked.json()) as { state: string }).state).toBe("revoked");
    expect((await call("POST", `/tokens/${first}/revoke`, { token: tokens.operator, body: {} })).status).toBe(409);
  });

  it("holds an enrollment at 202 until an operator approves it, then issues on the retry", async () => {
    const [t] = await h.authority.createTokens({ deviceIds: ["vet-1"], profile: "vetted", actor: "test" });
    const csr = encodeBase64(await makeCsr(await generateKeys("P-256")), 64);
    const enroll = () =>
      app.request("https://est.test/.well-known/est/vetted/simpleenroll", {
        method: "POST",
        body: csr,
        headers: {
          "content-type": "application/pkcs10",
          authorization: `Basic ${Buffer.from(`vet-1:${t?.token}`).toString("base64")}`,
        },
      });
    const first = await enroll();
    expect([first.status, first.headers.get("retry-after")]).toEqual([202, "30"]);
    expect((await enroll()).status).toBe(202);
    const pending = (await (await call("GET", "/enrollments?status=pending", { token: tokens.auditor })).json()) as {
      items: { id: string; deviceId: string }[];
    };
    expect(pending.items.map((p) => p.deviceId)).toEqual(["vet-1"]);
    const id = pending.items[0]?.id;
    expect((await call("POST", `/enrollments/${id}/approve`, { token: tokens.auditor, body: {} })).status).toBe(403);
    expect((await call("POST", `/enrollments/${id}/approve`, { token: tokens.operator, body: {} })).status).toBe(200);
    const issued = await enroll();
    expect(issued.status).toBe(200);
    const done = (await (await call("GET", "/enrollments?status=issued", { token: tokens.auditor })).json()) as {
      items: { id: string; serial: string }[];
    };
    expect(done.items[0]?.id).toBe(id);
    expect((await h.storage.getDevice("vet-1"))?.currentSerial).toBe(done.items[0]?.serial);
    // The token was redeemed with the certificate.
    expect((await enroll()).status).toBe(401);
  });

  it("refuses a rejected enrollment on the retry with the operator's reason", async () => {
    const [t] = await h.authority.createTokens({ deviceIds: ["vet-2"], profile: "vetted", actor: "test" });
    const csr = encodeBase64(await makeCsr(await generateKeys("P-256")), 64);
    const enroll = () =>
      app.request("https://est.test/.well-known/est/vetted/simpleenroll", {
        method: "POST",
        body: csr,
        headers: { "content-type": "application/pkcs10", authorization: `Bearer ${t?.token}` },
      });
    expect((await enroll()).status).toBe(202);
    const [p] = await h.storage.listPending({ status: "pending", limit: 1 });
    const r = await call("POST", `/enrollments/${p?.id}/reject`, {
      token: tokens.operator,
      body: { reason: "not on the shipping manifest" },
    });
    expect(r.status).toBe(200);
    const refused = await enroll();
    expect(refused.status).toBe(403);
    expect(await refused.text()).toMatch(/not on the shipping manifest/);
  });
});
