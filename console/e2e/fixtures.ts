// Test fixtures: one real system (stack) and one receiver for the whole run, the api as the
// page's base URL, and a check after each test that the page threw nothing and the
// Content-Security-Policy blocked nothing.

import { test as base, expect, type Page } from "@playwright/test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Receiver } from "./receiver";
import { OUT_DIR, REPO, type Stack, startStack } from "./stack";

export const SCREENS_DIR = process.env.CONSOLE_SCREENS_DIR ?? join(REPO, process.env.CARGO_TARGET_DIR ?? "target", "console-screens");

export const test = base.extend<{ problems: string[] }, { stack: Stack; receiver: Receiver }>({
  stack: [
    async ({}, use) => {
      const stack = await startStack();
      await use(stack);
      await stack.stop();
    },
    { scope: "worker", timeout: 90_000 },
  ],
  receiver: [
    async ({}, use) => {
      const receiver = await Receiver.start();
      await use(receiver);
      await receiver.stop();
    },
    { scope: "worker" },
  ],
  baseURL: async ({ stack }, use) => {
    await use(stack.baseURL);
  },
  problems: [
    async ({ page }, use) => {
      const problems: string[] = [];
      page.on("pageerror", (e) => problems.push(`uncaught: ${e.message}`));
      page.on("console", (m) => {
        if (m.type() === "error" && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
      });
      await use(problems);
      expect(problems, "page errors and CSP violations").toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };

/** Saves what the page shows (the whole page with `fullPage`) under target/console-screens/. */
export async function screenshot(page: Page, name: string, opts: { fullPage?: boolean } = {}): Promise<void> {
  mkdirSync(SCREENS_DIR, { recursive: true });
  await page.screenshot({ path: join(SCREENS_DIR, `${name}.png`), fullPage: opts.fullPage ?? false });
}

/** Signs in through the sign-in screen, as an operator does. */
export async function signIn(page: Page, token: string): Promise<void> {
  await page.goto("/console/");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("navigation", { name: "Main" })).toBeVisible();
}

export { OUT_DIR };
