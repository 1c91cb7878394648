#!/usr/bin/env node
// The agent's command line. Runs the compiled JavaScript (dist/, `npm run build` in this
// package: what a gateway ships) when present, else the TypeScript sources through tsx.
import { existsSync } from "node:fs";

const dist = new URL("../dist/cli.js", import.meta.url);
let cli;
// EDGEID_AGENT_FROM_SOURCE=1 forces the sources (the tests use it, so a stale build never stands in).
if (existsSync(dist) && process.env.EDGEID_AGENT_FROM_SOURCE !== "1") {
  cli = await import(dist.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  cli = await import(new URL("../src/cli.ts", import.meta.url).href);
}
try {
  process.exitCode = await cli.main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`edgeid-agent: ${err.message}\n`);
  process.exitCode = 1;
}
