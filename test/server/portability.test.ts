import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The core and the protocol code must run on Cloudflare Workers too (architecture:
 * "authority/ imports no hono, no drizzle, no node:*"). This reads the sources, the
 * way a bundler would, and fails on the first runtime-specific reference.
 */
const ROOT = new URL("../../server/", import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : [];
  });
}

const NODE_ONLY = [
  /from\s+["']node:/,
  /\brequire\(/,
  /\bBuffer\b/,
  /\bprocess\./,
  /from\s+["'](fs|path|crypto|tls|http|https|net)["']/,
];
const CORE_ONLY = [/from\s+["']hono/, /from\s+["']drizzle-orm/, /from\s+["']better-sqlite3/, /from\s+["']pino/];
const NO_AMBIENT = [/\bDate\.now\(/, /\bnew Date\(\)/, /\bMath\.random\(/, /\bsetTimeout\(/];

describe("portable layers", () => {
  for (const layer of ["authority", "pki", "frontends", "ports", "config"]) {
    it(`${layer}/ has no Node-only references`, () => {
      const offenders = sources(join(ROOT, layer)).flatMap((file) => {
        const text = readFileSync(file, "utf8");
        return NODE_ONLY.filter((re) => re.test(text)).map((re) => `${file.slice(ROOT.length)}: ${re}`);
      });
      expect(offenders).toEqual([]);
    });
  }

  it("authority/ and pki/ use no web framework, ORM or logger", () => {
    const offenders = ["authority", "pki"].flatMap((layer) =>
      sources(join(ROOT, layer)).flatMap((file) => {
        const text = readFileSync(file, "utf8");
        return CORE_ONLY.filter((re) => re.test(text)).map((re) => `${file.slice(ROOT.length)}: ${re}`);
      }),
    );
    expect(offenders).toEqual([]);
  });

  it("authority/ takes time and randomness only from its parameters", () => {
    const offenders = sources(join(ROOT, "authority")).flatMap((file) => {
      const text = readFileSync(file, "utf8");
      return NO_AMBIENT.filter((re) => re.test(text)).map((re) => `${file.slice(ROOT.length)}: ${re}`);
    });
    expect(offenders).toEqual([]);
  });
});
