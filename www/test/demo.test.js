// The demo page end to end, the way a newcomer uses it: served over HTTP with the npm package,
// in real headless Chromium (Debian's), clicking its buttons and reading what it shows. Needs the
// demo's build of the package (scripts/test-demo builds it when it is missing). Asserts counts
// and contents, never timings; saves screenshots to target/www/.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { closeChromium, launchChromium } from "../../wasm/js/test/chromium.js";
import { serveDemo } from "../server.js";

const REPO = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const ARTIFACTS = join(REPO, "target", "www");
// Fixed: the OPFS origin includes the port, and the reload test must come back to it.
const PORT = Number(process.env.SQLWEIR_DEMO_TEST_PORT ?? 47_823);
const URL = `http://127.0.0.1:${PORT}/`;
const SLOW = { timeout: 120_000 };

let server;
let profile;
let context;
let page;
const consoleErrors = [];

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  server = await serveDemo(PORT);
  ({ context, profile } = await launchChromium(chromium, {
    viewport: { width: 1280, height: 900 },
  }));
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on("response", (r) => r.status() >= 400 && consoleErrors.push(`HTTP ${r.status()} ${r.url()}`));
  await page.goto(URL);
  await page.waitForSelector("body[data-ready=true]", SLOW);
});

after(async () => {
  await closeChromium(context, profile);
  await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
});

/** What sticks out: of the screen, of its box, or numbers cut off (scrolling boxes aside). */
const layoutProblems = () =>
  page.evaluate(() => {
    const viewport = document.documentElement.clientWidth;
    const scrolls = (el) => el.closest(".table-wrap, .code");
    const name = (el) => el.id || `${el.tagName.toLowerCase()}.${el.className}`;
    const all = [...document.querySelectorAll("body *")].filter((el) => !scrolls(el));
    return {
      page: document.documentElement.scrollWidth - viewport,
      offScreen: all.filter((el) => el.getBoundingClientRect().right > viewport + 0.5).map(name),
      outOfPanel: all
        .filter((el) => {
          const panel = el.parentElement?.closest(".panel, .chart, .counter, .hero-stats > div");
          return panel && el.getBoundingClientRect().right > panel.getBoundingClientRect().right + 0.5;
        })
        .map(name),
      clipped: [...document.querySelectorAll(".counter b, .chart figcaption b, .hero-stats dd")]
        .filter((el) => el.scrollWidth > el.clientWidth + 0.5)
        .map(name),
    };
  });

/** A counter's exact value (the page keeps it in data-value). */
const value = (selector) => page.$eval(selector, (el) => Number(el.dataset.value));

test("collectors: the committed count rises and matches a count(*) query", async () => {
  assert.equal(await value("#rows-total"), 0, "a fresh profile starts empty");
  await page.click("#collect");
  await page.waitForSelector("#collector[data-state=running]");
  // Several polls must show progress: the count rises while the producers run. Each wait is for
  // a count above the last one seen (fixed floors could all be passed by the first poll: the
  // producers can commit 10,000 rows before it).
  const seen = [];
  for (let poll = 0; poll < 3; poll++) {
    const floor = (seen.at(-1) ?? 0) + 1;
    await page.waitForFunction((f) => Number(document.querySelector("#m-committed").dataset.value) >= f, floor, SLOW);
    seen.push(await value("#m-committed"));
  }
  assert.ok(seen[0] > 0 && seen[0] < seen[1] && seen[1] < seen[2], `committed rose: ${seen.join(" -> ")}`);
  // The table view is a live query: it follows the commits while they happen, nothing polls it.
  await page.waitForFunction(() => Number(document.querySelector("#rows-total").dataset.value) >= 2_000, null, SLOW);
  assert.equal(await page.$eval("#collector", (el) => el.dataset.state), "running", "updated while running");
  await page.click("#collect");
  await page.waitForSelector("#collector[data-state=idle]", SLOW);
  const committed = await value("#m-committed");
  assert.equal(await value("#m-accepted"), committed, "every accepted write committed");
  assert.equal(await value("#rows-total"), committed, "the table holds exactly the committed rows");
  assert.equal(await value("#m-rejected"), 0);
  assert.equal(await value("#m-failed"), 0);
  const rows = await page.$$eval("#rows-body tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.equal(rows.length, 12, "the table view shows the latest 12 rows");
  assert.equal(Number(rows[0][0]), committed, "the newest row comes first");
  assert.match(rows[0][2], /^collector-\d+$/);
  assert.match(rows[0][3], /^\{"seq":\d+/);
});

test("a bad row is rejected alone: exactly one rejection, the rest of its batch committed", async () => {
  const rowsBefore = await value("#rows-total");
  await page.click("#fault-bad-row");
  const result = await page.waitForSelector("#bad-row-result", SLOW);
  assert.equal(await result.getAttribute("data-rejected"), "1");
  assert.equal(await result.getAttribute("data-committed"), "19");
  assert.match(await result.textContent(), /Constraint.*1299.*NOT NULL constraint failed: events\.payload/);
  await page.waitForFunction(() => document.querySelector("#m-rejected").dataset.value === "1", null, SLOW);
  assert.equal(await value("#rows-total"), rowsBefore + 19);
  assert.equal(await value("#m-committed") + (await value("#m-rejected")), await value("#m-accepted"));
});

test("holding the write lock: the writer retries, nothing fails, the queued writes commit", async () => {
  assert.equal(await page.isDisabled("#fault-lock"), false, "the demo's build has the fault-injection hook");
  await page.click("#fault-lock");
  const result = await page.waitForSelector("#lock-result", SLOW);
  assert.ok(Number(await result.getAttribute("data-retries")) > 0, "lock contention was retried");
  assert.equal(await result.getAttribute("data-failed"), "0", "no write failed");
  await page.waitForSelector("#collector[data-state=idle]", SLOW);
  const committed = await value("#m-committed");
  assert.equal(committed + (await value("#m-rejected")), await value("#m-accepted"));
  assert.equal(await value("#m-failed"), 0);
  assert.equal(await page.textContent("#m-breaker"), "closed", "the breaker closed again");
  // While the lock was held the log showed accepted minus settled as "writes waiting".
  assert.ok(Number(await result.getAttribute("data-waiting")) > 0, "writes waited for the lock");
  // Health is degraded for a few seconds after trouble, then ok again (the page keeps polling).
  await page.waitForFunction(() => document.querySelector("#m-health").textContent === "ok", null, SLOW);
  // The table holds every committed row: the collectors', the 19 good rows of the salvage test.
  assert.equal(await value("#rows-total"), committed);
});

test("the race: both sides write every row, and sqlweir wins", async () => {
  await page.selectOption("#race-rows", "2000");
  await page.click("#race-run");
  await page.waitForSelector("#race[data-state=done]", SLOW);
  const ratio = Number(await page.getAttribute("#race-verdict", "data-ratio"));
  assert.ok(ratio > 1, `ratio ${ratio}`);
  assert.match(await page.textContent("#race-ratio"), /^\d+(\.\d)?×$/);
  for (const lane of ["#lane-per-row", "#lane-sqlweir"]) {
    assert.equal(await page.textContent(`${lane} .lane-rows`), "2,000 / 2,000 rows");
  }
  assert.equal(await page.textContent("#lane-per-row .lane-tx"), "2,000 transactions", "one transaction per row");
  const batched = Number((await page.textContent("#lane-sqlweir .lane-tx")).replace(/\D/g, ""));
  assert.ok(batched >= 1 && batched < 2_000, `sqlweir used ${batched} transactions`);
});

test("the page on a desktop viewport: screenshot, no console errors", async () => {
  await page.click("#collect");
  await page.waitForFunction(() => Number(document.querySelector("#c-rate").textContent.replace(/\D/g, "")) > 0, null, SLOW);
  await page.screenshot({ path: join(ARTIFACTS, "screenshot.png"), fullPage: true });
  await page.click("#collect");
  await page.waitForSelector("#collector[data-state=idle]", SLOW);
  assert.deepEqual(await layoutProblems(), { page: 0, offScreen: [], outOfPanel: [], clipped: [] });
  assert.deepEqual(consoleErrors, []);
});

test("a reload finds every row (the data is in OPFS)", async () => {
  const rowsBefore = await value("#rows-total");
  assert.ok(rowsBefore > 0);
  await page.click("#fault-reload");
  const result = await page.waitForSelector("#reload-result", SLOW);
  assert.equal(Number(await result.getAttribute("data-before")), rowsBefore);
  assert.equal(Number(await result.getAttribute("data-after")), rowsBefore);
  assert.equal(await value("#rows-total"), rowsBefore);
  assert.equal(await value("#m-committed"), 0, "a new page, new counters: the rows come from the file");
});

test("a narrow (mobile) viewport renders without horizontal overflow", async () => {
  await page.setViewportSize({ width: 375, height: 812 });
  await page.waitForFunction(() => document.querySelector("#chart-rate").getBoundingClientRect().width < 375);
  // Fill every number the page shows, so the check sees real widths.
  await page.click("#collect");
  await page.waitForFunction(() => document.querySelector("#c-p99").textContent !== "–", null, SLOW);
  await page.click("#collect");
  await page.waitForSelector("#collector[data-state=idle]", SLOW);
  const overflow = await layoutProblems();
  assert.equal(overflow.page, 0, "no horizontal scroll");
  assert.deepEqual(overflow.offScreen, [], "no element sticks out of the screen");
  assert.deepEqual(overflow.outOfPanel, [], "no element sticks out of its box");
  assert.deepEqual(overflow.clipped, [], "no number is cut off");
  const sample = await page.$eval("pre.code", (el) => ({ scroll: el.scrollWidth, client: el.clientWidth }));
  assert.ok(sample.scroll <= sample.client, `the code sample fits the phone: ${JSON.stringify(sample)}`);
  await page.screenshot({ path: join(ARTIFACTS, "screenshot-narrow.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
});

test("clear empties the table; no console errors over the whole run", async () => {
  await page.click("#fault-clear");
  await page.waitForFunction(() => document.querySelector("#rows-total").dataset.value === "0", null, SLOW);
  assert.equal(await page.textContent("#rows-body"), "No rows yet: start the collectors.");
  assert.deepEqual(consoleErrors, []);
});
