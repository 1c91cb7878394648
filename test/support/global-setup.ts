/**
 * Once per `vitest run`: a scratch directory the end-to-end suites share for the data
 * directories `edgeid init` makes (see cliInitDataDir in test/e2e/support/server.ts),
 * removed when the run ends.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** Where cliInitDataDir keeps one `edgeid init` per trust domain for this run. */
    initCache: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), "edgeid-init-cache-"));
  project.provide("initCache", dir);
  return () => rm(dir, { recursive: true, force: true });
}
