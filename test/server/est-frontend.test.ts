import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp, type RequestLog } from "../../server/app.ts";
import { encodeBase64 } from "../../server/pki/base64.ts";
import { createToken, generateKeys, type Harness, harness, makeCsr } from "../support/fixtures.ts";

/** The EST frontend in process (no TLS): decoding, media types, limits and error mapping. */
describe("EST frontend", () => {
  let h: Harness;
  let app: ReturnType<typeof createApp>;
  const logged: RequestLog[] = [];
  /** The TLS client chain the next requests present, if any. */
  let client: Uint8Array[] | undefined;

  beforeEach(async () => {
    h = await harness();
    app = createApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "192.0.2.1", ...(client ? { client: { chain: client } } : {}) }),
      logger: { request: (e) => logged.push(e), error: () => undefined },
    });
  });
  afterEach(() => {
    client = undefined;
    h.close();
  });

  const post = (path: string, body: BodyInit, headers: Record<string, string>) =>
    app.request(`https://est.test${path}`, { method: "POST", body, headers });
  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;

  it("answers 401 with a Basic challenge, then issues for the same CSR with credentials", async () => {
    const token = await createToken(h, "dev-1");
    const body = encodeBase64(await makeCsr(await generateKeys("P-256")), 64);
    const first = await post("/.well-known/est/simpleenroll", body, { "content-type": "application/pkcs10" });
    expect(first.status).toBe(401);
    expect(first.headers.get("www-authenticate")).toMatch(/^Basic realm="edgeid EST"/);
    const second = await post("/.well-known/est/simpleenroll", body, {
      "content-type": "application/pkcs10",
      authorization: basic("dev-1", token),
    });
    expect(second.status).toBe(200);
    expect(second.headers.get("content-type")).toBe("application/pkcs7-mime; smime-type=certs-only");
    expect(second.headers.get("content-transfer-encoding")).toBe("base64");
    expect(await second.text()).toMatch(/^[A-Za-z0-9+/=\r\n]+$/);
  });

  it("refuses an expired token (401 with the challenge) and an expired certificate (403), by the injected clock", async () => {
    const token = await createToken(h, "dev-exp", { ttl: 60 });
    h.clock.advance(60);
    const csr = encodeBase64(await makeCsr(await generateKeys("P-256"), { cn: "dev-exp" }), 64);
    const expired = await post("/.well-known/est/simpleenroll", csr, {
      "content-type": "application/pkcs10",
      authorization: basic("dev-exp", token),
    });
    expect(expired.status).toBe(401);
    expect(expired.headers.get("www-authenticate")).toMatch(/^Basic realm="edgeid EST"/);
    expect((await expired.text()).trim().split("\n")).toHaveLength(1);
    expect((await h.storage.getDevice("dev-exp"))?.status).toBe("pending");
    const [refusal] = await h.storage.listAudit({ deviceId: "dev-exp", limit: 1 });
    expect(refusal).toMatchObject({
      action: "est.simpleenroll",
      outcome: "denied",
      detail: { reason: "token_expired" },
    });

    const fresh = await createToken(h, "dev-exp2");
    const issued = await h.authority.enroll({
      csr: await makeCsr(await generateKeys("P-256"), { cn: "dev-exp2" }),
      credentials: { type: "bearer", token: fresh },
      peer: { remoteAddress: "192.0.2.1" },
    });
    // Past its 72 h lifetime and the 30 days it may renew after expiry.
    h.clock.advance(72 * 3600 + 30 * 86400 + 1);
    client = [issued.certificate];
    const renewal = await post(
      "/.well-known/est/simplereenroll",
      encodeBase64(await makeCsr(await generateKeys("P-256"), { cn: "dev-exp2" })),
      { "content-type": "application/pkcs10" },
    );
    expect(renewal.status).toBe(403);
    expect(await h.storage.listCertificates("dev-exp2")).toHaveLength(1);
    const [denied] = await h.storage.listAudit({ deviceId: "dev-exp2", limit: 1 });
    expect(denied).toMatchObject({
      action: "est.simplereenroll",
      outcome: "denied",
      detail: { reason: "client_certificate_expired" },
    });
  });

  it.each([
    ["wrong content type", { "content-type": "text/plain" }, "x", 415, "wrong_content_type"],
    ["not base64", { "content-type": "application/pkcs10" }, "%%%not base64%%%", 400, "not_base64"],
    [
      "base64 of garbage",
      { "content-type": "application/pkcs10" },
      encodeBase64(new Uint8Array(64).fill(7)),
      400,
      "csr_malformed",
    ],
    ["empty body", { "content-type": "application/pkcs10" }, "", 400, "empty_body"],
    ["oversized body", { "content-type": "application/pkcs10" }, "A".repeat(64 * 1024 + 4), 413, "payload_too_large"],
    [
      "bad Basic",
      { "content-type": "application/pkcs10", authorization: "Basic !!!" },
      "AAAA",
      401,
      "credentials_malformed",
    ],
  ])("refuses %s with a one-line body and an audit record", async (_name, headers, body, status, reason) => {
    const token = await createToken(h, "dev-2");
    const res = await post("/.well-known/est/simpleenroll", body, {
      authorization: basic("dev-2", token),
      ...(headers as Record<string, string>),
    });
    expect(res.status).toBe(status);
    const text = await res.text();
    expect(text.trim().split("\n")).toHaveLength(1);
    expect(text).not.toContain(token);
    const [audit] = await h.storage.listAudit({ limit: 1 });
    expect(audit).toMatchObject({ outcome: "denied", detail: { reason }, remote: "192.0.2.1" });
    // The token was not consumed by the refusal.
    const ok = await post("/.well-known/est/simpleenroll", encodeBase64(await makeCsr(await generateKeys("P-256"))), {
      "content-type": "application/pkcs10",
      authorization: basic("dev-2", token),
    });
    expect(ok.status).toBe(200);
  });

  it("serves cacerts and csrattrs, under labels too, and refuses unknown labels and methods", async () => {
    const ca = await app.request("https://est.test/.well-known/est/cacerts");
    expect(ca.status).toBe(200);
    expect(ca.headers.get("content-type")).toBe("application/pkcs7-mime");
    expect((await app.request("https://est.test/.well-known/est/rsa/cacerts")).status).toBe(200);
    const attrs = await app.request("https://est.test/.well-known/est/csrattrs");
    expect(attrs.headers.get("content-type")).toBe("application/csrattrs");
    expect((await app.request("https://est.test/.well-known/est/nope/cacerts")).status).toBe(404);
    expect((await app.request("https://est.test/.well-known/est/simpleenroll")).status).toBe(405);
    expect((await app.request("https://est.test/.well-known/est/fullcmc", { method: "POST" })).status).toBe(404);
  });

  it("logs one line per request without credentials", async () => {
    logged.length = 0;
    await post("/.well-known/est/simpleenroll", "AAAA", {
      "content-type": "application/pkcs10",
      authorization: basic("a", "edt_secret"),
    });
    expect(logged).toHaveLength(1);
    expect(JSON.stringify(logged)).not.toContain("edt_secret");
    expect(logged[0]).toMatchObject({ path: "/.well-known/est/simpleenroll", status: 401, refusal: "token_unknown" });
  });
});
