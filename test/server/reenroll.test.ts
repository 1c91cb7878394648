import * as x509 from "@peculiar/x509";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CLI_ACTOR } from "../../server/authority/actor.ts";
import type { AuthorityError } from "../../server/authority/errors.ts";
import { RENEW_AFTER_EXPIRY } from "../../server/authority/reenroll.ts";
import {
  createToken,
  crypto,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  makeTestCa,
  parseCert,
  peer,
  refusal,
} from "../support/fixtures.ts";

describe("simplereenroll over mutual TLS", () => {
  let h: Harness;
  let first: Uint8Array;
  let firstKeys: CryptoKeyPair;

  beforeEach(async () => {
    h = await harness();
    const token = await createToken(h, "gw-1");
    firstKeys = await generateKeys("P-256");
    first = (
      await h.authority.enroll({
        csr: await makeCsr(firstKeys),
        credentials: { type: "basic", username: "gw-1", password: token },
        peer: peer(),
      })
    ).certificate;
  });
  afterEach(() => h.close());

  const reenroll = async (
    client: Uint8Array | undefined,
    keys?: CryptoKeyPair,
    opts: { label?: string; cn?: string } = {},
  ) =>
    h.authority.reenroll({
      label: opts.label,
      csr: await makeCsr(keys ?? (await generateKeys("P-256")), { cn: opts.cn }),
      peer: peer(client ? [client] : undefined),
    });

  it("issues a new certificate with the same subject and SAN for a new key", async () => {
    h.clock.advance(48 * 3600);
    const next = await reenroll(first, undefined, { cn: "gw-1" });
    const a = parseCert(first);
    const b = parseCert(next.certificate);
    expect(b.subject).toBe(a.subject);
    expect(b.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual(
      a.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(),
    );
    expect(b.serialNumber).not.toBe(a.serialNumber);
    expect(b.notBefore.getTime()).toBeGreaterThan(a.notBefore.getTime());
    const stored = await h.storage.getCertificate(next.serial);
    expect(stored?.method).toBe("reenroll");
    expect(stored?.replacesSerial).toBe((await h.storage.getCertificate(stored?.replacesSerial ?? ""))?.serial);
    expect((await h.storage.getDevice("gw-1"))?.currentSerial).toBe(next.serial);
  });

  it("points a device that renews at simpleenroll to simplereenroll", async () => {
    const wrong = h.authority.enroll({ csr: await makeCsr(await generateKeys("P-256")), peer: peer([first]) });
    expect(await refusal(wrong)).toEqual({ code: "forbidden", reason: "use_simplereenroll" });
  });

  it("refuses the same key in the device profile", async () => {
    expect(await refusal(reenroll(first, firstKeys))).toEqual({ code: "bad_request", reason: "key_reused" });
  });

  it("refuses without a client certificate", async () => {
    expect(await refusal(reenroll(undefined))).toEqual({ code: "forbidden", reason: "client_certificate_missing" });
  });

  it("refuses a certificate expired past its profile's renewal window, by the injected clock", async () => {
    // The device profile: 72 h certificates, renewed after expiry for 30 days.
    h.clock.advance(72 * 3600 + 30 * 86400 + 1);
    const refused = await reenroll(first).catch((e: unknown) => e as AuthorityError);
    expect(refused).toMatchObject({ code: "forbidden", reason: "client_certificate_expired" });
    expect((refused as AuthorityError).publicMessage).toMatch(
      /past the 30d in which profile device renews expired certificates/,
    );
  });

  it("refuses a certificate from another CA with the same names", async () => {
    const other = await harness({ ca: await makeTestCa(undefined, "Other") });
    try {
      const token = await createToken(other, "gw-1");
      const foreign = await other.authority.enroll({
        csr: await makeCsr(await generateKeys("P-256")),
        credentials: { type: "bearer", token },
        peer: peer(),
      });
      expect(await refusal(reenroll(foreign.certificate))).toEqual({
        code: "forbidden",
        reason: "client_certificate_unknown",
      });
    } finally {
      other.close();
    }
  });

  it("refuses a revoked certificate and an inactive device", async () => {
    h.storage.sqlite.prepare("update certificates set status = 'revoked'").run();
    expect(await refusal(reenroll(first))).toEqual({ code: "forbidden", reason: "client_certificate_revoked" });
    h.storage.sqlite.prepare("update certificates set status = 'valid'").run();
    h.storage.sqlite.prepare("update devices set status = 'decommissioned'").run();
    expect(await refusal(reenroll(first))).toEqual({ code: "forbidden", reason: "device_not_active" });
  });

  it("lets the predecessor retry once (lost response), revoking the unused successor, but not twice", async () => {
    const second = await reenroll(first);
    // The response to `second` was lost: the device still holds `first` and retries.
    const retry = await reenroll(first);
    expect((await h.storage.getDevice("gw-1"))?.currentSerial).toBe(retry.serial);
    expect((await h.storage.getCertificate(retry.serial))?.replacesSerial).toBe(second.serial);
    // `second` never reached anyone: it is revoked (superseded), so it cannot come back.
    expect(await h.storage.getCertificate(second.serial)).toMatchObject({ status: "revoked", revocationReason: 4 });
    expect(await refusal(reenroll(second.certificate))).toEqual({
      code: "forbidden",
      reason: "client_certificate_revoked",
    });
    // The retry was the one: `first` cannot mint again while `retry` is current.
    expect(await refusal(reenroll(first))).toEqual({ code: "forbidden", reason: "client_certificate_superseded" });
    const third = await reenroll(retry.certificate);
    expect(await refusal(reenroll(first))).toEqual({ code: "forbidden", reason: "client_certificate_superseded" });
    expect((await reenroll(third.certificate)).deviceId).toBe("gw-1");
  });

  it("refuses a label for another profile and names of another device", async () => {
    expect(await refusal(reenroll(first, undefined, { label: "rsa" }))).toEqual({
      code: "forbidden",
      reason: "wrong_profile",
    });
    expect(await refusal(reenroll(first, undefined, { cn: "gw-2" }))).toEqual({
      code: "forbidden",
      reason: "name_not_allowed",
    });
  });

  it("audits refusals with the device identity, also when the certificate itself is refused", async () => {
    await reenroll(first, firstKeys).catch(() => undefined);
    const [last] = await h.storage.listAudit({ deviceId: "gw-1", limit: 1 });
    expect(last).toMatchObject({
      actor: "device:gw-1",
      action: "est.simplereenroll",
      outcome: "denied",
      detail: { reason: "key_reused" },
    });
    h.clock.advance(73 * 3600 + 30 * 86400);
    await reenroll(first).catch(() => undefined);
    const [expired] = await h.storage.listAudit({ deviceId: "gw-1", limit: 1 });
    expect(expired).toMatchObject({ actor: "device:gw-1", detail: { reason: "client_certificate_expired" } });
  });
});

describe("renewal with the same key (reenroll: renew-or-rekey)", () => {
  let h: Harness;
  afterEach(() => h.close());

  const enrollAs = async (deviceId: string, profile: string, keys: CryptoKeyPair) => {
    const token = await createToken(h, deviceId, { profile });
    return h.authority.enroll({
      label: profile,
      csr: await makeCsr(keys, { cn: deviceId }),
      credentials: { type: "basic", username: deviceId, password: token },
      peer: peer(),
    });
  };
  const spki = (der: Uint8Array) => Buffer.from(parseCert(der).publicKey.rawData).toString("hex");

  beforeEach(async () => {
    h = await harness({
      config: {
        trustDomain: "example.org",
        profiles: { device: {}, kiosk: { reenroll: "renew-or-rekey", validity: "30d" } },
      },
    });
  });

  it("certifies the current key again under a profile that allows it, and still refuses it on a rekey profile", async () => {
    const keys = await generateKeys("P-256");
    const first = await enrollAs("kiosk-1", "kiosk", keys);
    h.clock.advance(20 * 86400);
    const renewed = await h.authority.reenroll({
      label: "kiosk",
      csr: await makeCsr(keys, { cn: "kiosk-1" }),
      peer: peer([first.certificate]),
    });
    expect(renewed.serial).not.toBe(first.serial);
    expect(spki(renewed.certificate)).toBe(spki(first.certificate));
    expect((await h.storage.getCertificate(renewed.serial))?.replacesSerial).toBe(first.serial);
    const [audit] = await h.storage.listAudit({ deviceId: "kiosk-1", limit: 1 });
    expect(audit).toMatchObject({ action: "est.simplereenroll", outcome: "success", detail: { sameKey: true } });
    // A new key is still welcome.
    const rekeyed = await h.authority.reenroll({
      csr: await makeCsr(await generateKeys("P-256"), { cn: "kiosk-1" }),
      peer: peer([renewed.certificate]),
    });
    expect(spki(rekeyed.certificate)).not.toBe(spki(first.certificate));

    // The device profile (rekey) refuses the same request.
    const deviceKeys = await generateKeys("P-256");
    const device = await enrollAs("dev-1", "device", deviceKeys);
    const same = h.authority.reenroll({
      csr: await makeCsr(deviceKeys, { cn: "dev-1" }),
      peer: peer([device.certificate]),
    });
    expect(await refusal(same)).toEqual({ code: "bad_request", reason: "key_reused" });
  });

  it("keeps one key, one identity: a renewal may not take another device's key", async () => {
    const theirs = await generateKeys("P-256");
    await enrollAs("kiosk-2", "kiosk", theirs);
    const mine = await enrollAs("kiosk-3", "kiosk", await generateKeys("P-256"));
    const steal = h.authority.reenroll({
      csr: await makeCsr(theirs, { cn: "kiosk-3" }),
      peer: peer([mine.certificate]),
    });
    expect(await refusal(steal)).toEqual({ code: "forbidden", reason: "key_in_use" });
  });
});

/** A device that was offline past its certificate's lifetime comes back by itself, within bounds. */
describe("renewal after expiry", () => {
  let h: Harness;
  let first: Uint8Array;

  beforeEach(async () => {
    h = await harness({
      config: { trustDomain: "example.org", profiles: { device: {}, appliance: { validity: "90d" } } },
    });
    first = await enrollAs("gw-1");
  });
  afterEach(() => h.close());

  async function enrollAs(deviceId: string, profile?: string): Promise<Uint8Array> {
    const token = await createToken(h, deviceId, profile ? { profile } : {});
    return (
      await h.authority.enroll({
        csr: await makeCsr(await generateKeys("P-256"), { cn: deviceId }),
        credentials: { type: "basic", username: deviceId, password: token },
        peer: peer(),
      })
    ).certificate;
  }
  const reenroll = async (client: Uint8Array) =>
    h.authority.reenroll({ csr: await makeCsr(await generateKeys("P-256")), peer: peer([client]) });

  it("renews a device that was offline for 5 days (72 h certificates), as its own audited action", async () => {
    h.clock.advance(5 * 86400);
    const next = await reenroll(first);
    expect(parseCert(next.certificate).notAfter.getTime()).toBe(h.clock.now().getTime() + 72 * 3600_000);
    expect((await h.storage.getDevice("gw-1"))?.currentSerial).toBe(next.serial);
    const [record] = await h.storage.listAudit({ deviceId: "gw-1", limit: 1 });
    expect(record).toMatchObject({
      action: RENEW_AFTER_EXPIRY,
      outcome: "success",
      serial: next.serial,
      detail: { expiredForSeconds: 2 * 86400 },
    });
    // The new certificate renews as usual; the expired one never again.
    expect((await reenroll(next.certificate)).deviceId).toBe("gw-1");
    expect(await refusal(reenroll(first))).toMatchObject({ reason: "client_certificate_superseded" });
  });

  it("refuses after 40 days with a refusal that names the window", async () => {
    h.clock.advance(40 * 86400);
    const refused = (await reenroll(first).catch((e: unknown) => e)) as AuthorityError;
    expect(refused).toMatchObject({ code: "forbidden", reason: "client_certificate_expired" });
    expect(refused.publicMessage).toMatch(
      /37d ago\), past the 30d in which profile device renews expired certificates \(renewAfterExpiry\)/,
    );
  });

  it("never brings back a revoked device, nor a certificate that is no longer the device's current one", async () => {
    await h.authority.devices.revoke(CLI_ACTOR, "gw-1", { reason: "keyCompromise" });
    h.clock.advance(4 * 86400);
    expect(await refusal(reenroll(first))).toMatchObject({ reason: "client_certificate_revoked" });

    // gw-2 renewed, then its old (superseded, expired) certificate tries to come back.
    const old = await enrollAs("gw-2");
    h.clock.advance(3600);
    await reenroll(old);
    h.clock.advance(4 * 86400);
    expect(await refusal(reenroll(old))).toMatchObject({ reason: "client_certificate_superseded" });
  });

  it("does not renew expired certificates of long-lived profiles (default window 0)", async () => {
    const appliance = await enrollAs("cam-1", "appliance");
    h.clock.advance(91 * 86400);
    const refused = (await reenroll(appliance).catch((e: unknown) => e)) as AuthorityError;
    expect(refused).toMatchObject({ reason: "client_certificate_expired" });
    expect(refused.publicMessage).toMatch(/profile appliance does not renew expired certificates/);
  });

  it("accepts an expired certificate that the TLS terminator refused only for its expiry (Workers)", async () => {
    h.clock.advance(4 * 86400);
    const fingerprint = Buffer.from(await crypto.subtle.digest("SHA-256", first as Uint8Array<ArrayBuffer>)).toString(
      "hex",
    );
    const csr = await makeCsr(await generateKeys("P-256"));
    const unverified = h.authority.reenroll({
      csr,
      peer: { remoteAddress: "192.0.2.9", client: { chain: [], fingerprint, verified: false } },
    });
    expect(await refusal(unverified)).toMatchObject({ reason: "client_certificate_unverified" });
    const expired = await h.authority.reenroll({
      csr,
      peer: { remoteAddress: "192.0.2.9", client: { chain: [], fingerprint, verified: false, expired: true } },
    });
    expect(expired.deviceId).toBe("gw-1");
  });
});
