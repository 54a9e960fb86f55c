// The console is served by the api at /console/ from the files this writes to dist/ (embedded
// into the api binary at compile time). `npm run dev` serves it with hot reload on :5173 and
// forwards the API to a running `just dev` (127.0.0.1:8080, or CONSOLE_API).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Everything as files: the api's Content-Security-Policy allows no inline code.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    proxy: { "/api": process.env.CONSOLE_API ?? "http://127.0.0.1:8080" },
  },
});
