import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config";

/** What both Node projects share. */
const nodeTest = {
  setupFiles: ["test/support/setup.ts"],
  globalSetup: ["test/support/global-setup.ts"],
  testTimeout: 30_000,
  hookTimeout: 60_000,
} satisfies TestProjectInlineConfiguration["test"];

export default defineConfig({
  test: {
    // End-to-end files start real server processes; two workers fit a 2-core machine.
    maxWorkers: 2,
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ["default", ["json", { outputFile: "test-artifacts/vitest.json" }]],
    projects: [
      // The server and the agent in process. Their files share a worker's modules
      // (isolate: false): each file would otherwise load and transform the server's ~230
      // modules again, which took 40 of the 93 s these files ran (2 workers, Node 20).
      // Each file builds what it uses (data directories, databases, fakes, clocks) in its
      // own tests; they pass in any file order (`--sequence.shuffle.files`).
      {
        test: {
          ...nodeTest,
          name: "unit",
          include: ["test/server/**/*.test.ts", "test/device-client/**/*.test.ts", "test/bench/**/*.test.ts"],
          isolate: false,
        },
      },
      // Real `edgeid serve`, agent, broker and client processes; each file in a fresh worker.
      {
        test: {
          ...nodeTest,
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
        },
      },
      // Inside workerd with a local D1 (@cloudflare/vitest-pool-workers).
      "./test/workers/vitest.config.ts",
    ],
  },
});
