import Database from "better-sqlite3";
import * as pkijs from "pkijs";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { auditHash } from "../../server/adapters/storage/sqlite-batch.mjs";
import { type Actor, CLI_ACTOR } from "../../server/authority/actor.ts";
import { auditRecordHash, verifyAuditChain } from "../../server/authority/audit-chain.ts";
import { RevocationResponders, type SharedOcspAnswer } from "../../server/authority/responders.ts";
import { revokeCertificate, revokeDevice } from "../../server/authority/revoke.ts";
import { createToken, generateKeys, type Harness, harness, makeCsr, peer, refusal } from "../support/fixtures.ts";
import { gate } from "../support/gate.ts";
import { ocspRequest as ocspRequestFor, ocspStatus as ocspStatusOf } from "../support/ocsp.ts";
import { registerOperator } from "../support/operators.ts";

const OPERATOR: Actor = { id: "operator:op_test", role: "operator" };

describe("revocation reaches every check", () => {
  let h: Harness;

  beforeEach(async () => {
    h = await harness();
    await registerOperator(h, OPERATOR);
  });
  afterEach(() => h.close());

  const enroll = async (deviceId: string) => {
    const token = await createToken(h, deviceId);
    const keys = await generateKeys("P-256");
    const issued = await h.authority.enroll({
      csr: await makeCsr(keys),
      credentials: { type: "basic", username: deviceId, password: token },
      peer: peer(),
    });
    return { ...issued, keys };
  };

  const _ocspRequest = (serialHex: string, nonce?: Uint8Array) => ocspRequestFor(h, serialHex, nonce);
  const ocspStatus = (serialHex: string, nonce?: Uint8Array) => ocspStatusOf(h, serialHex, nonce);

  const crlSerials = () => {
    const crl = h.responders.currentCrl("issuing-p256");
    if (!crl) throw new Error("no CRL");
    const parsed = pkijs.CertificateRevocationList.fromBER(crl.der as Uint8Array<ArrayBuffer>);
    return {
      number: crl.number,
      serials: (parsed.revokedCertificates ?? []).map((r) =>
        Buffer.from(r.userCertificate.valueBlock.valueHexView).toString("hex").replace(/^00/, ""),
      ),
    };
  };

  it("revokes every unexpired certificate, voids tokens, and refuses re-enrollment", async () => {
    const first = await enroll("dev-r");
    h.clock.advance(3600);
    const second = await h.authority.reenroll({
      csr: await makeCsr(await generateKeys("P-256")),
      peer: peer([first.certificate]),
    });
    const spare = await createToken(h, "dev-r");
    expect((await ocspStatus(second.serial)).tag).toBe(0);
    const before = crlSerials();

    const r = await revokeDevice(h.deps, { deviceId: "dev-r", reason: "keyCompromise", actor: OPERATOR });
    expect(r.serials.sort()).toEqual([first.serial, second.serial].sort());
    expect((await h.storage.getDevice("dev-r"))?.status).toBe("revoked");
    for (const serial of [first.serial, second.serial]) {
      const c = await h.storage.getCertificate(serial);
      expect([c?.status, c?.revocationReason]).toEqual(["revoked", 1]);
    }
    // OCSP answers revoked at once (the cached "good" was dropped), with time and reason.
    const { tag, single } = await ocspStatus(second.serial);
    expect(tag).toBe(1);
    expect(single?.certStatus.valueBlock.value.length).toBe(2);
    // The CRL is rebuilt just after the verb returns.
    await h.responders.rebuildCrls();
    const after = crlSerials();
    expect(after.serials.sort()).toEqual([first.serial, second.serial].sort());
    expect(after.number).toBeGreaterThan(before.number);

    expect(
      await refusal(
        h.authority.reenroll({ csr: await makeCsr(await generateKeys("P-256")), peer: peer([second.certificate]) }),
      ),
    ).toEqual({
      code: "forbidden",
      reason: "client_certificate_revoked",
    });
    expect(
      await refusal(
        h.authority.enroll({
          csr: await makeCsr(await generateKeys("P-256")),
          credentials: { type: "basic", username: "dev-r", password: spare },
          peer: peer(),
        }),
      ),
    ).toEqual({ code: "unauthenticated", reason: "token_revoked" });
    expect(await refusal(h.authority.createTokens({ deviceIds: ["dev-r"], actor: "test" }))).toEqual({
      code: "forbidden",
      reason: "device_not_enrollable",
    });
    const audit = await h.storage.listAudit({ deviceId: "dev-r", limit: 10 });
    expect(audit.map((a) => [a.action, a.outcome, a.detail?.reason])).toEqual(
      expect.arrayContaining([
        ["device.revoke", "success", "keyCompromise"],
        ["est.simplereenroll", "denied", "client_certificate_revoked"],
        ["est.simpleenroll", "denied", "token_revoked"],
      ]),
    );
    expect(
      await refusal(revokeDevice(h.deps, { deviceId: "dev-r", reason: "keyCompromise", actor: OPERATOR })),
    ).toEqual({
      code: "conflict",
      reason: "already_revoked",
    });
  });

  it("leaves expired certificates off the CRL and unknown serials unknown", async () => {
    const old = await enroll("dev-old");
    h.clock.advance(4 * 86400); // past the 72 h validity, within the 30-day renewal window
    await revokeDevice(h.deps, { deviceId: "dev-old", reason: "superseded", actor: OPERATOR });
    await h.responders.rebuildCrls();
    expect(crlSerials().serials).toEqual([]);
    // It could still have renewed after expiry, so the revocation covers it (storage and OCSP).
    expect((await h.storage.getCertificate(old.serial))?.status).toBe("revoked");
    expect((await ocspStatus(old.serial)).tag).toBe(1);
    expect((await ocspStatus("0badc0de")).tag).toBe(2);
    // Past every profile's window an expired certificate is left as it is.
    const older = await enroll("dev-older");
    h.clock.advance(40 * 86400);
    await revokeDevice(h.deps, { deviceId: "dev-older", reason: "superseded", actor: OPERATOR });
    expect((await h.storage.getCertificate(older.serial))?.status).toBe("valid");
  });

  it("revokes one certificate; its predecessor cannot take over", async () => {
    const first = await enroll("dev-c");
    const second = await h.authority.reenroll({
      csr: await makeCsr(await generateKeys("P-256")),
      peer: peer([first.certificate]),
    });
    const cert = await revokeCertificate(h.deps, { serial: second.serial, reason: "keyCompromise", actor: OPERATOR });
    expect(cert.status).toBe("revoked");
    expect((await h.storage.getDevice("dev-c"))?.status).toBe("active");
    expect((await ocspStatus(second.serial)).tag).toBe(1);
    expect((await ocspStatus(first.serial)).tag).toBe(0);
    expect(
      await refusal(
        h.authority.reenroll({ csr: await makeCsr(await generateKeys("P-256")), peer: peer([first.certificate]) }),
      ),
    ).toEqual({ code: "forbidden", reason: "client_certificate_superseded" });
    expect(
      await refusal(revokeCertificate(h.deps, { serial: "abcdef", reason: "keyCompromise", actor: OPERATOR })),
    ).toEqual({
      code: "not_found",
      reason: "unknown_certificate",
    });
  });

  it("publishes a new CRL at half its validity, with a higher number, and drops expired entries", async () => {
    const a = await enroll("dev-t1");
    await revokeDevice(h.deps, { deviceId: "dev-t1", reason: "keyCompromise", actor: OPERATOR });
    await h.responders.rebuildCrls();
    const first = h.responders.currentCrl("issuing-p256");
    expect(crlSerials().serials).toEqual([a.serial]);
    // A tick before half the validity (12 h of 24 h) leaves the CRL alone.
    h.clock.advance(11 * 3600);
    await h.responders.tick();
    expect(h.responders.currentCrl("issuing-p256")).toBe(first);
    // After it: a new CRL; after the certificate's notAfter (72 h), it is no longer listed.
    h.clock.advance(2 * 3600);
    await h.responders.tick();
    const second = h.responders.currentCrl("issuing-p256");
    expect(second?.number).toBeGreaterThan(first?.number ?? 0n);
    expect(second?.thisUpdate.getTime()).toBe(Math.floor(h.clock.now().getTime() / 1000) * 1000);
    expect(second?.nextUpdate.getTime()).toBe((second?.thisUpdate.getTime() ?? 0) + 24 * 3600_000);
    expect(crlSerials().serials).toEqual([a.serial]);
    h.clock.advance(60 * 3600);
    await h.responders.tick();
    expect(crlSerials().serials).toEqual([]);
    expect(h.responders.currentCrl("issuing-p256")?.number).toBeGreaterThan(second?.number ?? 0n);
  });

  it("coalesces a burst of revocations into a few CRL builds on a scheduler", async () => {
    const timers: (() => void)[] = [];
    const scheduler = {
      every: () => ({ cancel: () => undefined }),
      after: (_ms: number, run: () => void) => {
        timers.push(run);
        return { cancel: () => undefined };
      },
    };
    const published: bigint[] = [];
    const responders = new RevocationResponders(h.deps, (crl) => published.push(crl.number));
    await responders.start(scheduler);
    h.deps.onRevocation = () => responders.revoked();
    const serials: string[] = [];
    for (const id of ["b1", "b2", "b3", "b4"]) serials.push((await enroll(id)).serial);
    for (const id of ["b1", "b2", "b3", "b4"]) {
      await revokeDevice(h.deps, { deviceId: id, reason: "superseded", actor: OPERATOR });
    }
    expect(published).toHaveLength(1); // only the one from start()
    expect(timers).toHaveLength(1); // one rebuild scheduled for the whole burst
    timers[0]?.();
    await responders.rebuildCrls();
    const crl = responders.currentCrl("issuing-p256");
    const parsed = pkijs.CertificateRevocationList.fromBER(crl?.der as Uint8Array<ArrayBuffer>);
    expect(parsed.revokedCertificates?.length).toBe(4);
    expect(published.length).toBeLessThanOrEqual(3);
    responders.stop();
  });

  it("a follower (another event loop) signs no CRL, serves the adopted one, and drops a cached answer when told", async () => {
    const dev = await enroll("dev-f");
    const follower = new RevocationResponders(h.deps, undefined, "follow");
    const numbers = vi.spyOn(h.deps.storage, "nextCrlNumber");
    await follower.start();
    expect(follower.currentCrl("issuing-p256")).toBeUndefined();
    const published = h.responders.currentCrl("issuing-p256");
    if (!published) throw new Error("no CRL");
    follower.adopt(published);
    expect(follower.currentCrl("issuing-p256")).toBe(published);
    // The nonce-less answer is cached, and served from the cache while nobody says otherwise.
    const status = async () => {
      const { der } = await follower.ocsp(await _ocspRequest(dev.serial));
      const outer = pkijs.OCSPResponse.fromBER(der as Uint8Array<ArrayBuffer>);
      const basic = pkijs.BasicOCSPResponse.fromBER(
        outer.responseBytes?.response.valueBlock.valueHexView as Uint8Array<ArrayBuffer>,
      );
      return basic.tbsResponseData.responses[0]?.certStatus.idBlock.tagNumber;
    };
    expect(await status()).toBe(0);
    expect(follower.ocspCacheSize().serials).toBe(1);
    await revokeDevice(h.deps, { deviceId: "dev-f", reason: "keyCompromise", actor: OPERATOR });
    expect(await status()).toBe(0); // still the cached answer: nobody told this loop
    await follower.revoked();
    expect(await status()).toBe(1);
    // An older CRL never replaces a newer one; and the follower never allocated a CRL number.
    await h.responders.rebuildCrls();
    const newer = h.responders.currentCrl("issuing-p256");
    if (!newer) throw new Error("no CRL");
    numbers.mockClear();
    follower.adopt(newer);
    follower.adopt(published);
    expect(follower.currentCrl("issuing-p256")).toBe(newer);
    await follower.tick();
    expect(numbers).not.toHaveBeenCalled();
    follower.stop();
  });

  it("never caches an answer read before a revocation that lands while it is signed", async () => {
    const dev = await enroll("dev-race");
    const signer = h.ca.issuing.signer;
    const sign = signer.sign.bind(signer);
    // The next OCSP signature waits until the revocation has been committed and told.
    const revoked = gate();
    const signing = gate();
    const spy = vi.spyOn(signer, "sign").mockImplementationOnce(async (data) => {
      signing.open();
      await revoked.passed;
      return sign(data);
    });
    const inFlight = h.responders.ocsp(await _ocspRequest(dev.serial));
    await signing.passed;
    // The status was read ("good") before this revocation; the answer is signed after it.
    await revokeDevice(h.deps, { deviceId: "dev-race", reason: "keyCompromise", actor: OPERATOR });
    revoked.open();
    await inFlight;
    spy.mockRestore();
    // Whatever the in-flight request was told, the next one is not served its stale "good".
    expect((await ocspStatus(dev.serial)).tag).toBe(1);
    expect(h.responders.ocspCacheSize().serials).toBe(1);
  });

  it("answers requests with a nonce from the status it read once, until a revocation drops it", async () => {
    const dev = await enroll("dev-status");
    const reads = vi.spyOn(h.storage, "getCertificateStatus");
    const nonce = (n: number) => new Uint8Array(16).fill(n);
    expect((await ocspStatus(dev.serial, nonce(1))).tag).toBe(0);
    expect((await ocspStatus(dev.serial, nonce(2))).tag).toBe(0);
    expect(reads).toHaveBeenCalledTimes(1);
    // Unknown serials are read each time: one may be issued any moment.
    expect((await ocspStatus("7a7a7a7a", nonce(3))).tag).toBe(2);
    expect((await ocspStatus("7a7a7a7a", nonce(4))).tag).toBe(2);
    expect(reads).toHaveBeenCalledTimes(3);
    await revokeDevice(h.deps, { deviceId: "dev-status", reason: "keyCompromise", actor: OPERATOR });
    reads.mockClear();
    const revoked = await ocspStatus(dev.serial, nonce(5));
    expect(revoked.tag).toBe(1);
    expect((await ocspStatus(dev.serial, nonce(6))).tag).toBe(1);
    expect(reads).toHaveBeenCalledTimes(1);
    reads.mockRestore();
  });

  it("never remembers a status read before a revocation that lands during the read", async () => {
    const dev = await enroll("dev-status-race");
    const read = h.storage.getCertificateStatus.bind(h.storage);
    const revoked = gate();
    const reading = gate();
    const spy = vi.spyOn(h.storage, "getCertificateStatus").mockImplementationOnce(async (serial) => {
      const record = await read(serial); // "good": read before the revocation
      reading.open();
      await revoked.passed;
      return record;
    });
    const inFlight = ocspStatus(dev.serial, new Uint8Array(16).fill(1));
    await reading.passed;
    await revokeDevice(h.deps, { deviceId: "dev-status-race", reason: "keyCompromise", actor: OPERATOR });
    revoked.open();
    expect((await inFlight).tag).toBe(0); // true when it was read
    spy.mockRestore();
    expect((await ocspStatus(dev.serial, new Uint8Array(16).fill(2))).tag).toBe(1);
  });

  it("keeps each OCSP cache within its bound, the oldest leaving first", async () => {
    const [a, b, c] = [await enroll("dev-bound-a"), await enroll("dev-bound-b"), await enroll("dev-bound-c")].map(
      (d) => d.serial,
    ) as [string, string, string];
    const bounded = new RevocationResponders(h.deps, undefined, "follow", {
      answerSerials: 2,
      answerBytes: 1024 * 1024,
      statusSerials: 2,
    });
    await bounded.start();
    const ask = async (serial: string, nonce?: number) => {
      const request = await _ocspRequest(serial, nonce === undefined ? undefined : new Uint8Array(16).fill(nonce));
      return bounded.ocsp(request);
    };
    try {
      // Statuses (requests with a nonce): first read, first out.
      const reads = vi.spyOn(h.storage, "getCertificateStatus");
      for (const [i, serial] of [a, b, c].entries()) await ask(serial, i);
      expect(reads).toHaveBeenCalledTimes(3);
      await ask(c, 10); // kept
      expect(reads).toHaveBeenCalledTimes(3);
      await ask(a, 11); // the first read left when the third came in
      expect(reads).toHaveBeenCalledTimes(4);
      await ask(b, 12); // and then the second, when the first came back
      expect(reads).toHaveBeenCalledTimes(5);
      reads.mockRestore();

      // Answers (no nonce): the least recently answered serial leaves first.
      const sign = vi.spyOn(h.ca.issuing.signer, "sign");
      for (const serial of [a, b, c]) await ask(serial);
      expect(sign).toHaveBeenCalledTimes(3);
      expect(bounded.ocspCacheSize().serials).toBe(2);
      await ask(b);
      expect(sign).toHaveBeenCalledTimes(3);
      await ask(a);
      expect(sign).toHaveBeenCalledTimes(4);
      expect(bounded.ocspCacheSize().serials).toBe(2);
      sign.mockRestore();
    } finally {
      bounded.stop();
    }
  });

  it("keeps no answer larger than its byte bound", async () => {
    const dev = await enroll("dev-bytes");
    const bounded = new RevocationResponders(h.deps, undefined, "follow", {
      answerSerials: 100,
      answerBytes: 64,
      statusSerials: 100,
    });
    await bounded.start();
    try {
      const sign = vi.spyOn(h.ca.issuing.signer, "sign");
      const request = await _ocspRequest(dev.serial);
      const first = await bounded.ocsp(request);
      expect(first.der.length).toBeGreaterThan(64);
      expect(bounded.ocspCacheSize()).toEqual({ serials: 0, entries: 0, bytes: 0 });
      await bounded.ocsp(request);
      expect(sign).toHaveBeenCalledTimes(2);
      sign.mockRestore();
    } finally {
      bounded.stop();
    }
  });

  it("shares a cached answer with another loop, which serves it without signing", async () => {
    const dev = await enroll("dev-share");
    const follower = new RevocationResponders(h.deps, undefined, "follow");
    await follower.start();
    const shared: SharedOcspAnswer[] = [];
    follower.onAnswerCached((a) => shared.push(a));
    const request = await _ocspRequest(dev.serial);
    const signed = await follower.ocsp(request);
    // Asked again, it answers from its cache and shares nothing more.
    expect((await follower.ocsp(request)).der).toEqual(signed.der);
    expect(shared).toHaveLength(1);
    expect(shared[0]).toMatchObject({ serial: dev.serial, der: signed.der });
    // Answers asked with a nonce are signed each time and never shared.
    await follower.ocsp(await _ocspRequest(dev.serial, new Uint8Array(16).fill(7)));
    expect(shared).toHaveLength(1);

    const sign = vi.spyOn(h.ca.issuing.signer, "sign");
    expect(h.responders.adoptAnswer(shared[0] as SharedOcspAnswer)).toBe(true);
    expect((await h.responders.ocsp(request)).der).toEqual(signed.der);
    expect(sign).not.toHaveBeenCalled();
    // An adopted answer is dropped by a revocation like an own one.
    await revokeDevice(h.deps, { deviceId: "dev-share", reason: "keyCompromise", actor: OPERATOR });
    expect((await ocspStatus(dev.serial)).tag).toBe(1);
    sign.mockRestore();
    follower.stop();
  });

  it("refuses a shared answer read before a revocation it has read, and keeps its own fresh one", async () => {
    const dev = await enroll("dev-stale");
    const other = await enroll("dev-other");
    const follower = new RevocationResponders(h.deps, undefined, "follow");
    await follower.start();
    const shared: SharedOcspAnswer[] = [];
    follower.onAnswerCached((a) => shared.push(a));
    await follower.ocsp(await _ocspRequest(dev.serial));
    const good = shared[0] as SharedOcspAnswer;
    // The revocation lands here (and is read) while the "good" answer is on its way.
    await revokeDevice(h.deps, { deviceId: "dev-stale", reason: "keyCompromise", actor: OPERATOR });
    expect(h.responders.adoptAnswer(good)).toBe(false);
    expect((await ocspStatus(dev.serial)).tag).toBe(1);
    // The follower reads the revocation too; whatever it signs afterwards may be adopted.
    await follower.revoked();
    await follower.ocsp(await _ocspRequest(other.serial));
    const later = shared[1] as SharedOcspAnswer;
    expect(later.feedSeq).toBeGreaterThan(good.feedSeq);
    // A responder that has its own fresh answer keeps it (and what it already sent stays true).
    const own = await h.responders.ocsp(await _ocspRequest(other.serial));
    expect(h.responders.adoptAnswer(later)).toBe(false);
    expect((await h.responders.ocsp(await _ocspRequest(other.serial))).der).toEqual(own.der);
    // An answer past its freshness is not adopted.
    const fresh = h.responders.ocspCacheSize().serials;
    h.clock.advance((later.freshUntil - h.clock.now().getTime()) / 1000 + 1);
    expect(h.responders.adoptAnswer({ ...later, serial: "7e57" })).toBe(false);
    expect(h.responders.ocspCacheSize().serials).toBe(fresh);
    follower.stop();
  });

  it("lets only operators and admins revoke", async () => {
    await enroll("dev-a");
    const auditor: Actor = { id: "operator:op_aud", role: "auditor" };
    expect(await refusal(revokeDevice(h.deps, { deviceId: "dev-a", reason: "keyCompromise", actor: auditor }))).toEqual(
      {
        code: "forbidden",
        reason: "role_forbidden",
      },
    );
    expect((await h.storage.getDevice("dev-a"))?.status).toBe("active");
    await revokeDevice(h.deps, { deviceId: "dev-a", reason: "unspecified", actor: CLI_ACTOR });
    expect((await h.storage.getDevice("dev-a"))?.status).toBe("revoked");
  });

  it("finds revocations written by another connection (the CLI) on its next poll", async () => {
    const a = await enroll("dev-p");
    expect((await ocspStatus(a.serial)).tag).toBe(0);
    // Another process: its own connection, no onRevocation hook.
    const other = { ...h.deps, onRevocation: undefined };
    await revokeDevice(other, { deviceId: "dev-p", reason: "keyCompromise", actor: CLI_ACTOR });
    expect((await ocspStatus(a.serial)).tag).toBe(0); // the cached answer, until the poll
    await h.responders.tick();
    await h.responders.rebuildCrls();
    expect((await ocspStatus(a.serial)).tag).toBe(1);
    expect(crlSerials().serials).toEqual([a.serial]);
  });
});

describe("the hash-chained audit log", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
    for (const id of ["a1", "a2", "a3"]) await createToken(h, id);
  });
  afterEach(() => h.close());

  it("chains every record and verifies", async () => {
    const report = await verifyAuditChain(h.deps, CLI_ACTOR);
    expect(report).toMatchObject({ ok: true, records: 3 });
    const rows = await h.storage.auditChain(0, 10);
    expect(rows[0]?.prevHash).toBe("");
    expect(rows[1]?.prevHash).toBe(rows[0]?.hash);
    expect(report.head).toBe(rows[2]?.hash);
    // The adapter's SQL function and the core's checker are one function.
    for (const row of rows) {
      expect(await auditRecordHash(h.deps, row)).toBe(row.hash);
      expect(
        auditHash([
          row.prevHash,
          row.at,
          row.actor,
          row.action,
          row.outcome,
          row.deviceId,
          row.serial,
          row.remote,
          row.detail,
        ]),
      ).toBe(row.hash);
    }
  });

  it("refuses updates and deletes, and finds an edit made behind its back", async () => {
    const file = `${h.dir}/edgeid.db`;
    const db = new Database(file);
    try {
      expect(() => db.prepare("UPDATE audit_events SET actor = 'x' WHERE id = 2").run()).toThrow(/append-only/);
      expect(() => db.prepare("DELETE FROM audit_events WHERE id = 2").run()).toThrow(/append-only/);
      db.exec("DROP TRIGGER audit_events_no_update");
      db.prepare("UPDATE audit_events SET actor = 'cli:someone-else' WHERE id = 2").run();
    } finally {
      db.close();
    }
    const report = await verifyAuditChain(h.deps, CLI_ACTOR);
    expect(report.ok).toBe(false);
    expect(report.broken?.id).toBe(2);
    expect(report.broken?.problem).toMatch(/content changed/);
  });

  it("finds a removed record by the broken link of the next one", async () => {
    const db = new Database(`${h.dir}/edgeid.db`);
    try {
      db.exec("DROP TRIGGER audit_events_no_delete");
      db.prepare("DELETE FROM audit_events WHERE id = 2").run();
    } finally {
      db.close();
    }
    const report = await verifyAuditChain(h.deps, CLI_ACTOR);
    expect(report).toMatchObject({ ok: false, broken: { id: 3 } });
    expect(report.broken?.problem).toMatch(/link broken/);
  });
});
