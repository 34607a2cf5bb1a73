import { configDefaults, defineConfig } from "vitest/config";

/**
 * One `vitest run` (npm test) over two projects: the unit and deployment tests, which touch no
 * storage and so start no stand-ins, and everything else, which shares one set of real stand-ins
 * started by the global setup.
 */
export default defineConfig({
  test: {
    // Records the AWS calls of the integration and end-to-end suites (test/deploy/iam.test.ts).
    setupFiles: ["test/support/record-aws-calls.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    // The SDK's "Node >= 22" notice on every worker says nothing about this project's tests.
    env: { BITS_LOG_LEVEL: "silent", AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["test/unit/**/*.test.ts", "test/deploy/**/*.test.ts"] },
      },
      {
        extends: true,
        test: {
          name: "stand-ins",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, "test/unit/**", "test/deploy/**"],
          globalSetup: ["test/support/global-setup.ts"],
        },
      },
    ],
  },
});
