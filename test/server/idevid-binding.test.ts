import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../server/app.ts";
import { type Actor, CLI_ACTOR } from "../../server/authority/actor.ts";
import { AuthorityError } from "../../server/authority/errors.ts";
import { bindIdevid } from "../../server/authority/idevid-binding.ts";
import { createOperator } from "../../server/authority/operators.ts";
import { revokeDevice } from "../../server/authority/revoke.ts";
import { readCertificate } from "../../server/pki/certificate.ts";
import { toPem } from "../../server/pki/pem.ts";
import type { Storage } from "../../server/ports/storage.ts";
import {
  createToken,
  crypto,
  generateKeys,
  type Harness,
  harness,
  makeChainCa,
  makeCsr,
  makeIdevidCert,
  makeTestCa,
  peer,
  T0,
  type TestCa,
} from "../support/fixtures.ts";

async function sha256Hex(der: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", der as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Operators bind a manufacturer certificate (IDevID) to a device id ahead of its first
 * boot; enrollment then lets that IDevID, and no other, enroll as the id.
 */
describe("binding an IDevID to a device id (devices bind-idevid)", () => {
  let h: Harness;
  let acme: TestCa;
  /** Real operators (an operator's action may be checked against its record when it commits). */
  let OPERATOR: Actor;
  let AUDITOR: Actor;

  beforeEach(async () => {
    acme = await makeTestCa(T0, "Acme");
    h = await harness({
      config: {
        trustDomain: "example.org",
        profiles: {
          device: {},
          factory: { idevid: { trustBundle: "acme.pem" } },
          // The same manufacturer, the device id read from the CN.
          bycn: { idevid: { trustBundle: "acme.pem", deviceIdFrom: "subject.commonName" } },
          strict: { idevid: { trustBundle: "acme.pem", binding: "pre-bound" } },
        },
      },
      idevidAnchors: new Map([
        ["factory", [acme.root]],
        ["bycn", [acme.root]],
        ["strict", [acme.root]],
      ]),
    });
    const actor = async (role: "operator" | "auditor"): Promise<Actor> => {
      const { operator } = await createOperator(h.deps, { name: `test-${role}`, role, actor: CLI_ACTOR });
      return { id: `operator:${operator.id}`, role };
    };
    OPERATOR = await actor("operator");
    AUDITOR = await actor("auditor");
  });
  afterEach(() => h.close());

  const idevid = async (serialNumber: string, commonName?: string) =>
    (await makeIdevidCert(acme.issuing, serialNumber, commonName ? { commonName } : {})).der;
  const bind = (deviceId: string, certificate: Uint8Array, profile?: string, actor?: Actor, deps = h.deps) =>
    bindIdevid(deps, actor ?? OPERATOR, {
      deviceId,
      certificate,
      intermediates: [acme.issuing.certificate],
      ...(profile ? { profile } : {}),
    });
  const outcome = (p: Promise<unknown>) =>
    p.then(
      () => "accepted",
      (e: unknown) => {
        expect(e).toBeInstanceOf(AuthorityError);
        return `${(e as AuthorityError).code}:${(e as AuthorityError).reason}`;
      },
    );
  const enrollWith = async (leaf: Uint8Array, label: string) =>
    h.authority.enroll({
      label,
      csr: await makeCsr(await generateKeys("P-256")),
      peer: peer([leaf, acme.issuing.certificate]),
    });
  const enrollWithToken = async (deviceId: string, profile: string) =>
    h.authority.enroll({
      label: profile,
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: deviceId, password: await createToken(h, deviceId, { profile }) },
      peer: peer(),
    });

  it("binds an IDevID to an id that does not exist yet, with an audit record, and that IDevID enrolls", async () => {
    const der = await idevid("SN-NEW");
    const binding = await bind("SN-NEW", der, "factory");
    const fingerprint = await sha256Hex(der);
    expect(binding).toEqual({
      deviceId: "SN-NEW",
      fingerprint,
      subject: "CN=Acme Sensor, serialNumber=SN-NEW",
      boundAt: T0,
      revokedAt: null,
    });
    expect(await h.storage.getIdevidBinding("SN-NEW")).toEqual(binding);
    expect(await h.storage.getDevice("SN-NEW")).toBeUndefined();
    const [audit] = await h.storage.listAudit({ deviceId: "SN-NEW", limit: 5 });
    expect(audit).toMatchObject({
      action: "device.bind-idevid",
      outcome: "success",
      actor: OPERATOR.id,
      detail: { profile: "factory", fingerprint: fingerprint.slice(0, 16), subject: binding.subject },
    });
    h.clock.advance(60);
    expect((await enrollWith(der, "factory")).deviceId).toBe("SN-NEW");
    // The binding is the operator's, not remade at enrollment.
    expect((await h.storage.getIdevidBinding("SN-NEW"))?.boundAt).toEqual(T0);
  });

  it("checks against the device's own profile when none is named, else the device profile", async () => {
    await enrollWithToken("SN-PROF", "factory");
    expect(await outcome(bind("SN-PROF", await idevid("SN-PROF")))).toBe("accepted");
    expect(await outcome(bind("SN-NONE", await idevid("SN-NONE")))).toBe("bad_request:idevid_not_configured");
    expect(await outcome(bind("SN-NONE", await idevid("SN-NONE"), "nope"))).toBe("bad_request:unknown_profile");
  });

  it("refuses a certificate that names another device id (idevid_device_mismatch)", async () => {
    expect(await outcome(bind("SN-A", await idevid("SN-B"), "factory"))).toBe("bad_request:idevid_device_mismatch");
    // With deviceIdFrom subject.commonName, the same kind of certificate names its CN.
    expect(await outcome(bind("SN-A", await idevid("SN-A", "CN-A"), "bycn"))).toBe(
      "bad_request:idevid_device_mismatch",
    );
    expect(await h.storage.getIdevidBinding("SN-A")).toBeUndefined();
  });

  it("refuses a second binding for a device, and a certificate bound to another device (409)", async () => {
    const first = await idevid("SN-TWICE", "CN-TWICE");
    await bind("SN-TWICE", first, "factory");
    expect(await outcome(bind("SN-TWICE", await idevid("SN-TWICE"), "factory"))).toBe("conflict:idevid_already_bound");
    expect(await outcome(bind("SN-TWICE", first, "factory"))).toBe("conflict:idevid_already_bound");
    // The same certificate read by its CN names CN-TWICE: it is bound to SN-TWICE already.
    expect(await outcome(bind("CN-TWICE", first, "bycn"))).toBe("conflict:idevid_bound_elsewhere");
    expect((await h.storage.getIdevidBinding("SN-TWICE"))?.fingerprint).toBe(await sha256Hex(first));
  });

  it("answers 409, not an internal error, when another binding commits between its check and its write", async () => {
    const first = await idevid("SN-RACE", "CN-RACE");
    await bind("SN-RACE", first, "factory");
    // A store whose reads missed the binding that committed meanwhile: the unique indexes decide.
    const stale = new Proxy(h.storage, {
      get(target, key, receiver) {
        if (key === "getIdevidBinding" || key === "getIdevidBindingByFingerprint") return async () => undefined;
        const v = Reflect.get(target, key, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as Storage;
    const deps = { ...h.deps, storage: stale };
    // The device id is taken (primary key)...
    expect(await outcome(bind("SN-RACE", await idevid("SN-RACE"), "factory", OPERATOR, deps))).toBe(
      "conflict:idevid_already_bound",
    );
    // ...and the certificate, read by its CN as another id, is taken (fingerprint index).
    expect(await outcome(bind("CN-RACE", first, "bycn", OPERATOR, deps))).toBe("conflict:idevid_bound_elsewhere");
    expect(await h.storage.listAudit({ action: "device.bind-idevid", limit: 10 })).toHaveLength(1);
  });

  it("refuses a binding for a device revoked between its check and its write (device_not_enrollable)", async () => {
    await enrollWithToken("SN-LATE", "factory");
    const before = await h.storage.getDevice("SN-LATE");
    await revokeDevice(h.deps, { deviceId: "SN-LATE", reason: "keyCompromise", actor: CLI_ACTOR });
    // The first read still sees the active device, as a bind that read just before the revocation did.
    let reads = 0;
    const stale = new Proxy(h.storage, {
      get(target, key, receiver) {
        if (key === "getDevice") return async (id: string) => (reads++ === 0 ? before : target.getDevice(id));
        const v = Reflect.get(target, key, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as Storage;
    expect(
      await outcome(bind("SN-LATE", await idevid("SN-LATE"), "factory", OPERATOR, { ...h.deps, storage: stale })),
    ).toBe("forbidden:device_not_enrollable");
    expect(reads).toBe(2);
    expect(await h.storage.getIdevidBinding("SN-LATE")).toBeUndefined();
  });

  it("refuses an auditor, a revoked device, and certificates the chain checks refuse", async () => {
    const der = await idevid("SN-CHK");
    expect(await outcome(bind("SN-CHK", der, "factory", AUDITOR))).toBe("forbidden:role_forbidden");
    expect(await outcome(bind("SN-CHK", der, "factory", CLI_ACTOR))).toBe("accepted");

    await enrollWithToken("SN-GONE", "factory");
    await revokeDevice(h.deps, { deviceId: "SN-GONE", reason: "keyCompromise", actor: OPERATOR });
    expect(await outcome(bind("SN-GONE", await idevid("SN-GONE"), "factory"))).toBe("forbidden:device_not_enrollable");

    const rogue = await makeTestCa(T0, "Rogue");
    const untrusted = (await makeIdevidCert(rogue.issuing, "SN-ROGUE")).der;
    expect(await outcome(bind("SN-ROGUE", untrusted, "factory"))).toBe("bad_request:idevid_untrusted");
    // A manufacturer intermediate without keyCertSign under a trusted root.
    const root = await makeChainCa("Other Root");
    const weak = await makeChainCa("Other Issuing", root, { keyUsage: ["digitalSignature"] });
    h.deps.idevidAnchors.set("factory", [...(h.deps.idevidAnchors.get("factory") ?? []), readCertificate(root.der)]);
    const leaf = (await makeIdevidCert(weak, "SN-WEAK")).der;
    expect(
      await outcome(
        bindIdevid(h.deps, OPERATOR, {
          deviceId: "SN-WEAK",
          certificate: leaf,
          intermediates: [weak.der],
          profile: "factory",
        }),
      ),
    ).toBe("bad_request:idevid_chain_invalid");
    expect(await h.storage.getIdevidBinding("SN-WEAK")).toBeUndefined();
  });

  describe("at enrollment (enroll.ts)", () => {
    it("refuses an IDevID claiming a token-enrolled device id that has no binding (idevid_not_bound)", async () => {
      await enrollWithToken("SN-TOKEN", "factory");
      const der = await idevid("SN-TOKEN");
      expect(await outcome(enrollWith(der, "factory"))).toBe("forbidden:idevid_not_bound");
      expect(await h.storage.getIdevidBinding("SN-TOKEN")).toBeUndefined();
      // An operator's binding is the way for an IDevID to take the id over.
      await bind("SN-TOKEN", der);
      expect((await enrollWith(der, "factory")).deviceId).toBe("SN-TOKEN");
    });

    it("refuses an IDevID claiming a pre-registered (pending) id without a binding", async () => {
      await createToken(h, "SN-PENDING", { profile: "factory" });
      expect(await outcome(enrollWith(await idevid("SN-PENDING"), "factory"))).toBe("forbidden:idevid_not_bound");
    });

    it("pre-bound profile: refuses an unbound new id and writes nothing", async () => {
      expect(await outcome(enrollWith(await idevid("SN-STRICT"), "strict"))).toBe("forbidden:idevid_not_bound");
      expect(await h.storage.getDevice("SN-STRICT")).toBeUndefined();
      expect(await h.storage.getIdevidBinding("SN-STRICT")).toBeUndefined();
    });

    it("pre-bound profile: an operator binds, then that IDevID enrolls and no other", async () => {
      const der = await idevid("SN-PRE");
      await bind("SN-PRE", der, "strict");
      const issued = await enrollWith(der, "strict");
      expect(issued.deviceId).toBe("SN-PRE");
      expect((await h.storage.getDevice("SN-PRE"))?.profile).toBe("strict");
      expect(await outcome(enrollWith(await idevid("SN-PRE"), "strict"))).toBe("forbidden:idevid_mismatch");
    });

    it("first-use profile: a new id is still bound at its first enrollment", async () => {
      const der = await idevid("SN-FIRST");
      expect((await enrollWith(der, "factory")).deviceId).toBe("SN-FIRST");
      expect((await h.storage.getIdevidBinding("SN-FIRST"))?.fingerprint).toBe(await sha256Hex(der));
    });
  });

  describe("operator API: POST /api/v1/devices/{id}/idevid", () => {
    let app: ReturnType<typeof createApp>;
    const tokens: Record<string, string> = {};

    beforeEach(async () => {
      app = createApp({
        authority: h.authority,
        responders: h.responders,
        peer: () => ({ remoteAddress: "192.0.2.9" }),
        logger: { request: () => undefined, error: () => undefined },
      });
      for (const role of ["operator", "auditor"] as const) {
        tokens[role] = (await createOperator(h.deps, { name: `api-${role}`, role, actor: CLI_ACTOR })).token;
      }
    });

    const call = (method: string, path: string, token?: string, body?: unknown) =>
      app.request(`https://est.test/api/v1${path}`, {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });

    it("binds from PEM (IDevID, then the intermediate), answers 201, and shows in the audit trail", async () => {
      const der = await idevid("SN-API");
      const certificate = toPem("CERTIFICATE", der) + toPem("CERTIFICATE", acme.issuing.certificate);
      const r = await call("POST", "/devices/SN-API/idevid", tokens.operator, { certificate, profile: "factory" });
      expect(r.status).toBe(201);
      const fingerprint = await sha256Hex(der);
      expect(await r.json()).toEqual({
        deviceId: "SN-API",
        fingerprint,
        subject: "CN=Acme Sensor, serialNumber=SN-API",
        boundAt: T0.toISOString(),
      });

      const again = await call("POST", "/devices/SN-API/idevid", tokens.operator, { certificate, profile: "factory" });
      expect(again.status).toBe(409);
      expect(((await again.json()) as { error: { code: string } }).error.code).toBe("idevid_already_bound");
      const auditor = await call("POST", "/devices/SN-API/idevid", tokens.auditor, { certificate, profile: "factory" });
      expect(auditor.status).toBe(403);
      const mismatch = await call("POST", "/devices/SN-OTHER/idevid", tokens.operator, {
        certificate,
        profile: "factory",
      });
      expect(mismatch.status).toBe(400);
      expect(((await mismatch.json()) as { error: { code: string } }).error.code).toBe("idevid_device_mismatch");
      const garbage = await call("POST", "/devices/SN-API/idevid", tokens.operator, { certificate: "not a cert!" });
      expect(garbage.status).toBe(400);

      const caller = (await (await call("GET", "/audit?deviceId=SN-API", tokens.auditor)).json()) as {
        items: { action: string; outcome: string; actor: string; detail: Record<string, unknown> | null }[];
      };
      expect(caller.items.map((a) => [a.action, a.outcome, a.detail?.reason ?? a.detail?.fingerprint])).toEqual([
        ["device.bind-idevid", "denied", "certificate_malformed"],
        ["device.bind-idevid", "denied", "role_forbidden"],
        ["device.bind-idevid", "denied", "idevid_already_bound"],
        ["device.bind-idevid", "success", fingerprint.slice(0, 16)],
      ]);
      const shown = (await (await call("GET", "/devices/SN-API", tokens.auditor)).json()) as { error?: unknown };
      expect(shown.error).toBeDefined(); // pre-bound, not enrolled: no device yet

      const doc = (await (await call("GET", "/openapi.json")).json()) as {
        paths: Record<string, Record<string, { operationId: string; responses: Record<string, unknown> }>>;
      };
      const op = doc.paths["/api/v1/devices/{id}/idevid"]?.post;
      expect(op?.operationId).toBe("device.bind-idevid");
      expect(Object.keys(op?.responses ?? {})).toEqual(expect.arrayContaining(["201", "400", "403", "409"]));
    });
  });
});
