/**
 * The agent believes only what it verified: revocation only from the verified EST server
 * or broker, the EST server's and broker's certificates checked like a TLS server's
 * (serverAuth, a subjectAltName for the host, CA constraints on the path, all at the
 * agent's time), and nothing taken from or sent to a broker before that check.
 * Real TLS on 127.0.0.1; injected clock and timers.
 */
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createNetServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import * as x509 from "@peculiar/x509";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../device-client/src/agent.ts";
import type { AgentDeps } from "../../device-client/src/deps.ts";
import { serverChainProblem } from "../../device-client/src/tls-check.ts";
import {
  agentDir,
  CA_EXTENSIONS,
  CLIENT_AUTH,
  DAY,
  HOUR,
  issue,
  pki,
  SAN_IP,
  SAN_LOCALHOST,
  SERVER_AUTH,
  selfSigned,
} from "./support/pki.ts";
import { until } from "./support/until.ts";

const NOW = Date.UTC(2027, 0, 15, 12);
/** A fatal TLS alert record: certificate_revoked (44), RFC 8446 §6.2 / RFC 5246 §7.2. */
const ALERT_CERTIFICATE_REVOKED = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x2c]);

/** An MQTT 3.1.1 PUBLISH (QoS 0) of `payload` on `topic`. */
function publishPacket(topic: string, payload: string): Buffer {
  const t = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, Buffer.from(payload)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
const CA_ONLY = new x509.BasicConstraintsExtension(true, undefined, true);
const SIGN_ONLY = new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true);
const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00]);

/**
 * Just enough of a broker for the agent to stop cleanly: SUBACK for SUBSCRIBE, PUBACK
 * for a QoS 1 PUBLISH, PINGRESP for PINGREQ (MQTT 3.1.1 §3); everything else is ignored.
 */
function acknowledge(socket: { write(b: Buffer): unknown }): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      let length = 0;
      let i = 1;
      for (let mul = 1; i < buffered.length; i++, mul *= 128) {
        length += ((buffered[i] as number) & 0x7f) * mul;
        if (((buffered[i] as number) & 0x80) === 0) break;
      }
      if (i >= buffered.length || buffered.length < i + 1 + length) return;
      const type = (buffered[0] as number) >> 4;
      const qos = ((buffered[0] as number) >> 1) & 3;
      const body = buffered.subarray(i + 1, i + 1 + length);
      buffered = buffered.subarray(i + 1 + length);
      if (type === 8) socket.write(Buffer.from([0x90, 0x03, body[0] as number, body[1] as number, 0x01]));
      if (type === 3 && qos === 1) {
        const at = 2 + (((body[0] as number) << 8) | (body[1] as number));
        socket.write(Buffer.from([0x40, 0x02, body[at] as number, body[at + 1] as number]));
      }
      if (type === 12) socket.write(Buffer.from([0xd0, 0x00]));
    }
  };
}

describe("the agent's peers: only what it verified counts", () => {
  let dir: string;
  let p: Awaited<ReturnType<typeof pki>>;
  let sleeps: number[];
  let logs: { level: string; msg: string; fields?: Record<string, unknown> }[];
  const servers: Server[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeid-agent-identity-"));
    p = await pki(NOW);
    sleeps = [];
    logs = [];
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
    rmSync(dir, { recursive: true, force: true });
  });

  async function listen<S extends Server>(server: S): Promise<number> {
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    return (server.address() as { port: number }).port;
  }

  /** Timers that record each delay and fire the first `fire` of them at once, the rest never. */
  const timers = (fire: number): AgentDeps["timers"] => ({
    setTimeout: (run, ms) => {
      sleeps.push(ms);
      if (sleeps.length <= fire) setImmediate(run);
      return ms;
    },
    clearTimeout: () => undefined,
  });

  const deps = (over: Partial<AgentDeps> = {}): AgentDeps => ({
    now: () => NOW,
    random: () => 0.5,
    timers: timers(0),
    log: (level, msg, fields) => logs.push({ level, msg, ...(fields ? { fields } : {}) }),
    buildTime: NOW - 30 * DAY,
    ...over,
  });

  const logged = (msg: string) => logs.filter((l) => l.msg === msg);

  /** An EST server with `cert` that records what reaches it and answers `status`. */
  async function estServer(cert: { pem: string; key: string }, status = 400) {
    const requests: string[] = [];
    const port = await listen(
      createHttpsServer({ key: cert.key, cert: cert.pem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
        requests.push(req.url ?? "");
        res.writeHead(status, { "content-type": "text/plain" }).end("refused for the test\n");
      }),
    );
    return { port, requests };
  }

  /**
   * A broker that, as soon as TLS is up, sends CONNACK and `cmd/revoked` without waiting
   * for CONNECT — what an on-path party would do — and counts the bytes it receives.
   * TLS 1.2, where the server's Finished is the handshake's last message: its PUBLISH
   * follows it on the wire while the agent is still deciding on the certificate. (In
   * TLS 1.3 the agent's refusal comes before the server can send anything.)
   */
  async function eagerBroker(cert: { pem: string; key: string }, then: "stay" | "close" = "stay") {
    const seen = { bytes: 0, sent: 0, closed: 0 };
    const options = { key: cert.key, cert: cert.pem, requestCert: true, rejectUnauthorized: false };
    const srv = createTlsServer({ ...options, maxVersion: "TLSv1.2" }, (socket) => {
      const answer = acknowledge(socket);
      socket.on("data", (c: Buffer) => {
        seen.bytes += c.length;
        answer(c);
      });
      socket.on("close", () => {
        seen.closed++;
      });
      socket.on("error", () => undefined);
      socket.write(
        Buffer.concat([CONNACK, publishPacket("edgeid/v1/devices/gw-t/cmd/revoked", '{"reason":"from the path"}')]),
        () => {
          seen.sent++;
        },
      );
      if (then === "close") socket.end();
    });
    const port = await listen(srv);
    return { port, seen };
  }

  it("a TLS alert 44 (certificate revoked) from an unauthenticated peer is a network error: backoff, never revoked", async () => {
    // Answers every ClientHello with a fatal certificate_revoked alert, on EST and MQTT alike.
    const hellos = { count: 0 };
    const port = await listen(
      createNetServer((socket: Socket) => {
        socket.on("error", () => undefined);
        socket.once("data", () => {
          hellos.count++;
          socket.end(ALERT_CERTIFICATE_REVOKED);
        });
      }),
    );
    agentDir(dir, p, NOW, { server: `https://127.0.0.1:${port}`, mqtt: `mqtts://127.0.0.1:${port}` });
    // 16 h after NOW: renewal (due at 2/3 of the 24 h life) is due; 7 h are left.
    const agent = new Agent(dir, deps({ now: () => NOW + 16 * HOUR, timers: timers(3) }));
    agent.start();
    try {
      await until(
        "four renewal attempts and the MQTT error",
        () => sleeps.length >= 4 && logged("mqtt error").length > 0,
      );
      // What the peer said really was "certificate revoked", on both connections.
      const failures = logged("renewal failed; backing off").map((l) => String(l.fields?.detail));
      expect(failures).toHaveLength(4);
      for (const f of failures) expect(f).toMatch(/certificate revoked/);
      expect(String(logged("mqtt error")[0]?.fields?.error)).toMatch(/certificate revoked/);
      // Backoff (full jitter, random() = 0.5: half of 2 s, 4 s, 8 s, 16 s), not the revoked state.
      expect(sleeps).toEqual([1000, 2000, 4000, 8000]);
      const state = agent.store.loadState();
      expect(state.revoked).toBeNull();
      expect(state.lastError).toMatch(/certificate revoked/);
      expect(agent.statusDocument().state).toBe("online");
      expect(logged("this device's certificate is revoked; renewal stopped")).toEqual([]);
    } finally {
      await agent.stop();
    }
    expect(agent.store.loadState().revoked).toBeNull();
  });

  it("refuses an EST server certificate from our CA that is for clients only, or names the host only in its CN", async () => {
    const clientOnly = await issue(p.root, "CN=127.0.0.1", [CLIENT_AUTH, SAN_IP], NOW - DAY, NOW + DAY);
    const cnOnly = await issue(p.root, "CN=localhost", [SERVER_AUTH], NOW - DAY, NOW + DAY);
    const noEku = await issue(p.root, "CN=127.0.0.1", [SAN_IP], NOW - DAY, NOW + DAY);
    const cases = [
      { cert: clientOnly, host: "127.0.0.1", why: /no serverAuth/ },
      { cert: noEku, host: "127.0.0.1", why: /no serverAuth/ },
      { cert: cnOnly, host: "localhost", why: /does not name localhost in its subjectAltName/ },
    ];
    for (const c of cases) {
      const est = await estServer(c.cert);
      agentDir(dir, p, NOW, { server: `https://${c.host}:${est.port}` });
      sleeps = [];
      const agent = new Agent(dir, deps());
      agent.load();
      const renewal = agent.renewOnce(false);
      await until("the backoff", () => sleeps.length > 0);
      // A network error (backoff), with the reason; refused before the request: nothing reached the server.
      expect(agent.store.loadState().lastError).toMatch(c.why);
      expect(est.requests).toEqual([]);
      await agent.stop();
      expect(await renewal).toBe("cancelled");
    }
    // Control: the name in a dNSName SAN, serverAuth: accepted (the request arrives, its 400 stops renewal).
    const good = await issue(p.root, "CN=whatever", [SERVER_AUTH, SAN_LOCALHOST], NOW - DAY, NOW + DAY);
    const est = await estServer(good);
    agentDir(dir, p, NOW, { server: `https://localhost:${est.port}` });
    const agent = new Agent(dir, deps());
    agent.load();
    expect(await agent.renewOnce(true)).toBe("stopped");
    expect(est.requests).toEqual(["/.well-known/est/simplereenroll"]);
  });

  it("refuses such a broker during the handshake: no CONNECT sent, its early cmd/revoked never processed", async () => {
    const clientOnly = await issue(p.root, "CN=127.0.0.1", [CLIENT_AUTH, SAN_IP], NOW - DAY, NOW + DAY);
    const cnOnly = await issue(p.root, "CN=localhost", [SERVER_AUTH], NOW - DAY, NOW + DAY);
    const cases = [
      { cert: clientOnly, host: "127.0.0.1", why: /no serverAuth/ },
      { cert: cnOnly, host: "localhost", why: /does not name localhost in its subjectAltName/ },
    ];
    for (const c of cases) {
      logs = [];
      const broker = await eagerBroker(c.cert);
      agentDir(dir, p, NOW, { server: "https://127.0.0.1:9", mqtt: `mqtts://${c.host}:${broker.port}` });
      const agent = new Agent(dir, deps());
      agent.start();
      try {
        await until("the refusal, the broker's send and its close", () => {
          return logged("mqtt broker refused").length > 0 && broker.seen.sent > 0 && broker.seen.closed > 0;
        });
        expect(String(logged("mqtt broker refused")[0]?.fields?.error)).toMatch(c.why);
        // Not a byte of MQTT (the CONNECT with its will) reached the unverified peer…
        expect(broker.seen.bytes).toBe(0);
        // …and what it sent was never parsed: no command, no connection, no revoked state.
        expect(logged("command")).toEqual([]);
        expect(logged("mqtt connected")).toEqual([]);
        expect(agent.store.loadState().revoked).toBeNull();
        expect(agent.statusDocument().state).toBe("online");
      } finally {
        await agent.stop();
      }
    }
    // Control: the same broker with a proper certificate is verified; then its cmd/revoked counts.
    logs = [];
    const broker = await eagerBroker(p.server);
    agentDir(dir, p, NOW, { server: "https://127.0.0.1:9", mqtt: `mqtts://127.0.0.1:${broker.port}` });
    const agent = new Agent(dir, deps());
    agent.start();
    try {
      await until("the revoked state", () => agent.store.loadState().revoked !== null);
      expect(agent.store.loadState().revoked).toMatchObject({ by: "mqtt" });
      await until("the CONNECT at the broker", () => broker.seen.bytes > 0);
      expect(logged("mqtt broker refused")).toEqual([]);
    } finally {
      await agent.stop();
    }
  });

  it("checks every CA on the path: cA, keyCertSign, pathLen, validity at the agent's time", async () => {
    const leafFor = async (issuer: Parameters<typeof issue>[0]) =>
      (await issue(issuer, "CN=est", [SERVER_AUTH, SAN_IP], NOW - DAY, NOW + DAY)).node;
    const problem = (chain: X509Certificate[], trust = [p.root.node], at = NOW) =>
      serverChainProblem(chain, "127.0.0.1", trust, at);

    const good = await issue(p.root, "CN=Issuing", CA_EXTENSIONS(0), NOW - DAY, NOW + DAY);
    const goodLeaf = await leafFor(good);
    expect(problem([goodLeaf, good.node])).toBeUndefined();
    // A device certificate from our CA (not a CA) signing a server certificate.
    expect(problem([await leafFor(p.device), p.device.node])).toMatch(/is not a CA/);
    // A CA certificate without keyUsage, and one whose keyUsage lacks keyCertSign (which
    // OpenSSL's issuer check already refuses to chain through).
    const noKeyUsage = await issue(p.root, "CN=No keyUsage", [CA_ONLY], NOW - DAY, NOW + DAY);
    expect(problem([await leafFor(noKeyUsage), noKeyUsage.node])).toMatch(/no keyCertSign/);
    const noSign = await issue(p.root, "CN=No keyCertSign", [CA_ONLY, SIGN_ONLY], NOW - DAY, NOW + DAY);
    expect(problem([await leafFor(noSign), noSign.node])).toMatch(/no keyCertSign|does not chain/);
    // pathLen 0 under the root, and another CA under it.
    const second = await issue(good, "CN=Second", CA_EXTENSIONS(), NOW - DAY, NOW + DAY);
    expect(problem([await leafFor(second), second.node, good.node])).toMatch(/allows 0 intermediate CAs/);
    // A root with pathLen 0 over an intermediate.
    const strictRoot = await selfSigned("CN=Strict Root", NOW - DAY, NOW + DAY, CA_EXTENSIONS(0));
    const under = await issue(strictRoot, "CN=Under strict", CA_EXTENSIONS(), NOW - DAY, NOW + DAY);
    expect(problem([await leafFor(under), under.node], [strictRoot.node])).toMatch(/allows 0 intermediate CAs/);
    // Validity at the agent's time, the anchor included.
    expect(problem([goodLeaf, good.node], [p.root.node], NOW + 2 * DAY)).toMatch(/not valid at/);
    const oldRoot = await selfSigned("CN=Old Root", NOW - 3 * DAY, NOW - DAY);
    const late = await issue(oldRoot, "CN=est", [SERVER_AUTH, SAN_IP], NOW - DAY, NOW + DAY);
    expect(problem([late.node], [oldRoot.node])).toMatch(/CN=Old Root is not valid/);
  });

  it("processes a cmd/revoked that a verified broker sent just before closing the connection", async () => {
    const broker = await eagerBroker(p.server, "close");
    agentDir(dir, p, NOW, { server: "https://127.0.0.1:9", mqtt: `mqtts://127.0.0.1:${broker.port}` });
    const agent = new Agent(dir, deps());
    agent.start();
    try {
      await until("the revoked state", () => agent.store.loadState().revoked !== null);
      expect(agent.store.loadState().revoked).toMatchObject({ by: "mqtt" });
    } finally {
      await agent.stop();
    }
  });
});
