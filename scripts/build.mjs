// `npm run build`, and npm's `prepare` (so `npm install` runs it): compiles server/ to
// JavaScript in dist/ so that `edgeid` starts without a TypeScript loader.
//
// - dist/ has server/'s tree: .js for each .ts/.tsx (tsc, types not checked here:
//   `npm run typecheck` does that), and server/'s plain .mjs worker files copied.
// - dist/node_modules/drizzle-orm: the drizzle-orm entry points dist/ imports, bundled
//   (esbuild) from the installed drizzle-orm into a few files under a small
//   package.json. Node >= 21.5 reads the nearest package.json again for each module it
//   loads (nodejs/node#58126), and drizzle-orm's is 175 KB over ~110 modules: ~0.6 s of
//   every start on Node 24 and 26. Node resolves dist/'s imports of drizzle-orm to this
//   copy first; the sources and the tests keep using node_modules.
// - dist/SOURCE_STAMP: what was compiled (bin/source-stamp.mjs), written last; until
//   it is there and matches, bin/edgeid.mjs runs the sources through tsx.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { STAMP_FILE, sourceStamp } from "../bin/source-stamp.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const server = join(root, "server");
const dist = join(root, "dist");
const require = createRequire(import.meta.url);

function fail(message) {
  rmSync(dist, { recursive: true, force: true });
  process.stderr.write(`build: ${message}; dist/ removed, edgeid runs its sources through tsx\n`);
  process.exit(1);
}

let tsc;
let esbuild;
try {
  // typescript's exports name its package.json, not its bin: the bin is beside it.
  tsc = join(dirname(require.resolve("typescript/package.json")), "bin", "tsc");
  esbuild = await import("esbuild");
} catch {
  // An install without devDependencies: edgeid runs its sources through tsx.
  process.stderr.write("build: typescript or esbuild is not installed; edgeid runs its sources through tsx\n");
  process.exit(0);
}

// Taken before compiling: a source saved while the build runs leaves the stamp stale.
const stamp = sourceStamp(root);
rmSync(dist, { recursive: true, force: true });
const compiled = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--noCheck"], {
  stdio: "inherit",
});
if (compiled.status !== 0) fail("tsc failed");

const distFiles = readdirSync(dist, { recursive: true }).map(String);
for (const f of readdirSync(server, { recursive: true }).map(String)) {
  if (f.endsWith(".mjs")) cpSync(join(server, f), join(dist, f));
}
if (!distFiles.includes(join("cli", "main.js"))) fail("tsc wrote no dist/cli/main.js");

// The drizzle-orm entry points the compiled code imports, found in it rather than
// listed here, so that a new import cannot miss the bundle.
const specifiers = new Set();
for (const f of distFiles.filter((f) => f.endsWith(".js"))) {
  const text = readFileSync(join(dist, f), "utf8");
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(drizzle-orm(?:\/[^"]+)?)"/g)) specifiers.add(m[1]);
}
const drizzle = join(root, "node_modules", "drizzle-orm");
const { version } = JSON.parse(readFileSync(join(drizzle, "package.json"), "utf8"));
const entryPoints = {};
const exports = {};
for (const specifier of [...specifiers].sort()) {
  const subpath = specifier === "drizzle-orm" ? "index" : specifier.slice("drizzle-orm/".length);
  entryPoints[subpath] = fileURLToPath(import.meta.resolve(specifier));
  exports[specifier === "drizzle-orm" ? "." : `./${subpath}`] = `./${subpath}.js`;
}
const vendored = join(dist, "node_modules", "drizzle-orm");
try {
  await esbuild.build({
    entryPoints,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    packages: "external",
    outdir: vendored,
    logLevel: "warning",
  });
} catch (err) {
  fail(`bundling drizzle-orm failed: ${err.message}`);
}
writeFileSync(
  join(vendored, "package.json"),
  `${JSON.stringify({ name: "drizzle-orm", version, type: "module", exports }, null, 2)}\n`,
);

// The `edgeid` command as one bundle and its lazily loaded chunks: dist/bundle/. Loading
// dist/cli/main.js module by module opened ~530 files (zod alone ~100); the bundle
// starts `edgeid token create` in 0.41 s against 0.62 s, with half the CPU (Node 20).
// Built from the compiled tree, with everything but better-sqlite3 (native) inside.
// What the tree's modules locate beside themselves (`new URL("./x.mjs", import.meta.url)`:
// the worker files, the loop entry, migrations/) is pointed at the same file from the
// bundle's directory; those files stay in the tree, and the loop threads run the tree.
const bundleDir = join(dist, "bundle");
const located = [];
const relocate = {
  name: "relocate-import-meta-url",
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith(dist)) return undefined;
      const text = readFileSync(args.path, "utf8");
      if (!text.includes("import.meta.url")) return undefined;
      const contents = text.replace(/new URL\("(\.{1,2}\/[^"]+)", import\.meta\.url\)/g, (_, rel) => {
        const target = join(dirname(args.path), rel);
        located.push(target);
        const fromBundle = relative(bundleDir, target).split(sep).join("/");
        return `new URL(${JSON.stringify(fromBundle.startsWith(".") ? fromBundle : `./${fromBundle}`)}, import.meta.url)`;
      });
      return { contents, loader: "js" };
    });
  },
};
try {
  await esbuild.build({
    entryPoints: { edgeid: join(dist, "cli", "main.js") },
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    external: ["better-sqlite3"],
    // CommonJS dependencies inside an ES module call require() for Node's built-ins.
    banner: {
      js: 'import { createRequire as __edgeidRequire } from "node:module";\nconst require = __edgeidRequire(import.meta.url);',
    },
    outdir: bundleDir,
    chunkNames: "chunk-[hash]",
    plugins: [relocate],
    logLevel: "warning",
  });
} catch (err) {
  fail(`bundling the edgeid command failed: ${err.message}`);
}
const lost = located.filter((f) => !existsSync(f));
if (lost.length > 0) fail(`the bundle points at files that are not there: ${lost.join(", ")}`);

writeFileSync(join(root, STAMP_FILE), `${stamp}\n`);
process.stdout.write(
  `build: dist/ from server/ (${distFiles.filter((f) => f.endsWith(".js")).length} modules), drizzle-orm ${version} bundled (${Object.keys(exports).join(", ")})\n`,
);
