#!/usr/bin/env node
// The `edgeid` command. Runs the compiled JavaScript in dist/ (`npm run build`, which
// `npm install` runs; the command starts from its bundle, dist/bundle/) when it was
// built from the sources as they are now (see source-stamp.mjs); otherwise the
// TypeScript sources through tsx's loader, so that an edited checkout never runs a
// stale build.
import module from "node:module";
import { fileURLToPath } from "node:url";
import { isBuildCurrent } from "./source-stamp.mjs";

// Node >= 22.1 keeps V8's compiled code between runs (a no-op before).
module.enableCompileCache?.();

if (isBuildCurrent(fileURLToPath(new URL("..", import.meta.url)))) {
  await import("../dist/bundle/edgeid.js");
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../server/cli/main.ts");
}
