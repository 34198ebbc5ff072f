// The built npm package, tested the way users get it: served over HTTP, imported by name from a
// page in real headless Chromium, running its dedicated worker on OPFS. Needs `pkg/` built
// (scripts/test-browser does it) and Debian's chromium.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
// Fixed: the OPFS origin includes the port, and the reload test must come back to it.
const PORT = Number(process.env.SQLWEIR_TEST_PORT ?? 47_813);
const PAGE = `http://127.0.0.1:${PORT}/test/page.html`;

const browser = chromiumHooks(chromium, { port: PORT, url: PAGE });

const ITEMS = ["CREATE TABLE items(n INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE, data BLOB)"];

test("the README quick start runs as written", async () => {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const code = readme.match(/## Quick start\s+```js\n([\s\S]*?)```/)?.[1];
  assert.ok(code, "README has a js quick start");
  const logs = [];
  const onConsole = (m) => logs.push(m.text());
  browser.page.on("console", onConsole);
  await browser.page.addScriptTag({ type: "module", content: `${code}\nwindow.quickstartDone = true;` });
  await browser.page.waitForFunction(() => window.quickstartDone === true || null, null, { timeout: 60_000 });
  browser.page.off("console", onConsole);
  assert.deepEqual(browser.pageErrors, []);
  assert.ok(logs.includes("Constraint 1555"), `logs: ${logs.join(" | ")}`);
  // Reopening takes the same migrations: a database ahead of the migrations given is refused.
  const migrations = [code.match(/"(CREATE TABLE events[^"]*)"/)?.[1]];
  const rows = await browser.page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const db = await open("quickstart.db", { migrations });
    const rows = await db.query("SELECT source, payload FROM events ORDER BY id");
    await db.close();
    return rows;
  }, migrations);
  assert.deepEqual(rows, [1, 2, 3].map((n) => ({ source: "tab", payload: `hello ${n}` })));
});

test("10,000 parallel writes commit in batches and read back", async () => {
  const result = await browser.page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const db = await open("bulk.db", { migrations });
    const writes = [];
    for (let n = 0; n < 10_000; n++) writes.push(db.write("INSERT INTO items(n, label) VALUES (?, ?)", [n, `item ${n}`]));
    const receipts = await Promise.all(writes);
    const [totals] = await db.query("SELECT count(*) AS count, sum(n) AS sum FROM items");
    const some = await db.query("SELECT n, label FROM items WHERE n IN (?, ?, ?) ORDER BY n", [0, 4242, 9999]);
    const metrics = await db.metrics();
    window.bulk = db;
    return {
      changed: receipts.filter((r) => r.changes === 1).length,
      rowids: receipts.every((r, n) => r.lastRowid === n),
      batches: new Set(receipts.map((r) => r.batch)).size,
      totals,
      some,
      metrics,
    };
  }, ITEMS);
  assert.equal(result.changed, 10_000);
  assert.ok(result.rowids, "each receipt carries its own rowid");
  assert.deepEqual(result.totals, { count: 10_000, sum: 49_995_000 });
  assert.deepEqual(result.some, [
    { n: 0, label: "item 0" },
    { n: 4242, label: "item 4242" },
    { n: 9999, label: "item 9999" },
  ]);
  assert.equal(result.metrics.accepted, 10_000);
  assert.equal(result.metrics.committed, 10_000);
  assert.equal(result.metrics.rejected, 0);
  assert.ok(result.batches < 200, `10,000 writes went in ${result.batches} batches`);
  assert.equal(result.metrics.batches, result.batches);
});

test("a constraint violation rejects that write alone with a code", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.bulk;
    const outcomes = await Promise.allSettled([
      db.write("INSERT INTO items(n, label) VALUES (?, ?)", [20_000, "fresh a"]),
      db.write("INSERT INTO items(n, label) VALUES (?, ?)", [20_001, "item 7"]),
      db.write("INSERT INTO items(n, label) VALUES (?, ?)", [20_002, "fresh b"]),
    ]);
    const failed = outcomes.find((o) => o.status === "rejected")?.reason;
    const many = await db.writeMany("INSERT INTO items(n, label) VALUES (?, ?)", [
      [30_000, "m0"],
      [30_001, "m0"],
      [30_002, "m2"],
    ]);
    const [{ count }] = await db.query("SELECT count(*) AS count FROM items WHERE n >= 20000");
    return {
      statuses: outcomes.map((o) => o.status),
      isError: failed instanceof Error,
      name: failed?.name,
      code: failed?.code,
      sqliteCode: failed?.sqliteCode,
      message: failed?.message,
      many: { committed: many.committed, rejected: many.rejected.map((r) => [r.index, r.error.code, r.error instanceof Error]) },
      count,
    };
  });
  assert.deepEqual(result.statuses, ["fulfilled", "rejected", "fulfilled"]);
  assert.equal(result.isError, true);
  assert.equal(result.name, "SqlweirError");
  assert.equal(result.code, "Constraint");
  assert.equal(result.sqliteCode, 2067, "SQLITE_CONSTRAINT_UNIQUE");
  assert.match(result.message, /^constraint failed: UNIQUE constraint failed: items.label/);
  assert.deepEqual(result.many, { committed: 2, rejected: [[1, "Constraint", true]] });
  assert.equal(result.count, 4);
});

test("values of other types are rejected with InvalidInput, never coerced", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.bulk;
    const sql = "INSERT INTO items(n, label) VALUES (?, ?)";
    const bad = [
      [40_000, { label: "object" }],
      [40_001, undefined],
      [40_002, new Date(0)],
      [40_003, ["array"]],
      [40_004, () => "function"],
      [40_005, Number.NaN],
      [2n ** 64n, "too big"],
    ];
    const outcomes = await Promise.allSettled(bad.map((params) => db.write(sql, params)));
    const wrongParams = await db.write(sql, "not an array").catch((e) => e);
    const [{ count }] = await db.query("SELECT count(*) AS count FROM items WHERE n >= 40000 OR label = 'too big'");
    return {
      codes: outcomes.map((o) => (o.status === "rejected" ? o.reason.code : "fulfilled")),
      allErrors: outcomes.every((o) => o.reason instanceof Error),
      messages: outcomes.map((o) => o.reason?.message),
      wrongParams: wrongParams.code,
      count,
    };
  });
  assert.deepEqual(result.codes, Array(7).fill("InvalidInput"), result.messages.join("\n"));
  assert.ok(result.allErrors);
  assert.match(result.messages[0], /parameter 2: object Object is not a parameter type/);
  assert.equal(result.wrongParams, "InvalidInput");
  assert.equal(result.count, 0, "nothing of a refused write reached the database");
});

test("accepted types round-trip: bigint beyond 2^53, booleans, reals, blobs, null", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.bulk;
    const big = 2n ** 62n + 1n;
    await db.write("INSERT INTO items(n, label, data) VALUES (?, ?, ?)", [big, "big", new Uint8Array([1, 2, 255])]);
    await db.write("INSERT INTO items(n, label, data) VALUES (?, ?, ?)", [50_000, "flags", null]);
    const [row] = await db.query("SELECT n, data FROM items WHERE label = ?", ["big"]);
    const [types] = await db.query("SELECT typeof(?) AS b, typeof(?) AS r, typeof(?) AS i, ? + 0 AS t", [true, 1.5, 3, true]);
    const [flags] = await db.query("SELECT data FROM items WHERE label = 'flags'");
    return {
      n: typeof row.n === "bigint" && row.n === big,
      data: row.data instanceof Uint8Array ? [...row.data] : row.data,
      types,
      flags,
    };
  });
  assert.equal(result.n, true);
  assert.deepEqual(result.data, [1, 2, 255]);
  assert.deepEqual(result.types, { b: "integer", r: "real", i: "integer", t: 1 });
  assert.deepEqual(result.flags, { data: null });
});

test("strings of one tick keep their text: empty, non-ASCII, emoji, lone and split surrogates", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.bulk;
    const texts = ["", "plain", "grüße", "", "日本語", "😀 emoji", "a\ud800", "\udc00b", "x\ud83d", "\ude00y", "tail"];
    const ids = texts.map((_, i) => 70_000 + i);
    const sql = "INSERT INTO items(n, label, data) VALUES (?, ?, ?)";
    const receipts = await Promise.all(texts.map((t, i) => db.write(sql, [ids[i], `s${i}`, t])));
    const rows = await db.query("SELECT CAST(data AS TEXT) AS text FROM items WHERE n >= 70000 AND n < 71000 ORDER BY n");
    const alone = await Promise.all(texts.map((t) => db.query("SELECT ? AS text", [t])));
    return { receipts, rows: rows.map((r) => r.text), alone: alone.map(([r]) => r.text) };
  });
  assert.deepEqual(result.rows, result.alone, "each string as if sent alone (lone surrogates become U+FFFD)");
  assert.deepEqual(result.rows.slice(0, 6), ["", "plain", "grüße", "", "日本語", "😀 emoji"]);
  assert.deepEqual(result.receipts.map((r) => [r.changes, r.lastRowid]), result.receipts.map((_, i) => [1, 70_000 + i]));
});

test("metrics, health and job locks answer from the worker", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.bulk;
    await db.flush();
    const health = await db.health();
    const metrics = await db.metrics();
    const guard = await db.lock("nightly-sync", { holder: "tab" });
    const busy = await db.lock("nightly-sync", { holder: "other" }).catch((e) => e);
    await guard.release();
    const status = await db.jobStatus("nightly-sync");
    return { health, metrics, busy: [busy.code, busy.holder], status };
  });
  assert.deepEqual(result.health, { status: "ok", reason: null });
  assert.equal(result.metrics.queueDepth, 0);
  assert.equal(result.metrics.journalMode, "wal");
  assert.match(result.metrics.engine, /^SQLite 3\.\d+\.\d+$/);
  assert.deepEqual(result.busy, ["InProgress", "tab"]);
  assert.equal(result.status.holder, null);
  assert.deepEqual(result.status.runs.map((r) => [r.holder, r.failure]), [["tab", null]]);
});

test("data persists across a page reload", async () => {
  await browser.page.reload();
  const result = await browser.page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const db = await open("bulk.db", { migrations });
    const [totals] = await db.query("SELECT count(*) AS count, sum(n) AS sum FROM items WHERE n < 10000");
    const [last] = await db.query("SELECT label FROM items WHERE n = 9999");
    window.bulk = db;
    return { totals, last };
  }, ITEMS);
  assert.deepEqual(result.totals, { count: 10_000, sum: 49_995_000 });
  assert.deepEqual(result.last, { label: "item 9999" });
});

test("a second open of an open database in the same page is refused, never a second writer", async () => {
  const result = await browser.page.evaluate(async () => {
    const { open } = await import("sqlweir");
    const first = await open("twice.db", { migrations: ["CREATE TABLE t(x)"] });
    const second = await open("twice.db").catch((e) => e);
    await first.write("INSERT INTO t VALUES (?)", [1]);
    await first.close();
    const reopened = await open("twice.db", { migrations: ["CREATE TABLE t(x)"] });
    const [{ n }] = await reopened.query("SELECT count(*) AS n FROM t");
    await reopened.close();
    return { isError: second instanceof Error, code: second.code, n };
  });
  assert.deepEqual(result, { isError: true, code: "InUse", n: 1 });
});

test("a flush or a close ends a long linger at once instead of waiting it out", async () => {
  // The bug: a batch lingering for more writes slept its whole linger, so `flush()` and
  // `close()` on a store opened with a long `lingerMs` waited out the timer (ten minutes
  // here, far past the test's timeout) although the writer had been asked to hurry.
  const result = await browser.page.evaluate(async () => {
    const { open } = await import("sqlweir");
    const db = await open("linger.db", { migrations: ["CREATE TABLE t(n INTEGER PRIMARY KEY)"], lingerMs: 600_000 });
    const first = db.write("INSERT INTO t(n) VALUES (?)", [1]);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the writer is lingering now
    await db.flush();
    const flushed = await first;
    const second = db.write("INSERT INTO t(n) VALUES (?)", [2]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await db.close();
    const closed = await second;
    const again = await open("linger.db");
    const rows = await again.query("SELECT n FROM t ORDER BY n");
    await again.close();
    return { flushed: flushed.changes, closed: closed.changes, rows: rows.map((r) => r.n) };
  });
  assert.equal(result.flushed, 1, "the lingering write committed on flush");
  assert.equal(result.closed, 1, "the lingering write committed on close");
  assert.deepEqual(result.rows, [1, 2]);
  assert.deepEqual(browser.pageErrors, []);
});

test("close refuses later calls and a reopen finds the data", async () => {
  const result = await browser.page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const db = window.bulk;
    const last = db.write("INSERT INTO items(n, label) VALUES (?, ?)", [60_000, "just before close"]);
    await db.close();
    const receipt = await last;
    const afterClose = await db.write("INSERT INTO items(n, label) VALUES (?, ?)", [60_001, "after"]).catch((e) => e);
    const queryAfter = await db.query("SELECT 1").catch((e) => e);
    const again = await open("bulk.db", { migrations });
    const rows = await again.query("SELECT label FROM items WHERE n BETWEEN 60000 AND 60001");
    const [{ count }] = await again.query("SELECT count(*) AS count FROM items WHERE n < 10000");
    await again.close();
    return { changes: receipt.changes, afterClose: [afterClose instanceof Error, afterClose.code], queryAfter: queryAfter.code, rows, count };
  }, ITEMS);
  assert.equal(result.changes, 1, "a write issued before close commits");
  assert.deepEqual(result.afterClose, [true, "Closed"]);
  assert.equal(result.queryAfter, "Closed");
  assert.deepEqual(result.rows, [{ label: "just before close" }]);
  assert.equal(result.count, 10_000);
  assert.deepEqual(browser.pageErrors, []);
});
