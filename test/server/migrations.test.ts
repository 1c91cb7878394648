import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = new URL("../..", import.meta.url).pathname;

/**
 * The schema and the committed migrations must agree: a schema change without its
 * drizzle-kit migration would work in tests (migrate() applies what is committed)
 * and then fail on every existing database. drizzle-kit only writes inside the
 * project, so the copy lives in a temporary folder there.
 */
describe("migrations", () => {
  it("cover the whole schema (drizzle-kit generate finds nothing to do)", () => {
    const scratch = mkdtempSync(join(ROOT, ".migrations-check-"));
    try {
      cpSync(join(ROOT, "migrations"), scratch, { recursive: true });
      const before = readdirSync(scratch).sort();
      const out = execFileSync(
        join(ROOT, "node_modules/.bin/drizzle-kit"),
        [
          "generate",
          "--dialect",
          "sqlite",
          "--schema",
          "./server/adapters/storage/schema.ts",
          "--out",
          `./${relative(ROOT, scratch)}`,
        ],
        { cwd: ROOT, encoding: "utf8" },
      );
      expect(out).toContain("No schema changes");
      expect(readdirSync(scratch).sort()).toEqual(before);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
