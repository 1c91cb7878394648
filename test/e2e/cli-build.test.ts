/**
 * The compiled CLI (scripts/build.mjs → dist/) in a copy of the checkout whose
 * node_modules has everything but tsx: the build runs, `edgeid` then starts from dist/
 * with no TypeScript loader (it could not load one) and dist/'s imports of drizzle-orm
 * resolve to the bundled copy; an edited source makes the build stale and `edgeid` goes
 * back to the sources (through tsx, here missing, so it says so).
 */
import { existsSync } from "node:fs";
import { cp, mkdir, readdir, readFile, symlink, utimes } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeWorkDir, ROOT, removeDir, run } from "./support/process.ts";

let copy: string;

const edgeid = (...args: string[]) => run(process.execPath, [join(copy, "bin", "edgeid.mjs"), ...args]);

beforeAll(async () => {
  copy = await makeWorkDir("cli-build");
  for (const entry of [
    "server",
    "migrations",
    "bin",
    "scripts",
    "package.json",
    "tsconfig.json",
    "tsconfig.build.json",
  ]) {
    await cp(join(ROOT, entry), join(copy, entry), { recursive: true });
  }
  await mkdir(join(copy, "node_modules"));
  for (const name of await readdir(join(ROOT, "node_modules"))) {
    if (name === "tsx" || name === ".bin") continue;
    await symlink(join(ROOT, "node_modules", name), join(copy, "node_modules", name));
  }
}, 60_000);

afterAll(async () => {
  await removeDir(copy);
});

describe("the compiled CLI", () => {
  it("builds dist/ with a stamp and drizzle-orm bundled under a small package.json", async () => {
    const r = await run(process.execPath, [join(copy, "scripts", "build.mjs")], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(join(copy, "dist", "SOURCE_STAMP"), "utf8")).trim()).toMatch(/^[0-9a-f]{64}$/);
    const vendored = JSON.parse(
      await readFile(join(copy, "dist", "node_modules", "drizzle-orm", "package.json"), "utf8"),
    );
    const installed = JSON.parse(await readFile(join(ROOT, "node_modules", "drizzle-orm", "package.json"), "utf8"));
    expect(vendored.version).toBe(installed.version);
    expect(Object.keys(vendored.exports)).toEqual(
      expect.arrayContaining([".", "./sqlite-core", "./better-sqlite3", "./better-sqlite3/migrator"]),
    );
    // What a compiled module gets when it imports drizzle-orm: the bundle, not node_modules.
    const fromStorage = createRequire(join(copy, "dist", "adapters", "storage", "sqlite-storage.js"));
    expect(fromStorage.resolve("drizzle-orm")).toBe(join(copy, "dist", "node_modules", "drizzle-orm", "index.js"));
    expect(fromStorage.resolve("drizzle-orm/sqlite-core")).toBe(
      join(copy, "dist", "node_modules", "drizzle-orm", "sqlite-core.js"),
    );
    // The command's bundle: what its modules locate beside themselves (workers, the loop
    // entry, migrations) is there, seen from the bundle's directory.
    const bundleDir = join(copy, "dist", "bundle");
    const located: string[] = [];
    for (const file of await readdir(bundleDir)) {
      const text = await readFile(join(bundleDir, file), "utf8");
      for (const m of text.matchAll(/new URL\("([^"]+)", import\.meta\.url\)/g)) located.push(m[1] as string);
    }
    expect(located.sort()).toEqual([
      "../../migrations",
      "../adapters/node/verify-worker.mjs",
      "../adapters/storage/sqlite-writer.mjs",
      "../entry/loop.mjs",
    ]);
    for (const rel of located) expect(existsSync(join(bundleDir, rel)), rel).toBe(true);
  });

  it("runs from dist/ with no TypeScript loader: init, a token, the inventory", async () => {
    const data = join(copy, "data");
    const init = await edgeid("init", "--data", data, "--trust-domain", "build.test");
    expect(init.code, init.stderr).toBe(0);
    const token = await edgeid("token", "create", "--data", data, "--device", "dev-build-1", "--json");
    expect(token.code, token.stderr).toBe(0);
    expect(JSON.parse(token.stdout).deviceId).toBe("dev-build-1");
    const list = await edgeid("devices", "list", "--data", data, "--json");
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain('"dev-build-1"');
  });

  it("goes back to the sources when one is newer than the build, and to dist/ again once rebuilt", async () => {
    const later = new Date(Date.now() + 60_000);
    await utimes(join(copy, "server", "cli", "options.ts"), later, later);
    const stale = await edgeid("--help");
    expect(stale.code).not.toBe(0);
    // The sources need tsx, which this copy does not have: proof that dist/ was not used.
    expect(stale.stderr).toMatch(/tsx/);

    const rebuilt = await run(process.execPath, [join(copy, "scripts", "build.mjs")], { timeoutMs: 60_000 });
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const help = await edgeid("--help");
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain("Usage: edgeid");
  });

  it("goes back to the sources when a source file is added", async () => {
    await cp(join(copy, "server", "cli", "options.ts"), join(copy, "server", "cli", "added.ts"));
    const r = await edgeid("--help");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/tsx/);
  });
});
