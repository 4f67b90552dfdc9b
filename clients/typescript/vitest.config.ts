import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    // The end-to-end tests start a real control plane and agent (test/cluster.ts): one file
    // at a time, and time enough for Python to start, but a hang still fails.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 90_000,
  },
});
