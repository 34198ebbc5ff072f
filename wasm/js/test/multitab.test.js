// Several tabs on one database: one browser context, three pages of the same origin, the built
// npm package in real headless Chromium. The first page leads (Web Lock) and runs the worker; the
// others forward to it. Closing the leader page mid-stream makes a follower lead, and every write
// ends acked exactly once. Asserts counts and contents, never timing. See docs/multitab.md.

import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { chromiumHooks, openTab } from "./chromium.js";

// Fixed (the OPFS origin includes the port, and the reload must come back to it), and not the
// port of browser.test.js, so both files can run at once.
const PORT = Number(process.env.SQLWEIR_MULTITAB_PORT ?? 47_814);
const PAGE = `http://127.0.0.1:${PORT}/test/page.html`;
const MIGRATIONS = [
  // No unique key on purpose: a write applied twice would show as a duplicate row.
  "CREATE TABLE rows(tab TEXT NOT NULL, seq INTEGER NOT NULL, phase INTEGER NOT NULL)",
  "CREATE TABLE uniq(k TEXT PRIMARY KEY)",
];
const ROWS = 5_000;

// Three tabs of their own (`browser.tabs`); the first tab is closed once they are open.
const browser = chromiumHooks(chromium, { port: PORT, url: PAGE, tabs: ["a", "b", "c"] });
const pages = browser.tabs;

/** Opens the database in `page` and installs the helpers the tests call. */
function openIn(page, label) {
  return page.evaluate(
    async ({ label, migrations }) => {
      const { open } = await import("sqlweir");
      const db = await open("multi.db", { migrations });
      window.db = db;
      window.label = label;
      window.roles = [];
      db.onRoleChange((role) => window.roles.push(role));
      // Writes `count` rows of `phase`, `chunk` at a time. A write rejected with LeaderChanged may
      // or may not have been applied by the tab that went away: it is retried in an idempotent
      // form, the way docs/multitab.md tells apps to.
      window.stream = async (phase, count, chunk) => {
        const state = { acked: [], leaderChanged: 0, retried: 0, errors: [] };
        window.progress = state;
        const sql = "INSERT INTO rows(tab, seq, phase) VALUES (?, ?, ?)";
        const idempotent =
          "INSERT INTO rows(tab, seq, phase) SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM rows WHERE tab = ?1 AND seq = ?2 AND phase = ?3)";
        const put = async (seq) => {
          try {
            await db.write(sql, [label, seq, phase]);
          } catch (e) {
            if (e.code !== "LeaderChanged") throw e;
            state.leaderChanged++;
            for (;;) {
              try {
                await db.write(idempotent, [label, seq, phase]);
                break;
              } catch (again) {
                if (again.code !== "LeaderChanged") throw again;
                state.leaderChanged++;
              }
            }
            state.retried++;
          }
          state.acked.push(seq);
        };
        for (let start = 0; start < count; start += chunk) {
          const seqs = [];
          for (let seq = start; seq < Math.min(count, start + chunk); seq++) seqs.push(seq);
          const outcomes = await Promise.allSettled(seqs.map(put));
          for (const o of outcomes) if (o.status === "rejected") state.errors.push(`${o.reason?.code}: ${o.reason?.message}`);
        }
        return state;
      };
      return db.role;
    },
    { label, migrations: MIGRATIONS },
  );
}

const role = (page) => page.evaluate(() => window.db.role);

test("the first tab leads, the others follow", async () => {
  assert.equal(await openIn(pages.a, "a"), "leader");
  assert.equal(await openIn(pages.b, "b"), "follower");
  assert.equal(await openIn(pages.c, "c"), "follower");
});

test("three tabs write 5,000 rows each at once: exactly 15,000 land, each once", async () => {
  const states = await Promise.all(
    [pages.a, pages.b, pages.c].map((page) => page.evaluate((rows) => window.stream(1, rows, 500), ROWS)),
  );
  for (const s of states) {
    assert.deepEqual(s.errors, []);
    assert.equal(s.acked.length, ROWS);
    assert.equal(s.leaderChanged, 0);
  }
  // Read from a follower: its query runs on the leader and sees every tab's acked writes.
  const result = await pages.c.evaluate(async () => {
    const db = window.db;
    const [totals] = await db.query(
      "SELECT count(*) AS count, count(DISTINCT tab || ':' || seq) AS distinct_rows, sum(seq) AS sum FROM rows WHERE phase = 1",
    );
    const perTab = await db.query("SELECT tab, count(*) AS count FROM rows WHERE phase = 1 GROUP BY tab ORDER BY tab");
    const metrics = await db.metrics();
    const health = await db.health();
    return { totals, perTab, metrics, health };
  });
  assert.deepEqual(result.totals, { count: 15_000, distinct_rows: 15_000, sum: 3 * ((ROWS * (ROWS - 1)) / 2) });
  assert.deepEqual(result.perTab, [
    { tab: "a", count: ROWS },
    { tab: "b", count: ROWS },
    { tab: "c", count: ROWS },
  ]);
  // Metrics come from the leader's worker, asked from a follower.
  assert.ok(result.metrics.committed >= 15_000, `committed ${result.metrics.committed}`);
  assert.equal(result.metrics.queueDepth, 0);
  assert.deepEqual(result.health, { status: "ok", reason: null });
});

test("a follower gets the same typed errors, outcomes and job locks as a local call", async () => {
  const result = await pages.b.evaluate(async () => {
    const db = window.db;
    await db.write("INSERT INTO uniq(k) VALUES (?)", ["x"]);
    const dup = await db.write("INSERT INTO uniq(k) VALUES (?)", ["x"]).catch((e) => e);
    const sql = await db.write("INSERT INTO nope(k) VALUES (?)", ["y"]).catch((e) => e);
    const badValue = await db.write("INSERT INTO uniq(k) VALUES (?)", [() => 1]).catch((e) => e);
    const badQuery = await db.query("SELECT * FROM nope").catch((e) => e);
    const many = await db.writeMany("INSERT INTO uniq(k) VALUES (?)", [["m0"], ["x"], ["m2"]]);
    await db.flush();
    const guard = await db.lock("sync", { holder: "tab b" });
    const status = await db.jobStatus("sync");
    const shape = (e) => [e instanceof Error, e.name, e.code, e.sqliteCode];
    return {
      dup: shape(dup),
      sql: shape(sql)[2],
      badValue: shape(badValue)[2],
      badQuery: shape(badQuery)[2],
      many: { committed: many.committed, rejected: many.rejected.map((r) => [r.index, r.error instanceof Error, r.error.code]) },
      held: status.holder?.holder,
      released: await guard.release(),
    };
  });
  assert.deepEqual(result.dup, [true, "SqlweirError", "Constraint", 1555]);
  assert.equal(result.sql, "Sql");
  assert.equal(result.badValue, "InvalidInput");
  assert.equal(result.badQuery, "Sql");
  assert.deepEqual(result.many, { committed: 2, rejected: [[1, true, "Constraint"]] });
  assert.equal(result.held, "tab b");
  assert.equal(result.released, true);
  // A job lock held through one follower is seen by another tab.
  const busy = await pages.c.evaluate(async () => {
    const guard = await window.db.lock("nightly", { holder: "tab c" });
    const other = await window.db.lock("nightly", { holder: "tab c again" }).catch((e) => e);
    const fromLeader = await window.db.jobStatus("nightly");
    await guard.release();
    return [other.code, other.holder, fromLeader.holder?.holder];
  });
  assert.deepEqual(busy, ["InProgress", "tab c", "tab c"]);
  const [{ count }] = await pages.a.evaluate(() => window.db.query("SELECT count(*) AS count FROM uniq"));
  assert.equal(count, 3);
});

test("closing the leader mid-stream: a follower leads, every write is acked exactly once", async (t) => {
  assert.equal(await role(pages.a), "leader");
  // A job lock taken through the old leader; its worker numbers tokens from 1, as the next will.
  await pages.b.evaluate(async () => {
    window.staleGuard = await window.db.lock("before-failover", { holder: "b" });
  });
  // The two followers stream rows in small chunks; the leader page closes while they do.
  const streams = [pages.b, pages.c].map((page) => page.evaluate((rows) => window.stream(2, rows, 10), ROWS));
  await Promise.all(
    [pages.b, pages.c].map((page) => page.waitForFunction(() => window.progress?.acked.length >= 200, null, { timeout: 60_000 })),
  );
  const ackedBeforeClose = await Promise.all([pages.b, pages.c].map((page) => page.evaluate(() => window.progress.acked.length)));
  const closedAt = Date.now();
  await pages.a.close();
  // Reported, never asserted: how long until a follower led.
  while (!(await Promise.all([role(pages.b), role(pages.c)])).includes("leader")) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const takeoverMs = Date.now() - closedAt;
  const states = await Promise.all(streams);
  for (const s of states) {
    assert.deepEqual(s.errors, []);
    assert.equal(s.acked.length, ROWS);
    assert.deepEqual(
      [...s.acked].sort((x, y) => x - y),
      Array.from({ length: ROWS }, (_, i) => i),
    );
  }
  // The leader closed while the streams were still running.
  assert.ok(ackedBeforeClose.every((n) => n < ROWS), `acked before close: ${ackedBeforeClose}`);
  const roles = [await role(pages.b), await role(pages.c)].sort();
  assert.deepEqual(roles, ["follower", "leader"]);
  const leader = (await role(pages.b)) === "leader" ? pages.b : pages.c;
  const follower = leader === pages.b ? pages.c : pages.b;
  assert.deepEqual(await leader.evaluate(() => window.roles), ["leader"]);
  assert.deepEqual(await follower.evaluate(() => window.roles), []);

  const result = await follower.evaluate(async () => {
    const db = window.db;
    const [totals] = await db.query(
      "SELECT count(*) AS count, count(DISTINCT tab || ':' || seq) AS distinct_rows FROM rows WHERE phase = 2",
    );
    const dups = await db.query("SELECT tab, seq, count(*) AS n FROM rows WHERE phase = 2 GROUP BY tab, seq HAVING n > 1");
    const [phase1] = await db.query("SELECT count(*) AS count FROM rows WHERE phase = 1");
    const metrics = await db.metrics();
    const [integrity] = await db.query("PRAGMA integrity_check");
    return { totals, dups, phase1: phase1.count, metricsOk: typeof metrics.committed === "number", integrity };
  });
  const acked = states.reduce((n, s) => n + s.acked.length, 0);
  assert.equal(result.totals.count, acked, "the rows equal the acked writes");
  assert.equal(result.totals.distinct_rows, acked, "every acked write is there exactly once");
  assert.deepEqual(result.dups, []);
  assert.equal(result.phase1, 15_000, "nothing acked by the old leader was lost");
  assert.deepEqual(result.integrity, { integrity_check: "ok" }, "the file survived its worker's end mid-stream");
  assert.ok(result.metricsOk);
  // The stale guard releases nothing on the new leader, not even a lock that got its number: the
  // new worker numbers tokens from 1, and the old one had given out fewer than 5.
  await pages.c.evaluate(async () => {
    window.freshGuards = [];
    for (let i = 1; i <= 5; i++) window.freshGuards.push(await window.db.lock(`after-failover-${i}`, { holder: "c" }));
  });
  const stale = await pages.b.evaluate(async () => {
    const released = await window.staleGuard.release();
    const holders = [];
    for (let i = 1; i <= 5; i++) holders.push((await window.db.jobStatus(`after-failover-${i}`)).holder?.holder);
    return { released, holders };
  });
  assert.deepEqual(stale, { released: false, holders: Array(5).fill("c") });
  assert.deepEqual(await pages.c.evaluate(() => Promise.all(window.freshGuards.map((g) => g.release()))), Array(5).fill(true));
  const retried = states.map((s) => `${s.leaderChanged} LeaderChanged, ${s.retried} retried`).join("; ");
  t.diagnostic(`failover: a follower led ${takeoverMs} ms after the close; acked before it ${ackedBeforeClose.join(" + ")}; ${retried}`);
});

test("after reloading every page the data is there", async () => {
  await Promise.all([pages.b.reload(), pages.c.reload()]);
  // Whichever page gets the lock first leads; the other follows.
  const opened = await Promise.all([openIn(pages.b, "b"), openIn(pages.c, "c")]);
  assert.deepEqual([...opened].sort(), ["follower", "leader"]);
  pages.d = await openTab(browser, PAGE, "d");
  assert.equal(await openIn(pages.d, "d"), "follower");
  for (const page of [pages.b, pages.c, pages.d]) {
    const counts = await page.evaluate(async () =>
      window.db.query("SELECT phase, count(*) AS count, count(DISTINCT tab || ':' || seq) AS distinct_rows FROM rows GROUP BY phase ORDER BY phase"),
    );
    assert.deepEqual(counts, [
      { phase: 1, count: 15_000, distinct_rows: 15_000 },
      { phase: 2, count: 2 * ROWS, distinct_rows: 2 * ROWS },
    ]);
  }
  const closed = await pages.d.evaluate(async () => {
    await window.db.close();
    return (await window.db.query("SELECT 1").catch((e) => e)).code;
  });
  assert.equal(closed, "Closed");
  // A follower's close, and then the leader's own close, leave the database open for the others.
  const leader = (await role(pages.b)) === "leader" ? pages.b : pages.c;
  const follower = leader === pages.b ? pages.c : pages.b;
  await leader.evaluate(() => window.db.close());
  const still = await follower.evaluate(async () => {
    const receipt = await window.db.write("INSERT INTO uniq(k) VALUES (?)", ["after the leader closed its handle"]);
    const [{ count }] = await window.db.query("SELECT count(*) AS count FROM uniq");
    return { changes: receipt.changes, count };
  });
  assert.deepEqual(still, { changes: 1, count: 4 });
  assert.deepEqual(browser.pageErrors, []);
});
