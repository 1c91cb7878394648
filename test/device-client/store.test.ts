/**
 * The agent's directory and files: a directory others may write to is refused, key
 * material is written O_EXCL to a random temp name (never through a planted symlink)
 * with its mode set before the data, and a private file with a loose mode is rewritten
 * 0600 at start.
 */
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../device-client/src/agent.ts";
import type { AgentDeps } from "../../device-client/src/deps.ts";
import { AgentStore } from "../../device-client/src/store.ts";
import { agentDir, DAY, pki } from "./support/pki.ts";

const NOW = Date.UTC(2027, 0, 15, 12);
const mode = (file: string) => statSync(file).mode & 0o777;

describe("the agent's directory and files", () => {
  let base: string;
  let dir: string;
  let p: Awaited<ReturnType<typeof pki>>;

  const deps: AgentDeps = {
    now: () => NOW,
    random: () => 0.5,
    timers: { setTimeout: () => 0, clearTimeout: () => undefined },
    log: () => undefined,
    buildTime: NOW - 30 * DAY,
  };

  beforeEach(async () => {
    base = mkdtempSync(join(tmpdir(), "edgeid-agent-store-"));
    dir = join(base, "agent");
    p = await pki(NOW);
    agentDir(dir, p, NOW, { server: "https://127.0.0.1:9" });
  });
  afterEach(() => {
    rmSync(base, { recursive: true, force: true });
  });

  it("creates its directory 0700", () => {
    expect(mode(dir)).toBe(0o700);
    const nested = join(base, "a", "b");
    new AgentStore(nested).init();
    expect(mode(nested)).toBe(0o700);
  });

  it("refuses a directory that is group or world writable, or owned by another user", () => {
    chmodSync(dir, 0o777);
    expect(() => new Agent(dir, deps).load()).toThrow(/group or world writable \(mode 777\)/);
    chmodSync(dir, 0o770);
    expect(() => new AgentStore(dir).init()).toThrow(/group or world writable/);
    chmodSync(dir, 0o700);
    new Agent(dir, deps).load();
    if (process.getuid?.() === 0) {
      // Root can hand the directory to another user (nobody) to show the ownership check.
      chownSync(dir, 65534, 65534);
      expect(() => new Agent(dir, deps).load()).toThrow(/owned by uid 65534/);
    }
  });

  it("never writes through a symlink planted at the temp name, and leaves its target alone", () => {
    const victim = join(base, "victim");
    writeFileSync(victim, "not the agent's\n");
    const store = new AgentStore(dir, undefined, () => "planted");
    const identity = readFileSync(store.paths.identity, "utf8");
    symlinkSync(victim, `${store.paths.identity}.tmp-planted`);
    const loaded = store.loadIdentity();
    expect(() => store.saveIdentity(loaded)).toThrow(/EEXIST/);
    expect(readFileSync(victim, "utf8")).toBe("not the agent's\n");
    expect(readFileSync(store.paths.identity, "utf8")).toBe(identity);
    // With the default (random) temp names the same write goes through.
    new AgentStore(dir).saveIdentity(loaded);
    expect(readFileSync(victim, "utf8")).toBe("not the agent's\n");
  });

  it("rewrites 0600 an identity.pem and key.pem found 0644, with the same content", () => {
    const store = new AgentStore(dir);
    const before = readFileSync(store.paths.identity, "utf8");
    chmodSync(store.paths.identity, 0o644);
    chmodSync(store.paths.key, 0o644);
    chmodSync(store.paths.state, 0o666);
    const inode = statSync(store.paths.identity).ino;
    new Agent(dir, deps).load();
    expect(mode(store.paths.identity)).toBe(0o600);
    expect(mode(store.paths.key)).toBe(0o600);
    expect(mode(store.paths.state)).toBe(0o600);
    // Rewritten (a new file renamed over it), not chmod-ed in place.
    expect(statSync(store.paths.identity).ino).not.toBe(inode);
    expect(readFileSync(store.paths.identity, "utf8")).toBe(before);
    // The copies for other services stay readable.
    expect(mode(store.paths.cert)).toBe(0o644);
  });

  it("gives a file exactly its mode, whatever the umask and whatever the file had", () => {
    const store = new AgentStore(dir);
    const file = join(dir, "probe.pem");
    writeFileSync(file, "old\n", { mode: 0o666 });
    chmodSync(file, 0o666);
    const old = process.umask(0o077);
    try {
      store.writeAtomic(file, "public\n", 0o644);
      expect(mode(file)).toBe(0o644);
      store.writeAtomic(file, "secret\n", 0o600);
      expect(mode(file)).toBe(0o600);
    } finally {
      process.umask(old);
    }
  });
});
