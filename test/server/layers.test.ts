import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The layer rules of docs/ARCHITECTURE.md, executable: every relative import in
 * server/ is read (static, type-only, re-exports and dynamic imports alike) and checked
 * against what its layer may import; and the import graph must have no cycle.
 */
const ROOT = new URL("../../server/", import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : /\.tsx?$/.test(name) ? [path] : [];
  });
}

const IMPORT =
  /(?:import|export)\s+(?:type\s+)?(?:[^"';]*?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** server/<file> → the layer it belongs to: "authority", "frontends/est", "adapters", "app", … */
function layerOf(file: string): string {
  const [top = "", second = ""] = relative(ROOT, file).split("/");
  if (top === "frontends") return `frontends/${second}`;
  return top.replace(/\.tsx?$/, "");
}

const CORE = ["authority", "pki", "ports", "config"];
/** What each layer may import besides itself. */
function allowed(layer: string): string[] {
  if (layer === "ports") return [];
  if (layer === "pki") return ["ports"];
  if (layer === "config") return [];
  if (layer === "authority") return ["pki", "ports", "config"];
  if (layer === "frontends/http") return CORE;
  // A frontend: the core and the one shared HTTP module, never another frontend.
  if (layer.startsWith("frontends/")) return [...CORE, "frontends/http"];
  if (layer === "adapters") return CORE;
  // The HTTP composition roots: every HTTP frontend (app), the public ones (public-app).
  if (layer === "app") return [...CORE, "frontends/*", "adapters"];
  if (layer === "public-app") return [...CORE, "frontends/*"];
  // The CLI is an operator frontend that can also run the server.
  if (layer === "cli") return [...CORE, "frontends/http", "adapters", "entry"];
  if (layer === "entry") return [...CORE, "frontends/*", "adapters", "app", "public-app"];
  return [];
}

const files = sources(ROOT);
const graph = new Map<string, string[]>(
  files.map((file) => {
    const text = readFileSync(file, "utf8");
    const targets = [...text.matchAll(IMPORT)]
      .map((m) => (m[1] ?? m[2]) as string)
      .filter((spec) => spec.startsWith("."))
      .map((spec) => resolve(dirname(file), spec));
    return [file, targets];
  }),
);

/** Strongly connected components of more than one file (Tarjan). */
function cycles(g: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(scc.sort());
    }
  };
  for (const v of g.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe("layers", () => {
  it("every import goes the allowed way", () => {
    const offenders: string[] = [];
    for (const [file, targets] of graph) {
      const from = layerOf(file);
      for (const target of targets) {
        if (!target.startsWith(ROOT)) {
          offenders.push(`${relative(ROOT, file)} imports outside server/: ${target}`);
          continue;
        }
        const to = layerOf(target);
        if (to === from) continue;
        const ok = allowed(from).some((a) => a === to || (a === "frontends/*" && to.startsWith("frontends/")));
        if (!ok) offenders.push(`${relative(ROOT, file)} (${from}) → ${relative(ROOT, target)} (${to})`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it("the imports close no cycle", () => {
    expect(cycles(graph).map((c) => c.map((f) => relative(ROOT, f)))).toEqual([]);
  });

  it("the check sees real violations (a guard against a parser that reads nothing)", () => {
    const edges = [...graph.values()].reduce((n, t) => n + t.length, 0);
    expect(edges).toBeGreaterThan(500);
    expect(
      cycles(
        new Map([
          ["a", ["b"]],
          ["b", ["a"]],
          ["c", []],
        ]),
      ),
    ).toEqual([["a", "b"]]);
    expect(allowed("pki")).not.toContain("authority");
    expect(allowed("frontends/est")).not.toContain("frontends/dashboard");
  });

  it("frontends reach the core through its doors, not its dependencies", () => {
    const offenders = files
      .filter((f) => /^frontends\//.test(relative(ROOT, f)))
      .filter((f) => /\bauthority\.deps\b|\bdeps\.authority\.deps\b|\bAuthorityDeps\b/.test(readFileSync(f, "utf8")))
      .map((f) => relative(ROOT, f));
    expect(offenders).toEqual([]);
  });
});
