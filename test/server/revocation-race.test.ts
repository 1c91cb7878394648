/**
 * Revocation is final (issue 17): issuances racing a revocation, in process over a real
 * SQLite file. Each round starts renewals or enrollments and, a varying number of
 * event-loop turns later, the revocation; whatever interleaving results, once the
 * revocation has committed the device stays revoked, every certificate it holds is
 * revoked (in storage, OCSP and the next CRL), and no issuance committed after it.
 * Audit record ids are in commit order, which is how "after" is measured.
 */
import * as pkijs from "pkijs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Actor } from "../../server/authority/actor.ts";
import { AuthorityError } from "../../server/authority/errors.ts";
import { runFleetAudit } from "../../server/authority/fleet-audit.ts";
import { issueTokens, revokeToken } from "../../server/authority/inventory.ts";
import { signForDevice } from "../../server/authority/operator-issue.ts";
import { revokeDevice } from "../../server/authority/revoke.ts";
import type { ConfigInput } from "../../server/config/schema.ts";
import {
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  makeIdevidCert,
  makeTestCa,
  peer,
  T0,
  TEST_CONFIG,
  type TestCa,
} from "../support/fixtures.ts";
import { ocspStatus } from "../support/ocsp.ts";
import { registerOperator } from "../support/operators.ts";

const OPERATOR: Actor = { id: "operator:op_race", role: "operator" };
const ROUNDS = 50;
const RENEWALS = 6;

const CONFIG: ConfigInput = {
  ...TEST_CONFIG,
  profiles: {
    ...TEST_CONFIG.profiles,
    factory: { idevid: { trustBundle: "acme.pem" } },
    gateway: { gateway: { applianceProfile: "appliance", maxAppliances: 1000 } },
    appliance: { keyTypes: ["P-256"], validity: "90d" },
  },
};

/** Lets `turns` event-loop turns pass: how far into the issuances the revocation starts. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    () => "issued",
    (e: unknown) => (e instanceof AuthorityError ? `${e.code}:${e.reason}` : `error:${String(e)}`),
  );

describe("revocation racing issuance", () => {
  let h: Harness;
  let acme: TestCa;

  beforeEach(async () => {
    acme = await makeTestCa(T0, "Acme");
    h = await harness({ config: CONFIG, idevidAnchors: new Map([["factory", [acme.root]]]) });
    await registerOperator(h, OPERATOR);
  });
  afterEach(() => h.close());

  const token = async (deviceId: string, profile?: string) => {
    const [t] = await h.authority.createTokens({ deviceIds: [deviceId], actor: "test", profile });
    return t as { token: string; tokenId: string };
  };
  const enrollWithToken = async (deviceId: string, secret: string, label?: string) =>
    h.authority.enroll({
      label,
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: deviceId, password: secret },
      peer: peer(),
    });
  const revoke = (deviceId: string, cascade = false) =>
    revokeDevice(h.deps, { deviceId, reason: "keyCompromise", actor: OPERATOR, cascade });

  const ocspTag = async (serialHex: string) => (await ocspStatus(h, serialHex)).tag;
  const crlSerials = async () => {
    await h.responders.rebuildCrls();
    const crl = h.responders.currentCrl("issuing-p256");
    const parsed = pkijs.CertificateRevocationList.fromBER(crl?.der as Uint8Array<ArrayBuffer>);
    return new Set(
      (parsed.revokedCertificates ?? []).map((r) =>
        Buffer.from(r.userCertificate.valueBlock.valueHexView).toString("hex").replace(/^00/, ""),
      ),
    );
  };

  /**
   * What must hold once a device's revocation committed: it is revoked, every one of its
   * certificates is revoked in storage and in OCSP, and no issuance for it was recorded
   * after the revocation. Returns its serials (for the CRL check).
   */
  const assertFinal = async (deviceId: string): Promise<string[]> => {
    expect((await h.storage.getDevice(deviceId))?.status).toBe("revoked");
    const certificates = await h.storage.listCertificates(deviceId);
    for (const c of certificates) {
      expect([c.serial, c.status]).toEqual([c.serial, "revoked"]);
      expect(await ocspTag(c.serial)).toBe(1);
    }
    const audit = await h.storage.listAudit({ deviceId, limit: 1000 });
    const revokedAt = audit.find((a) => a.action === "device.revoke" && a.outcome === "success")?.id;
    expect(revokedAt).toBeDefined();
    const issuedAfter = audit.filter(
      (a) => a.outcome === "success" && a.action.startsWith("est.") && a.id > (revokedAt as number),
    );
    expect(issuedAfter).toEqual([]);
    return certificates.map((c) => c.serial);
  };

  it(`renewals racing a revocation: nothing issued after it commits (${ROUNDS} rounds × ${RENEWALS} renewals)`, async () => {
    const tally = new Map<string, number>();
    const revoked: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const id = `race-${round}`;
      const { token: secret } = await token(id);
      const first = await enrollWithToken(id, secret);
      const csrs = await Promise.all(
        Array.from({ length: RENEWALS }, async () => makeCsr(await generateKeys("P-256"))),
      );
      const renewals = csrs.map((csr) => outcome(h.authority.reenroll({ csr, peer: peer([first.certificate]) })));
      await turns(round % 12);
      const revocation = revoke(id);
      for (const o of await Promise.all(renewals)) tally.set(o, (tally.get(o) ?? 0) + 1);
      await revocation;
      revoked.push(...(await assertFinal(id)));
      // After the revocation, the device's newest certificate renews no more.
      const newest = (await h.storage.listCertificates(id))[0];
      const again = await h.storage.getCertificate(newest?.serial ?? "");
      expect(again?.status).toBe("revoked");
    }
    const crl = await crlSerials();
    expect(revoked.filter((s) => !crl.has(s))).toEqual([]);
    // The race is exercised both ways over the rounds: some renewals won, some were refused.
    expect(tally.get("issued") ?? 0).toBeGreaterThan(0);
    expect([...tally.keys()].filter((k) => k !== "issued").length).toBeGreaterThan(0);
    expect([...tally.keys()].filter((k) => k.startsWith("error:"))).toEqual([]);
  });

  it("renewals after expiry racing a revocation: the revocation still wins (20 rounds × 4)", async () => {
    const tally = new Map<string, number>();
    for (let round = 0; round < 20; round++) {
      const id = `away-${round}`;
      const { token: secret } = await token(id);
      const first = await enrollWithToken(id, secret);
      // Offline past the 72 h lifetime, within the 30-day window.
      h.clock.advance(4 * 86400);
      const csrs = await Promise.all(Array.from({ length: 4 }, async () => makeCsr(await generateKeys("P-256"))));
      const renew = () => csrs.map((csr) => outcome(h.authority.reenroll({ csr, peer: peer([first.certificate]) })));
      let outcomes: string[];
      if (round % 4 === 0) {
        // Renewals first (one wins, the rest are superseded), then the revocation.
        outcomes = await Promise.all(renew());
        await revoke(id);
      } else if (round % 4 === 1) {
        // The revocation first: every renewal after expiry is refused.
        await revoke(id);
        outcomes = await Promise.all(renew());
      } else {
        // A real race, the revocation starting a few turns into the renewals.
        const renewals = renew();
        await turns(round % 10);
        const revocation = revoke(id);
        outcomes = await Promise.all(renewals);
        await revocation;
      }
      for (const o of outcomes) tally.set(o, (tally.get(o) ?? 0) + 1);
      await assertFinal(id);
    }
    // Both ways are exercised by construction (rounds 0 and 1 of every 4).
    expect(tally.get("issued") ?? 0).toBeGreaterThan(0);
    expect(tally.get("forbidden:client_certificate_revoked") ?? 0).toBeGreaterThan(0);
    expect([...tally.keys()].filter((k) => k.startsWith("error:"))).toEqual([]);
  });

  it("token, IDevID and gateway-appliance enrollments racing a revocation", async () => {
    const idevidFor = async (serialNumber: string) => (await makeIdevidCert(acme.issuing, serialNumber)).der;
    const seen = new Map<string, number>();
    const count = (o: string) => seen.set(o, (seen.get(o) ?? 0) + 1);
    const rounds = 20;
    for (let round = 0; round < rounds; round++) {
      // A pending device: its token enrollment against its revocation.
      const pendingId = `tok-${round}`;
      const { token: secret } = await token(pendingId);
      const tokenEnrollment = outcome(enrollWithToken(pendingId, secret));
      // An IDevID device enrolling again (bound at its first enrollment).
      const idevidId = `SN-${round}`;
      const idevid = await idevidFor(idevidId);
      const chain = [idevid, acme.issuing.certificate];
      await h.authority.enroll({
        label: "factory",
        csr: await makeCsr(await generateKeys("P-256")),
        peer: peer(chain),
      });
      const idevidEnrollments = Array.from({ length: 3 }, async () =>
        outcome(
          h.authority.enroll({ label: "factory", csr: await makeCsr(await generateKeys("P-256")), peer: peer(chain) }),
        ),
      );
      // A gateway enrolling appliances, revoked with cascade.
      const gw = `gw-${round}`;
      const gateway = await enrollWithToken(gw, (await token(gw, "gateway")).token, "gateway");
      const appliances = Array.from({ length: 3 }, async (_, i) =>
        outcome(
          h.authority.enroll({
            label: "appliance",
            csr: await makeCsr(await generateKeys("P-256"), {
              sans: [{ type: "url", value: `spiffe://example.org/gateway/${gw}/appliance/a${i}` }],
            }),
            peer: peer([gateway.certificate]),
          }),
        ),
      );
      await turns(round % 8);
      const revocations = [revoke(pendingId), revoke(idevidId), revoke(gw, true)];
      for (const o of await Promise.all([tokenEnrollment, ...idevidEnrollments, ...appliances])) count(o);
      await Promise.all(revocations);
      await assertFinal(pendingId);
      await assertFinal(idevidId);
      await assertFinal(gw);
      for (let i = 0; i < 3; i++) {
        const appliance = await h.storage.getDevice(`${gw}~a${i}`);
        // An appliance enrolled before the cascade committed was revoked with it.
        if (appliance) await assertFinal(appliance.id);
      }
    }
    expect(seen.get("issued") ?? 0).toBeGreaterThan(0);
    expect([...seen.keys()].filter((k) => k.startsWith("error:"))).toEqual([]);
  });

  it("one key enrolled for two devices at once: one wins, inside the write set", async () => {
    let refusedInside = 0;
    for (let round = 0; round < 20; round++) {
      const keys = await generateKeys("P-256");
      const ids = [`ka-${round}`, `kb-${round}`];
      const secrets = await Promise.all(ids.map(async (id) => (await token(id)).token));
      const csr = await makeCsr(keys);
      const results = await Promise.all(
        ids.map((id, i) =>
          outcome(
            h.authority.enroll({
              csr,
              credentials: { type: "basic", username: id, password: secrets[i] as string },
              peer: peer(),
            }),
          ),
        ),
      );
      expect(results.sort()).toEqual(["forbidden:key_in_use", "issued"]);
      const holders = await Promise.all(ids.map((id) => h.storage.listCertificates(id)));
      expect(holders.map((c) => c.length).sort()).toEqual([0, 1]);
      // The loser's token was not consumed.
      const loser = ids[holders.findIndex((c) => c.length === 0)] as string;
      expect((await h.storage.listTokens(loser))[0]?.usedAt).toBeNull();
      const denial = (await h.storage.listAudit({ deviceId: loser, limit: 1 }))[0];
      if (denial?.detail?.reason === "key_in_use") refusedInside++;
    }
    expect(refusedInside).toBe(20);
  });

  it("an operator revoked after it was authenticated does not act: its actions are refused inside their write sets", async () => {
    const { token: secret } = await token("op-target");
    await enrollWithToken("op-target", secret);
    const [pending] = await issueTokens(h.deps, OPERATOR, { deviceIds: ["op-pending"] });
    // The operator's token is revoked while requests it authenticated are in flight.
    await h.storage.apply([{ kind: "revokeOperator", operatorId: "op_race", at: h.clock.now() }]);
    const refused = "forbidden:operator_inactive";
    expect(await outcome(revoke("op-target"))).toBe(refused);
    expect(await outcome(issueTokens(h.deps, OPERATOR, { deviceIds: ["op-new"] }))).toBe(refused);
    expect(await outcome(revokeToken(h.deps, OPERATOR, (pending as { tokenId: string }).tokenId))).toBe(refused);
    expect(
      await outcome(
        signForDevice(h.deps, OPERATOR, {
          deviceId: "op-signed",
          profile: "device",
          csr: await makeCsr(await generateKeys("P-256")),
        }),
      ),
    ).toBe(refused);
    // Nothing was written.
    expect((await h.storage.getDevice("op-target"))?.status).toBe("active");
    expect(await h.storage.getDevice("op-new")).toBeUndefined();
    expect(await h.storage.getDevice("op-signed")).toBeUndefined();
    expect((await h.storage.getToken((pending as { tokenId: string }).tokenId))?.revokedAt).toBeNull();
  });

  it("a token revocation racing its redemption: exactly one wins", async () => {
    const wins = { enrollment: 0, revocation: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const id = `tr-${round}`;
      const { token: secret, tokenId } = await token(id);
      const enrollment = outcome(enrollWithToken(id, secret));
      await turns(round % 10);
      const revocation = outcome(revokeToken(h.deps, OPERATOR, tokenId));
      const [e, r] = await Promise.all([enrollment, revocation]);
      const stored = await h.storage.getToken(tokenId);
      if (e === "issued") {
        wins.enrollment++;
        expect(r).toBe("conflict:token_used");
        expect([stored?.usedAt !== null, stored?.revokedAt]).toEqual([true, null]);
      } else {
        wins.revocation++;
        expect(e).toBe("unauthenticated:token_revoked");
        expect(r).toBe("issued");
        expect([stored?.usedAt, stored?.revokedAt !== null]).toEqual([null, true]);
        expect(await h.storage.listCertificates(id)).toEqual([]);
      }
    }
    expect(wins.enrollment + wins.revocation).toBe(ROUNDS);
  });
});

describe("a superseded certificate renews once, and only while its successor is unused", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(() => h.close());

  const setup = async (id: string) => {
    const [t] = await h.authority.createTokens({ deviceIds: [id], actor: "test" });
    const first = await h.authority.enroll({
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: id, password: (t as { token: string }).token },
      peer: peer(),
    });
    const renew = async (cert: Uint8Array) =>
      h.authority.reenroll({ csr: await makeCsr(await generateKeys("P-256")), peer: peer([cert]) });
    return { first, renew };
  };
  const reasonOf = (p: Promise<unknown>) => outcome(p);

  it("refuses the retry once the successor was seen over MQTT or in a status report, and the fleet audit reports it", async () => {
    const { first, renew } = await setup("dev-used");
    const second = await renew(first.certificate);
    // The device connects with its new certificate: the successor is in use.
    await h.storage.apply([
      {
        kind: "openMqttSession",
        session: {
          id: "s1",
          deviceId: "dev-used",
          serial: second.serial,
          remote: "127.0.0.1:5000",
          connectedAt: h.clock.now(),
          disconnectedAt: null,
          closeReason: null,
          tookOver: null,
        },
      },
    ]);
    expect((await h.storage.getCertificate(second.serial))?.firstUsedAt).toEqual(h.clock.now());
    expect(await reasonOf(renew(first.certificate))).toBe("forbidden:client_certificate_superseded");
    // And by a status report naming it.
    const { first: other, renew: renewOther } = await setup("dev-reported");
    const next = await renewOther(other.certificate);
    await h.storage.apply([
      {
        kind: "recordStatus",
        force: false,
        status: {
          deviceId: "dev-reported",
          state: "online",
          session: 1,
          reportedAt: h.clock.now(),
          lastSeenAt: h.clock.now(),
          certSerial: next.serial,
          certNotAfter: next.notAfter,
          keyAlg: "P-256",
          nextRenewAt: null,
          agentVersion: "test",
          lastRenew: null,
          source: "device",
        },
      },
    ]);
    expect(await reasonOf(renewOther(other.certificate))).toBe("forbidden:client_certificate_superseded");
    // Both refusals name the certificate; the fleet audit reports them as possible clones.
    const report = await runFleetAudit(h.deps, { id: "cli", role: "admin" }, {});
    const found = report.findings.filter((f) => f.check === "superseded-renewal");
    expect(found.map((f) => [f.deviceId, f.serial, f.severity]).sort()).toEqual(
      [
        ["dev-reported", other.serial, "critical"],
        ["dev-used", first.serial, "critical"],
      ].sort(),
    );
  });

  it("used by its own renewal: a renewal with the current certificate marks it used", async () => {
    const { first, renew } = await setup("dev-chain");
    const second = await renew(first.certificate);
    const third = await renew(second.certificate);
    expect((await h.storage.getCertificate(second.serial))?.firstUsedAt).not.toBeNull();
    // `first` is two generations back: refused.
    expect(await reasonOf(renew(first.certificate))).toBe("forbidden:client_certificate_superseded");
    expect((await h.storage.getDevice("dev-chain"))?.currentSerial).toBe(third.serial);
  });

  it("concurrent retries of one lost response: one certificate more at most, then refused", async () => {
    const { first, renew } = await setup("dev-flood");
    await renew(first.certificate);
    const results = await Promise.all(Array.from({ length: 8 }, () => reasonOf(renew(first.certificate))));
    const issuedNow = results.filter((r) => r === "issued").length;
    expect(issuedNow).toBeLessThanOrEqual(1);
    for (let i = 0; i < 5; i++) {
      expect(await reasonOf(renew(first.certificate))).toBe("forbidden:client_certificate_superseded");
    }
    // At most the first renewal and one retry were ever issued from `first`; one is valid.
    const all = await h.storage.listCertificates("dev-flood");
    expect(all.length).toBeLessThanOrEqual(3);
    expect(all.filter((c) => c.status === "valid" && c.serial !== first.serial).length).toBe(1);
  });
});
