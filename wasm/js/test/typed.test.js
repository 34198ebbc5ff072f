// The typed layer of the npm package (issue 9): insert, upsert and insertMany of row objects,
// keyset pages, and list-of-statements transactions, tested on the built package in real
// headless Chromium, the same way as browser.test.js. Asserts counts and contents, never timing.

import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";

// Not the port of browser.test.js or multitab.test.js, so the files can run at once.
const PORT = Number(process.env.SQLWEIR_TYPED_PORT ?? 47_815);
const PAGE = `http://127.0.0.1:${PORT}/test/page.html`;

const MIGRATIONS = [
  `CREATE TABLE vals(id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, b BLOB, n INTEGER, flag INTEGER,
     opt TEXT DEFAULT 'default')`,
  "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, visits INTEGER NOT NULL DEFAULT 0)",
  "CREATE TABLE events(id INTEGER PRIMARY KEY, source TEXT NOT NULL, seq INTEGER NOT NULL)",
  "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL); INSERT INTO counter VALUES (1, 0)",
  "CREATE TABLE ledger(id INTEGER PRIMARY KEY, who TEXT NOT NULL, amount INTEGER NOT NULL CHECK (amount <> 0))",
  `CREATE TABLE "odd ""name"""("the key" INTEGER PRIMARY KEY, "select" TEXT)`,
];

const browser = chromiumHooks(chromium, {
  port: PORT,
  url: PAGE,
  setup: ({ page }) =>
    page.evaluate(async (migrations) => {
      const { open } = await import("sqlweir");
      window.db = await open("typed.db", { migrations });
    }, MIGRATIONS),
  beforeClose: (page) => page.evaluate(() => window.db?.close()).catch(() => {}),
});

test("every supported value type round-trips through insert, insertMany and upsert", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.db;
    const I64_MAX = 2n ** 63n - 1n;
    const I64_MIN = -(2n ** 63n);
    const unicode = "héllo wörld, 日本語, emoji 🦀🌍, zero-width \u200d, nul-free";
    const receipts = await Promise.all([
      // Every type; `opt` missing, so the column's DEFAULT applies.
      db.insert("vals", { id: 1, i: I64_MAX, f: 1.5, t: unicode, b: new Uint8Array([0, 1, 127, 128, 255]), n: null, flag: true }),
      // `undefined` is a missing field too.
      db.insert("vals", { id: 2, i: I64_MIN, f: -1e-300, t: "", b: new Uint8Array(0), n: null, flag: false, opt: undefined }),
      db.insert("vals", { id: 3, i: Number.MAX_SAFE_INTEGER, f: 0.1 + 0.2, t: "x", n: 42, flag: 1, opt: "given" }),
      db.insert("vals", { id: 4, i: -Number.MAX_SAFE_INTEGER, f: 1e300, t: "y", opt: null }),
    ]);
    // insertMany: the same fields in any order; bigint and number mixed in one column.
    const many = await db.insertMany("vals", [
      { id: 5, i: 2n ** 62n, t: "m5", f: -0.5 },
      { t: "m6", f: 2.25, id: 6, i: -7 },
      { f: 3.125, i: 8n, id: 7, t: "m7" },
    ]);
    // upsert round-trips values too, and overwrites an existing row's fields.
    await db.upsert("vals", { id: 7, i: I64_MIN + 1n, f: 4.5, t: "upserted 🦀", b: new Uint8Array([9, 8]), flag: true }, ["id"]);
    const rows = await db.query("SELECT id, i, f, t, b, n, flag, opt, typeof(i) AS ti, typeof(b) AS tb FROM vals ORDER BY id");
    const plain = rows.map((r) => ({
      ...r,
      i: typeof r.i === "bigint" ? `${r.i}n` : r.i,
      b: r.b instanceof Uint8Array ? `bytes:${[...r.b].join(",")}` : r.b,
    }));
    return { receipts: receipts.map((r) => [r.changes, r.lastRowid]), many: [many.committed, many.rejected.length], rows: plain, unicode };
  });
  assert.deepEqual(result.receipts, [[1, 1], [1, 2], [1, 3], [1, 4]]);
  assert.deepEqual(result.many, [3, 0]);
  assert.deepEqual(result.rows, [
    { id: 1, i: "9223372036854775807n", f: 1.5, t: result.unicode, b: "bytes:0,1,127,128,255", n: null, flag: 1, opt: "default", ti: "integer", tb: "blob" },
    { id: 2, i: "-9223372036854775808n", f: -1e-300, t: "", b: "bytes:", n: null, flag: 0, opt: "default", ti: "integer", tb: "blob" },
    { id: 3, i: 9007199254740991, f: 0.30000000000000004, t: "x", b: null, n: 42, flag: 1, opt: "given", ti: "integer", tb: "null" },
    { id: 4, i: -9007199254740991, f: 1e300, t: "y", b: null, n: null, flag: null, opt: null, ti: "integer", tb: "null" },
    { id: 5, i: "4611686018427387904n", f: -0.5, t: "m5", b: null, n: null, flag: null, opt: "default", ti: "integer", tb: "null" },
    { id: 6, i: -7, f: 2.25, t: "m6", b: null, n: null, flag: null, opt: "default", ti: "integer", tb: "null" },
    { id: 7, i: "-9223372036854775807n", f: 4.5, t: "upserted 🦀", b: "bytes:9,8", n: null, flag: 1, opt: "default", ti: "integer", tb: "blob" },
  ]);
});

test("identifiers are quoted: odd table and column names work", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.db;
    await db.insert('odd "name"', { "the key": 1, select: "a keyword" });
    await db.upsert('odd "name"', { "the key": 1, select: "updated" }, "the key");
    const first = await db.page('odd "name"', "the key", { limit: 10 });
    return first;
  });
  assert.deepEqual(result, { rows: [{ "the key": 1, select: "updated" }], next: null });
});

test("bad rows are clear errors naming the field, the row or the table", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.db;
    const outcome = (p) => p.then(() => ["fulfilled"], (e) => [e instanceof Error ? e.code : "not an Error", e.message]);
    const out = {
      unknownField: await outcome(db.insert("vals", { id: 100, colour: "red" })),
      unknownTable: await outcome(db.insert("nowhere", { id: 1 })),
      date: await outcome(db.insert("vals", { id: 101, t: new Date(0) })),
      nested: await outcome(db.insert("vals", { id: 102, t: { deep: 1 } })),
      nan: await outcome(db.insert("vals", { id: 103, f: Number.NaN })),
      hugeBigint: await outcome(db.insert("vals", { id: 104, i: 2n ** 64n })),
      notObject: await outcome(db.insert("vals", [1, 2])),
      empty: await outcome(db.insert("vals", {})),
      shape: await outcome(db.insertMany("vals", [{ id: 105, t: "a" }, { id: 106, f: 1 }])),
      manyBadValue: await outcome(db.insertMany("vals", [{ id: 107 }, { id: [108] }])),
      conflictNotField: await outcome(db.upsert("users", { id: 1, name: "x" }, ["email"])),
      noConflict: await outcome(db.upsert("users", { id: 1, email: "e" }, [])),
      emptyTable: await outcome(db.insert("", { id: 1 })),
    };
    // Like writeMany, insertMany resolves and reports the rows rejected alone.
    const manyUnknown = await db.insertMany("vals", [{ id: 109, colour: "red" }]);
    out.manyUnknownField = [manyUnknown.committed, manyUnknown.rejected.map((r) => [r.index, r.error.code, r.error.message])];
    const noRows = await db.insertMany("vals", []);
    const [{ count }] = await db.query("SELECT count(*) AS count FROM vals WHERE id >= 100");
    return { out, noRows, count };
  });
  const { out } = result;
  assert.equal(out.unknownField[0], "Sql");
  assert.match(out.unknownField[1], /no column named colour/);
  assert.equal(out.unknownTable[0], "Sql");
  assert.match(out.unknownTable[1], /no such table: nowhere/);
  assert.deepEqual(out.date, ["InvalidInput", 'invalid input: field "t": object Date is not a parameter type; use number, bigint, string, boolean, null or Uint8Array']);
  assert.match(out.nested[1], /field "t": object Object is not a parameter type/);
  assert.equal(out.nested[0], "InvalidInput");
  assert.equal(out.nan[0], "InvalidInput");
  assert.match(out.nan[1], /NaN/);
  assert.equal(out.hugeBigint[0], "InvalidInput");
  assert.match(out.hugeBigint[1], /field "i": bigint 18446744073709551616 does not fit/);
  assert.deepEqual(out.notObject, ["InvalidInput", "invalid input: a row must be an object of fields, got object Array"]);
  assert.equal(out.empty[0], "InvalidInput");
  assert.match(out.empty[1], /at least one field/);
  assert.equal(out.shape[0], "InvalidInput");
  assert.match(out.shape[1], /row 1 has field "f" that row 0 has not/);
  assert.equal(out.manyBadValue[0], "InvalidInput");
  assert.match(out.manyBadValue[1], /row 1, field "id": object Array is not a parameter type/);
  assert.equal(out.conflictNotField[0], "InvalidInput");
  assert.match(out.conflictNotField[1], /conflict column "email" is not a field of the row/);
  assert.equal(out.noConflict[0], "InvalidInput");
  assert.equal(out.emptyTable[0], "InvalidInput");
  assert.equal(out.manyUnknownField[0], 0);
  assert.equal(out.manyUnknownField[1].length, 1);
  assert.deepEqual(out.manyUnknownField[1][0].slice(0, 2), [0, "Sql"]);
  assert.match(out.manyUnknownField[1][0][2], /no column named colour/);
  assert.deepEqual(result.noRows, { committed: 0, rejected: [], batch: 0 });
  assert.equal(result.count, 0, "nothing of a refused row reached the database");
});

test("upsert updates the conflicting row instead of duplicating it", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.db;
    await db.upsert("users", { id: 1, email: "ada@example.org", name: "Ada", visits: 1 }, ["id"]);
    await db.upsert("users", { id: 1, email: "ada@example.org", name: "Ada L.", visits: 2 }, ["id"]);
    // A conflict on another UNIQUE column; a field left out keeps its value.
    await db.upsert("users", { id: 2, email: "bob@example.org", name: "Bob" }, "email");
    await db.upsert("users", { email: "bob@example.org", visits: 7 }, ["email"]);
    // Many upserts of one key in one tick: one row, the last one wins (acceptance order).
    await Promise.all(Array.from({ length: 100 }, (_, k) => db.upsert("users", { id: 3, email: "cy@example.org", visits: k }, ["id"])));
    // Only the conflict columns: DO NOTHING on conflict.
    const nothing = await db.upsert("users", { email: "ada@example.org" }, ["email"]);
    const rows = await db.query("SELECT id, email, name, visits FROM users ORDER BY id");
    return { rows, nothing: nothing.changes };
  });
  assert.deepEqual(result.rows, [
    { id: 1, email: "ada@example.org", name: "Ada L.", visits: 2 },
    { id: 2, email: "bob@example.org", name: "Bob", visits: 7 },
    { id: 3, email: "cy@example.org", name: null, visits: 99 },
  ]);
  assert.equal(result.nothing, 0);
});

test("pagination visits every row exactly once while writes continue", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.db;
    const initial = Array.from({ length: 1000 }, (_, k) => ({ source: "initial", seq: k }));
    await db.insertMany("events", initial);
    // Writers keep appending and updating while the reader pages through.
    let writing = true;
    const writers = (async () => {
      let seq = 0;
      while (writing && seq < 3000) {
        const burst = [];
        for (let k = 0; k < 25; k++, seq++) burst.push(db.insert("events", { source: "live", seq }));
        burst.push(db.upsert("events", { id: 1 + (seq % 1000), source: "initial", seq: -seq }, ["id"]));
        await Promise.all(burst);
      }
      return seq;
    })();
    const seen = [];
    let pages = 0;
    let after = null;
    for (;;) {
      const { rows, next } = await db.page("events", "id", { after, limit: 37 });
      pages++;
      seen.push(...rows.map((r) => r.id));
      if (next === null) break;
      if (next !== rows.at(-1).id) throw new Error("next is not the last row's key");
      after = next;
      // Let writes land between pages.
      await new Promise((r) => setTimeout(r, 0));
    }
    writing = false;
    const written = await writers;
    const [{ max }] = await db.query("SELECT max(id) AS max FROM events WHERE id <= ?", [seen.at(-1)]);
    const [{ below }] = await db.query("SELECT count(*) AS below FROM events WHERE id <= ?", [seen.at(-1)]);
    // An exactly full last page: the next call returns no rows and a null cursor.
    const [{ total, top }] = await db.query("SELECT count(*) AS total, max(id) AS top FROM events");
    const whole = await db.page("events", "id", { limit: total });
    const beyond = await db.page("events", "id", { after: whole.next, limit: total });
    const bad = await db.page("events", "nope", { limit: 5 }).catch((e) => [e.code, e.message]);
    // rowid orders the rows but SELECT * does not return it: no cursor could be made.
    const hidden = await db.page("events", "rowid", { limit: 5 }).catch((e) => [e.code, e.message]);
    const badLimit = await db.page("events", "id", { limit: 0 }).catch((e) => e.code);
    return { seen, pages, written, max, below, total, top, wholeRows: whole.rows.length, wholeNext: whole.next, beyond, bad, hidden, badLimit };
  });
  const unique = new Set(result.seen);
  assert.equal(unique.size, result.seen.length, "no row was visited twice");
  for (let k = 1; k < result.seen.length; k++) assert.ok(result.seen[k] > result.seen[k - 1], "keys only grow");
  for (let id = 1; id <= 1000; id++) assert.ok(unique.has(id), `initial row ${id} visited`);
  assert.equal(result.below, result.seen.length, "every row up to the last one visited was visited");
  assert.equal(result.max, result.seen.at(-1));
  assert.ok(result.pages >= 1000 / 37, `${result.pages} pages`);
  assert.ok(result.written > 0, "writes ran during the pagination");
  assert.equal(result.wholeRows, result.total);
  assert.equal(result.wholeNext, result.top, "a full page's cursor is its last key");
  assert.deepEqual(result.beyond, { rows: [], next: null });
  assert.equal(result.bad[0], "Sql");
  assert.match(result.bad[1], /no such column: "nope"/);
  assert.equal(result.hidden[0], "InvalidInput");
  assert.match(result.hidden[1], /key "rowid" is not a column of "events"/);
  assert.equal(result.badLimit, "InvalidInput");
});

test("a transaction commits all its statements or none of them", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.db;
    const sql = "INSERT INTO ledger(who, amount) VALUES (?, ?)";
    const ok = await db.transaction([
      { sql, params: ["alice", -30] },
      { sql, params: ["bob", 30] },
      { sql: "UPDATE counter SET n = n + 1 WHERE id = 1" },
    ]);
    // The third statement violates the CHECK: the first two must not stay.
    const failed = await db
      .transaction([
        { sql, params: ["carol", -5] },
        { sql, params: ["dave", 5] },
        { sql, params: ["eve", 0] },
        { sql: "UPDATE counter SET n = n + 100 WHERE id = 1" },
      ])
      .catch((e) => ({ isError: e instanceof Error, code: e.code, sqliteCode: e.sqliteCode, statement: e.statement, message: e.message }));
    const badSql = await db.transaction([{ sql, params: ["frank", 1] }, { sql: "INSERT INTO nowhere VALUES (1)" }]).catch((e) => [e.code, e.message]);
    const badValue = await db.transaction([{ sql, params: ["gina", 1] }, { sql, params: ["hal", {}] }]).catch((e) => [e.code, e.message]);
    const closure = await db.transaction(async () => {}).catch((e) => [e.code, e.message]);
    const empty = await db.transaction([]).catch((e) => e.code);
    const rows = await db.query("SELECT who, amount FROM ledger ORDER BY id");
    const [{ n }] = await db.query("SELECT n FROM counter WHERE id = 1");
    return { ok, failed, badSql, badValue, closure, empty, rows, n };
  });
  assert.deepEqual(result.ok.results.map((r) => r.changes), [1, 1, 1]);
  assert.deepEqual(result.ok.results.map((r) => r.lastRowid).slice(0, 2), [1, 2]);
  assert.equal(typeof result.ok.batch, "number");
  assert.deepEqual(result.failed, {
    isError: true,
    code: "Constraint",
    sqliteCode: 275,
    statement: 2,
    message: "transaction rolled back, none of its statements stayed: statement 2 failed: CHECK constraint failed: amount <> 0 (code 275); fix that statement",
  });
  assert.equal(result.badSql[0], "Sql");
  assert.match(result.badSql[1], /statement 1 failed: no such table: nowhere/);
  assert.equal(result.badValue[0], "InvalidInput");
  assert.match(result.badValue[1], /statement 1, parameter 2: object Object is not a parameter type/);
  assert.equal(result.closure[0], "InvalidInput");
  assert.match(result.closure[1], /not a function/);
  assert.equal(result.empty, "InvalidInput");
  assert.deepEqual(result.rows, [{ who: "alice", amount: -30 }, { who: "bob", amount: 30 }], "nothing of the failed transactions stayed");
  assert.equal(result.n, 1);
});

test("transactions run alone between batches and keep a counter exact under concurrent writers", async () => {
  const result = await browser.page.evaluate(async () => {
    const db = window.db;
    const [{ n: before }] = await db.query("SELECT n FROM counter WHERE id = 1");
    const TASKS = 8;
    const INCREMENTS = 25;
    const txBatches = [];
    const writeBatches = [];
    const task = async (t) => {
      for (let k = 0; k < INCREMENTS; k++) {
        // Plain writes in the same tick as the transaction, before and after it.
        const w1 = db.insert("events", { source: `tx-task-${t}`, seq: k });
        const tx = db.transaction([
          { sql: "UPDATE counter SET n = n + 1 WHERE id = 1" },
          { sql: "INSERT INTO ledger(who, amount) SELECT ?, n FROM counter WHERE id = 1", params: [`task ${t}`] },
        ]);
        const w2 = db.write("INSERT INTO events(source, seq) VALUES (?, ?)", [`tx-task-${t}`, -k]);
        const [r1, rt, r2] = await Promise.all([w1, tx, w2]);
        txBatches.push(rt.batch);
        writeBatches.push(r1.batch, r2.batch);
      }
    };
    await Promise.all(Array.from({ length: TASKS }, (_, t) => task(t)));
    const [{ n }] = await db.query("SELECT n FROM counter WHERE id = 1");
    const [{ entries, uniq }] = await db.query(
      "SELECT count(*) AS entries, count(DISTINCT amount) AS uniq FROM ledger WHERE who LIKE 'task %'",
    );
    const [{ events }] = await db.query("SELECT count(*) AS events FROM events WHERE source LIKE 'tx-task-%'");
    const shared = txBatches.filter((b) => writeBatches.includes(b)).length;
    return { before, n, entries, distinct: uniq, events, shared, txs: new Set(txBatches).size, expected: TASKS * INCREMENTS };
  });
  assert.equal(result.n - result.before, result.expected, "N tasks x M increments");
  assert.equal(result.entries, result.expected);
  assert.equal(result.distinct, result.expected, "each transaction saw its own increment");
  assert.equal(result.events, 2 * result.expected);
  assert.equal(result.txs, result.expected, "each transaction committed in its own batch");
  assert.equal(result.shared, 0, "no plain write shared a transaction's batch");
  assert.deepEqual(browser.pageErrors, []);
});
