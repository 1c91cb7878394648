import { createPrivateKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Agent } from "../../device-client/src/agent.ts";
import { backoffDelay } from "../../device-client/src/backoff.ts";
import type { AgentDeps } from "../../device-client/src/deps.ts";
import { retryAfter } from "../../device-client/src/est.ts";
import { AgentStore } from "../../device-client/src/store.ts";
import { certsOnly } from "../../server/pki/pkcs7.ts";
import { agentDir, CLIENT_AUTH, DAY, HOUR, issue, issuedAnswer, pki, selfSigned } from "./support/pki.ts";

interface Scripted {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/** An answer made from the request (its body, and the client certificate's CN). */
type Responder = (body: string) => Promise<Scripted>;

describe("device agent (in process, injected clock and timers)", () => {
  let dir: string;
  let server: Server;
  let script: (Scripted | Responder)[];
  let requests: { path: string; body: string; client?: string }[];
  let p: Awaited<ReturnType<typeof pki>>;
  let sleeps: number[];
  const NOW = Date.UTC(2027, 0, 15, 12);

  /** Timers that record the delay asked for and fire at once (or never). */
  const timers = (fire: boolean): AgentDeps["timers"] => ({
    setTimeout: (run, ms) => {
      sleeps.push(ms);
      if (fire) setImmediate(run);
      return ms;
    },
    clearTimeout: () => undefined,
  });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeid-agent-unit-"));
    requests = [];
    sleeps = [];
    script = [];
    p = await pki(NOW);
    server = createServer(
      { key: p.server.key, cert: p.server.pem, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        let body = "";
        req.on("data", (c: Buffer) => {
          body += c.toString();
        });
        req.on("end", async () => {
          const client = (req.socket as TLSSocket).getPeerCertificate().subject?.CN;
          requests.push({ path: req.url ?? "", body, ...(client ? { client: String(client) } : {}) });
          const step = script.shift() ?? { status: 500 };
          const next = typeof step === "function" ? await step(body) : step;
          res.writeHead(next.status, { "content-type": "text/plain", ...next.headers });
          res.end(next.body ?? `status ${next.status}\n`);
        });
      },
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    agentDir(dir, p, NOW, { server: `https://127.0.0.1:${port}` });
  });
  afterEach(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  const deps = (over: Partial<AgentDeps> = {}): AgentDeps => ({
    now: () => NOW,
    random: () => 0.5,
    timers: timers(true),
    log: () => undefined,
    buildTime: NOW - 30 * DAY,
    ...over,
  });

  it("backs off with growing, jittered delays on 500, waits Retry-After on 202, and stops on 400", async () => {
    script = [
      { status: 500 },
      { status: 503 },
      { status: 500 },
      { status: 202, headers: { "retry-after": "7" } },
      { status: 400, body: "CSR signature does not verify with its public key\n" },
    ];
    const agent = new Agent(dir, deps());
    agent.load();
    expect(await agent.renewOnce(false)).toBe("stopped");
    // Full jitter with random() = 0.5: half of 2 s, 4 s, 8 s; then Retry-After; then nothing.
    expect(sleeps).toEqual([1000, 2000, 4000, 7000]);
    expect(requests.map((r) => r.path)).toEqual(Array(5).fill("/.well-known/est/simplereenroll"));
    // RFC 7030 §4.2.3: the same request again after the 202.
    expect(new Set(requests.map((r) => r.body)).size).toBe(1);
    const state = agent.store.loadState();
    expect(state.stopped).toBe("HTTP 400: CSR signature does not verify with its public key");
    expect(state.lastRenew).toMatchObject({ ok: false });
  });

  it("retries a 409 (the server changed the device meanwhile and wrote nothing) after a backoff", async () => {
    script = [
      { status: 409, body: "another request changed what this one rested on; nothing was written, retry\n" },
      { status: 400, body: "CSR signature does not verify with its public key\n" },
    ];
    const agent = new Agent(dir, deps());
    agent.load();
    expect(await agent.renewOnce(false)).toBe("stopped");
    // The 409 was retried after one backoff; only the 400 stopped renewal.
    expect(sleeps).toEqual([1000]);
    expect(requests).toHaveLength(2);
    expect(agent.store.loadState().stopped).toBe("HTTP 400: CSR signature does not verify with its public key");
  });

  it("draws every backoff between the floor and its exponential bound, capped by the lifetime left", () => {
    const randoms = [0.9, 0.1, 0.7, 0.99, 0.3];
    const delays = randoms.map((r, attempt) => backoffDelay(attempt, 23 * 3_600_000, () => r));
    expect(delays).toEqual([1800, 500, 5600, 15840, 9600]);
    // An hour left: no wait longer than 1/8 of it, whatever the attempt.
    expect(backoffDelay(30, 3_600_000, () => 0.999)).toBeLessThanOrEqual(450_000);
    expect(retryAfter("120", undefined)).toBe(120);
    expect(retryAfter("Fri, 15 Jan 2027 12:01:00 GMT", NOW)).toBe(60);
  });

  it("treats a refusal that says revoked as revocation: state revoked, no more renewals", async () => {
    script = [{ status: 403, body: "client certificate is revoked\n" }];
    const agent = new Agent(dir, deps());
    agent.load();
    expect(await agent.renewOnce(false)).toBe("revoked");
    expect(agent.store.loadState().revoked).toMatchObject({ by: "est" });
    expect(agent.statusDocument().state).toBe("revoked");
  });

  it("once revoked, renews neither when due nor when forced: the server's refusal keeps it revoked, and says so", async () => {
    script = [{ status: 403, body: "client certificate is revoked\n" }];
    const logged: string[] = [];
    const log: AgentDeps["log"] = (_level, msg) => void logged.push(msg);
    const revoked = new Agent(dir, deps({ log }));
    revoked.load();
    expect(await revoked.renewOnce(false)).toBe("revoked");
    // Past the renewal time (2/3 of the 24 h lifetime), the loop only sleeps, an hour at a time.
    const later = NOW + 20 * HOUR;
    const agent = new Agent(dir, deps({ now: () => later, timers: timers(false), log }));
    agent.start();
    expect(agent.renewAt()).toBeLessThan(later);
    await vi.waitFor(() => expect(sleeps).toEqual([HOUR]));
    expect(requests).toHaveLength(1);
    // Forced (SIGUSR1, `renew --now`, the rotate command): one request, refused, still revoked.
    script = [{ status: 403, body: "client certificate is revoked\n" }];
    agent.renewNow();
    await vi.waitFor(() => expect(sleeps).toEqual([HOUR, HOUR]));
    expect(requests).toHaveLength(2);
    expect(logged.filter((m) => /revoked/.test(m))).toEqual([
      "this device's certificate is revoked; renewal stopped",
      "renewal refused: this device's certificate is still revoked",
    ]);
    expect(agent.store.loadState().revoked).toMatchObject({ by: "est" });
    expect(agent.statusDocument().state).toBe("revoked");
    await agent.stop();
  });

  it("an expired certificate the server will not renew: lost-identity with the reason, then an operator's identity is loaded", async () => {
    // Two days on: the 24 h device certificate expired; the server refuses it.
    script = [
      { status: 403, body: "client certificate expired at ... (1d ago), past the 1d in which profile device renews\n" },
    ];
    const later = NOW + 2 * DAY;
    const agent = new Agent(dir, deps({ now: () => later }));
    agent.load();
    expect(await agent.renewOnce(false)).toBe("lost-identity");
    const state = agent.store.loadState();
    expect(state.lostIdentity?.reason).toMatch(/^HTTP 403: client certificate expired .*past the 1d/);
    expect(state.stopped).toBeNull();
    expect(state.revoked).toBeNull();
    expect(agent.statusDocument().state).toBe("lost-identity");
    // (A refusal while the certificate is still valid stops renewal instead: the 400 test above.)
    // An operator enrolls the device again in place: what `edgeid-agent enroll` writes, then SIGHUP.
    const p = await pki(later);
    const store = agentDir(dir, p, later, { server: agent.store.loadConfig().server });
    agent.reload();
    expect(agent.leaf.serialNumber).toBe(p.device.node.serialNumber);
    expect(agent.statusDocument().state).toBe("online");
    expect(store.loadState().lostIdentity).toBeNull();
  });

  it("an identity loaded by reload() while a renewal is in flight is kept: the renewal's answer, issued or refused, is dropped", async () => {
    for (const answer of ["issued", "refused"] as const) {
      let reached: () => void = () => undefined;
      const inFlight = new Promise<void>((r) => {
        reached = r;
      });
      let release: () => void = () => undefined;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      script = [
        async (body) => {
          reached();
          await gate;
          if (answer === "refused") return { status: 403, body: "certificate is not the device's current one\n" };
          return issuedAnswer(p.root, body, "0bad", NOW);
        },
      ];
      const server = new AgentStore(dir).loadConfig().server;
      agentDir(dir, p, NOW, { server });
      const agent = new Agent(dir, deps());
      agent.load();
      const renewal = agent.renewOnce(false);
      await inFlight;
      // Meanwhile an operator enrolls the device again in place (a new certificate from
      // the same CA, written by `edgeid-agent enroll`), and the agent reloads.
      const fresh = await issue(p.root, "CN=gw-t", [CLIENT_AUTH], NOW - HOUR, NOW + 23 * HOUR);
      agent.store.saveIdentity({ key: createPrivateKey(fresh.key), chain: [fresh.node] });
      agent.reload();
      release();
      expect(await renewal).toBe("cancelled");
      expect(agent.leaf.serialNumber).toBe(fresh.node.serialNumber);
      expect(new AgentStore(dir).loadIdentity().chain[0]?.serialNumber).toBe(fresh.node.serialNumber);
      const state = agent.store.loadState();
      expect(state.stopped).toBeNull();
      expect(state.lastError).toBeNull();
      expect(agent.statusDocument().state).toBe("online");
    }
  });

  it("past the renewal window, enrolls again with its IDevID (a new key) before it would report lost-identity", async () => {
    const later = NOW + 2 * DAY;
    // The manufacturer certificate the device first enrolled with, kept by path in its configuration.
    const idevid = await issue(p.root, "CN=SN-0001", [CLIENT_AUTH], NOW - DAY, NOW + 365 * DAY);
    writeFileSync(join(dir, "idevid.pem"), idevid.pem);
    writeFileSync(join(dir, "idevid.key"), idevid.key);
    const store = new AgentStore(dir);
    store.saveConfig({
      ...store.loadConfig(),
      idevid: { cert: join(dir, "idevid.pem"), key: join(dir, "idevid.key") },
    });
    const issueFor = (body: string): Promise<Scripted> => issuedAnswer(p.root, body, "5eed", later);
    script = [
      { status: 403, body: "client certificate expired at ..., past the 1d in which profile device renews\n" },
      issueFor,
    ];
    const agent = new Agent(dir, deps({ now: () => later }));
    agent.load();
    expect(await agent.renewOnce(false)).toBe("renewed");
    expect(requests.map((r) => [r.path.replace(/^.*\//, ""), r.client])).toEqual([
      ["simplereenroll", "gw-t"],
      ["simpleenroll", "SN-0001"],
    ]);
    expect(agent.leaf.serialNumber.toLowerCase()).toBe("5eed");
    expect(agent.store.loadState().lostIdentity).toBeNull();
    expect(agent.statusDocument().state).toBe("online");

    // The next time, the IDevID is refused too: lost-identity, with both reasons.
    requests = [];
    const expiredAgain = new Agent(dir, deps({ now: () => later + 2 * DAY }));
    expiredAgain.load();
    script = [
      { status: 403, body: "client certificate expired, past the window\n" },
      { status: 403, body: "the manufacturer certificate of gw-t was revoked with the device\n" },
    ];
    expect(await expiredAgain.renewOnce(false)).toBe("lost-identity");
    expect(expiredAgain.store.loadState().lostIdentity?.reason).toMatch(
      /^HTTP 403: client certificate expired, past the window; with the IDevID: HTTP 403: the manufacturer certificate of gw-t was revoked/,
    );
  });

  it("refreshes /cacerts over verified TLS and trusts old and new CA during a rollover", async () => {
    const next = (await selfSigned("CN=Agent Test CA 2", NOW - DAY, NOW + 3650 * DAY)).cert;
    const body = Buffer.from(certsOnly([new Uint8Array(next.rawData)])).toString("base64");
    script = [{ status: 200, headers: { "content-type": "application/pkcs7-mime" }, body }];
    const agent = new Agent(dir, deps());
    agent.load();
    const before = agent.store.loadTrust().map((c) => c.subject);
    expect(await agent.refreshCa()).toEqual({ added: 1 });
    expect(requests.map((r) => r.path)).toEqual(["/.well-known/est/cacerts"]);
    expect(agent.store.loadTrust().map((c) => c.subject)).toEqual([...before, "CN=Agent Test CA 2"]);
  });

  it("with the clock set back a year, decides from the time floor: no renewal, no expiry", async () => {
    const agent = new Agent(
      dir,
      deps({ now: () => NOW - 365 * DAY, timers: timers(false), buildTime: NOW - 400 * DAY }),
    );
    agent.start();
    for (let i = 0; i < 100 && sleeps.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    // The certificate (valid from NOW-1h to NOW+23h) is neither "not yet valid" nor due.
    expect(agent.now()).toBe(NOW);
    expect(agent.statusDocument().state).toBe("online");
    expect(agent.renewAt()).toBe(NOW - 3_600_000 + (2 / 3) * 24 * 3_600_000);
    // It sleeps (at most an hour at a time) instead of renewing, and asked the server nothing.
    expect(sleeps).toEqual([3_600_000]);
    expect(requests).toEqual([]);
    expect(agent.store.loadState().timeFloor).toBe(NOW);
    await agent.stop();
  });
});
