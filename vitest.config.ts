import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Records the AWS calls of the integration and end-to-end suites (test/deploy/iam.test.ts).
    setupFiles: ["test/support/record-aws-calls.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    env: { BITS_LOG_LEVEL: "silent" },
  },
});
