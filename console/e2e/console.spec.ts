// The console as an on-call operator uses it, in a real browser against the real api, worker
// and PostgreSQL, delivering to a real receiver on 127.0.0.1 that fails when told to.
// Every wait is for a state the page shows (Playwright's auto-waiting `expect`), never a sleep.

import { expect, screenshot, signIn, test } from "./fixtures";

test.describe.configure({ mode: "serial" });

/** Shared across the run: the configuration the operator creates. */
let configId = 0;
let firstSecret = "";

test("signs in with a pasted token; a wrong one is refused", async ({ page, stack }) => {
  await page.goto("/console/");
  await expect(page.getByRole("heading", { name: "wirehook console" })).toBeVisible();
  await screenshot(page, "sign-in");

  await page.getByLabel("API token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("The API refused this token");

  // Pasted the way `just dev` prints it.
  await page.getByLabel("API token").fill(`export TOKEN=${stack.token}`);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { name: "Events" })).toBeVisible();
  await expect(page.getByText("No events yet.")).toBeVisible();
  await expect(page.locator(".who")).toContainText("console-e2e");

  // Keyboard focus is visible: the first Tab lands on the skip link, outlined.
  await page.keyboard.press("Tab");
  const outline = await page.evaluate(() => {
    const el = document.activeElement;
    return el === null ? "" : getComputedStyle(el).outlineStyle;
  });
  expect(outline).toBe("solid");
});

test("creates a configuration; the server's validation errors land on the fields", async ({ page, stack, receiver }) => {
  await signIn(page, stack.token);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Configurations" }).click();
  await expect(page.getByText("No configurations yet.")).toBeVisible();
  await page.getByRole("link", { name: "New configuration" }).click();
  await expect(page.getByRole("heading", { name: "New configuration" })).toBeVisible();

  await page.getByLabel("Name", { exact: true }).fill("CRM Integration");
  await page.getByLabel("Endpoint URL").fill("ftp://receiver.example/hooks");
  await page.getByLabel("call.completed").check();
  await page.getByLabel("contact.created").check();
  await page.getByRole("button", { name: "Add header" }).click();
  await page.getByLabel("Header 1 name").fill("X-Team");
  await page.getByLabel("Header 1 value").fill("on-call");
  await page.getByLabel("Attempts", { exact: true }).fill("1");
  await page.getByRole("button", { name: "Create configuration" }).click();

  // The API refuses the URL; its message sits under the URL field, which is marked invalid.
  const url = page.getByLabel("Endpoint URL");
  await expect(page.locator("#cfg-url-error")).toHaveText("`url` must use http or https");
  await expect(url).toHaveAttribute("aria-invalid", "true");
  await expect(url).toBeFocused();
  await screenshot(page, "config-new");

  // A bad retry policy lands on its own field too.
  await url.fill(`${receiver.url}/hooks`);
  await page.getByLabel("First delay (s)").fill("60");
  await page.getByLabel("Longest delay (s)").fill("10");
  await page.getByRole("button", { name: "Create configuration" }).click();
  await expect(page.locator("#cfg-maxDelay-error")).toContainText("`retryConfig.maxDelay` must be at least `initialDelay`");
  await expect(page.locator("#cfg-url-error")).toHaveCount(0);

  await page.getByLabel("First delay (s)").fill("");
  await page.getByLabel("Longest delay (s)").fill("");
  await page.getByRole("button", { name: "Create configuration" }).click();
  await expect(page.getByRole("heading", { name: "Configuration created" })).toBeVisible();
  firstSecret = (await page.getByTestId("new-secret").textContent()) ?? "";
  expect(firstSecret).toMatch(/^whsec_/);
  await page.getByRole("button", { name: /open the configuration/ }).click();

  await expect(page.getByRole("heading", { name: "CRM Integration" })).toBeVisible();
  configId = Number(/\/configs\/(\d+)$/.exec(page.url())?.[1]);
  expect(configId).toBeGreaterThan(0);
  await expect(page.getByLabel("Health")).toContainText("1 attempt");
  await screenshot(page, "config");
});

test("a delivery that fails is seen failing, then delivered on retry", async ({ page, stack, receiver }) => {
  await signIn(page, stack.token);
  receiver.failNext(1, 500, "receiver down for maintenance");
  const published = await stack.call("POST", "/api/webhooks/events", {
    eventType: "call.completed",
    payload: { callId: "CA123", status: "completed", duration: 42 },
  });
  expect(published.status).toBe(201);
  expect(published.json.deliveries).toBe(1);

  // The history of the configuration, refreshing itself, shows the delivery fail.
  await page.goto(`/console/events?webhookConfigId=${configId}&live=1`);
  await expect(page.getByLabel("Auto-refresh every 5 s")).toBeChecked();
  const row = page.locator("tr[data-event-id]").first();
  await expect(row).toContainText("call.completed");
  await expect(row.locator(".badge")).toHaveText("failed");
  await row.getByRole("link").first().click();

  // The details show the attempt: status, error kind, the receiver's body, the signed headers.
  await expect(page.getByTestId("event-status")).toContainText("failed");
  const attempt = page.locator("li[data-attempt='1']");
  await expect(attempt.getByTestId("attempt-status")).toHaveText("500 Internal Server Error");
  await expect(attempt).toContainText("http_status");
  await expect(attempt.getByTestId("response-body")).toHaveText("receiver down for maintenance");
  await attempt.getByText("Request headers").click();
  const sent = attempt.getByRole("table", { name: "Request headers of attempt 1" });
  await expect(sent.getByRole("row", { name: /webhook-signature/ })).toContainText("[redacted]");
  await expect(sent.getByRole("row", { name: /x-team/i })).toContainText("on-call");
  await attempt.getByText("Response headers").click();
  await expect(attempt.getByRole("table", { name: "Response headers of attempt 1" })).toContainText("console-e2e");
  await expect(page.getByText("CA123").first()).toBeVisible();
  await screenshot(page, "event-failed", { fullPage: true });

  await page.getByRole("button", { name: "Retry delivery" }).click();
  await expect(page.getByTestId("event-status")).toContainText("delivered");
  await expect(page.locator("li[data-attempt='2']").getByTestId("attempt-status")).toHaveText("200 OK");
  await expect(page.getByText("Delivered on retry.")).toBeVisible();
  await expect(page.getByRole("button", { name: "Retry delivery" })).toHaveCount(0);
  await screenshot(page, "event", { fullPage: true });

  // Both attempts reached the receiver with the same webhook-id.
  const ids = receiver.requests.map((r) => r.headers["webhook-id"]);
  expect(ids.length).toBe(2);
  expect(ids[0]).toBe(ids[1]);
});

test("sends a test event and shows what the endpoint answered", async ({ page, stack }) => {
  await signIn(page, stack.token);
  await page.goto(`/console/configs/${configId}`);
  await page.getByRole("button", { name: "Send test event" }).click();
  const dialog = page.getByRole("dialog", { name: "Send a test event" });
  await dialog.getByLabel("Event type").selectOption("contact.created");
  await dialog.getByRole("button", { name: "Send test" }).click();
  const result = dialog.getByTestId("test-result");
  await expect(result).toContainText("Delivered: 200 OK");
  await expect(result.locator("pre")).toHaveText("ok");
  await screenshot(page, "config-test");
  await dialog.getByRole("button", { name: "Close", exact: true }).click();
  await expect(dialog).toBeHidden();
});

test("rotates the secret: the new one is shown once, copied, and signs beside the old one", async ({ page, stack, receiver }) => {
  await signIn(page, stack.token);
  await page.goto(`/console/configs/${configId}`);
  await page.getByRole("button", { name: "Rotate secret" }).click();
  const dialog = page.getByRole("dialog", { name: "Rotate the signing secret" });
  await expect(dialog.getByLabel("Overlap (the old secret also signs)")).toHaveValue("86400");
  await dialog.getByRole("button", { name: "Rotate secret" }).click();
  const shown = dialog.getByTestId("rotated-secret");
  await expect(shown).toHaveText(/^whsec_/);
  const secret = (await shown.textContent()) ?? "";
  expect(secret).not.toBe(firstSecret);
  await dialog.getByRole("button", { name: "Copy secret" }).click();
  await expect(dialog.getByRole("button", { name: "Copied" })).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret);
  await screenshot(page, "config-rotated");

  await dialog.getByRole("button", { name: "Done" }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByText(secret)).toHaveCount(0);
  await expect(page.getByTestId("previous-secret")).toContainText("still signs until");

  // The next delivery carries two signatures: the new secret's and the old one's.
  const before = receiver.requests.length;
  await page.getByRole("button", { name: "Send test event" }).click();
  const test = page.getByRole("dialog", { name: "Send a test event" });
  await test.getByRole("button", { name: "Send test" }).click();
  await expect(test.getByTestId("test-result")).toContainText("Delivered");
  await receiver.received(before + 1);
  const signature = String(receiver.requests[before]?.headers["webhook-signature"] ?? "");
  expect(signature.split(" ").filter((s) => s.startsWith("v1,"))).toHaveLength(2);
});

test("filters the history by status, finds a call, pages, and keeps it all in the URL", async ({ page, stack, receiver }) => {
  // One more failed delivery, of another call.
  receiver.failNext(1);
  const published = await stack.call("POST", "/api/webhooks/events", {
    eventType: "contact.created",
    payload: { contactId: 7, callId: "CA999" },
  });
  expect(published.status).toBe(201);
  await signIn(page, stack.token);
  await page.goto("/console/events?live=1");
  await expect(page.locator("tr[data-event-id]", { hasText: "CA999" }).filter({ hasText: "outbound" }).locator(".badge")).toHaveText("failed");
  await page.getByLabel("Auto-refresh every 5 s").uncheck();

  await page.getByLabel("Status", { exact: true }).selectOption("failed");
  await expect(page).toHaveURL(/[?&]status=failed/);
  await expect(page.getByTestId("events-summary")).toHaveText("1–1 of 1 event");
  await expect(page.locator("tr[data-event-id] .badge")).toHaveText(["failed"]);
  await screenshot(page, "events");

  await page.reload();
  await expect(page.getByLabel("Status", { exact: true })).toHaveValue("failed");
  await expect(page.getByTestId("events-summary")).toHaveText("1–1 of 1 event");
  await expect(page.locator("tr[data-event-id]")).toHaveCount(1);

  // "We never got the call.completed for CA123": every event of that call, in both directions.
  await page.getByRole("button", { name: "Clear filters" }).click();
  await expect(page).not.toHaveURL(/status=/);
  await page.getByLabel("Find a call").fill("CA123");
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await expect(page).toHaveURL(/[?&]callId=CA123/);
  await expect(page.getByTestId("events-summary")).toHaveText("1–2 of 2 events");
  await expect(page.locator("tr[data-event-id]").filter({ hasText: "outbound" }).locator(".badge")).toHaveText("delivered");
  await expect(page.locator("tr[data-event-id]").filter({ hasText: "inbound" })).toContainText("11wire");
  await page.reload();
  await expect(page.getByLabel("Find a call")).toHaveValue("CA123");
  await expect(page.getByTestId("events-summary")).toHaveText("1–2 of 2 events");

  await expect(page.getByRole("navigation", { name: "Pages" })).toContainText("Page 1 of 1");

  // Paging with the exact total: 21 events of a type nobody subscribes to.
  for (let i = 0; i < 21; i++) {
    const r = await stack.call("POST", "/api/webhooks/events", { eventType: "campaign.started", payload: { campaignId: `c-${i}` } });
    expect(r.status).toBe(201);
  }
  await page.goto("/console/events?eventType=campaign.started");
  await expect(page.getByTestId("events-summary")).toHaveText("1–20 of 21 events");
  const pages = page.getByRole("navigation", { name: "Pages" });
  await expect(pages).toContainText("Page 1 of 2");
  await pages.getByRole("button", { name: "Older →" }).click();
  await expect(page).toHaveURL(/[?&]page=2/);
  await expect(page.getByTestId("events-summary")).toHaveText("21–21 of 21 events");
  await expect(page.locator("tr[data-event-id]")).toHaveCount(1);
  await page.goBack();
  await expect(page.getByTestId("events-summary")).toHaveText("1–20 of 21 events");
});

test("recovers failed deliveries, deactivates, activates, edits, and deletes after confirmation", async ({ page, stack, receiver }) => {
  await signIn(page, stack.token);
  // The failed delivery of the test before shows in the list: failing since, failed attempts.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Configurations" }).click();
  const row = page.locator(`tr[data-config-id='${configId}']`);
  await expect(row.locator("time")).toBeVisible();
  await expect(row.locator("td.num")).toHaveText("1");
  await screenshot(page, "configs");

  await row.getByRole("link", { name: "CRM Integration" }).click();
  const before = receiver.requests.length;
  await page.getByRole("button", { name: "Recover failed deliveries" }).click();
  const recover = page.getByRole("dialog", { name: "Recover failed deliveries" });
  await recover.getByRole("button", { name: "Recover" }).click();
  await expect(recover.getByRole("status")).toContainText("1 failed delivery queued again");
  await receiver.received(before + 1);
  await recover.getByRole("button", { name: "Close", exact: true }).click();

  await page.getByRole("button", { name: "Deactivate", exact: true }).click();
  await expect(page.getByRole("heading", { name: "CRM Integration" }).locator(".badge")).toHaveText("inactive");
  await page.getByRole("button", { name: "Activate", exact: true }).click();
  await expect(page.getByRole("heading", { name: "CRM Integration" }).locator(".badge")).toHaveText("active");

  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Configurations" }).click();
  await expect(row.locator(".badge")).toHaveText("active");

  // Edit: the saved values come back from the API into the form.
  await row.getByRole("link", { name: "CRM Integration" }).click();
  await page.getByLabel("Name", { exact: true }).fill("CRM (old)");
  await page.getByLabel("Campaigns (campaignId)").fill("campaign-1, campaign-2");
  await page.getByRole("button", { name: "Save changes" }).click();
  await expect(page.getByText("Saved.")).toBeVisible();
  await expect(page.getByRole("heading", { name: "CRM (old)" })).toBeVisible();
  await page.reload();
  await expect(page.getByLabel("Name", { exact: true })).toHaveValue("CRM (old)");
  await expect(page.getByLabel("Campaigns (campaignId)")).toHaveValue("campaign-1, campaign-2");

  await page.getByRole("button", { name: "Delete", exact: true }).click();
  const confirm = page.getByRole("dialog", { name: "Delete this configuration?" });
  await expect(confirm.getByRole("button", { name: "Cancel" })).toBeFocused();
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await expect(confirm).toBeHidden();
  await page.getByRole("button", { name: "Delete", exact: true }).click();
  await confirm.getByRole("button", { name: "Delete CRM (old)" }).click();
  await expect(page.getByText("Deleted “CRM (old)”. Its deliveries stay in the history.")).toBeVisible();
  await expect(page.getByText("No configurations yet.")).toBeVisible();

  // Its deliveries stay in the history, named as deleted.
  await page.goto(`/console/events?webhookConfigId=${configId}`);
  await expect(page.getByLabel("Configuration", { exact: true })).toHaveValue(String(configId));
  await expect(page.locator("tr[data-event-id]").first()).toBeVisible();
});

test("works on a narrow screen without sideways scrolling", async ({ page, stack }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn(page, stack.token);
  for (const path of ["/console/events", "/console/configs/new", "/console/configs"]) {
    await page.goto(path);
    await expect(page.getByRole("heading").first()).toBeVisible();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow, path).toBeLessThanOrEqual(0);
  }
  await page.goto("/console/events");
  await expect(page.locator("tr[data-event-id]").first()).toBeVisible();
  await screenshot(page, "events-narrow");
});

test("a refused token sends the operator back to sign-in with the reason", async ({ page, stack }) => {
  await signIn(page, stack.token);
  await page.evaluate(() => sessionStorage.setItem("wirehook.console.token", "expired.or.forged"));
  await page.goto("/console/configs");
  await expect(page.getByLabel("API token")).toBeVisible();
  await expect(page.getByRole("status")).toContainText("The API refused the token");
});

test("the api serves the console with a strict Content-Security-Policy", async ({ request }) => {
  const index = await request.get("/console/events/1?status=failed");
  expect(index.status()).toBe(200);
  const csp = index.headers()["content-security-policy"] ?? "";
  expect(csp).toContain("script-src 'self'");
  expect(csp).toContain("connect-src 'self'");
  expect(csp).toContain("default-src 'none'");
  expect(await index.text()).toContain('<div id="app">');
  expect((await request.get("/console/assets/missing.js")).status()).toBe(404);
});
