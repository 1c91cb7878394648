/**
 * SCEP CMS: the messages of a client nobody here wrote (Debian's `scepclient`) next to
 * the ones our pkijs test client builds, read by the server's parser. The real client
 * talks to the public app of an in-process authority (harness) over a loopback HTTP
 * server, which keeps a copy of each PKIOperation it carries.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ensureScepRa } from "../../server/adapters/node/scep-ra.ts";
import { scepCaCertificates } from "../../server/authority/scep.ts";
import { openEnvelope, parsePkiMessage } from "../../server/pki/scep.ts";
import { createPublicApp } from "../../server/public-app.ts";
import { createToken, type Harness, harness, T0 } from "../support/fixtures.ts";
import { envelope, MESSAGE, newScepDevice, pkiMessage, scepCsr } from "../support/scep-client.ts";
import { makeWorkDir, removeDir, run } from "./support/process.ts";

let h: Harness | undefined;
let server: Server | undefined;
let work: string | undefined;

afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await h?.close();
  await removeDir(work);
  h = undefined;
  server = undefined;
  work = undefined;
});

describe("SCEP CMS: Debian's scepclient and the pkijs client, read by the server", () => {
  it("reads scepclient's PKCSReq (SHA-1, DES-CBC, one recipient per GetCACert certificate) and issues to it", async () => {
    h = await harness({
      config: {
        trustDomain: "example.org",
        profiles: {
          device: {},
          old: { issuer: "issuing-rsa", keyTypes: ["RSA"], validity: "365d", scep: { legacyCiphers: true } },
        },
      },
    });
    // scepclient dates its messages by the real clock.
    h.clock.advance(Math.round((Date.now() - T0.getTime()) / 1000));
    const made = await ensureScepRa(h.dir, h.deps.cas, "test passphrase", h.clock.now());
    const ra = made?.ra;
    if (!ra) throw new Error("no RA");
    h.deps.scepRa = () => ra;
    const app = createPublicApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "127.0.0.1" }),
      logger: { request: () => undefined, error: () => undefined },
    });
    const carried: Uint8Array[] = [];
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks);
        if (req.method === "POST") carried.push(new Uint8Array(body));
        const r = await app.request(`http://127.0.0.1${req.url}`, {
          method: req.method,
          ...(req.method === "POST" ? { body } : {}),
        });
        res.writeHead(r.status, Object.fromEntries(r.headers));
        res.end(Buffer.from(await r.arrayBuffer()));
      });
    });
    await new Promise<void>((r) => server?.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as AddressInfo).port;
    work = await makeWorkDir("edgeid-scep-cms-");
    const token = await createToken(h, "go-client", { profile: "old" });
    const r = await run(
      "scepclient",
      [
        "-server-url",
        `http://127.0.0.1:${port}/scep/old`,
        "-challenge",
        token,
        "-cn",
        "go-client",
        "-private-key",
        `${work}/key.pem`,
        "-certificate",
        `${work}/cert.pem`,
      ],
      { timeoutMs: 60_000 },
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);

    const [theirs] = carried;
    const go = parsePkiMessage(theirs as Uint8Array);
    expect(go.messageType).toBe(MESSAGE.PKCSReq);
    expect(go.digest).toBe("SHA-1");
    expect(go.transactionId).toMatch(/^[\x20-\x7e]+$/);
    const goEnvelope = openEnvelope(go.content, ra.certificate, ["aes-256-cbc", "des-cbc"]);
    expect(goEnvelope.cipher).toBe("des-cbc");
    // It encrypts to every certificate GetCACert gave (RA, issuing CA, root): ours is found among them.
    expect(scepCaCertificates(h.deps, "old")).toHaveLength(3);
    expect(() => openEnvelope(go.content, h?.rsaCa?.issuing.certificate as Uint8Array, ["des-cbc"])).not.toThrow();

    // The pkijs client's message, for the same device and key size, read the same way.
    const device = await newScepDevice();
    const ours = parsePkiMessage(
      await pkiMessage({
        messageType: MESSAGE.PKCSReq,
        content: envelope(await scepCsr(device, "go-client", token), ra.certificate),
        device,
      }),
    );
    expect(ours.digest).toBe("SHA-256");
    expect(openEnvelope(ours.content, ra.certificate, ["aes-256-cbc"]).cipher).toBe("aes-256-cbc");
    expect(ours.senderNonce).toHaveLength(16);
    expect(go.senderNonce).toHaveLength(16);
    expect(go.signerCertificate.length).toBeGreaterThan(0);
  });
});
