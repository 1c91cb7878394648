import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuthorityError } from "../../server/authority/errors.ts";
import { readCertificate } from "../../server/pki/certificate.ts";
import { toPem } from "../../server/pki/pem.ts";
import {
  type ChainCa,
  generateKeys,
  type Harness,
  harness,
  makeChainCa,
  makeCsr,
  makeIdevidCert,
  peer,
  T0,
} from "../support/fixtures.ts";

const HOUR = 3600_000;

/**
 * RFC 5280 path checks on manufacturer chains: every CA on the path (intermediates and
 * the anchor) is a CA with keyCertSign, pathLenConstraint holds, every certificate is
 * within its validity at the injected clock. Each verdict is compared with
 * `openssl verify -x509_strict` at the same time.
 */
describe("IDevID chain checks", () => {
  let h: Harness;

  beforeEach(async () => {
    h = await harness({
      config: {
        trustDomain: "example.org",
        profiles: { device: {}, factory: { idevid: { trustBundle: "acme.pem" } } },
      },
    });
  });
  afterEach(() => h.close());

  /** Enrolls with `leaf` + `intermediates` (nearest first) while `anchor` is the factory profile's only anchor. */
  const enroll = async (anchor: ChainCa, leaf: Uint8Array, intermediates: ChainCa[]) => {
    h.deps.idevidAnchors.set("factory", [readCertificate(anchor.der)]);
    return h.authority
      .enroll({
        label: "factory",
        csr: await makeCsr(await generateKeys("P-256")),
        peer: peer([leaf, ...intermediates.map((c) => c.der)]),
      })
      .then(
        (issued) => ({ verdict: "accepted", message: "", deviceId: issued.deviceId }),
        (e: AuthorityError) => {
          expect(e).toBeInstanceOf(AuthorityError);
          return { verdict: `${e.code}:${e.reason}`, message: e.publicMessage, deviceId: "" };
        },
      );
  };

  /** OpenSSL's verdict on the same path at the injected clock: 0 when it accepts. */
  const openssl = (anchor: ChainCa, leaf: Uint8Array, intermediates: ChainCa[]) => {
    const file = (name: string, ders: Uint8Array[]) => {
      const path = join(h.dir, name);
      writeFileSync(path, ders.map((d) => toPem("CERTIFICATE", d)).join(""));
      return path;
    };
    const args = ["verify", "-x509_strict", "-attime", String(Math.floor(h.clock.now().getTime() / 1000))];
    args.push("-CAfile", file("anchor.pem", [anchor.der]));
    if (intermediates.length)
      args.push(
        "-untrusted",
        file(
          "untrusted.pem",
          intermediates.map((c) => c.der),
        ),
      );
    const r = spawnSync("openssl", [...args, file("leaf.pem", [leaf])], { encoding: "utf8" });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  };

  it("accepts a manufacturer root → policy CA → issuing CA → IDevID chain (two intermediates)", async () => {
    const root = await makeChainCa("Acme Root");
    const policy = await makeChainCa("Acme Policy CA", root, { pathLen: 1 });
    const issuing = await makeChainCa("Acme Issuing CA", policy, { pathLen: 0 });
    const { der } = await makeIdevidCert(issuing, "SN-OK");
    expect(openssl(root, der, [issuing, policy]).status).toBe(0);
    expect(await enroll(root, der, [issuing, policy])).toMatchObject({ verdict: "accepted", deviceId: "SN-OK" });
  });

  it("accepts a chain exactly at the root's pathLenConstraint (root pathLen 1, one intermediate)", async () => {
    const root = await makeChainCa("Acme Root", undefined, { pathLen: 1 });
    const issuing = await makeChainCa("Acme Issuing CA", root, { pathLen: 0 });
    const { der } = await makeIdevidCert(issuing, "SN-EXACT");
    expect(openssl(root, der, [issuing]).status).toBe(0);
    expect((await enroll(root, der, [issuing])).verdict).toBe("accepted");
  });

  it("refuses an intermediate whose keyUsage lacks keyCertSign", async () => {
    const root = await makeChainCa("Acme Root");
    const issuing = await makeChainCa("Acme Issuing CA", root, { keyUsage: ["digitalSignature", "cRLSign"] });
    const { der } = await makeIdevidCert(issuing, "SN-KU");
    expect(openssl(root, der, [issuing]).output).toMatch(/key usage does not include certificate signing/);
    const r = await enroll(root, der, [issuing]);
    expect(r.verdict).toBe("forbidden:idevid_chain_invalid");
    expect(r.message).toBe(
      "manufacturer intermediate certificate (CN=Acme Issuing CA) keyUsage does not include keyCertSign",
    );
  });

  it("refuses an intermediate without a keyUsage extension", async () => {
    const root = await makeChainCa("Acme Root");
    const issuing = await makeChainCa("Acme Issuing CA", root, { keyUsage: null });
    const { der } = await makeIdevidCert(issuing, "SN-NOKU");
    expect(openssl(root, der, [issuing]).status).not.toBe(0);
    const r = await enroll(root, der, [issuing]);
    expect(r.verdict).toBe("forbidden:idevid_chain_invalid");
    expect(r.message).toMatch(
      /^manufacturer intermediate certificate \(CN=Acme Issuing CA\) has no keyUsage extension/,
    );
  });

  it("refuses an intermediate that is not a CA (cA false, or no basicConstraints)", async () => {
    const root = await makeChainCa("Acme Root");
    for (const ca of [false, null]) {
      const issuing = await makeChainCa("Acme Issuing CA", root, { ca });
      const { der } = await makeIdevidCert(issuing, "SN-NOTCA");
      expect(openssl(root, der, [issuing]).status).not.toBe(0);
      const r = await enroll(root, der, [issuing]);
      expect(r.verdict).toBe("forbidden:idevid_chain_invalid");
      expect(r.message).toMatch(/\(CN=Acme Issuing CA\) is not a CA certificate/);
    }
  });

  it("refuses an anchor whose keyUsage lacks keyCertSign, and one without keyUsage", async () => {
    for (const keyUsage of [["cRLSign"] as const, null]) {
      const root = await makeChainCa("Acme Root", undefined, { keyUsage: keyUsage && [...keyUsage] });
      const issuing = await makeChainCa("Acme Issuing CA", root);
      const { der } = await makeIdevidCert(issuing, "SN-ROOTKU");
      const r = await enroll(root, der, [issuing]);
      expect(r.verdict).toBe("forbidden:idevid_chain_invalid");
      expect(r.message).toMatch(/^manufacturer CA certificate \(CN=Acme Root\) (keyUsage does not|has no keyUsage)/);
    }
  });

  it("refuses a path longer than the root's pathLenConstraint (root pathLen 0, one intermediate)", async () => {
    const root = await makeChainCa("Acme Root", undefined, { pathLen: 0 });
    const issuing = await makeChainCa("Acme Issuing CA", root);
    const { der } = await makeIdevidCert(issuing, "SN-PATH0");
    expect(openssl(root, der, [issuing]).output).toMatch(/path length constraint exceeded/);
    const r = await enroll(root, der, [issuing]);
    expect(r.verdict).toBe("forbidden:idevid_chain_invalid");
    expect(r.message).toBe(
      "manufacturer CA certificate (CN=Acme Root) allows 0 intermediate CA certificate(s) below it (pathLenConstraint) and the chain has 1",
    );
  });

  it("refuses a path longer than an intermediate's pathLenConstraint (pathLen 0 with a CA under it)", async () => {
    const root = await makeChainCa("Acme Root");
    const policy = await makeChainCa("Acme Policy CA", root, { pathLen: 0 });
    const issuing = await makeChainCa("Acme Issuing CA", policy);
    const { der } = await makeIdevidCert(issuing, "SN-PATH1");
    expect(openssl(root, der, [issuing, policy]).output).toMatch(/path length constraint exceeded/);
    const r = await enroll(root, der, [issuing, policy]);
    expect(r.verdict).toBe("forbidden:idevid_chain_invalid");
    expect(r.message).toMatch(/^manufacturer intermediate certificate \(CN=Acme Policy CA\) allows 0 .* has 1$/);
  });

  it("does not count a self-issued intermediate (a key rollover certificate) against pathLenConstraint", async () => {
    const root = await makeChainCa("Acme Root", undefined, { pathLen: 0 });
    // Same name as the root, new key, signed by the old one: RFC 5280 §6.1.4 (l) skips it.
    const rollover = await makeChainCa("Acme Root", root, { pathLen: 0 });
    const { der } = await makeIdevidCert(rollover, "SN-ROLL");
    expect(openssl(root, der, [rollover]).status).toBe(0);
    expect((await enroll(root, der, [rollover])).verdict).toBe("accepted");
  });

  it("refuses an intermediate that expired at the injected clock, and one not yet valid", async () => {
    const root = await makeChainCa("Acme Root");
    const expiring = await makeChainCa("Acme Old CA", root, { notAfter: new Date(T0.getTime() + HOUR) });
    const early = await makeChainCa("Acme New CA", root, { notBefore: new Date(T0.getTime() + 2 * HOUR) });
    const old = (await makeIdevidCert(expiring, "SN-OLD")).der;
    const fresh = (await makeIdevidCert(early, "SN-NEW")).der;
    // At T0 the first is fine and the second not yet valid.
    expect(openssl(root, old, [expiring]).status).toBe(0);
    expect(await enroll(root, old, [expiring])).toMatchObject({ verdict: "accepted" });
    expect(openssl(root, fresh, [early]).output).toMatch(/certificate is not yet valid/);
    expect(await enroll(root, fresh, [early])).toEqual({
      verdict: "forbidden:idevid_not_yet_valid",
      message: "manufacturer intermediate certificate (CN=Acme New CA) is not yet valid",
      deviceId: "",
    });
    // Three hours later, the other way round.
    h.clock.advance(3 * 3600);
    expect(openssl(root, old, [expiring]).output).toMatch(/certificate has expired/);
    expect(await enroll(root, old, [expiring])).toEqual({
      verdict: "forbidden:idevid_expired",
      message: "manufacturer intermediate certificate (CN=Acme Old CA) has expired",
      deviceId: "",
    });
    expect(openssl(root, fresh, [early]).status).toBe(0);
    expect(await enroll(root, fresh, [early])).toMatchObject({ verdict: "accepted", deviceId: "SN-NEW" });
  });

  it("refuses a chain whose anchor expired at the injected clock", async () => {
    const root = await makeChainCa("Acme Root", undefined, { notAfter: new Date(T0.getTime() + HOUR) });
    const issuing = await makeChainCa("Acme Issuing CA", root);
    const { der } = await makeIdevidCert(issuing, "SN-ROOTEXP");
    h.clock.advance(2 * 3600);
    const r = await enroll(root, der, [issuing]);
    expect(r.verdict).toBe("forbidden:idevid_expired");
    expect(r.message).toBe("manufacturer CA certificate (CN=Acme Root) has expired");
  });

  it("still says untrusted for a chain to another manufacturer, whatever its extensions", async () => {
    const root = await makeChainCa("Acme Root");
    const rogueRoot = await makeChainCa("Acme Root");
    const rogue = await makeChainCa("Acme Issuing CA", rogueRoot);
    const { der } = await makeIdevidCert(rogue, "SN-ROGUE");
    expect(openssl(root, der, [rogue]).status).not.toBe(0);
    expect((await enroll(root, der, [rogue])).verdict).toBe("forbidden:idevid_untrusted");
  });
});
