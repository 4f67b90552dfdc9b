/// <reference types="vitest/config" />
import { defaultClientConditions, defaultServerConditions, defineConfig } from "vite";
import react from "@vitejs/plugin-react";

const backend = "http://127.0.0.1:18601";

// The API client is the package in ../clients/typescript (a file: dependency, so a symlink in
// node_modules), read from its TypeScript sources: the "source" export condition. Its imports
// of the protobuf and Connect runtimes resolve to this app's copies (dedupe), so the bundle
// holds one copy of each whether or not that package has node_modules of its own.
const shared = ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-web"];

export default defineConfig({
  base: "/",
  plugins: [react()],
  resolve: {
    conditions: ["source", ...defaultClientConditions],
    dedupe: shared,
  },
  ssr: {
    // vitest runs the tests in the server environment.
    resolve: { conditions: ["source", ...defaultServerConditions] },
  },
  build: {
    outDir: "../control_plane/web/static",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
  },
  server: {
    proxy: {
      "/api": { target: backend, changeOrigin: false },
      "/ui": { target: backend, changeOrigin: false },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
