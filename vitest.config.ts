import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // End-to-end files start real server processes; two workers fit a 2-core machine.
    maxWorkers: 2,
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ["default", ["json", { outputFile: "test-artifacts/vitest.json" }]],
    projects: [
      {
        test: {
          name: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/workers/**", "**/node_modules/**"],
          setupFiles: ["test/support/setup.ts"],
          globalSetup: ["test/support/global-setup.ts"],
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      // Inside workerd with a local D1 (@cloudflare/vitest-pool-workers).
      "./test/workers/vitest.config.ts",
    ],
  },
});
