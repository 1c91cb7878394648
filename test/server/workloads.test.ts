/**
 * Workload registration entries and X.509-SVIDs (issue 24), over a real SQLite file with
 * real keys: the operator door (validation, roles, audit, commands), the device verbs
 * (which entries apply, issuance and its certificate rules), and the revocation rules.
 */
import * as x509 from "@peculiar/x509";
import { createLocalJWKSet, type JWK, jwtVerify } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SealedJwtKeyVault } from "../../server/adapters/sealed-jwt-key-vault.ts";
import { createApp } from "../../server/app.ts";
import { type Actor, CLI_ACTOR } from "../../server/authority/actor.ts";
import { admitMqttClient } from "../../server/authority/device-reports.ts";
import type { RegisterWorkloadRequest } from "../../server/authority/workloads.ts";
import type { JwtKeyVault } from "../../server/ports/trust-bundles.ts";
import {
  createToken,
  crypto,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  parseCert,
  peer,
  refusal,
  TEST_CONFIG,
} from "../support/fixtures.ts";
import { ocspStatus } from "../support/ocsp.ts";
import { registerOperator } from "../support/operators.ts";

const OPERATOR: Actor = { id: "operator:op_wl", role: "operator", remote: "192.0.2.7" };
const AUDITOR: Actor = { id: "operator:op_aud", role: "auditor", remote: "192.0.2.8" };
const SHA = "a".repeat(64);

const CONFIG = {
  ...TEST_CONFIG,
  profiles: { ...TEST_CONFIG.profiles, sensor: { validity: "2h", workloadMaxTtl: "30m" } },
};

describe("workload entries and X.509-SVIDs", () => {
  let h: Harness;

  beforeEach(async () => {
    h = await harness({ config: CONFIG });
    await registerOperator(h, OPERATOR);
    await registerOperator(h, AUDITOR);
  });
  afterEach(() => h.close());

  /** Enrolls a device with a P-256 key; returns its certificate and key pair. */
  const enroll = async (deviceId: string, profile?: string) => {
    const token = await createToken(h, deviceId, { profile });
    const keys = await generateKeys("P-256");
    const issued = await h.authority.enroll({
      label: profile,
      csr: await makeCsr(keys),
      credentials: { type: "basic", username: deviceId, password: token },
      peer: peer(),
    });
    return { cert: issued.certificate, keys };
  };
  const register = (req: Partial<RegisterWorkloadRequest>, actor: Actor = OPERATOR) =>
    h.authority.workloads.register(actor, { name: "web", selectors: ["unix:uid:1000"], ...req });
  const svids = async (cert: Uint8Array, requests: { entryId: string; keys?: CryptoKeyPair; csr?: Uint8Array }[]) =>
    h.authority.workloadSvids.issueX509(
      peer([cert]),
      await Promise.all(
        requests.map(async (r) => ({
          entryId: r.entryId,
          csr: r.csr ?? (await makeCsr(r.keys ?? (await generateKeys("P-256")), { cn: "ignored" })),
        })),
      ),
    );

  describe("registration", () => {
    it("checks every selector kind precisely and needs at least one", async () => {
      await enroll("gw-1");
      const ok = [
        "unix:uid:0",
        "unix:gid:50",
        "unix:path:/usr/bin/x",
        `unix:sha256:${SHA}`,
        "systemd:unit:foo.service",
      ];
      const entry = await register({ device: "gw-1", selectors: ok });
      expect(entry.selectors).toEqual(ok);
      for (const bad of [
        "unix:uid:-1",
        "unix:uid:01",
        "unix:uid:abc",
        "unix:gid:",
        "unix:path:relative/x",
        "unix:path:/a/../b",
        "unix:path:/a//b",
        `unix:sha256:${"A".repeat(64)}`,
        `unix:sha256:${"a".repeat(63)}`,
        "systemd:unit:foo",
        "systemd:unit:foo.bar",
        "k8s:ns:default",
        "unix:pid:1",
        "uid:1000",
      ]) {
        expect(await refusal(register({ device: "gw-1", name: "x", selectors: [bad] }))).toEqual({
          code: "bad_request",
          reason: "bad_selector",
        });
      }
      expect(await refusal(register({ device: "gw-1", name: "x", selectors: [] }))).toEqual({
        code: "bad_request",
        reason: "selectors_missing",
      });
    });

    it("checks the parent, the name, the TTL against the profile's maximum, and refuses a duplicate", async () => {
      await enroll("s-1", "sensor");
      expect((await refusal(register({ device: "s-1", profile: "sensor" }))).reason).toBe("bad_parent");
      expect((await refusal(register({}))).reason).toBe("bad_parent");
      expect(await refusal(register({ device: "nobody" }))).toEqual({ code: "not_found", reason: "unknown_device" });
      expect((await refusal(register({ profile: "nope" }))).reason).toBe("unknown_profile");
      expect((await refusal(register({ devicePrefix: "-x" }))).reason).toBe("bad_prefix");
      for (const name of ["a b", "../x", "a//b", ".", ""]) {
        expect((await refusal(register({ device: "s-1", name }))).reason).toBe("bad_name");
      }
      // sensor allows 30 minutes; the server 24 hours.
      expect((await refusal(register({ device: "s-1", ttl: 3600 }))).reason).toBe("bad_ttl");
      expect((await refusal(register({ profile: "sensor", ttl: 1801 }))).reason).toBe("bad_ttl");
      expect((await register({ profile: "sensor", ttl: 1800 })).ttlSeconds).toBe(1800);
      expect((await register({ devicePrefix: "s-", ttl: 86400 })).ttlSeconds).toBe(86400);
      expect((await refusal(register({ devicePrefix: "s-", name: "other", ttl: 86401 }))).reason).toBe("bad_ttl");
      const e = await register({ device: "s-1", ttl: 60 });
      expect(e.spiffeId).toBe("spiffe://example.org/device/s-1/workload/web");
      expect(await refusal(register({ device: "s-1", ttl: 60 }))).toEqual({ code: "conflict", reason: "entry_exists" });
      const fleet = await register({ device: "s-1", name: "api/v2", fleetWide: true, ttl: 60 });
      expect(fleet.spiffeId).toBe("spiffe://example.org/workload/api/v2");
      expect((await register({ profile: "device" })).ttlSeconds).toBe(3600);
    });

    it("needs the operator role to change entries, the auditor role to read them, and audits both outcomes once", async () => {
      await enroll("gw-1");
      expect(await refusal(register({ device: "gw-1" }, AUDITOR))).toEqual({
        code: "forbidden",
        reason: "role_forbidden",
      });
      const entry = await register({ device: "gw-1" });
      expect((await h.authority.workloads.list(AUDITOR, {})).items.map((e) => e.id)).toEqual([entry.id]);
      expect((await h.authority.workloads.show(AUDITOR, entry.id)).name).toBe("web");
      expect((await refusal(h.authority.workloads.delete(AUDITOR, entry.id))).reason).toBe("role_forbidden");
      const records = await h.storage.listAudit({ action: "workload.register", limit: 10 });
      expect(records.map((r) => [r.outcome, r.actor, r.remote])).toEqual([
        ["success", OPERATOR.id, "192.0.2.7"],
        ["denied", AUDITOR.id, "192.0.2.8"],
      ]);
      expect(records[0]?.detail).toMatchObject({ entry: entry.id, parent: "device:gw-1", selectors: "unix:uid:1000" });
      expect((await h.storage.listAudit({ action: "workload.delete", limit: 10 })).map((r) => r.outcome)).toEqual([
        "denied",
      ]);
    });

    it("queues workloads-changed for the active devices a change applies to, and for no others", async () => {
      await enroll("line-1");
      await enroll("line-2");
      await enroll("other-1");
      await createToken(h, "line-3"); // pending: not told
      const entry = await register({ devicePrefix: "line-" });
      const queued = async () =>
        (await h.storage.queuedCommands(100))
          .filter((c) => c.command === "workloads-changed")
          .map((c) => c.deviceId)
          .sort();
      expect(await queued()).toEqual(["line-1", "line-2"]);
      await h.authority.workloads.delete(OPERATOR, entry.id);
      expect(await queued()).toEqual(["line-1", "line-1", "line-2", "line-2"]);
    });
  });

  describe("the entries of a device", () => {
    it("are those whose parent is the device, its profile, or a prefix of its id; the revision follows the set", async () => {
      const { cert } = await enroll("plant-a-7");
      await enroll("plant-b-1");
      const own = await register({ device: "plant-a-7", name: "own" });
      const byProfile = await register({ profile: "device", name: "byprofile", jwtAudiences: ["aud1"] });
      const byPrefix = await register({ devicePrefix: "plant-a-", name: "byprefix", fleetWide: true });
      await register({ devicePrefix: "plant-b-", name: "elsewhere" });
      await register({ profile: "sensor", name: "sensors", ttl: 600 });
      await register({ device: "plant-b-1", name: "theirs" });
      const serial = (await h.storage.getDevice("plant-a-7"))?.currentSerial as string;
      expect((await h.storage.getCertificate(serial))?.firstUsedAt ?? null).toBeNull();
      const first = await h.authority.workloadSvids.entries(peer([cert]));
      // Seen in a mutual-TLS request: in use.
      expect((await h.storage.getCertificate(serial))?.firstUsedAt).toEqual(h.clock.now());
      expect(first.trustDomain).toBe("example.org");
      expect(first.pollSeconds).toBe(30);
      expect(first.entries.map((e) => e.id).sort()).toEqual([own.id, byProfile.id, byPrefix.id].sort());
      expect(first.entries.find((e) => e.id === byProfile.id)).toEqual({
        id: byProfile.id,
        spiffeId: "spiffe://example.org/device/plant-a-7/workload/byprofile",
        selectors: ["unix:uid:1000"],
        ttlSeconds: 3600,
        jwtAudiences: ["aud1"],
      });
      expect(first.entries.find((e) => e.id === byPrefix.id)?.spiffeId).toBe("spiffe://example.org/workload/byprefix");
      // Unchanged set: same revision. An entry for another device: same revision.
      expect((await h.authority.workloadSvids.entries(peer([cert]))).revision).toBe(first.revision);
      await register({ device: "plant-b-1", name: "theirs-2" });
      expect((await h.authority.workloadSvids.entries(peer([cert]))).revision).toBe(first.revision);
      // A changed entry, a new one, a deleted one: a new revision each time.
      await h.authority.workloads.update(OPERATOR, own.id, { ttl: 120 });
      const second = (await h.authority.workloadSvids.entries(peer([cert]))).revision;
      expect(second).not.toBe(first.revision);
      await h.authority.workloads.delete(OPERATOR, own.id);
      expect((await h.authority.workloadSvids.entries(peer([cert]))).revision).not.toBe(second);
    });

    it("refuse a request without the device's certificate, or with a workload SVID", async () => {
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1" });
      expect(await refusal(h.authority.workloadSvids.entries(peer()))).toEqual({
        code: "forbidden",
        reason: "client_certificate_missing",
      });
      const [svid] = (await svids(cert, [{ entryId: entry.id }])).svids;
      expect((await refusal(h.authority.workloadSvids.entries(peer([svid?.certificate as Uint8Array])))).reason).toBe(
        "client_certificate_not_device",
      );
      // Nor does it connect to the fleet broker as the device.
      const mqtt = admitMqttClient(h.deps, h.authority.refusals, {
        certificate: svid?.certificate as Uint8Array,
        clientId: "gw-1",
        remote: "127.0.0.1:5000",
        address: "127.0.0.1",
      });
      expect(await refusal(mqtt)).toEqual({ code: "forbidden", reason: "workload_svid" });
      // Nor does an SVID renew the device.
      const reenroll = h.authority.reenroll({
        csr: await makeCsr(await generateKeys("P-256")),
        peer: peer([svid?.certificate as Uint8Array]),
      });
      expect((await refusal(reenroll)).reason).toBe("client_certificate_not_device");
    });
  });

  describe("X.509-SVID issuance", () => {
    it("issues an SVID that follows the SPIFFE rules, capped by the device certificate, and records it", async () => {
      const { cert } = await enroll("s-1", "sensor"); // valid 2 h; SVIDs at most 30 min
      const entry = await register({ device: "s-1", ttl: 1800 });
      const wide = await register({ profile: "sensor", name: "shared", fleetWide: true, ttl: 600 });
      const issued = await svids(cert, [{ entryId: entry.id }, { entryId: wide.id }]);
      expect(issued.bundle).toEqual([h.ca.root]);
      const [one, two] = issued.svids;
      expect(one?.spiffeId).toBe("spiffe://example.org/device/s-1/workload/web");
      expect(two?.spiffeId).toBe("spiffe://example.org/workload/shared");
      expect(one?.chain).toEqual([h.ca.issuing.certificate]);
      const c = parseCert(one?.certificate as Uint8Array);
      const san = c.getExtension(x509.SubjectAlternativeNameExtension);
      expect(san?.names.items.map((n) => [n.type, n.value])).toEqual([
        ["url", "spiffe://example.org/device/s-1/workload/web"],
      ]);
      const bc = c.getExtension(x509.BasicConstraintsExtension);
      expect(bc?.ca).toBe(false);
      const ku = c.getExtension(x509.KeyUsagesExtension);
      expect(ku?.critical).toBe(true);
      expect(ku?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
      const eku = c.getExtension(x509.ExtendedKeyUsageExtension);
      expect(eku?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth]);
      // The CSR's subject ("CN=ignored") is not used.
      expect(c.subject).toBe("CN=SPIFFE workload");
      expect(c.notAfter.getTime()).toBe(h.clock.now().getTime() + 1800_000);
      expect(parseCert(two?.certificate as Uint8Array).notAfter.getTime()).toBe(h.clock.now().getTime() + 600_000);
      expect(await c.verify({ publicKey: parseCert(h.ca.issuing.certificate).publicKey, signatureOnly: true })).toBe(
        true,
      );
      // 100 minutes later the device certificate has 20 minutes left: the SVID gets 20.
      h.clock.advance(6000);
      const capped = await svids(cert, [{ entryId: entry.id }]);
      const deviceNotAfter = parseCert(cert).notAfter.getTime();
      expect(capped.svids[0]?.notAfter.getTime()).toBe(deviceNotAfter);
      // Recorded with the device, listed by devices show, audited per SVID.
      const detail = await h.authority.devices.show(AUDITOR, "s-1");
      expect(detail.workloadSvids[0]?.serial).toBe(capped.svids[0]?.serial);
      expect(detail.workloadSvids.map((s) => [s.workloadEntryId, s.spiffeId, s.status]).sort()).toEqual(
        [
          [entry.id, "spiffe://example.org/device/s-1/workload/web", "valid"],
          [entry.id, "spiffe://example.org/device/s-1/workload/web", "valid"],
          [wide.id, "spiffe://example.org/workload/shared", "valid"],
        ].sort(),
      );
      expect(detail.certificates.every((x) => !x.workloadEntryId)).toBe(true);
      const audit = await h.storage.listAudit({ action: "workload.x509_svid", limit: 10 });
      expect(audit.map((a) => [a.outcome, a.actor, a.serial])).toContainEqual(["success", "device:s-1", one?.serial]);
    });

    it("refuses the whole batch for an entry that is not the device's, a duplicate entry, or a non-P-256 key", async () => {
      const { cert } = await enroll("gw-1");
      await enroll("gw-2");
      const mine = await register({ device: "gw-1" });
      const theirs = await register({ device: "gw-2" });
      expect(await refusal(svids(cert, [{ entryId: mine.id }, { entryId: theirs.id }]))).toEqual({
        code: "forbidden",
        reason: "entry_not_applicable",
      });
      expect((await refusal(svids(cert, [{ entryId: "we_nothing" }]))).reason).toBe("entry_not_applicable");
      expect((await refusal(svids(cert, [{ entryId: mine.id }, { entryId: mine.id }]))).reason).toBe("duplicate_entry");
      const p384 = await generateKeys("P-384");
      expect(await refusal(svids(cert, [{ entryId: mine.id, keys: p384 }]))).toEqual({
        code: "bad_request",
        reason: "key_type_not_allowed",
      });
      expect((await refusal(svids(cert, [{ entryId: mine.id, csr: Uint8Array.of(0x30, 0) }]))).reason).toBe(
        "csr_malformed",
      );
      // A CSR whose signature does not match its key.
      const csr = await makeCsr(await generateKeys("P-256"));
      const last = csr.length - 3;
      csr[last] = (csr[last] as number) ^ 1;
      expect((await refusal(svids(cert, [{ entryId: mine.id, csr }]))).reason).toBe("csr_signature_invalid");
      expect((await h.authority.devices.show(AUDITOR, "gw-1")).workloadSvids).toEqual([]);
      const denied = (await h.storage.listAudit({ action: "workload.x509_svid", limit: 20 })).filter(
        (a) => a.outcome === "denied",
      );
      expect(denied.length).toBe(6);
    });

    it("refuses the device's own key and another workload's current key", async () => {
      const { cert, keys } = await enroll("gw-1");
      const other = await enroll("gw-2");
      const a = await register({ device: "gw-1", name: "a" });
      const b = await register({ device: "gw-1", name: "b" });
      const c = await register({ device: "gw-2", name: "c" });
      expect(await refusal(svids(cert, [{ entryId: a.id, keys }]))).toEqual({
        code: "forbidden",
        reason: "key_is_device_key",
      });
      expect((await refusal(svids(cert, [{ entryId: a.id, keys: other.keys }]))).reason).toBe("key_is_device_key");
      const shared = await generateKeys("P-256");
      await svids(cert, [{ entryId: a.id, keys: shared }]);
      expect(await refusal(svids(cert, [{ entryId: b.id, keys: shared }]))).toEqual({
        code: "forbidden",
        reason: "key_in_use",
      });
      expect((await refusal(svids(other.cert, [{ entryId: c.id, keys: shared }]))).reason).toBe("key_in_use");
      const twice = await generateKeys("P-256");
      expect(
        (
          await refusal(
            svids(cert, [
              { entryId: a.id, keys: twice },
              { entryId: b.id, keys: twice },
            ]),
          )
        ).reason,
      ).toBe("key_in_use");
      // The same workload renewing with its key is its own business.
      expect((await svids(cert, [{ entryId: a.id, keys: shared }])).svids).toHaveLength(1);
    });

    it("issues nothing when the device is revoked between the checks and the commit", async () => {
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1" });
      const verify = h.deps.verifier.verify.bind(h.deps.verifier);
      let revoked = false;
      h.deps.verifier = {
        async verify(req) {
          // The CSR's proof of possession is checked after authentication: revoke now.
          if (!revoked) {
            revoked = true;
            await h.authority.devices.revoke(CLI_ACTOR, "gw-1", { reason: "keyCompromise" });
          }
          return verify(req);
        },
      };
      expect(await refusal(svids(cert, [{ entryId: entry.id }]))).toEqual({
        code: "forbidden",
        reason: "client_certificate_revoked",
      });
      expect(revoked).toBe(true);
      expect(await h.storage.listWorkloadSvids("gw-1", 10)).toEqual([]);
      expect((await h.storage.listAudit({ action: "workload.x509_svid", limit: 5 })).map((a) => a.outcome)).toEqual([
        "denied",
      ]);
    });

    it("issues nothing when the entry is deleted between the checks and the commit", async () => {
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1" });
      const verify = h.deps.verifier.verify.bind(h.deps.verifier);
      let deleted = false;
      h.deps.verifier = {
        async verify(req) {
          if (!deleted) {
            deleted = true;
            await h.authority.workloads.delete(OPERATOR, entry.id);
          }
          return verify(req);
        },
      };
      expect((await refusal(svids(cert, [{ entryId: entry.id }]))).reason).toBe("entry_not_applicable");
      expect(await h.storage.listWorkloadSvids("gw-1", 10)).toEqual([]);
    });
  });

  describe("revocation", () => {
    it("deleting an entry revokes its SVIDs (cessationOfOperation) and no others; OCSP and the CRL say so", async () => {
      const { cert } = await enroll("gw-1");
      const gone = await register({ device: "gw-1", name: "gone" });
      const stays = await register({ device: "gw-1", name: "stays" });
      const issued = await svids(cert, [{ entryId: gone.id }, { entryId: stays.id }]);
      const [goneSvid, staySvid] = issued.svids;
      await h.authority.workloads.delete(OPERATOR, gone.id);
      const gSerial = goneSvid?.serial as string;
      expect(await h.storage.getCertificate(gSerial)).toMatchObject({ status: "revoked", revocationReason: 5 });
      expect((await h.storage.getCertificate(staySvid?.serial as string))?.status).toBe("valid");
      expect(await h.storage.getWorkloadEntry(gone.id)).toBeUndefined();
      expect((await ocspStatus(h, gSerial)).tag).toBe(1);
      expect((await ocspStatus(h, staySvid?.serial as string)).tag).toBe(0);
      const crl = new x509.X509Crl(h.responders.currentCrl("issuing-p256")?.der as Uint8Array<ArrayBuffer>);
      expect(crl.entries.map((e) => e.serialNumber)).toContain(gSerial);
      // The device itself is untouched.
      expect((await h.storage.getDevice("gw-1"))?.status).toBe("active");
    });

    it("changing an entry's selectors revokes its SVIDs (superseded); changing its TTL does not", async () => {
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1" });
      const [first] = (await svids(cert, [{ entryId: entry.id }])).svids;
      await h.authority.workloads.update(OPERATOR, entry.id, { ttl: 600 });
      expect((await h.storage.getCertificate(first?.serial as string))?.status).toBe("valid");
      await h.authority.workloads.update(OPERATOR, entry.id, { selectors: ["unix:uid:1001"] });
      expect(await h.storage.getCertificate(first?.serial as string)).toMatchObject({
        status: "revoked",
        revocationReason: 4,
      });
    });

    it("revoking the device revokes its workload SVIDs in the same write set", async () => {
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1" });
      const [svid] = (await svids(cert, [{ entryId: entry.id }])).svids;
      const revoked = await h.authority.devices.revoke(OPERATOR, "gw-1", { reason: "keyCompromise" });
      expect(revoked.serials).toContain(svid?.serial);
      expect(await h.storage.getCertificate(svid?.serial as string)).toMatchObject({
        status: "revoked",
        revocationReason: 1,
      });
      expect((await ocspStatus(h, svid?.serial as string)).tag).toBe(1);
      expect((await refusal(h.authority.workloadSvids.entries(peer([cert])))).reason).toBe(
        "client_certificate_revoked",
      );
    });
  });

  describe("JWT-SVIDs", () => {
    const SECRET = "a test secret of at least thirty-two characters";
    /** The trust domain's JWT keys (sealed in the store, as on Workers), the first one active. */
    const withJwtKeys = async () => {
      const vault: JwtKeyVault = new SealedJwtKeyVault(crypto, SECRET);
      h.deps.jwtKeys = vault;
      await h.authority.trustBundles.rotate();
      return vault;
    };
    /** The bundle's jwt-svid keys as jose takes them (it skips keys whose `use` is not "sig"). */
    const jwks = async () =>
      createLocalJWKSet({
        keys: (await h.authority.trustBundles.bundle()).keys
          .filter((k) => k.use === "jwt-svid")
          .map(({ use: _use, ...k }) => k as JWK),
      });

    it("signs one for an entry of the device and an allowed audience; it verifies against the bundle", async () => {
      await withJwtKeys();
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1", jwtAudiences: ["a", "b"] });
      const jwt = await h.authority.workloadSvids.issueJwt(peer([cert]), entry.id, ["a"]);
      expect(jwt.spiffeId).toBe("spiffe://example.org/device/gw-1/workload/web");
      const { payload, protectedHeader } = await jwtVerify(jwt.token, await jwks(), {
        audience: "a",
        currentDate: h.clock.now(),
      });
      expect(protectedHeader.alg).toBe("ES256");
      expect(payload.sub).toBe(jwt.spiffeId);
      expect(payload.aud).toEqual(["a"]);
      // The entry's TTL (1 h), in whole seconds.
      expect((payload.exp as number) - (payload.iat as number)).toBe(3600);
      expect(jwt.expiresAt.getTime()).toBe((payload.exp as number) * 1000);
      const [audit] = await h.storage.listAudit({ action: "workload.jwt_svid", limit: 5 });
      expect(audit).toMatchObject({ outcome: "success", deviceId: "gw-1" });
      expect(audit?.detail).toMatchObject({ entry: entry.id, spiffeId: jwt.spiffeId, audience: '["a"]' });
    });

    it("lives for the entry's TTL, at most an hour", async () => {
      await withJwtKeys();
      const { cert } = await enroll("s-1", "sensor");
      const short = await register({ device: "s-1", name: "short", ttl: 1800, jwtAudiences: ["a"] });
      const { cert: gw } = await enroll("gw-1");
      const day = await register({ device: "gw-1", name: "day", ttl: 86_400, jwtAudiences: ["a"] });
      const lifetime = async (c: Uint8Array, id: string) => {
        const jwt = await h.authority.workloadSvids.issueJwt(peer([c]), id, ["a"]);
        const { payload } = await jwtVerify(jwt.token, await jwks(), { audience: "a", currentDate: h.clock.now() });
        return (payload.exp as number) - (payload.iat as number);
      };
      expect(await lifetime(cert, short.id)).toBe(1800);
      expect(await lifetime(gw, day.id)).toBe(3600);
    });

    it("refuses an audience the entry does not allow, another device's entry, and a revoked device", async () => {
      await withJwtKeys();
      const { cert } = await enroll("gw-1");
      await enroll("gw-2");
      const entry = await register({ device: "gw-1", jwtAudiences: ["a", "b"] });
      const theirs = await register({ device: "gw-2", jwtAudiences: ["a"] });
      const none = await register({ device: "gw-1", name: "no-jwt" });
      expect(await refusal(h.authority.workloadSvids.issueJwt(peer([cert]), entry.id, ["a", "c"]))).toEqual({
        code: "forbidden",
        reason: "audience_not_allowed",
      });
      expect((await refusal(h.authority.workloadSvids.issueJwt(peer([cert]), none.id, ["a"]))).reason).toBe(
        "audience_not_allowed",
      );
      expect((await refusal(h.authority.workloadSvids.issueJwt(peer([cert]), theirs.id, ["a"]))).reason).toBe(
        "entry_not_applicable",
      );
      expect((await refusal(h.authority.workloadSvids.issueJwt(peer([cert]), entry.id, []))).reason).toBe(
        "audience_missing",
      );
      await h.authority.devices.revoke(CLI_ACTOR, "gw-1", { reason: "keyCompromise" });
      expect((await refusal(h.authority.workloadSvids.issueJwt(peer([cert]), entry.id, ["a"]))).reason).toBe(
        "client_certificate_revoked",
      );
      const outcomes = (await h.storage.listAudit({ action: "workload.jwt_svid", limit: 10 })).map((a) => a.outcome);
      expect(outcomes).toEqual(["denied", "denied", "denied", "denied", "denied"]);
    });

    it("hands out no token when the device is revoked between the checks and the commit", async () => {
      const vault = await withJwtKeys();
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1", jwtAudiences: ["a"] });
      let revoked = false;
      h.deps.jwtKeys = {
        keep: (kid, key) => vault.keep(kid, key),
        discard: (kid) => vault.discard(kid),
        async load(kid, sealed) {
          // The key is loaded to sign, after the checks: revoke now.
          if (!revoked) {
            revoked = true;
            await h.authority.devices.revoke(CLI_ACTOR, "gw-1", { reason: "keyCompromise" });
          }
          return vault.load(kid, sealed);
        },
      };
      expect((await refusal(h.authority.workloadSvids.issueJwt(peer([cert]), entry.id, ["a"]))).reason).toBe(
        "client_certificate_revoked",
      );
      expect(revoked).toBe(true);
      expect((await h.storage.listAudit({ action: "workload.jwt_svid", limit: 5 })).map((a) => a.outcome)).toEqual([
        "denied",
      ]);
    });

    it("hands out no token when the entry changes between the checks and the commit", async () => {
      const vault = await withJwtKeys();
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1", jwtAudiences: ["a"] });
      let changed = false;
      h.deps.jwtKeys = {
        keep: (kid, key) => vault.keep(kid, key),
        discard: (kid) => vault.discard(kid),
        async load(kid, sealed) {
          if (!changed) {
            changed = true;
            await h.authority.workloads.update(OPERATOR, entry.id, { jwtAudiences: ["b"] });
          }
          return vault.load(kid, sealed);
        },
      };
      expect((await refusal(h.authority.workloadSvids.issueJwt(peer([cert]), entry.id, ["a"]))).reason).toBe(
        "audience_not_allowed",
      );
      expect(changed).toBe(true);
    });
  });

  describe("over HTTP", () => {
    const ORIGIN = "https://edgeid.test";
    let client: Uint8Array | undefined;
    const app = () =>
      createApp({
        authority: h.authority,
        responders: h.responders,
        peer: () => ({ remoteAddress: "192.0.2.30", ...(client ? { client: { chain: [client] } } : {}) }),
        logger: { request: () => undefined, error: () => undefined },
      });

    it("the device routes: JSON in and out, precise refusals as one line", async () => {
      const { cert } = await enroll("gw-1");
      const entry = await register({ device: "gw-1" });
      client = cert;
      const a = app();
      const entries = await a.request(`${ORIGIN}/workload/v1/entries`);
      expect(entries.status).toBe(200);
      expect(entries.headers.get("content-type")).toBe("application/json");
      expect(((await entries.json()) as { entries: { id: string }[] }).entries.map((e) => e.id)).toEqual([entry.id]);
      const post = (body: string, type = "application/json") =>
        a.request(`${ORIGIN}/workload/v1/x509-svids`, { method: "POST", headers: { "content-type": type }, body });
      const csr = Buffer.from(await makeCsr(await generateKeys("P-256"))).toString("base64");
      const ok = await post(JSON.stringify({ requests: [{ entryId: entry.id, csr }] }));
      expect(ok.status, await ok.clone().text()).toBe(200);
      const body = (await ok.json()) as { svids: { certificate: string; chain: string[] }[]; bundle: string[] };
      expect(body.bundle).toEqual([Buffer.from(h.ca.root).toString("base64")]);
      expect(parseCert(Buffer.from(body.svids[0]?.certificate as string, "base64")).subject).toBe("CN=SPIFFE workload");
      const oneLine = async (r: Response, status: number, reason: RegExp) => {
        expect(r.status).toBe(status);
        expect(r.headers.get("content-type")).toMatch(/^text\/plain/);
        const text = await r.text();
        expect(text).toMatch(/^[^\n]+\n$/);
        expect(text).toMatch(reason);
      };
      await oneLine(await post("{}", "text/plain"), 415, /application\/json/);
      await oneLine(await post("{not json"), 400, /not JSON/);
      await oneLine(await post(JSON.stringify({ requests: [] })), 400, /requests/);
      await oneLine(await post(JSON.stringify({ requests: [{ entryId: entry.id, csr: "!!" }] })), 400, /base64/);
      await oneLine(await post("x".repeat(256 * 1024 + 1)), 413, /exceeds/);
      await oneLine(await post(JSON.stringify({ requests: [{ entryId: "we_other", csr }] })), 403, /applies/);
      client = undefined;
      await oneLine(await app().request(`${ORIGIN}/workload/v1/entries`), 403, /certificate/);
      // Refusals decided before the verb are audited too.
      const denied = (await h.storage.listAudit({ action: "workload.x509_svid", limit: 20 })).filter(
        (r) => r.outcome === "denied",
      );
      expect(denied.map((r) => r.detail?.reason)).toEqual(
        expect.arrayContaining(["wrong_content_type", "malformed_json", "bad_body", "not_base64", "payload_too_large"]),
      );
    });

    it("the operator API and the dashboard's device page", async () => {
      const { cert } = await enroll("gw-1");
      const { token } = await h.authority.operators.create(CLI_ACTOR, { name: "ops", role: "operator" });
      const a = app();
      const api = (path: string, method = "GET", body?: unknown) =>
        a.request(`${ORIGIN}/api/v1${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        });
      const created = await api("/workloads", "POST", {
        device: "gw-1",
        name: "web",
        selectors: ["unix:uid:1000"],
        ttl: "15m",
        jwtAudiences: ["aud"],
      });
      expect(created.status, await created.clone().text()).toBe(201);
      const entry = (await created.json()) as { id: string; ttlSeconds: number; spiffeId: string };
      expect(entry).toMatchObject({ ttlSeconds: 900, spiffeId: "spiffe://example.org/device/gw-1/workload/web" });
      const bad = await api("/workloads", "POST", { device: "gw-1", name: "x", selectors: ["unix:uid:x"] });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("bad_selector");
      const listed = (await (await api("/workloads?device=gw-1")).json()) as { items: { id: string }[] };
      expect(listed.items.map((e) => e.id)).toEqual([entry.id]);
      expect((await api(`/workloads/${entry.id}`)).status).toBe(200);
      const patched = await api(`/workloads/${entry.id}`, "PATCH", { selectors: ["unix:uid:1001"] });
      expect(patched.status, await patched.clone().text()).toBe(200);
      expect(((await patched.json()) as { selectors: string[] }).selectors).toEqual(["unix:uid:1001"]);
      const doc = (await (await a.request(`${ORIGIN}/api/v1/openapi.json`)).json()) as {
        paths: Record<string, unknown>;
      };
      expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/api/v1/workloads", "/api/v1/workloads/{id}"]));

      const [svid] = (await svids(cert, [{ entryId: entry.id }])).svids;
      const device = (await (await api("/devices/gw-1")).json()) as {
        workloadSvids: { serial: string; spiffeId: string; entryId: string; status: string }[];
      };
      expect(device.workloadSvids).toEqual([
        expect.objectContaining({
          serial: svid?.serial,
          spiffeId: "spiffe://example.org/device/gw-1/workload/web",
          entryId: entry.id,
          status: "valid",
        }),
      ]);
      // The dashboard's device page lists it.
      const login = await a.request(`${ORIGIN}/dashboard/login`, {
        method: "POST",
        headers: { host: "edgeid.test", origin: ORIGIN, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token }).toString(),
      });
      const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
      const page = await (
        await a.request(`${ORIGIN}/dashboard/devices/gw-1`, { headers: { host: "edgeid.test", cookie } })
      ).text();
      expect(page).toContain('data-testid="workload-svids"');
      expect(page).toContain(`data-serial="${svid?.serial}"`);

      expect((await api(`/workloads/${entry.id}`, "DELETE")).status).toBe(200);
      expect((await h.storage.getCertificate(svid?.serial as string))?.status).toBe("revoked");
      expect((await api(`/workloads/${entry.id}`)).status).toBe(404);
    });
  });
});
