// A worker-thread event loop of `edgeid serve --loops N` (server/entry/loop.ts): the
// TypeScript sources through tsx's loader, as bin/edgeid.mjs does on the main thread.
import { register } from "tsx/esm/api";

register();
await import("./loop.ts");
