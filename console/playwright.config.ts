// Browser tests of the console: Playwright driving Debian's Chromium (/usr/bin/chromium, or
// CHROMIUM) against the real api + worker + PostgreSQL that e2e/fixtures.ts starts.
// scripts/console.sh e2e builds what they need and runs them.
import { defineConfig } from "@playwright/test";
import { OUT_DIR } from "./e2e/stack";

export default defineConfig({
  testDir: "e2e",
  // One system, one browser, tests in order: each builds on what the one before did, as an
  // operator's session does.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: true,
  timeout: 60_000,
  // Bounds for waits on states (a delivery failing, a retry landing), not delays: generous for a
  // loaded 2-core machine, and only ever reached when something is wrong.
  expect: { timeout: 30_000 },
  reporter: [["list"]],
  outputDir: `${OUT_DIR}/results`,
  use: {
    browserName: "chromium",
    viewport: { width: 1280, height: 800 },
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      // Without the background-networking flags Chromium keeps trying to reach Google's hosts,
      // and this machine's closed network refuses those connections.
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
    permissions: ["clipboard-read", "clipboard-write"],
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
  },
});
