// What a new user meets first, on the built package in real headless Chromium with real OPFS:
// a typo in open's options, which SQLite extensions the build has, the library's console
// output, and taking the database file out and putting one back (exportFile, importFile).

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";

// Not the port of the other test files, so they can run at once.
const PORT = Number(process.env.SQLWEIR_NEWUSER_PORT ?? 47_818);
const PAGE = `http://127.0.0.1:${PORT}/test/page.html`;

/** Every console line of the page and of its workers, as "type: text". */
const printed = [];
// No `url`: setup goes to the page once the console is recorded.
const browser = chromiumHooks(chromium, {
  port: PORT,
  setup: async ({ page }) => {
    const record = (m) => printed.push(`${m.type()}: ${m.text()}`);
    // The page's console events include its workers' lines (the probe below checks it).
    page.on("console", record);
    await page.goto(PAGE);
    await page.evaluate(() => {
      // Settles a promise to what a test compares, without throwing.
      window.settle = (p) =>
        p.then(
          (value) => ({ ok: true, value }),
          (e) => ({ ok: false, code: e.code, message: e.message, isError: e instanceof Error, name: e.name }),
        );
    });
  },
});

// Registered after chromiumHooks: runs once the browser has closed.
after(() => {
  assert.deepEqual(browser.pageErrors, []);
});

const ITEMS = ["CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE, data BLOB)"];

test("an unknown option of open rejects with InvalidInput naming it, before any worker starts", async () => {
  // `open("x.db", { migration: [...] })` used to open an empty database: the typo went unseen
  // until the first write failed with "no such table".
  const r = await browser.page.evaluate(async (migrations) => {
    const { open, SqlweirError } = await import("sqlweir");
    const typo = await settle(open("typo.db", { migration: migrations }));
    const nested = await settle(open("typo.db", { retry: { maxAttempt: 3 } }));
    const far = await settle(open("typo.db", { colour: "blue" }));
    const notObject = await settle(open("typo.db", "wal"));
    const badLogger = await settle(open("typo.db", { logger: "console" }));
    const badIds = await settle(open("typo.db", { requestIds: "yes" }));
    let instance = false;
    try {
      await open("typo.db", { migration: migrations });
    } catch (e) {
      instance = e instanceof SqlweirError;
    }
    return { typo, nested, far, notObject, badLogger, badIds, instance };
  }, ITEMS);
  assert.deepEqual(r.typo, {
    ok: false,
    code: "InvalidInput",
    message: "invalid input: unknown option 'migration'; did you mean 'migrations'?",
    isError: true,
    name: "SqlweirError",
  });
  assert.equal(r.instance, true);
  assert.equal(r.nested.code, "InvalidInput");
  assert.equal(r.nested.message, "invalid input: unknown option 'retry.maxAttempt'; did you mean 'retry.maxAttempts'?");
  assert.equal(r.far.code, "InvalidInput");
  assert.match(r.far.message, /^invalid input: unknown option 'colour'; the options are migrations, queueCapacity, .*logger, requestIds$/);
  assert.equal(r.notObject.code, "InvalidInput");
  assert.equal(r.badLogger.code, "InvalidInput");
  assert.match(r.badLogger.message, /logger must be an object/);
  assert.deepEqual([r.badIds.code, r.badIds.message], ["InvalidInput", "invalid input: requestIds must be true or false"]);
  // Refused in the page: no worker was started for any of them.
  assert.equal(browser.page.workers().length, 0);

  // The same name opens once the key is right, with the migration applied.
  const fixed = await browser.page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const db = await open("typo.db", { migrations });
    await db.write("INSERT INTO items(label) VALUES (?)", ["first"]);
    const rows = await db.query("SELECT id, label FROM items");
    await db.close();
    return rows;
  }, ITEMS);
  assert.deepEqual(fixed, [{ id: 1, label: "first" }]);
  assert.equal(browser.page.workers().length, 1);
});

test("an option of the wrong type rejects with InvalidInput naming it; every option given is taken", async () => {
  // The worker reads the options (wasm/src/options.rs): each bad value is refused with its name,
  // and the database opens afterwards with every option set.
  const r = await browser.page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const bad = {};
    for (const [key, value] of [
      ["batchRows", "ten"],
      ["queueCapacity", -1],
      ["lingerMs", "5"],
      ["journal", "memory"],
      ["synchronous", "off"],
      ["backpressure", "drop"],
      ["migrations", ["CREATE TABLE t(x)", 7]],
      ["retry", { maxAttempts: 1.5 }],
      ["directory", 3],
    ]) {
      bad[key] = await settle(open("types.db", { [key]: value }));
    }
    const options = {
      migrations,
      queueCapacity: 500,
      backpressure: "fail",
      batchRows: 7,
      batchRowsCeiling: 70,
      lingerMs: 1,
      synchronous: "full",
      journal: "delete",
      retry: { baseMs: 1, capMs: 2, maxAttempts: 3, budgetMs: 100 },
      breakerThreshold: 9,
      breakerCooldownMs: 50,
      lingerUndefined: undefined,
    };
    delete options.lingerUndefined;
    const db = await open("types.db", { ...options, directory: undefined });
    const m = await db.metrics();
    await db.close();
    return { bad, taken: { queueCapacity: m.queueCapacity, batchLimit: m.batchLimit, journalMode: m.journalMode } };
  }, ITEMS);
  const expected = {
    batchRows: "batchRows must be a whole number >= 0",
    queueCapacity: "queueCapacity must be a whole number >= 0",
    lingerMs: "lingerMs must be a number",
    journal: 'journal must be "wal" or "delete", got "memory"',
    synchronous: 'synchronous must be "normal" or "full", got "off"',
    backpressure: 'backpressure must be "wait" or "fail", got "drop"',
    migrations: "migrations[1] must be a string",
    retry: "retry.maxAttempts must be a whole number >= 0",
    directory: "directory must be a string",
  };
  for (const [key, message] of Object.entries(expected)) {
    assert.deepEqual([r.bad[key].ok, r.bad[key].code, r.bad[key].message], [false, "InvalidInput", `invalid options: ${message}`], key);
  }
  assert.deepEqual(r.taken, { queueCapacity: 500, batchLimit: 7, journalMode: "delete" });
});

test("the build's SQLite: what the README lists as in (JSON, math, dates, windows, STRICT...) and out (FTS, R*Tree, dbstat...)", async (t) => {
  // The browser build leaves extensions out to keep the download small (.cargo/config.toml);
  // the README lists what is in. Each probe runs one statement and keeps its answer or error.
  const r = await browser.page.evaluate(async () => {
    const { open } = await import("sqlweir");
    const db = await open("extensions.db", {
      migrations: [
        "CREATE TABLE events(id INTEGER PRIMARY KEY, payload TEXT, ts TEXT)",
        "CREATE TABLE strict_t(a INTEGER, c TEXT, b TEXT GENERATED ALWAYS AS (upper(c)) VIRTUAL) STRICT",
      ],
    });
    await db.write("INSERT INTO strict_t(a, c) VALUES (1, 'x')");
    const notInteger = await settle(db.write("INSERT INTO strict_t(a, c) VALUES ('one', 'y')"));
    await db.write("INSERT INTO events(payload, ts) VALUES (?, ?)", [JSON.stringify({ kind: "click", tags: ["a", "b", "c"] }), "2024-02-28"]);
    await db.write("INSERT INTO events(payload, ts) VALUES (?, ?)", [JSON.stringify({ kind: "key", tags: [] }), "2024-03-01"]);
    const probe = async (sql) => {
      try {
        return (await db.query(sql))[0] ?? null;
      } catch (e) {
        return `${e.code}: ${e.message}`;
      }
    };
    const out = {
      version: await probe("SELECT sqlite_version() AS v"),
      json: await probe(
        "SELECT payload ->> '$.kind' AS kind, json_array_length(payload, '$.tags') AS n, (SELECT group_concat(value, '') FROM json_each(payload, '$.tags')) AS tags FROM events WHERE id = 1",
      ),
      jsonb: await probe("SELECT json(jsonb('{\"a\":1}')) AS j"),
      math: await probe("SELECT sqrt(16) AS sqrt, round(pi(), 5) AS pi, log2(1024) AS log2, floor(2.7) AS floor"),
      date: await probe("SELECT date(ts, '+1 day') AS next, strftime('%w', ts) AS weekday FROM events WHERE id = 1"),
      window: await probe("SELECT group_concat(r, ',') AS ranks FROM (SELECT row_number() OVER (ORDER BY ts DESC) AS r FROM events)"),
      compileOptions: await probe("PRAGMA compile_options"),
      strict: { rows: await db.query("SELECT a, b FROM strict_t"), notInteger: notInteger.code },
      cte: await probe("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5) SELECT sum(x) AS s FROM n"),
      doubleQuoted: await probe('SELECT "hello" AS s'),
      foreignKeys: await probe("PRAGMA foreign_keys"),
      dbstat: await probe("SELECT count(*) FROM dbstat"),
      dbpage: await probe("SELECT count(*) FROM sqlite_dbpage"),
      bytecode: await probe("SELECT count(*) FROM bytecode('SELECT 1')"),
    };
    await db.close();
    // Virtual table modules: a migration that creates one fails when the module is left out.
    out.modules = {};
    for (const module of ["fts3", "fts4", "fts5", "rtree", "geopoly"]) {
      try {
        const probe = await open("modules.db", { migrations: [`CREATE VIRTUAL TABLE v USING ${module}(a, b, c)`] });
        await probe.close();
        out.modules[module] = "present";
      } catch (e) {
        out.modules[module] = e.message.match(/no such module: \w+/)?.[0] ?? e.message;
      }
    }
    return out;
  });
  t.diagnostic(JSON.stringify(r));
  for (const module of ["fts3", "fts4", "fts5", "rtree", "geopoly"]) assert.equal(r.modules[module], `no such module: ${module}`);
  // Compile-option diagnostics are left out too: the pragma reports nothing.
  assert.equal(r.compileOptions, null);
  assert.deepEqual(r.json, { kind: "click", n: 3, tags: "abc" });
  assert.deepEqual(r.jsonb, { j: '{"a":1}' });
  assert.deepEqual(r.math, { sqrt: 4, pi: 3.14159, log2: 10, floor: 2 });
  assert.deepEqual(r.date, { next: "2024-02-29", weekday: "3" });
  assert.deepEqual(r.window, { ranks: "1,2" });
  assert.deepEqual(r.strict, { rows: [{ a: 1, b: "X" }], notInteger: "Constraint" });
  assert.deepEqual(r.cte, { s: 15 });
  assert.match(r.doubleQuoted, /^Sql: .*no such column: "hello" - should this be a string literal in single-quotes\?/);
  assert.deepEqual(r.foreignKeys, { foreign_keys: 1 });
  for (const [name, table] of [["dbstat", "dbstat"], ["dbpage", "sqlite_dbpage"], ["bytecode", "bytecode"]]) {
    assert.match(r[name], new RegExp(`^Sql: .*no such table: ${table}`), name);
  }
}
);

test("a rejected write prints nothing by default; a logger given to open receives the line", async () => {
  printed.length = 0;
  const quiet = await browser.page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const db = await open("quiet.db", { migrations });
    window.quietDb = db;
    await db.write("INSERT INTO items(label) VALUES ('x')");
    const rejected = await Promise.all([1, 2, 3].map(() => settle(db.write("INSERT INTO items(label) VALUES ('x')"))));
    await db.flush();
    return rejected.map((r) => r.code);
  }, ITEMS);
  assert.deepEqual(quiet, ["Constraint", "Constraint", "Constraint"]);
  // The capture works for the worker's console too: a line logged there is seen.
  const [worker] = browser.page.workers();
  await worker.evaluate(() => console.log("probe from the worker"));
  await browser.page.waitForTimeout(300);
  assert.deepEqual(printed, ["log: probe from the worker"]);

  // With a logger, the worker's lines reach it (and still not the console).
  printed.length = 0;
  const lines = await browser.page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const lines = [];
    const logger = { debug: (...a) => lines.push(["debug", a.join(" ")]), warn: (...a) => lines.push(["warn", a.join(" ")]) };
    const db = await open("loud.db", { migrations, logger });
    await db.write("INSERT INTO items(label) VALUES ('y')");
    const r = await settle(db.write("INSERT INTO items(label) VALUES ('y')"));
    await db.flush();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const [{ n }] = await db.query("SELECT count(*) AS n FROM items");
    await db.close();
    await window.quietDb.close();
    return { code: r.code, n, lines };
  }, ITEMS);
  assert.equal(lines.code, "Constraint");
  assert.equal(lines.n, 1);
  assert.equal(lines.lines.length, 1, JSON.stringify(lines.lines));
  assert.equal(lines.lines[0][0], "debug");
  assert.match(lines.lines[0][1], /^sqlweir: a write of batch \d+ was rejected: .*UNIQUE constraint failed: items\.label/);
  await browser.page.waitForTimeout(200);
  assert.deepEqual(printed, []);
});

test("exportFile gives the whole database; importFile makes a database of it under another name", async () => {
  const r = await browser.page.evaluate(async (migrations) => {
    const { open, importFile, SqlweirError } = await import("sqlweir");
    const source = await open("export-source.db", { migrations });
    // Issued, not awaited: exportFile covers every write issued before it.
    for (let n = 1; n <= 2000; n++) {
      source.write("INSERT INTO items(id, label, data) VALUES (?, ?, ?)", [n, `item ${n}`, n % 100 === 0 ? new Uint8Array([n & 255, 1, 2]) : null]);
    }
    const bytes = await source.exportFile();
    const header = new TextDecoder().decode(bytes.subarray(0, 15));
    const pageSize = (bytes[16] << 8) | bytes[17];
    const [{ page_count: pages }] = await source.query("PRAGMA page_count");

    await importFile("export-copy.db", bytes);
    const copy = await open("export-copy.db", { migrations });
    const count = async (db) => (await db.query("SELECT count(*) AS n, sum(id) AS s, sum(length(data)) AS blobs FROM items"))[0];
    const copied = await count(copy);
    const some = (await copy.query("SELECT id, label, data FROM items WHERE id IN (1, 1000, 2000) ORDER BY id")).map(
      (row) => ({ ...row, data: row.data && [row.data instanceof Uint8Array, ...row.data] }),
    );
    // The copy is a database of its own.
    await copy.write("DELETE FROM items WHERE id > 10");
    const after = { copy: await count(copy), source: await count(source) };
    const whileOpen = await settle(importFile("export-copy.db", bytes));
    await copy.close();
    // Importing over a closed database replaces it.
    await importFile("export-copy.db", bytes.buffer);
    const again = await open("export-copy.db", { migrations });
    const replaced = await count(again);
    await again.close();

    // Bytes that are not an SQLite file: refused, and the database of that name is untouched.
    const refusals = [];
    for (const bad of [
      new TextEncoder().encode("name,label\n1,item 1\n".repeat(100)),
      new Uint8Array(8192),
      bytes.slice(0, bytes.length - 100),
      "not bytes",
    ]) {
      try {
        await importFile("export-copy.db", bad);
        refusals.push("imported");
      } catch (e) {
        refusals.push([e instanceof SqlweirError, e.code, e.message]);
      }
    }
    const intact = await open("export-copy.db", { migrations });
    const kept = await count(intact);
    await intact.close();
    await source.close();
    return { length: bytes.length, header, pageSize, pages, copied, some, after, whileOpen, replaced, refusals, kept };
  }, ITEMS);
  const all = { n: 2000, s: 2001000, blobs: 60 };
  assert.equal(r.header, "SQLite format 3");
  assert.equal(r.length, r.pages * r.pageSize);
  assert.deepEqual(r.copied, all);
  assert.deepEqual(r.some, [
    { id: 1, label: "item 1", data: null },
    { id: 1000, label: "item 1000", data: [true, 1000 & 255, 1, 2] },
    { id: 2000, label: "item 2000", data: [true, 2000 & 255, 1, 2] },
  ]);
  assert.deepEqual(r.after, { copy: { n: 10, s: 55, blobs: null }, source: all });
  assert.equal(r.whileOpen.code, "InUse");
  assert.deepEqual(r.replaced, all);
  const notDb = "invalid input: these bytes are not an SQLite database file; pass a whole file, such as exportFile() gives";
  assert.deepEqual(r.refusals, [
    [true, "InvalidInput", notDb],
    [true, "InvalidInput", notDb],
    [true, "InvalidInput", notDb],
    [true, "InvalidInput", "invalid input: importFile takes the file's bytes as a Uint8Array or ArrayBuffer"],
  ]);
  assert.deepEqual(r.kept, all);
});

test("exportFile of a WAL database includes the WAL's commits and opens on its own", async () => {
  const r = await browser.page.evaluate(async (migrations) => {
    const { open, importFile } = await import("sqlweir");
    const wal = await open("export-wal.db", { migrations, journal: "wal" });
    const { journalMode } = await wal.metrics();
    await wal.writeMany("INSERT INTO items(label) VALUES (?)", Array.from({ length: 500 }, (_, n) => [`wal ${n}`]));
    const bytes = await wal.exportFile();
    await importFile("export-from-wal.db", bytes);
    const copy = await open("export-from-wal.db", { migrations });
    const [found] = await copy.query("SELECT count(*) AS n, max(label) AS top FROM items");
    const mode = (await copy.metrics()).journalMode;
    await copy.close();
    await wal.close();
    return { journalMode, found, mode, versions: [bytes[18], bytes[19]] };
  }, ITEMS);
  assert.equal(r.journalMode, "wal");
  assert.deepEqual(r.versions, [1, 1]);
  assert.deepEqual(r.found, { n: 500, top: "wal 99" });
  assert.equal(r.mode, "wal", "the exported file (rollback journal) is converted to the default on open");
});
