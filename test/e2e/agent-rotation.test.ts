/**
 * The device agent (device-client/) against a real `edgeid serve` process and its
 * embedded MQTT broker, first boot and rotation: a pinned CA that does not match, the
 * legacy profile (RSA), repeated rotation with a short lifetime reported over MQTT,
 * commands over MQTT, 202 Retry-After until approval, and first boot with an IDevID.
 * Recovery (power loss, server and broker away, expiry, revocation) is in
 * agent-recovery.test.ts; the shared set-up is test/e2e/support/agent-harness.ts.
 */
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AgentStore } from "../../device-client/src/store.ts";
import { agent, expectValidPair, startAgent, until, useAgentHarness } from "./support/agent-harness.ts";
import { cliCreateToken, edgeid } from "./support/cli.ts";

const { h, enrollArgs, enrollAgent, mqttSessions, statusOf, eventsOf } = useAgentHarness("edgeid-agent-rotation-");

describe("edgeid-agent: first boot and rotation", () => {
  it("refuses a server whose CA does not match the pinned fingerprint, and sends no token", async () => {
    const { token } = await cliCreateToken(h.dataDir, "gw-pin");
    const r = await agent([
      "enroll",
      "--server",
      h.server.url,
      "--ca-fingerprint",
      `sha256:${"ab".repeat(32)}`,
      "--device",
      "gw-pin",
      "--token",
      token,
      "--dir",
      join(h.work, "agent-pin"),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("do not match the pinned fingerprint");
    const shown = JSON.parse((await edgeid(["devices", "show", "gw-pin", "--data", h.dataDir, "--json"])).stdout);
    expect(shown.tokens[0].usedAt).toBeNull();
  });

  it("runs in the legacy profile: an RSA key, the RSA chain (on TLS too), renewal at the same fraction", async () => {
    // Pinned to the RSA root only, as an appliance that cannot verify ECDSA would be.
    const rsaRoot = join(h.work, "rsa-root.pem");
    writeFileSync(rsaRoot, (await edgeid(["ca", "export", "--rsa", "--data", h.dataDir])).stdout);
    const { token } = await cliCreateToken(h.dataDir, "plc-agent", { profile: "legacy" });
    const dir = join(h.work, "agent-plc-agent");
    const r = await agent([
      "enroll",
      "--server",
      h.server.url,
      "--ca-file",
      rsaRoot,
      "--device",
      "plc-agent",
      "--token",
      token,
      "--dir",
      dir,
      "--label",
      "legacy",
      "--key-type",
      "RSA-2048",
      "--renew-fraction",
      "0.5",
      "--mqtt",
      h.mqttUrl,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const first = expectValidPair(dir);
    expect(first.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(first.issuer).toContain("CN=edgeid Issuing CA RSA");
    // Its trust is the RSA hierarchy alone: every TLS connection it made got the RSA chain.
    const trust = new AgentStore(dir).loadTrust();
    expect(trust.length).toBe(2);
    expect(trust.every((c) => c.publicKey.asymmetricKeyType === "rsa")).toBe(true);
    const a = startAgent(dir);
    try {
      await until("two rotations", () => a.count("renewed") >= 2, 45_000);
      const now = expectValidPair(dir);
      expect(now.serialNumber).not.toBe(first.serialNumber);
      expect(now.issuer).toBe(first.issuer);
      expect(now.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      await until("an RSA status over MQTT", () =>
        statusOf("plc-agent").some((s) => (s.cert as { serial: string }).serial === now.serialNumber.toLowerCase()),
      );
      const status = statusOf("plc-agent").findLast(
        (s) => (s.cert as { serial: string }).serial === now.serialNumber.toLowerCase(),
      ) as { cert: { keyAlg: string }; nextRenewAt: string };
      expect(status.cert.keyAlg).toBe("RSA-2048");
      // Renewal at half the life (less up to 5 % jitter), as for any profile. The agent
      // counts the life from the certificate's arrival, within a second or two of notBefore
      // (whole seconds, no backdate in this profile).
      const notBefore = Date.parse(now.validFrom);
      const life = Date.parse(now.validTo) - notBefore;
      const next = Date.parse(status.nextRenewAt);
      expect(next).toBeLessThanOrEqual(notBefore + 2000 + 0.5 * life);
      expect(next).toBeGreaterThanOrEqual(notBefore + 0.45 * (life - 2000));
    } finally {
      await a.stop();
    }
    const shown = JSON.parse((await edgeid(["devices", "show", "plc-agent", "--data", h.dataDir, "--json"])).stdout);
    expect(shown.profile).toBe("legacy");
    expect(shown.certificates.every((c: { issuer: string }) => c.issuer === "issuing-rsa")).toBe(true);
    expect(shown.certificates.filter((c: { method: string }) => c.method === "reenroll").length).toBeGreaterThanOrEqual(
      2,
    );
  }, 60_000); // two renewals of a 16 s certificate (~22 s) plus RSA keys and enrollment: its own wait allows 45 s

  it("enrolls with a token, rotates with a new key again and again, and reports over MQTT", async () => {
    const hookLog = join(h.work, "gw-rot-hook.log");
    const dir = await enrollAgent("gw-rot", [
      "--mqtt",
      h.mqttUrl,
      "--renew-fraction",
      "0.5",
      "--hook",
      `echo "$EDGEID_DEVICE $EDGEID_CERT" >> ${hookLog}`,
    ]);
    expect(statSync(join(dir, "identity.pem")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "key.pem")).mode & 0o777).toBe(0o600);
    const first = expectValidPair(dir);
    const a = startAgent(dir);
    try {
      await until("three rotations", () => a.count("renewed") >= 3, 45_000);
      const now = expectValidPair(dir);
      expect(now.serialNumber).not.toBe(first.serialNumber);
      expect(now.publicKey.export({ format: "pem", type: "spki" })).not.toBe(
        first.publicKey.export({ format: "pem", type: "spki" }),
      );
      await until("the status of the latest certificate", () =>
        statusOf("gw-rot").some((s) => (s.cert as { serial: string }).serial === now.serialNumber.toLowerCase()),
      );
      const status = statusOf("gw-rot").at(-1) as Record<string, unknown>;
      expect(status).toMatchObject({ v: 1, state: "online", agent: { version: "0.1.0" } });
      expect(status).toHaveProperty("cert.keyAlg", "P-256");
      expect(status).toHaveProperty("lastRenew.ok", true);
      expect(typeof status.nextRenewAt).toBe("string");
      const rotated = eventsOf("gw-rot", "rotated");
      expect(rotated.length).toBeGreaterThanOrEqual(3);
      expect(new Set(rotated.map((e) => e.serial)).size).toBe(rotated.length);
      // Sessions increase, and the broker saw the agent come back with each new certificate.
      const sessions = rotated.map((e) => e.session as number);
      expect([...sessions].sort((x, y) => x - y)).toEqual(sessions);
      const seen = new Set((await mqttSessions("gw-rot")).map((m) => m.serial));
      expect(seen.size).toBeGreaterThanOrEqual(3);
      // Each new certificate was confirmed by the broker's CONNACK, which deleted the previous slot.
      await until("three confirmations", () => a.count("new certificate confirmed; previous identity removed") >= 3);
      // The hook ran after each rotation, with the paths of the new files.
      const hooked = readFileSync(hookLog, "utf8").trim().split("\n");
      expect(hooked.length).toBeGreaterThanOrEqual(3);
      expect(hooked[0]).toBe(`gw-rot ${join(dir, "cert.pem")}`);
    } finally {
      await a.stop();
    }
    await until("offline", () => statusOf("gw-rot").at(-1)?.state === "offline");
    const shown = JSON.parse((await edgeid(["devices", "show", "gw-rot", "--data", h.dataDir, "--json"])).stdout);
    expect(shown.certificates.filter((c: { method: string }) => c.method === "reenroll").length).toBeGreaterThanOrEqual(
      3,
    );
  }, 90_000);

  it("answers MQTT commands: rotate renews at once, ca-update refreshes the bundle, others are refused", async () => {
    const dir = await enrollAgent("gw-cmd", ["--mqtt", h.mqttUrl, "--renew-fraction", "0.9"]);
    const a = startAgent(dir);
    try {
      await until("online", () => statusOf("gw-cmd").some((s) => s.state === "online"));
      await until("the command subscription", () => a.log().includes("mqtt subscribed"));
      // Through the server's command outbox, as an operator sends them.
      const queue = async (cmd: "rotate" | "ca-update") => {
        const r = await edgeid(["commands", "send", cmd, "--device", "gw-cmd", "--data", h.dataDir, "--json"]);
        return (JSON.parse(r.stdout) as { opIds: string[] }).opIds[0] as string;
      };
      const recorded = async (opId: string) =>
        JSON.parse((await edgeid(["commands", "show", opId, "--data", h.dataDir, "--json"])).stdout).state as string;
      const result = (opId: string) =>
        h.messages.find((m) => m.topic === `edgeid/v1/devices/gw-cmd/cmd-result/${opId}`);
      const rotate = await queue("rotate");
      await until("the rotate result", () => result(rotate) !== undefined);
      expect(result(rotate)?.body).toMatchObject({ opId: rotate, ok: true });
      await until("the rotation", () => a.count("renewed") >= 1, 15_000);
      await until("the result recorded", async () => (await recorded(rotate)) === "succeeded");
      // Sent while the agent may be reconnecting with its new certificate: the persistent
      // session keeps it for the agent.
      const caUpdate = await queue("ca-update");
      await until("the ca-update result", () => result(caUpdate) !== undefined);
      expect(result(caUpdate)?.body).toMatchObject({ ok: true });
      // A command the server never sends, published with the server's identity.
      h.observer.publish(
        "edgeid/v1/devices/gw-cmd/cmd/selfdestruct",
        JSON.stringify({ opId: "op-x", issuedAt: new Date().toISOString() }),
        { qos: 1 },
      );
      await until("the refusal", () => result("op-x") !== undefined);
      expect(result("op-x")?.body).toMatchObject({ ok: false, error: "unknown command selfdestruct" });
    } finally {
      await a.stop();
    }
  }, 60_000);

  it("waits out 202 Retry-After at first boot until an operator approves", async () => {
    const { token } = await cliCreateToken(h.dataDir, "gw-vet", { profile: "vetted" });
    const dir = join(h.work, "agent-gw-vet");
    const enrolling = agent(enrollArgs("gw-vet", token, ["--label", "vetted"]));
    let requestId: string | undefined;
    await until("the pending request", async () => {
      const listed = (await edgeid(["enrollments", "list", "--data", h.dataDir, "--json"])).stdout;
      requestId = listed
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { id: string; deviceId: string })
        .find((p) => p.deviceId === "gw-vet")?.id;
      return requestId !== undefined;
    });
    // At least one more 202 after the first while it waits (the server's request log).
    const pendingAnswers = () =>
      h.server
        .log()
        .split("\n")
        .filter(
          (l) => l.includes('"msg":"request"') && l.includes('/vetted/simpleenroll"') && l.includes('"status":202'),
        ).length;
    await until("a second 202", () => pendingAnswers() >= 2);
    await edgeid(["enrollments", "approve", requestId as string, "--data", h.dataDir]);
    const r = await enrolling;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("enrollment pending approval");
    expect(expectValidPair(dir).subject).toBe("CN=gw-vet");
  }, 60_000);

  it("enrolls with a manufacturer certificate (IDevID) instead of a token", async () => {
    const dir = join(h.work, "agent-sn77");
    const r = await agent([
      "enroll",
      "--server",
      h.server.url,
      "--ca-file",
      h.server.rootPemFile,
      "--device",
      "SN-77",
      "--label",
      "factory",
      "--idevid-cert",
      join(h.work, "idevid-sn77.pem"),
      "--idevid-key",
      join(h.work, "idevid-sn77.key"),
      "--key-type",
      "P-384",
      "--dir",
      dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const leaf = expectValidPair(dir);
    expect(leaf.subject).toBe("CN=SN-77");
    const status = JSON.parse((await agent(["status", "--dir", dir, "--json"])).stdout);
    expect(status).toMatchObject({ deviceId: "SN-77", keyAlg: "P-384", state: "online" });
    // It keeps where its IDevID is: the rung it enrolls with again if its identity is ever lost.
    expect(new AgentStore(dir).loadConfig().idevid).toEqual({
      cert: join(h.work, "idevid-sn77.pem"),
      key: join(h.work, "idevid-sn77.key"),
    });
    const renewed = await agent(["renew", "--now", "--dir", dir]);
    expect(renewed.stdout, renewed.stderr).toMatch(/^renewed: /);
  });
});
