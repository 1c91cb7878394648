import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../server/app.ts";
import { type Actor, CLI_ACTOR } from "../../server/authority/actor.ts";
import { MAX_TOKENS_PER_REQUEST } from "../../server/authority/tokens.ts";
import { type Harness, harness } from "../support/fixtures.ts";

/** The core's doors: each verb checks the role and audits its refusal once, whoever calls it. */
describe("resource doors", () => {
  let h: Harness;
  let auditor: Actor;
  let operator: Actor;

  beforeEach(async () => {
    h = await harness();
    const signIn = async (role: "auditor" | "operator", remote: string) => {
      const { token } = await h.authority.operators.create(CLI_ACTOR, { name: role, role });
      return h.authority.operators.authenticate(token, remote);
    };
    auditor = await signIn("auditor", "192.0.2.44");
    operator = await signIn("operator", "192.0.2.45");
  });
  afterEach(() => h.close());

  const denials = async (action: string) =>
    (await h.storage.listAudit({ action, limit: 50 })).filter((a) => a.outcome === "denied");

  it("refuses a verb the role does not allow and records it once, with the actor, address and device", async () => {
    await h.authority.tokens.create(operator, { deviceIds: ["door-1"] });
    await expect(h.authority.devices.revoke(auditor, "door-1", { reason: "keyCompromise" })).rejects.toMatchObject({
      code: "forbidden",
      reason: "role_forbidden",
    });
    const [denied, ...more] = await denials("device.revoke");
    expect(more).toEqual([]);
    expect(denied).toMatchObject({ actor: auditor.id, remote: "192.0.2.44", deviceId: "door-1" });
    expect(denied?.detail?.reason).toBe("role_forbidden");
    expect((await h.storage.getDevice("door-1"))?.status).toBe("pending");
  });

  it("records a refusal once when a frontend answers it too", async () => {
    const { token } = await h.authority.operators.create(CLI_ACTOR, { name: "reader", role: "auditor" });
    const app = createApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "192.0.2.46" }),
      logger: { request: () => undefined, error: () => undefined },
    });
    const r = await app.request("https://est.test/api/v1/tokens", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ deviceId: "door-2" }),
    });
    expect(r.status).toBe(403);
    const recorded = await denials("token.create");
    expect(recorded.map((a) => [a.remote, a.detail?.reason])).toEqual([["192.0.2.46", "role_forbidden"]]);
  });

  it("applies the batch limit in the verb", async () => {
    await expect(
      h.authority.tokens.create(operator, { series: { prefix: "b-", start: 1, count: MAX_TOKENS_PER_REQUEST + 1 } }),
    ).rejects.toMatchObject({ code: "bad_request" });
    expect(await denials("token.create")).toHaveLength(1);
    const created = await h.authority.tokens.create(operator, { series: { prefix: "b-", start: 7, count: 2 } });
    expect(created.map((t) => t.deviceId)).toEqual(["b-0007", "b-0008"]);
    // One part of a larger series keeps the whole series' numbering.
    const part = await h.authority.tokens.create(operator, {
      series: { prefix: "c-", start: 9999, count: 2, width: 6 },
    });
    expect(part.map((t) => t.deviceId)).toEqual(["c-009999", "c-010000"]);
  });
});
