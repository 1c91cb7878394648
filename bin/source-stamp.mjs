// What dist/ was built from (scripts/build.mjs): the path, size and modification time
// of every source file under server/, and of the installed drizzle-orm that dist/
// bundles. bin/edgeid.mjs runs dist/ only while the stamp the build wrote is the stamp
// of the files now: an edit, a checkout, an added or deleted file or another drizzle
// makes them differ, and the command then runs the sources through tsx (slower, never
// stale). Plain JavaScript with no dependencies: it runs before any loader.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const SOURCE = /\.(ts|tsx|mjs)$/;

/** The stamp of the sources of the checkout at `root` (an absolute path). */
export function sourceStamp(root) {
  const server = join(root, "server");
  const files = readdirSync(server, { recursive: true })
    .map(String)
    .filter((f) => SOURCE.test(f))
    .sort()
    .map((f) => join("server", f));
  files.push(join("node_modules", "drizzle-orm", "package.json"));
  const hash = createHash("sha256");
  for (const f of files) {
    let s;
    try {
      s = statSync(join(root, f));
    } catch {
      hash.update(`${f}\0missing\n`);
      continue;
    }
    hash.update(`${f}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return hash.digest("hex");
}

/** Where the build writes the stamp of what it compiled. */
export const STAMP_FILE = join("dist", "SOURCE_STAMP");

/** Whether dist/ holds a build of the sources as they are now. */
export function isBuildCurrent(root) {
  let built;
  try {
    built = readFileSync(join(root, STAMP_FILE), "utf8").trim();
  } catch {
    return false;
  }
  return built === sourceStamp(root);
}
