// Inputs that broke "rejected alone" and "acked means committed" in the browser package too
// (the items marked JS of the ten-inputs issue), on the built package in real headless
// Chromium with real OPFS. Each case opens with its story and counts what is in the database.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";

// Not the port of the other test files, so they can run at once.
const PORT = Number(process.env.SQLWEIR_ADVERSARIAL_PORT ?? 47_817);
const PAGE = `http://127.0.0.1:${PORT}/test/page.html`;

const MIGRATIONS = [
  "CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER UNIQUE, qty INTEGER CHECK (qty >= 0))",
  "CREATE TABLE log(x INTEGER)",
  `CREATE TRIGGER no_13 BEFORE INSERT ON t WHEN NEW.x = 13
     BEGIN INSERT INTO log VALUES (NEW.x); SELECT RAISE(FAIL, 'no 13'); END`,
  "INSERT INTO t(x, qty) VALUES (100, 1)",
];

const browser = chromiumHooks(chromium, {
  port: PORT,
  url: PAGE,
  setup: ({ page }) =>
    page.evaluate(async (migrations) => {
      const { open } = await import("sqlweir");
      window.db = await open("adversarial.db", { migrations });
      // Settles a promise to [ok, value-or-code] without throwing.
      window.settle = (p) => p.then((v) => ["ok", v], (e) => ["err", e.code, e.message]);
    }, MIGRATIONS),
  beforeClose: (page) => page.evaluate(() => window.db?.close()).catch(() => {}),
});

// Registered after chromiumHooks: runs once the browser has closed.
after(() => {
  assert.deepEqual(browser.pageErrors, []);
});

test("a pragma after a leading semicolon or in a statement's tail changes nothing", async () => {
  // `write("; PRAGMA query_only = 1")` was refused, yet every later write failed ReadOnly;
  // `write("INSERT ...; PRAGMA ignore_check_constraints = 1")` was refused, then a CHECK
  // violation committed.
  const r = await browser.page.evaluate(async () => {
    const db = window.db;
    const refused = await Promise.all(
      [
        "; PRAGMA query_only = 1",
        "INSERT INTO t(x, qty) VALUES (1, 1); PRAGMA ignore_check_constraints = 1",
        "INSERT INTO t(x, qty) VALUES (2, 1); PRAGMA query_only = 1",
      ].map((sql) => window.settle(db.write(sql))),
    );
    const after = await window.settle(db.write("INSERT INTO t(x, qty) VALUES (3, 1)"));
    const check = await window.settle(db.write("INSERT INTO t(x, qty) VALUES (4, -1)"));
    const readPragma = await window.settle(db.query("PRAGMA query_only = 1"));
    const begin = await window.settle(db.query("BEGIN"));
    const rows = await db.query("SELECT x FROM t WHERE x < 100 ORDER BY x");
    return { refused: refused.map((x) => x[1]), after: after[0], check: check[1], readPragma: readPragma[1], begin: begin[1], rows };
  });
  assert.deepEqual(r.refused, ["InvalidInput", "InvalidInput", "InvalidInput"]);
  assert.equal(r.after, "ok", "the worker's connection is not read-only");
  assert.equal(r.check, "Constraint", "CHECK constraints still hold");
  assert.equal(r.readPragma, "InvalidInput", "a query cannot set a pragma either");
  assert.equal(r.begin, "InvalidInput", "nor open a transaction");
  assert.deepEqual(r.rows, [{ x: 3 }]);
  await browser.page.evaluate(() => window.db.write("DELETE FROM t WHERE x < 100"));
});

test("empty statements are rejected alone and the good writes of their batch commit", async () => {
  // `write("")`, blanks, a comment, a `;`, a leading NUL or `writeMany("", rows)` got Io, and
  // every good write of its batch failed with it (10 empty writes among 8 producers failed 60).
  const r = await browser.page.evaluate(async () => {
    const db = window.db;
    const bad = ["", "   ", "-- c", "/* c */", ";", "\0INSERT INTO t(x, qty) VALUES (99, 1)"];
    const all = [];
    for (let i = 0; i < 60; i++) {
      all.push(window.settle(db.write("INSERT INTO t(x, qty) VALUES (?, 1)", [200 + i])));
      if (i % 6 === 0) all.push(window.settle(db.write(bad[(i / 6) % bad.length])));
    }
    all.push(window.settle(db.writeMany("", [[1], [2]])));
    const settled = await Promise.all(all);
    const n = await db.query("SELECT count(*) AS n FROM t WHERE x >= 200 AND x < 300");
    return {
      ok: settled.filter((s) => s[0] === "ok").length,
      codes: [...new Set(settled.filter((s) => s[0] === "err").map((s) => s[1]))],
      errors: settled.filter((s) => s[0] === "err").length,
      n: n[0].n,
    };
  });
  assert.deepEqual(r, { ok: 60, codes: ["InvalidInput"], errors: 11, n: 60 });
});

test("a write with RETURNING is applied once and its receipt carries the rows", async () => {
  // `write("INSERT ... RETURNING id")` was rejected with InvalidInput, and the row committed.
  const r = await browser.page.evaluate(async () => {
    const db = window.db;
    const [a, b] = await Promise.all([
      db.write("INSERT INTO t(x, qty) VALUES (?, 5) RETURNING id, x, qty * 2 AS double", [400]),
      db.write("INSERT INTO t(x, qty) VALUES (?, 1)", [401]),
    ]);
    const n = await db.query("SELECT count(*) AS n FROM t WHERE x = 400");
    return { a: { changes: a.changes, rows: a.rows }, b: { changes: b.changes, rows: b.rows ?? null }, n: n[0].n };
  });
  assert.equal(r.a.changes, 1);
  assert.equal(r.a.rows.length, 1);
  assert.equal(r.a.rows[0].x, 400);
  assert.equal(r.a.rows[0].double, 10);
  assert.equal(typeof r.a.rows[0].id, "number");
  assert.deepEqual(r.b, { changes: 1, rows: null }, "no RETURNING, no rows");
  assert.equal(r.n, 1, "applied exactly once");
});

test("a statement that fails under FAIL conflict resolution leaves nothing behind", async () => {
  // INSERT OR FAIL of two rows whose second conflicts, and a trigger's RAISE(FAIL) on the
  // third row, were rejected with Constraint while their earlier rows stayed committed.
  const r = await browser.page.evaluate(async () => {
    const db = window.db;
    const settled = await Promise.all([
      window.settle(db.write("INSERT INTO t(x, qty) VALUES (500, 1)")),
      window.settle(db.write("INSERT OR FAIL INTO t(x, qty) VALUES (501, 1), (100, 1)")),
      window.settle(db.write("INSERT INTO t(x, qty) VALUES (11, 1), (12, 1), (13, 1)")),
      window.settle(db.write("INSERT INTO t(x, qty) VALUES (502, 1)")),
    ]);
    const xs = await db.query("SELECT x FROM t WHERE x IN (11, 12, 13, 500, 501, 502) ORDER BY x");
    const log = await db.query("SELECT count(*) AS n FROM log");
    return { codes: settled.map((s) => s[0] === "ok" ? "ok" : s[1]), xs: xs.map((row) => row.x), log: log[0].n };
  });
  assert.deepEqual(r.codes, ["ok", "Constraint", "Constraint", "ok"]);
  assert.deepEqual(r.xs, [500, 502], "no row of a rejected statement stayed");
  assert.equal(r.log, 0, "nor the row its trigger wrote");
});

test("named parameters bind from an object and a missing or extra name is refused alone", async () => {
  // Every peer takes `db.write(sql, { id: 1 })`; sqlweir took arrays only.
  const r = await browser.page.evaluate(async () => {
    const db = window.db;
    const sql = "INSERT INTO t(x, qty) VALUES (:x, @qty)";
    const settled = await Promise.all([
      window.settle(db.write(sql, { qty: 2, x: 600 })),
      window.settle(db.write("INSERT INTO t(x, qty) VALUES ($x, $x)", { x: 601 })),
      window.settle(db.write(sql, { x: 602 })),
      window.settle(db.write(sql, { x: 603, qty: 1, nope: 1 })),
      window.settle(db.write("INSERT INTO t(x, qty) VALUES (?, ?)", [604, 1])),
    ]);
    const rows = await db.query("SELECT x, qty FROM t WHERE x >= 600 AND x < 700 ORDER BY x");
    return { codes: settled.map((s) => (s[0] === "ok" ? "ok" : s[1])), rows };
  });
  assert.deepEqual(r.codes, ["ok", "ok", "InvalidInput", "InvalidInput", "ok"]);
  assert.deepEqual(r.rows, [{ x: 600, qty: 2 }, { x: 601, qty: 601 }, { x: 604, qty: 1 }]);
});

test("a writeMany's rows keep every value as given, and a bad value refuses only its writeMany, naming the row", async () => {
  // writeMany's rows now travel in the same packed columns as plain writes (one message for a
  // tick, no structured clone of every row): each value must arrive as the one-by-one path
  // gave it, and a value that cannot be a parameter must refuse that writeMany alone.
  const r = await browser.page.evaluate(async () => {
    const db = window.db;
    await db.write("CREATE TABLE many_vals(k INTEGER, v)");
    await db.write("CREATE TABLE one_vals(k INTEGER, v)");
    const values = [1.5, 42, -7, 9007199254740993n, "héllo 😀", "", "a\uD800b", true, false, null, new Uint8Array([1, 2, 255]), 2 ** 60];
    const rows = values.map((v, k) => [k, v]);
    const tick = [
      window.settle(db.write("INSERT INTO t(x, qty) VALUES (700, 1)")),
      window.settle(db.writeMany("INSERT INTO many_vals(k, v) VALUES (?, ?)", rows)),
      window.settle(db.writeMany("INSERT INTO many_vals(k, v) VALUES (?, ?)", [[100, 1], [101, {}], [102, undefined]])),
      window.settle(db.writeMany("INSERT INTO many_vals(k, v) VALUES (?, ?)", [[200, 1], "not a row"])),
      window.settle(db.writeMany("INSERT INTO many_vals(k, v) VALUES (?, ?)", [])),
      ...rows.map((row) => window.settle(db.write("INSERT INTO one_vals(k, v) VALUES (?, ?)", row))),
      window.settle(db.write("INSERT INTO t(x, qty) VALUES (701, 1)")),
    ];
    const settled = await Promise.all(tick);
    const shown = (v) => (v instanceof Uint8Array ? ["blob", ...v] : typeof v === "bigint" ? `${v}n` : v);
    const read = async (table) =>
      (await db.query(`SELECT k, typeof(v) AS type, v FROM ${table} ORDER BY k`)).map((row) => [row.k, row.type, shown(row.v)]);
    const plain = await db.query("SELECT count(*) AS n FROM t WHERE x IN (700, 701)");
    return {
      outcomes: settled.slice(0, 5).map((s) => (s[0] === "ok" ? ["ok", s[1].committed ?? s[1].changes] : s)),
      many: await read("many_vals"),
      one: await read("one_vals"),
      plain: plain[0].n,
    };
  });
  assert.deepEqual(r.outcomes[0], ["ok", 1]);
  assert.deepEqual(r.outcomes[1], ["ok", 12]);
  assert.equal(r.outcomes[2][1], "InvalidInput");
  assert.match(r.outcomes[2][2], /row 1, parameter 2: object Object is not a parameter type/);
  assert.equal(r.outcomes[3][1], "InvalidInput");
  assert.match(r.outcomes[3][2], /row 1/);
  assert.deepEqual(r.outcomes[4], ["ok", 0]);
  assert.equal(r.plain, 2, "the plain writes of the tick committed");
  assert.deepEqual(r.many, r.one, "a writeMany row holds what the same write alone holds");
  assert.deepEqual(r.many.slice(0, 5), [
    [0, "real", 1.5],
    [1, "integer", 42],
    [2, "integer", -7],
    [3, "integer", "9007199254740993n"],
    [4, "text", "héllo 😀"],
  ]);
  assert.deepEqual(r.many.slice(5), [
    [5, "text", ""],
    [6, "text", "a\uFFFDb"],
    [7, "integer", 1],
    [8, "integer", 0],
    [9, "null", null],
    [10, "blob", ["blob", 1, 2, 255]],
    [11, "real", 1152921504606846976],
  ]);
  await browser.page.evaluate(() => window.db.write("DELETE FROM t WHERE x IN (700, 701)"));
});
