/**
 * Revocation is final on D1 too (issue 17): inside workerd with the local D1 database,
 * renewals (through the Worker, `SELF.fetch`) race a device revocation committed
 * straight to D1 as another isolate or the CLI would, and enrollments race the
 * revocation of their token. Each write set carries its preconditions into the D1
 * `batch` (write_guards rows that fail a named CHECK), so whatever order the batches
 * commit in, nothing issued after a revocation survives it.
 *
 * The revocation's start is moved from round to round, measured in events rather than
 * time (no sleeps): before the requests are sent, after n other requests the Worker
 * served meanwhile, or once the first (second) renewal answered. Round counts and
 * outcomes are put in each race test's `meta` (the JSON report, test-artifacts/vitest.json).
 */
import "reflect-metadata";
import { applyD1Migrations, env, SELF } from "cloudflare:test";
import * as x509 from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import { D1Storage } from "../../server/adapters/storage/d1-storage.ts";
import type { Actor } from "../../server/authority/actor.ts";
import { AuthorityError } from "../../server/authority/errors.ts";
import { revokeToken } from "../../server/authority/inventory.ts";
import { revokeDevice } from "../../server/authority/revoke.ts";
import { createTokens } from "../../server/authority/tokens.ts";
import { StorageConflictError } from "../../server/ports/storage.ts";
import { registerOperator } from "../support/operators.ts";
import { BASE, basic, certificateOf, coreDeps, csr, ocspStatus } from "./worker-client.ts";

/**
 * Write sets of the Worker refused by a write guard, by constraint, counted where they
 * fail: its D1 binding's batch (the test's own writes go around the count).
 */
let onGuardFailure: (constraint: string) => void = () => {};
const batch = env.DB.batch.bind(env.DB);
env.DB.batch = (async (statements: Parameters<typeof batch>[0]) => {
  try {
    return await batch(statements);
  } catch (err) {
    for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
      const m = /CHECK constraint failed: (\w+)/.exec(String((e as { message?: unknown }).message ?? ""));
      if (m) {
        onGuardFailure(m[1] as string);
        break;
      }
    }
    throw err;
  }
}) as typeof env.DB.batch;
const storage = new D1Storage({ prepare: (q: string) => env.DB.prepare(q), batch }, crypto.subtle);
const deps = coreDeps(storage);

/** Rounds of each race, and renewals sent at once per round. */
const ROUNDS = 50;
const RENEWALS = 6;
const OPERATOR: Actor = { id: "operator:race", role: "operator" };

beforeAll(async () => {
  await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
  // Operator actions are guarded on their operator being active: it must exist.
  await registerOperator({ storage }, OPERATOR);
});

async function newToken(deviceId: string): Promise<{ tokenId: string; token: string }> {
  const [t] = await createTokens(deps, { deviceIds: [deviceId], actor: "cli" });
  return t as { tokenId: string; token: string };
}

function enroll(deviceId: string, secret: string, body: string) {
  return SELF.fetch(`${BASE}/.well-known/est/simpleenroll`, {
    method: "POST",
    headers: { "content-type": "application/pkcs10", authorization: basic(deviceId, secret) },
    body,
  });
}

/** simplereenroll with the identity Cloudflare passes for a verified client certificate. */
function reenroll(fingerprint: string, body: string) {
  return SELF.fetch(`${BASE}/.well-known/est/simplereenroll`, {
    method: "POST",
    headers: { "content-type": "application/pkcs10" },
    body,
    cf: { tlsClientAuth: { certPresented: "1", certVerified: "SUCCESS", certFingerprintSHA256: fingerprint } },
  });
}

async function fingerprintOf(cert: x509.X509Certificate): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", cert.rawData);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A request the Worker answers without touching the database. Offsets are counted in
 * these (requests served while the race runs), not in time. Not in D1 reads: in one
 * isolate, a test that keeps awaiting D1 starves the Worker's requests, which then make
 * no progress at all until the test stops reading.
 */
const served = async () => {
  await (await SELF.fetch(`${BASE}/.well-known/est/csrattrs`)).arrayBuffer();
};

async function serve(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await served();
}

/** How many such requests are served before `done` holds (bounded, should it never hold). */
async function servedUntil(done: () => boolean): Promise<number> {
  let n = 0;
  for (; !done() && n < 1000; n++) await served();
  return n;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

type Answer = { status: number; text: string };
const answerOf = async (r: Response): Promise<Answer> => ({ status: r.status, text: await r.text() });

async function enrolledDevice(deviceId: string): Promise<{ fingerprint: string; bodies: string[] }> {
  const { token } = await newToken(deviceId);
  const enrolled = await enroll(deviceId, token, await csr(deviceId));
  expect(enrolled.status, await enrolled.clone().text()).toBe(200);
  const fingerprint = await fingerprintOf(certificateOf(await enrolled.text()));
  const bodies = await Promise.all(Array.from({ length: RENEWALS }, () => csr(deviceId)));
  return { fingerprint, bodies };
}

describe("revocation races on D1 inside workerd", () => {
  it("a failed precondition aborts the whole D1 batch with a conflict naming it", async () => {
    const { token } = await newToken("race-guard");
    expect((await enroll("race-guard", token, await csr("race-guard"))).status).toBe(200);
    const device = await storage.getDevice("race-guard");
    expect(device?.revision).toBeTypeOf("number");
    const audit = async () => (await storage.listAudit({ deviceId: "race-guard", limit: 1000 })).length;
    const event = (note: string) => ({
      kind: "audit" as const,
      event: {
        at: new Date(),
        actor: "cli",
        action: "test.guard",
        outcome: "success" as const,
        deviceId: "race-guard",
        detail: { note },
      },
    });
    const before = await audit();
    const stale = {
      kind: "require" as const,
      precondition: { name: "device_unchanged" as const, deviceId: "race-guard", revision: 999 },
    };
    const refused = await storage.apply([stale, event("guard first")]).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StorageConflictError);
    expect((refused as StorageConflictError).constraint).toBe("device_unchanged");
    expect(await audit()).toBe(before);
    // The guard after a write: the batch is one transaction, the write before it is undone too.
    const late = await storage.apply([event("guard last"), stale]).catch((e: unknown) => e);
    expect((late as StorageConflictError).constraint).toBe("device_unchanged");
    expect(await audit()).toBe(before);
    // The same set with the revision as read is applied: the guard is not simply always failing.
    await storage.apply([
      {
        kind: "require",
        precondition: { name: "device_unchanged", deviceId: "race-guard", revision: device?.revision ?? 0 },
      },
      event("guard holds"),
    ]);
    expect(await audit()).toBe(before + 1);
    expect((await storage.getDevice("race-guard"))?.revision).toBe(device?.revision);
  });

  it(`a device revoked while ${RENEWALS} renewals with its certificate are in flight stays revoked (${ROUNDS} rounds)`, async ({
    task,
  }) => {
    const started = Date.now();
    // How many requests the Worker serves between sending the renewals and the first answer.
    const calibration: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { fingerprint, bodies } = await enrolledDevice(`race-cal-${i}`);
      let answered = false;
      const renewals = bodies.map((body) =>
        reenroll(fingerprint, body)
          .then(answerOf)
          .finally(() => {
            answered = true;
          }),
      );
      calibration.push(await servedUntil(() => answered));
      expect((await Promise.all(renewals)).filter((a) => a.status === 200).length).toBeGreaterThan(0);
    }
    const firstAnswer = median(calibration);
    // Before the renewals are sent, after n requests served (up to just past the first
    // answer), or once the first / second renewal answered.
    const offsets: string[] = [
      "at once",
      ...Array.from({ length: firstAnswer + 2 }, (_, n) => `${n} served`),
      "1 answered",
      "2 answered",
    ];

    const totals = {
      renewedBefore: 0,
      refusedRevoked: 0,
      refusedSuperseded: 0,
      conflicts: 0,
      roundsWithRenewalBefore: 0,
      roundsAllRefused: 0,
      roundsMixed: 0,
    };
    // The Worker's renewal batches that a guard refused (sibling renewals, the revocation).
    const guardFailures: Record<string, number> = {};
    onGuardFailure = (constraint) => {
      guardFailures[constraint] = (guardFailures[constraint] ?? 0) + 1;
    };
    const byOffset: Record<string, { rounds: number; renewedBefore: number; refusedRevoked: number }> = {};
    for (let round = 0; round < ROUNDS; round++) {
      const deviceId = `race-dev-${round}`;
      const offset = offsets[round % offsets.length] as string;
      const { fingerprint, bodies } = await enrolledDevice(deviceId);
      const revoke = () => revokeDevice(deps, { deviceId, reason: "keyCompromise", actor: OPERATOR });
      let revocation: ReturnType<typeof revoke> | undefined;
      if (offset === "at once") revocation = revoke();
      let answered = 0;
      const enough = Number.parseInt(offset, 10);
      let onAnswer: () => void = () => {};
      const enoughAnswered = new Promise<void>((resolve) => {
        onAnswer = () => {
          if (++answered === enough) resolve();
        };
      });
      const renewals = bodies.map((body) => reenroll(fingerprint, body).then(answerOf).finally(onAnswer));
      if (offset.endsWith(" answered")) {
        await enoughAnswered;
        revocation = revoke();
      } else if (offset.endsWith(" served")) {
        await serve(enough);
        revocation = revoke();
      }
      const revoked = await revocation;
      const answers = await Promise.all(renewals);

      // The device and every certificate it ever had are revoked: in the store and over OCSP.
      expect(revoked?.device.status).toBe("revoked");
      expect((await storage.getDevice(deviceId))?.status).toBe("revoked");
      const certificates = await storage.listCertificates(deviceId);
      for (const c of certificates) {
        expect(c.status, `${deviceId} ${c.serial}`).toBe("revoked");
        expect((await storage.getCertificateStatus(c.serial))?.status).toBe("revoked");
        expect(await ocspStatus(c.serial), `OCSP ${deviceId} ${c.serial}`).toBe(1);
      }
      // Revoked by the revocation, unless a lost-response retry revoked it as superseded first.
      const revokedNow = new Set(revoked?.serials);
      for (const c of certificates) {
        if (c.revocationReason !== 4) expect(revokedNow.has(c.serial), `${deviceId} ${c.serial}`).toBe(true);
      }

      // Nothing issued after the revocation committed: audit ids are in commit order.
      const caller = await storage.listAudit({ deviceId, limit: 1000 });
      const revocations = caller.filter((e) => e.action === "device.revoke" && e.outcome === "success");
      expect(revocations).toHaveLength(1);
      const revokedAt = (revocations[0] as { id: number }).id;
      const renewed = caller.filter((e) => e.action === "est.simplereenroll" && e.outcome === "success");
      for (const e of renewed) expect(e.id, `${deviceId} renewal ${e.serial}`).toBeLessThan(revokedAt);
      // Every 200 is one of those renewals, and its certificate is among the revoked ones.
      const ok = answers.filter((a) => a.status === 200);
      expect(ok.length).toBe(renewed.length);
      const serials = new Set(certificates.map((c) => c.serial));
      for (const a of ok) {
        const serial = certificateOf(a.text)
          .serialNumber.toLowerCase()
          .replace(/^00(?=[89a-f])/, "");
        expect(serials.has(serial)).toBe(true);
      }
      for (const a of answers) expect([200, 403, 409], a.text).toContain(a.status);
      const refusedRevoked = answers.filter((a) => a.status === 403 && /revoked/.test(a.text)).length;
      const refusedSuperseded = answers.filter((a) => a.status === 403 && /superseded/.test(a.text)).length;
      expect(refusedRevoked + refusedSuperseded).toBe(answers.filter((a) => a.status === 403).length);

      totals.renewedBefore += renewed.length;
      totals.refusedRevoked += refusedRevoked;
      totals.refusedSuperseded += refusedSuperseded;
      totals.conflicts += answers.filter((a) => a.status === 409).length;
      if (renewed.length > 0) totals.roundsWithRenewalBefore++;
      else totals.roundsAllRefused++;
      if (renewed.length > 0 && refusedRevoked > 0) totals.roundsMixed++;
      const slot = byOffset[offset] ?? { rounds: 0, renewedBefore: 0, refusedRevoked: 0 };
      byOffset[offset] = {
        rounds: slot.rounds + 1,
        renewedBefore: slot.renewedBefore + renewed.length,
        refusedRevoked: slot.refusedRevoked + refusedRevoked,
      };
    }
    // The outcomes, in the JSON report (test-artifacts/vitest.json, this test's `meta`).
    Object.assign(task.meta, {
      race: {
        name: "device revocation vs renewals",
        rounds: ROUNDS,
        renewalsPerRound: RENEWALS,
        ms: Date.now() - started,
        servedBeforeFirstAnswer: calibration,
        ...totals,
        workerGuardFailures: guardFailures,
        byOffset,
      },
    });
    // The race was run, not just one side of it: renewals committed before a revocation,
    // rounds had every renewal refused, and in some rounds the revocation came between.
    expect(totals.renewedBefore).toBeGreaterThan(0);
    expect(totals.roundsAllRefused).toBeGreaterThan(0);
    expect(totals.roundsMixed).toBeGreaterThan(0);
  }, 120_000);

  it(`a token revoked while its enrollment is in flight is either redeemed or revoked, never both (${ROUNDS} rounds)`, async ({
    task,
  }) => {
    const started = Date.now();
    // How many requests the Worker serves between sending the enrollment and its answer.
    const calibration: number[] = [];
    for (let i = 0; i < 3; i++) {
      const deviceId = `race-tcal-${i}`;
      const { token } = await newToken(deviceId);
      let answered = false;
      const enrollment = enroll(deviceId, token, await csr(deviceId))
        .then(answerOf)
        .finally(() => {
          answered = true;
        });
      calibration.push(await servedUntil(() => answered));
      expect((await enrollment).status).toBe(200);
    }
    const offsets = Array.from({ length: median(calibration) + 2 }, (_, n) => n);

    const wins = { enrollment: 0, revocation: 0 };
    // Enrollments that got past the checks up front and were stopped inside their batch.
    const guardFailures: Record<string, number> = {};
    onGuardFailure = (constraint) => {
      guardFailures[constraint] = (guardFailures[constraint] ?? 0) + 1;
    };
    const byOffset: Record<string, { enrollment: number; revocation: number }> = {};
    for (let round = 0; round < ROUNDS; round++) {
      const deviceId = `race-tok-${round}`;
      const n = offsets[round % offsets.length] as number;
      const { tokenId, token } = await newToken(deviceId);
      const body = await csr(deviceId);
      const enrollment = enroll(deviceId, token, body).then(answerOf);
      await serve(n);
      const revocation = await revokeToken(deps, OPERATOR, tokenId).then(
        () => "revoked" as const,
        (e: unknown) => e,
      );
      const answer = await enrollment;
      const stored = await storage.getToken(tokenId);
      const certificates = await storage.listCertificates(deviceId);
      if (answer.status === 200) {
        expect(revocation, `round ${round}: both the enrollment and the revocation won`).toBeInstanceOf(AuthorityError);
        expect((revocation as AuthorityError).reason).toBe("token_used");
        expect(stored?.usedAt).not.toBeNull();
        expect(stored?.revokedAt).toBeNull();
        expect(certificates).toHaveLength(1);
        expect(stored?.usedSerial).toBe(certificates[0]?.serial);
        wins.enrollment++;
      } else {
        expect(answer.status, answer.text).toBe(401);
        expect(revocation, `round ${round}: neither won`).toBe("revoked");
        expect(stored?.revokedAt).not.toBeNull();
        expect(stored?.usedAt).toBeNull();
        expect(certificates).toHaveLength(0);
        wins.revocation++;
      }
      const slot = byOffset[`${n} served`] ?? { enrollment: 0, revocation: 0 };
      slot[answer.status === 200 ? "enrollment" : "revocation"]++;
      byOffset[`${n} served`] = slot;
    }
    // The outcomes, in the JSON report (test-artifacts/vitest.json, this test's `meta`).
    Object.assign(task.meta, {
      race: {
        name: "token revocation vs enrollment",
        rounds: ROUNDS,
        ms: Date.now() - started,
        servedBeforeAnswer: calibration,
        wins,
        workerGuardFailures: guardFailures,
        byOffset,
      },
    });
    expect(wins.enrollment + wins.revocation).toBe(ROUNDS);
    // Both sides won at least once: the revocation landed both before and after the redemption.
    expect(wins.enrollment).toBeGreaterThan(0);
    expect(wins.revocation).toBeGreaterThan(0);
  }, 120_000);
});
