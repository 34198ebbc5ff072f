// The conformance suite in the browser: the same cases, under the same names, as
// native/tests/conformance.rs, which SQLite and PostgreSQL run natively. Read them side by
// side. The package's JavaScript is served with the wasm built with the crate's
// `fault-injection` feature (target/www/pkg, scripts/build-demo), because the browser has no
// second connection to hold the write lock: `injectBusy(n)` makes the next n attempts meet
// SQLITE_BUSY instead, as an outside lock would.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";

const PACKAGE = dirname(dirname(fileURLToPath(import.meta.url)));
const FAULT_PKG = resolve(PACKAGE, "../../target/www/pkg");
// Not the port of the other test files, so they can run at once.
const PORT = Number(process.env.SQLWEIR_CONFORMANCE_PORT ?? 47_823);
const PAGE = `http://127.0.0.1:${PORT}/test/page.html`;

const SCHEMA = "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)";
const INSERT = "INSERT INTO t(k, v) VALUES (?, ?)";

const browser = chromiumHooks(chromium, {
  port: PORT,
  root: { "/": PACKAGE, "/pkg/": FAULT_PKG },
  url: PAGE,
  setup: ({ page }) =>
    page.evaluate(() => {
      let n = 0;
      // A store on a fresh database of its own.
      window.fresh = async (options = {}) => {
        const { open } = await import("sqlweir");
        return open(`conformance-${n++}.db`, { migrations: [window.SCHEMA], ...options });
      };
      window.keys = async (db) => (await db.query("SELECT k FROM t ORDER BY k")).map((r) => r.k);
      // Settles a promise to { ok, value } or { ok: false, code } without throwing.
      window.settle = (p) => p.then((value) => ({ ok: true, value }), (e) => ({ ok: false, code: e.code, message: e.message }));
    }),
});

after(() => {
  assert.deepEqual(browser.pageErrors, []);
});

/** Options that put every write of a case into one batch: a long linger and a flush to end it. */
const ONE_BATCH = { lingerMs: 30_000, batchRows: 10_000 };

test("salvage_rejects_a_bad_write_alone_and_commits_the_rest", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, ONE_BATCH, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh(ONE_BATCH);
      const seed = db.write(INSERT, [3, "seed"]);
      await db.flush();
      await seed;
      const writes = [1, 2, 3, 4, 5].map((k) => window.settle(db.write(INSERT, [k, `v${k}`])));
      const nul = window.settle(db.write(INSERT, [6, null]));
      await db.flush();
      const results = await Promise.all(writes);
      const m = await db.metrics();
      const out = { results, nul: await nul, keys: await window.keys(db), m };
      await db.close();
      return out;
    },
    [INSERT, ONE_BATCH, SCHEMA],
  );
  const batches = r.results.filter((x) => x.ok).map((x) => x.value.batch);
  assert.equal(batches.length, 4, JSON.stringify(r.results));
  assert.equal(new Set(batches).size, 1, "the good writes committed together");
  assert.equal(r.results[2].code, "Constraint", "the duplicate key");
  assert.equal(r.nul.code, "Constraint", "the NOT NULL violation");
  assert.deepEqual(r.keys, [1, 2, 3, 4, 5]);
  assert.deepEqual([r.m.committed, r.m.rejected, r.m.failed], [5, 2, 0]);
});

test("replay_after_a_full_rollback_applies_each_good_write_once", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, ONE_BATCH, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh(ONE_BATCH);
      const seed = db.write(INSERT, [2, "seed"]);
      await db.flush();
      await seed;
      const good = [1, 3, 4].map((k) => window.settle(db.write(INSERT, [k, "good"])));
      const bad = window.settle(db.write("INSERT OR ROLLBACK INTO t(k, v) VALUES (?, ?)", [2, "duplicate"]));
      const later = window.settle(db.write(INSERT, [5, "after"]));
      await db.flush();
      const out = { good: await Promise.all(good), bad: await bad, later: await later, keys: await window.keys(db), m: await db.metrics() };
      await db.close();
      return out;
    },
    [INSERT, ONE_BATCH, SCHEMA],
  );
  assert.equal(r.bad.code, "Constraint");
  assert.ok(r.good.every((x) => x.ok) && r.later.ok, JSON.stringify(r));
  assert.deepEqual(r.keys, [1, 2, 3, 4, 5], "nothing lost, nothing applied twice");
  assert.ok(r.m.replays >= 1, `the batch was replayed: ${r.m.replays}`);
});

test("retry_under_contention_loses_no_write", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh();
      await db.write(INSERT, [0, "warmup"]);
      await db.injectBusy(3);
      const writes = Array.from({ length: 50 }, (_, i) => window.settle(db.write(INSERT, [i + 1, "during"])));
      const results = await Promise.all(writes);
      const out = { ok: results.filter((x) => x.ok).length, keys: (await window.keys(db)).length, m: await db.metrics() };
      await db.close();
      return out;
    },
    [INSERT, SCHEMA],
  );
  assert.equal(r.ok, 50, "no write lost to the lock");
  assert.equal(r.keys, 51);
  assert.ok(r.m.retries >= 2, `retries: ${r.m.retries}`);
  assert.deepEqual([r.m.failed, r.m.rejected], [0, 0]);
});

test("contention_past_the_budget_fails_each_write_with_busy", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh({ retry: { baseMs: 1, capMs: 5, maxAttempts: 4, budgetMs: 10_000 }, breakerThreshold: 1000 });
      await db.injectBusy(1_000_000);
      const errors = [];
      for (const k of [0, 1, 2]) errors.push(await window.settle(db.write(INSERT, [k, "x"])));
      const failed = (await db.metrics()).failed;
      await db.injectBusy(0);
      const after = await window.settle(db.write(INSERT, [9, "after"]));
      const out = { errors, failed, after, keys: await window.keys(db) };
      await db.close();
      return out;
    },
    [INSERT, SCHEMA],
  );
  assert.deepEqual(r.errors.map((e) => e.code), ["Busy", "Busy", "Busy"]);
  assert.equal(r.failed, 3);
  assert.ok(r.after.ok, "the store works after the lock clears");
  assert.deepEqual(r.keys, [9]);
});

test("breaker_opens_under_a_held_lock_and_closes_after_it", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh({ breakerThreshold: 3, breakerCooldownMs: 100 });
      await db.write(INSERT, [0, "warmup"]);
      await db.injectBusy(5);
      const during = window.settle(db.write(INSERT, [1, "during"]));
      let opened = 0;
      while ((opened = (await db.metrics()).breakerOpened) === 0) await new Promise((r) => setTimeout(r, 5));
      const health = await db.health();
      const queued = window.settle(db.write(INSERT, [2, "queued while open"]));
      const out = { opened, health: health.status, during: await during, queued: await queued, m: await db.metrics(), keys: await window.keys(db) };
      await db.close();
      return out;
    },
    [INSERT, SCHEMA],
  );
  assert.ok(r.opened >= 1);
  assert.notEqual(r.health, "ok");
  assert.ok(r.during.ok && r.queued.ok, JSON.stringify(r));
  assert.equal(r.m.breaker, "closed");
  assert.deepEqual(r.keys, [0, 1, 2]);
});

test("flush_waits_for_every_earlier_write_and_close_refuses_later_ones", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, ONE_BATCH, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh(ONE_BATCH);
      const writes = Array.from({ length: 20 }, (_, i) => window.settle(db.write(INSERT, [i + 1, "x"])));
      await db.flush();
      const depth = (await db.metrics()).queueDepth;
      const keys = (await window.keys(db)).length;
      await db.close();
      await db.close();
      const late = await window.settle(db.write(INSERT, [99, "late"]));
      return { depth, keys, late, writes: (await Promise.all(writes)).filter((x) => x.ok).length };
    },
    [INSERT, ONE_BATCH, SCHEMA],
  );
  assert.equal(r.depth, 0, "nothing waits after a flush");
  assert.equal(r.keys, 20, "a flush returns after the commit");
  assert.equal(r.late.code, "Closed");
  assert.equal(r.writes, 20, "accepted before close");
});

test("receipts_report_changes_rowid_and_batch", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh();
      const first = await db.write(INSERT, [10, "a"]);
      await db.write(INSERT, [11, "b"]);
      const update = await db.write("UPDATE t SET v = ? WHERE k >= ?", ["c", 10]);
      const many = await db.writeMany(INSERT, [[20, "x"], [21, "y"], [20, "dup"]]);
      await db.close();
      return { first, update, many: { committed: many.committed, rejected: many.rejected.map((x) => [x.index, x.error.code]) } };
    },
    [INSERT, SCHEMA],
  );
  assert.equal(r.first.changes, 1);
  assert.ok(r.first.batch >= 1);
  assert.equal(r.first.lastRowid, 10);
  assert.equal(r.update.changes, 2);
  assert.ok(r.update.batch > r.first.batch);
  assert.equal(r.many.committed, 2);
  assert.deepEqual(r.many.rejected, [[2, "Constraint"]]);
});

test("errors_are_typed_and_name_what_to_fix", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh();
      const cases = [
        ["INSERT INTO missing(k) VALUES (?)", [1]],
        [INSERT, [1, null]],
        [INSERT, [1, NaN]],
        ["", []],
      ];
      const errors = [];
      for (const [sql, params] of cases) errors.push(await window.settle(db.write(sql, params)));
      const keys = await window.keys(db);
      const after = await window.settle(db.write(INSERT, [1, "ok"]));
      await db.close();
      return { errors, keys, after };
    },
    [INSERT, SCHEMA],
  );
  assert.deepEqual(r.errors.map((e) => e.code), ["Sql", "Constraint", "InvalidInput", "InvalidInput"]);
  assert.ok(r.errors.every((e) => !e.ok && e.message.length > 0));
  assert.deepEqual(r.keys, []);
  assert.ok(r.after.ok, "the store goes on");
});

test("transactions_commit_whole_or_leave_nothing", async () => {
  const r = await browser.page.evaluate(
    async ([INSERT, SCHEMA]) => {
      window.SCHEMA = SCHEMA;
      const db = await window.fresh();
      const committed = await db.transaction([
        { sql: INSERT, params: [1, "a"] },
        { sql: INSERT, params: [2, "b"] },
      ]);
      const failed = await window.settle(
        db.transaction([
          { sql: INSERT, params: [4, "d"] },
          { sql: INSERT, params: [1, "duplicate"] },
        ]),
      );
      const out = { committed: committed.results.length, failed, keys: await window.keys(db), m: await db.metrics() };
      await db.close();
      return out;
    },
    [INSERT, SCHEMA],
  );
  assert.equal(r.committed, 2, "one result per statement");
  assert.equal(r.failed.code, "Constraint");
  assert.deepEqual(r.keys, [1, 2], "a failed transaction leaves nothing");
  assert.deepEqual([r.m.committed, r.m.rejected], [1, 1], "a transaction counts as one entry");
});
