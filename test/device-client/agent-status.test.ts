/**
 * `edgeid-agent status` lists the workload entries and X.509-SVIDs the running agent
 * holds (SPIFFE ID, entry id, serial, notAfter), in text and `--json`, and never a key:
 * a real agent with its Workload API on a real socket, against a real HTTPS server
 * implementing the workload contract, and the status command run as the CLI runs it.
 */
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Agent } from "../../device-client/src/agent.ts";
import { main } from "../../device-client/src/cli.ts";
import { runCommand } from "../../device-client/src/commands.ts";
import type { Timers } from "../../device-client/src/deps.ts";
import { pemBlocks } from "../../device-client/src/keys.ts";
import { type ContractServer, startContractServer } from "../support/workload-contract-server.ts";
import { agentDir, pki } from "./support/pki.ts";

interface StatusJson {
  deviceId: string;
  workloads: {
    updatedAt: string;
    trustDomain: string;
    revoked: boolean;
    entries: { id: string; spiffeId: string; selectors: string[]; ttlSeconds: number; jwtAudiences: string[] }[];
    svids: { entryId: string; spiffeId: string; serial: string; notAfter: string }[];
  } | null;
}

describe("edgeid-agent status: workload entries and SVIDs", () => {
  let t: number;
  let dir: string;
  let contract: ContractServer;
  const uid = process.getuid?.() ?? 0;
  const never: Timers = { setTimeout: () => 0, clearTimeout: () => undefined };

  beforeEach(async () => {
    t = Date.now();
    dir = mkdtempSync(join(tmpdir(), "edgeid-status-"));
    const p = await pki(t);
    contract = await startContractServer({ tls: { cert: p.server.pem, key: p.server.key }, now: () => t });
    agentDir(join(dir, "agent"), p, t, { server: contract.url });
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await contract.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs `edgeid-agent status --dir … [--json]` and returns what it printed. */
  const status = async (json: boolean): Promise<string> => {
    let out = "";
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
      return true;
    });
    try {
      expect(await main(["status", "--dir", join(dir, "agent"), ...(json ? ["--json"] : [])])).toBe(0);
    } finally {
      write.mockRestore();
    }
    return out;
  };
  const statusJson = async () => JSON.parse(await status(true)) as StatusJson;

  it("lists each entry with its SVID's serial and notAfter, follows changes and revocation, never shows a key", async () => {
    // Before the agent ever ran a Workload API there is nothing to show.
    expect((await statusJson()).workloads).toBeNull();
    expect(await status(false)).toMatch(/^workloads {4}-$/m);

    contract.entries = [
      {
        id: "a",
        spiffeId: "spiffe://example.org/w/a",
        selectors: [`unix:uid:${uid}`],
        ttlSeconds: 3600,
        jwtAudiences: ["https://api.example.org"],
      },
      {
        id: "b",
        spiffeId: "spiffe://example.org/w/b",
        selectors: ["unix:uid:4242"],
        ttlSeconds: 600,
        jwtAudiences: [],
      },
    ];
    const keysDir = join(dir, "keys");
    const agent = new Agent(join(dir, "agent"), {
      now: () => t,
      random: () => 0.5,
      timers: never,
      log: () => undefined,
    });
    agent.start({ workload: { socket: join(dir, "run", "workload.sock"), socketMode: "0600", keysDir } });
    try {
      await expect.poll(async () => (await statusJson()).workloads?.svids.length, { timeout: 10_000 }).toBe(2);
      // The summary file holds no key and is the agent's alone.
      expect(statSync(join(dir, "agent", "workloads.json")).mode & 0o777).toBe(0o600);

      // What the agent persisted (key, then the SVID and its chain) is the independent source.
      const held = (id: string) => {
        const pem = readFileSync(join(keysDir, `${id}.pem`), "utf8");
        const cert = new X509Certificate(pemBlocks(pem, "CERTIFICATE")[0] as Uint8Array);
        return { pem, serial: cert.serialNumber.toLowerCase(), notAfter: new Date(cert.validTo).toISOString() };
      };
      const a = held("a");
      const b = held("b");
      const doc = await statusJson();
      expect(doc.deviceId).toBeTruthy();
      expect(doc.workloads).toMatchObject({ trustDomain: "example.org", revoked: false });
      expect(doc.workloads?.entries).toEqual([
        {
          id: "a",
          spiffeId: "spiffe://example.org/w/a",
          selectors: [`unix:uid:${uid}`],
          ttlSeconds: 3600,
          jwtAudiences: ["https://api.example.org"],
        },
        {
          id: "b",
          spiffeId: "spiffe://example.org/w/b",
          selectors: ["unix:uid:4242"],
          ttlSeconds: 600,
          jwtAudiences: [],
        },
      ]);
      expect(doc.workloads?.svids).toEqual([
        { entryId: "a", spiffeId: "spiffe://example.org/w/a", serial: a.serial, notAfter: a.notAfter },
        { entryId: "b", spiffeId: "spiffe://example.org/w/b", serial: b.serial, notAfter: b.notAfter },
      ]);

      const text = await status(false);
      expect(text).toMatch(/^workloads {4}2 entries, 2 SVIDs as of \S+$/m);
      expect(text).toContain(`  spiffe://example.org/w/a entry a serial ${a.serial} notAfter ${a.notAfter}\n`);
      expect(text).toContain(`  spiffe://example.org/w/b entry b serial ${b.serial} notAfter ${b.notAfter}\n`);
      // Never a key, in either form (nor in the file status reads).
      const keyBody = (a.pem.split("-----BEGIN PRIVATE KEY-----\n")[1] ?? "").split("\n")[0] as string;
      expect(keyBody.length).toBeGreaterThan(20);
      for (const out of [text, await status(true), readFileSync(join(dir, "agent", "workloads.json"), "utf8")]) {
        expect(out).not.toContain("PRIVATE KEY");
        expect(out).not.toContain(keyBody);
      }

      // An entry deleted on the server: gone from status once the agent heard of it.
      contract.entries = contract.entries.filter((e) => e.id !== "b");
      contract.bumpRevision();
      expect(await runCommand(agent, "workloads-changed", { opId: "op1" }, () => undefined)).toEqual({ ok: true });
      const after = await statusJson();
      expect(after.workloads?.entries.map((e) => e.id)).toEqual(["a"]);
      expect(after.workloads?.svids.map((s) => s.serial)).toEqual([a.serial]);
      expect(await status(false)).toMatch(/^workloads {4}1 entry, 1 SVID as of /m);

      // Revoked: nothing is served, and status says so.
      agent.enterRevoked("mqtt", "revoked by the operator");
      const revoked = await statusJson();
      expect(revoked.workloads).toMatchObject({ revoked: true, entries: [], svids: [] });
      expect(await status(false)).toMatch(/^workloads {4}0 entries, 0 SVIDs \(device revoked: none served\) as of /m);
    } finally {
      await agent.stop();
    }
  });
});
