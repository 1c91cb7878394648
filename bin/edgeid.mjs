#!/usr/bin/env node
// The `edgeid` command: runs the TypeScript sources through tsx's loader, so an
// `npm ci` checkout needs no build step.
import { register } from "tsx/esm/api";

register();
await import("../server/cli/main.ts");
