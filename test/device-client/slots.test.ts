/**
 * Two identity slots: a renewal keeps the previous identity (previous.pem, 0600) until
 * the new one has been used once — a CONNACK from the verified broker or an answer from
 * the verified EST server — and a new certificate that either refuses sends the agent
 * back to the previous one while that is valid, reported. Transport errors and
 * unverified peers never do; an expired previous certificate is never used; a power cut
 * anywhere leaves the slots and the state consistent.
 * Real TLS, a real MQTT broker (aedes), real keys; injected clock and timers.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import * as x509 from "@peculiar/x509";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../device-client/src/agent.ts";
import type { AgentDeps } from "../../device-client/src/deps.ts";
import type { AgentStore, CrashStep } from "../../device-client/src/store.ts";
import { type TestBroker, testBroker } from "./support/broker.ts";
import { agentDir, DAY, HOUR, issue, issuedAnswer, pki, SAN_IP, SERVER_AUTH, selfSigned } from "./support/pki.ts";
import { until } from "./support/until.ts";

const NOW = Date.UTC(2027, 0, 15, 12);
/** 16 h into the first certificate's 24 h: its renewal (due at 2/3) is due. */
const T = NOW + 16 * HOUR;
const S2 = "5eed02";
const S3 = "5eed03";
const mode = (file: string) => statSync(file).mode & 0o777;

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

describe("two identity slots: the previous identity until the new one has been used once", () => {
  let dir: string;
  let p: Awaited<ReturnType<typeof pki>>;
  let clock: number;
  let sleeps: number[];
  let fire: number;
  let logs: { level: string; msg: string; fields?: Record<string, unknown> }[];
  let est: Server;
  let estUrl: string;
  /** What reaches the EST server: the path and the serial of the client certificate. */
  let requests: { op: string; serial: string }[];
  let script: (Answer | ((body: string) => Promise<Answer>))[];
  let brokers: TestBroker[];
  let agents: Agent[];
  let s1: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeid-agent-slots-"));
    p = await pki(NOW);
    s1 = p.device.node.serialNumber.toLowerCase();
    clock = T;
    sleeps = [];
    fire = 0;
    logs = [];
    requests = [];
    script = [];
    brokers = [];
    agents = [];
    est = createServer(
      { key: p.server.key, cert: p.server.pem, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        let body = "";
        req.on("data", (c: Buffer) => {
          body += c.toString();
        });
        req.on("end", async () => {
          const serial = String((req.socket as TLSSocket).getPeerCertificate().serialNumber ?? "").toLowerCase();
          requests.push({ op: (req.url ?? "").replace(/^.*\//, ""), serial });
          const step = script.shift() ?? { status: 500 };
          const next = typeof step === "function" ? await step(body) : step;
          res.writeHead(next.status, { "content-type": "text/plain", ...next.headers });
          res.end(next.body ?? `status ${next.status}\n`);
        });
      },
    );
    await new Promise<void>((r) => est.listen(0, "127.0.0.1", () => r()));
    estUrl = `https://127.0.0.1:${(est.address() as { port: number }).port}`;
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop().catch(() => undefined)));
    await Promise.all(brokers.splice(0).map((b) => b.close()));
    await new Promise<void>((r) => est.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Timers that record each delay and fire the first `fire` of them at once, the rest never. */
  const deps = (over: Partial<AgentDeps> = {}): AgentDeps => ({
    now: () => clock,
    random: () => 0.5,
    timers: {
      setTimeout: (run, ms) => {
        sleeps.push(ms);
        if (sleeps.length <= fire) setImmediate(run);
        return ms;
      },
      clearTimeout: () => undefined,
    },
    log: (level, msg, fields) => logs.push({ level, msg, ...(fields ? { fields } : {}) }),
    buildTime: NOW - 30 * DAY,
    ...over,
  });
  const logged = (msg: string) => logs.filter((l) => l.msg === msg);

  /** The EST server's 200: a certificate with `serial` for the CSR's key, valid [clock-1h, clock+23h]. */
  const issueAs =
    (serial: string) =>
    (body: string): Promise<Answer> =>
      issuedAnswer(p.root, body, serial, clock);

  async function broker(cert: { pem: string; key: string } = p.server): Promise<TestBroker> {
    const b = await testBroker(cert);
    brokers.push(b);
    return b;
  }

  function started(over: Partial<AgentDeps> = {}): Agent {
    const agent = new Agent(dir, deps(over));
    agents.push(agent);
    agent.start();
    return agent;
  }

  /** Renews once (S1 → S2) with an agent that is then dropped, as a power cut would. */
  async function renewedToS2(mqtt?: string, crash?: CrashStep): Promise<AgentStore> {
    agentDir(dir, p, NOW, { server: estUrl, ...(mqtt ? { mqtt } : {}) });
    script = [issueAs(S2)];
    const agent = new Agent(
      dir,
      deps(
        crash
          ? {
              crash: (step) => {
                if (step === crash) throw new Error(`power cut at ${step}`);
              },
            }
          : {},
      ),
    );
    agent.load();
    if (crash) await expect(agent.renewOnce(false)).rejects.toThrow(`power cut at ${crash}`);
    else expect(await agent.renewOnce(false)).toBe("renewed");
    return agent.store;
  }

  const serialIn = (file: string) =>
    new x509.X509Certificate(readFileSync(file, "utf8").replace(/^[\s\S]*?(?=-----BEGIN CERTIFICATE)/, ""))
      .serialNumber;

  it("keeps the previous identity (0600) after a renewal until the verified broker accepts the new one, then removes it", async () => {
    const b = await broker();
    agentDir(dir, p, NOW, { server: estUrl, mqtt: b.url });
    b.hold.add(S2);
    script = [issueAs(S2)];
    const agent = started();
    const store = agent.store;
    // The loop renews (due at T); the reporter reconnects with S2, whose CONNACK the broker holds.
    await until("the renewal", () => existsSync(store.paths.previous) && serialIn(store.paths.identity) === S2);
    expect(requests).toEqual([{ op: "simplereenroll", serial: s1 }]);
    // Two slots: the new identity, and the previous one — key and chain, 0600 — beside it.
    expect(mode(store.paths.previous)).toBe(0o600);
    const previous = store.loadPrevious();
    expect(previous?.chain[0]?.serialNumber.toLowerCase()).toBe(s1);
    expect(createPublicKey(previous?.key as never).export({ type: "spki", format: "der" })).toEqual(
      createPublicKey(createPrivateKey(p.device.key)).export({ type: "spki", format: "der" }),
    );
    await until("the state", () => store.loadState().unconfirmed !== null);
    expect(store.loadState().unconfirmed).toMatchObject({ serial: S2, previous: s1 });
    // Connected over TLS with S2, CONNECT sent, no CONNACK yet: not a use yet, both slots stay.
    await until("the CONNECT with S2 at the broker", () => b.held.includes(S2));
    expect(existsSync(store.paths.previous)).toBe(true);
    expect(store.loadState().unconfirmed).toMatchObject({ serial: S2 });
    // The broker accepts S2: the first successful use; the previous slot is deleted.
    b.release();
    await until("the previous slot removed", () => !existsSync(store.paths.previous));
    await until("the state", () => store.loadState().unconfirmed === null);
    expect(b.connects.filter((c) => c.serial === S2)).toEqual([{ serial: S2, code: 0 }]);
    expect(logged("new certificate confirmed; previous identity removed").map((l) => l.fields)).toEqual([
      { by: "mqtt", serial: S2, previous: s1 },
    ]);
    expect(serialIn(store.paths.identity)).toBe(S2);
    expect(store.loadState().fallback).toBeNull();
    expect(agent.statusDocument()).not.toHaveProperty("fallback");
    expect(readdirSync(dir).filter((f) => f.includes("previous"))).toEqual([]);
  });

  it("a new certificate the verified broker refuses: back to the previous one, reported, and the previous one connects", async () => {
    const b = await broker();
    b.refuse.set(S2, 5);
    const setup = agentDir(dir, p, NOW, { server: estUrl, mqtt: b.url });
    setup.saveConfig({ ...setup.loadConfig(), hook: "systemctl reload mosquitto" });
    /** The serial in cert.pem each time the hook ran. */
    const hooked: string[] = [];
    script = [issueAs(S2)];
    const agent = started({
      runHook: async (_command, env) => {
        hooked.push(serialIn(env.EDGEID_CERT as string));
      },
    });
    const store = agent.store;
    await until("S2 refused, then S1 accepted", () => {
      const refused = b.connects.findIndex((c) => c.serial === S2 && c.code === 5);
      return refused >= 0 && b.connects.slice(refused).some((c) => c.serial === s1 && c.code === 0);
    });
    // Back on S1: identity.pem and the exported copies; the refused S2 and the slot are gone.
    expect(serialIn(store.paths.identity)).toBe(s1);
    expect(serialIn(store.paths.cert)).toBe(s1);
    expect(agent.leaf.serialNumber.toLowerCase()).toBe(s1);
    expect(existsSync(store.paths.previous)).toBe(false);
    const state = store.loadState();
    expect(state.unconfirmed).toBeNull();
    // A renewal after a backoff (full jitter, random() = 0.5: half of 2 s).
    expect(state.fallback).toEqual({
      at: new Date(T).toISOString(),
      by: "mqtt",
      reason: "CONNACK 5: Connection refused: Not authorized",
      refused: S2,
      serial: s1,
      attempt: 0,
      retryAt: T + 1000,
    });
    await until("the loop's sleep until the retry", () => sleeps.at(-1) === 1000);
    // The services on the gateway were told of each change of cert.pem: to S2, then back to S1.
    await until("the hook after the fallback", () => hooked.length === 2);
    expect(hooked).toEqual([S2, s1]);
    // Reported: a log line, an event and the status, each with the reason and both serials.
    expect(logged("new certificate refused at its first use; back on the previous one").map((l) => l.fields)).toEqual([
      {
        by: "mqtt",
        reason: "CONNACK 5: Connection refused: Not authorized",
        refused: S2,
        serial: s1,
        notAfter: p.device.node.validTo,
        retryAt: new Date(T + 1000).toISOString(),
      },
    ]);
    await until("the event at the broker", () => b.messages("/events").some((e) => e.type === "identity-fallback"));
    expect(b.messages("/events").find((e) => e.type === "identity-fallback")).toMatchObject({
      type: "identity-fallback",
      by: "mqtt",
      reason: "CONNACK 5: Connection refused: Not authorized",
      refused: S2,
      serial: s1,
      notAfter: new Date(p.device.node.validTo).toISOString(),
      retryAt: new Date(T + 1000).toISOString(),
    });
    await until("the status at the broker", () => b.messages("/status").some((s) => s.fallback !== undefined));
    const status = b.messages("/status").find((s) => s.fallback !== undefined);
    expect(status).toMatchObject({
      state: "degraded",
      cert: { serial: s1 },
      fallback: { by: "mqtt", reason: "CONNACK 5: Connection refused: Not authorized", refused: S2, serial: s1 },
    });
    // The same identity, after a power cut: nothing more to fall back to, no third slot.
    const again = new Agent(dir, deps());
    again.load();
    expect(again.leaf.serialNumber.toLowerCase()).toBe(s1);
    expect(again.store.loadState().unconfirmed).toBeNull();
  });

  it("a power cut between the renewal and the first use keeps both slots and the state consistent", async () => {
    // Cut before the new identity is renamed into place: the old identity, no slot, nothing unconfirmed.
    for (const step of ["previous-saved", "identity-staged"] as CrashStep[]) {
      const store = await renewedToS2(undefined, step);
      const next = new Agent(dir, deps());
      next.load();
      expect(next.leaf.serialNumber.toLowerCase()).toBe(s1);
      expect(existsSync(store.paths.previous)).toBe(false);
      expect(store.loadState().unconfirmed).toBeNull();
      expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
    }
    // Cut after the rename, before the state was saved (and after it, the renewal complete):
    // the new identity, unconfirmed, with the previous one beside it.
    for (const step of ["identity-renamed", "exported", undefined]) {
      const store = await renewedToS2(undefined, step as CrashStep | undefined);
      const next = new Agent(dir, deps());
      next.load();
      expect(next.leaf.serialNumber.toLowerCase()).toBe(S2);
      expect(serialIn(store.paths.cert)).toBe(S2);
      expect(store.loadPrevious()?.chain[0]?.serialNumber.toLowerCase()).toBe(s1);
      expect(mode(store.paths.previous)).toBe(0o600);
      expect(store.loadState().unconfirmed).toMatchObject({ serial: S2, previous: s1 });
      rmSync(dir, { recursive: true, force: true });
    }
    // A cut in a fallback, after its decision was saved and before the slots changed: the
    // next start carries it out.
    {
      const store = await renewedToS2();
      const state = store.loadState();
      store.saveState({
        ...state,
        unconfirmed: null,
        fallback: {
          at: new Date(T).toISOString(),
          by: "mqtt",
          reason: "CONNACK 5",
          refused: S2,
          serial: s1,
          attempt: 0,
          retryAt: T + 1000,
        },
      });
      const next = new Agent(dir, deps());
      next.load();
      expect(next.leaf.serialNumber.toLowerCase()).toBe(s1);
      expect(serialIn(store.paths.identity)).toBe(s1);
      expect(existsSync(store.paths.previous)).toBe(false);
      expect(store.loadState()).toMatchObject({ unconfirmed: null, fallback: { refused: S2, serial: s1 } });
      rmSync(dir, { recursive: true, force: true });
    }
    // After the cut: the restarted agent with a broker that refuses S2 goes back to S1.
    const b = await broker();
    b.refuse.set(S2, 5);
    const store = await renewedToS2(b.url, "identity-renamed");
    started();
    await until("S1 accepted after S2's refusal", () => b.connects.some((c) => c.serial === s1 && c.code === 0));
    expect(b.connects.map((c) => [c.serial, c.code])).toEqual([
      [S2, 5],
      [s1, 0],
    ]);
    expect(serialIn(store.paths.identity)).toBe(s1);
    expect(existsSync(store.paths.previous)).toBe(false);
    expect(store.loadState().fallback).toMatchObject({ refused: S2, serial: s1 });
  });

  it("status (inspect) writes and deletes nothing beside a running agent; the agent rewrites a loose previous slot 0600", async () => {
    const store = await renewedToS2(undefined, "identity-renamed");
    chmodSync(store.paths.previous, 0o644);
    // A write of the running agent in progress: its temp file must survive a status call.
    const inFlight = `${store.paths.state}.tmp-inflight`;
    writeFileSync(inFlight, "{}", { mode: 0o600 });
    const before = {
      previous: statSync(store.paths.previous).ino,
      state: readFileSync(store.paths.state, "utf8"),
      files: readdirSync(dir).sort(),
    };
    // What `edgeid-agent status` does: the slots as the running agent will see them, nothing written.
    const inspecting = new Agent(dir, deps());
    inspecting.load({ inspect: true });
    expect(inspecting.leaf.serialNumber.toLowerCase()).toBe(S2);
    expect(readFileSync(store.paths.state, "utf8")).toBe(before.state);
    expect(readdirSync(dir).sort()).toEqual(before.files);
    expect(statSync(store.paths.previous).ino).toBe(before.previous);
    expect(mode(store.paths.previous)).toBe(0o644);
    expect(store.loadState().unconfirmed).toBeNull();
    // The agent that runs completes the state, and the private-file rule (rewritten, not
    // chmod-ed in place) applies to the previous slot like to identity.pem.
    new Agent(dir, deps()).load();
    expect(store.loadState().unconfirmed).toMatchObject({ serial: S2, previous: s1 });
    expect(mode(store.paths.previous)).toBe(0o600);
    expect(statSync(store.paths.previous).ino).not.toBe(before.previous);
    expect(existsSync(inFlight)).toBe(false);
  });

  it("a 403 from the verified EST server to the new certificate: back to the previous one, which renews after the backoff", async () => {
    const store = await renewedToS2();
    fire = 1;
    script = [{ status: 403, body: "client certificate was not issued by this CA\n" }, issueAs(S3)];
    const agent = new Agent(dir, deps());
    agent.load();
    expect(await agent.renewOnce(false)).toBe("renewed");
    expect(requests.slice(1)).toEqual([
      { op: "simplereenroll", serial: S2 },
      { op: "simplereenroll", serial: s1 },
    ]);
    expect(sleeps).toEqual([1000]);
    expect(logged("new certificate refused at its first use; back on the previous one")[0]?.fields).toMatchObject({
      by: "est",
      reason: "HTTP 403: client certificate was not issued by this CA",
      refused: S2,
      serial: s1,
    });
    // S3 replaced S1 (S2 was dropped): again two slots, S1 kept until S3 is used.
    expect(agent.leaf.serialNumber.toLowerCase()).toBe(S3);
    expect(store.loadPrevious()?.chain[0]?.serialNumber.toLowerCase()).toBe(s1);
    expect(store.loadState()).toMatchObject({
      unconfirmed: { serial: S3, previous: s1 },
      fallback: { by: "est", refused: S2, serial: s1 },
    });
  });

  it("never falls back on a transport error, an unverified server or broker, a refusal that is not about the certificate, or revocation", async () => {
    const store = await renewedToS2();
    const unchanged = () => {
      expect(serialIn(store.paths.identity)).toBe(S2);
      expect(store.loadPrevious()?.chain[0]?.serialNumber.toLowerCase()).toBe(s1);
      expect(store.loadState()).toMatchObject({ unconfirmed: { serial: S2, previous: s1 }, fallback: null });
      expect(logged("new certificate refused at its first use; back on the previous one")).toEqual([]);
    };
    const withConfig = (over: { server?: string; mqtt?: string }) => {
      store.saveConfig({ ...store.loadConfig(), ...over });
    };
    // EST: nothing listens (a transport error) → backoff.
    withConfig({ server: "https://127.0.0.1:1" });
    let agent = new Agent(dir, deps());
    agent.load();
    expect(await agent.renewOnce(true)).toBe("waiting");
    unchanged();
    // EST: a server that is not ours answers 403 → refused at the handshake, never asked.
    const other = await selfSigned("CN=Other CA", NOW - DAY, NOW + 30 * DAY);
    const impostor = await issue(other, "CN=127.0.0.1", [SERVER_AUTH, SAN_IP], NOW - DAY, NOW + 30 * DAY);
    let asked = 0;
    const fake = createServer({ key: impostor.key, cert: impostor.pem }, (_req, res) => {
      asked++;
      res.writeHead(403).end("client certificate was not issued by this CA\n");
    });
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", () => r()));
    try {
      withConfig({ server: `https://127.0.0.1:${(fake.address() as { port: number }).port}` });
      agent = new Agent(dir, deps());
      agent.load();
      expect(await agent.renewOnce(true)).toBe("waiting");
      expect(asked).toBe(0);
      unchanged();
    } finally {
      await new Promise<void>((r) => fake.close(() => r()));
    }
    // MQTT: a broker that is not ours refuses S2 → refused at the handshake, its CONNACK never read.
    const fakeBroker = await broker(impostor);
    fakeBroker.refuse.set(S2, 5);
    withConfig({ server: "https://127.0.0.1:1", mqtt: fakeBroker.url });
    agent = started();
    await until("the broker refused", () => logged("mqtt broker refused").length > 0);
    expect(fakeBroker.connects).toEqual([]);
    await agent.stop();
    unchanged();
    // MQTT: our broker refuses S2 with "server unavailable" (3): not about the certificate.
    const busy = await broker();
    busy.refuse.set(S2, 3);
    withConfig({ mqtt: busy.url });
    agent = started();
    await until("the refusal", () => busy.connects.length > 0 && logged("mqtt error").length > 0);
    await new Promise((r) => setImmediate(r));
    expect(busy.connects).toEqual([{ serial: S2, code: 3 }]);
    await agent.stop();
    unchanged();
    // EST: the verified server says the new certificate is revoked → revoked, not the previous one.
    withConfig({ server: estUrl, mqtt: undefined });
    script = [{ status: 403, body: "client certificate is revoked\n" }];
    agent = new Agent(dir, deps());
    agent.load();
    expect(await agent.renewOnce(false)).toBe("revoked");
    expect(requests.at(-1)).toEqual({ op: "simplereenroll", serial: S2 });
    expect(store.loadState().revoked).toMatchObject({ by: "est" });
    expect(serialIn(store.paths.identity)).toBe(S2);
    expect(logged("new certificate refused at its first use; back on the previous one")).toEqual([]);
  });

  it("never goes back to a previous certificate that has expired: it is removed instead", async () => {
    const b = await broker();
    b.refuse.set(S2, 5);
    const store = await renewedToS2(b.url);
    // S1 expired at NOW+23h; S2 (from T-1h to T+23h) is still valid.
    clock = NOW + 23 * HOUR + 60_000;
    const agent = started();
    await until("the refusal handled", () => logs.some((l) => l.msg.startsWith("new certificate refused")));
    expect(
      logged("new certificate refused; the previous one is not valid now and was removed, not used")[0]?.fields,
    ).toMatchObject({ by: "mqtt", refused: S2, previous: s1 });
    expect(b.connects).toEqual([{ serial: S2, code: 5 }]);
    expect(agent.leaf.serialNumber.toLowerCase()).toBe(S2);
    expect(serialIn(store.paths.identity)).toBe(S2);
    expect(existsSync(store.paths.previous)).toBe(false);
    expect(store.loadState()).toMatchObject({ unconfirmed: null, fallback: null });
    expect(logged("new certificate refused at its first use; back on the previous one")).toEqual([]);
  });
});
