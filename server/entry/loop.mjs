// A worker-thread event loop of `edgeid serve --loops N` (server/entry/loop.ts). In
// dist/ (scripts/build.mjs) the compiled loop.js beside this file; in server/ the
// TypeScript sources through tsx's loader, as bin/edgeid.mjs does on the main thread.
import { existsSync } from "node:fs";

const compiled = new URL("./loop.js", import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("./loop.ts");
}
