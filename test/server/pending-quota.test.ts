import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CLI_ACTOR } from "../../server/authority/actor.ts";
import {
  createToken,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  refusal,
  TEST_CONFIG,
} from "../support/fixtures.ts";

/**
 * A token holder on a manual-approval profile cannot fill the operators' queue: each new
 * key is a new request, and a device has at most `limits.pendingPerDevice` waiting.
 */
describe("enrollment requests waiting for approval: a quota per device", () => {
  let h: Harness;
  let token: string;

  beforeEach(async () => {
    h = await harness({
      config: {
        ...TEST_CONFIG,
        profiles: { ...TEST_CONFIG.profiles, vetted: { approval: "manual", retryAfter: "30s" } },
        limits: { pendingPerDevice: 3 },
      },
    });
    token = await createToken(h, "cam-1", { profile: "vetted" });
  });
  afterEach(() => h.close());

  const request = async (csr: Uint8Array) =>
    refusal(
      h.authority.enroll({
        label: "vetted",
        csr,
        credentials: { type: "basic", username: "cam-1", password: token },
        peer: { remoteAddress: "192.0.2.8" },
      }),
    );
  const newCsr = async () => makeCsr(await generateKeys("P-256"), { cn: "cam-1" });
  const waiting = async () =>
    (await h.authority.enrollments.list(CLI_ACTOR, { status: "pending", limit: 100 })).items.filter(
      (p) => p.deviceId === "cam-1",
    );

  it("refuses a fourth new key, keeps answering the waiting ones, and takes a new one after a rejection", async () => {
    const csrs = [await newCsr(), await newCsr(), await newCsr()];
    for (const csr of csrs) expect(await request(csr)).toMatchObject({ code: "pending", reason: "approval_pending" });
    expect(await request(await newCsr())).toMatchObject({ code: "forbidden", reason: "pending_quota_exceeded" });
    expect(await waiting()).toHaveLength(3);
    // A retry of a waiting request is not a new one.
    expect(await request(csrs[0] as Uint8Array)).toMatchObject({ code: "pending" });
    // An operator rejects one: there is room for one more.
    const [first] = await waiting();
    await h.authority.enrollments.reject(CLI_ACTOR, (first as { id: string }).id, "duplicate");
    expect(await request(await newCsr())).toMatchObject({ code: "pending" });
    expect(await request(await newCsr())).toMatchObject({ reason: "pending_quota_exceeded" });
    const refused = await h.storage.listAudit({ deviceId: "cam-1", limit: 100 });
    expect(refused.filter((e) => e.detail?.reason === "pending_quota_exceeded")).toHaveLength(2);
  });

  it("holds under concurrent requests: the quota is a guard inside the write set", async () => {
    const csrs = await Promise.all(Array.from({ length: 12 }, newCsr));
    const outcomes = await Promise.all(csrs.map(request));
    expect(outcomes.filter((o) => o.code === "pending")).toHaveLength(3);
    expect(outcomes.filter((o) => o.reason === "pending_quota_exceeded")).toHaveLength(9);
    expect(await waiting()).toHaveLength(3);
  });
});
