// sqlweir/full in real headless Chromium: the entry whose SQLite has FTS5 (full-text search) and
// R*Tree (range queries over boxes) compiled in, which the default build leaves out
// (newuser.test.js checks that). Writes go through the same queue; what the index finds is
// checked row by row. Needs pkg-full (scripts/build-wasm --full). The rest of the suite runs on
// this build too with SQLWEIR_BUILD=full (scripts/test-browser). Asserts counts and contents.

import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";

const PORT = Number(process.env.SQLWEIR_FULL_PORT ?? 47_829);
const browser = chromiumHooks(chromium, { port: PORT, url: `http://127.0.0.1:${PORT}/test/page.html` });

test("FTS5: documents written through the queue are found by MATCH, ranked, highlighted; a bad query is a typed error", async () => {
  const r = await browser.page.evaluate(async () => {
    const { open } = await import("/full.js");
    const db = await open("search.db", { migrations: ["CREATE VIRTUAL TABLE docs USING fts5(title, body)"] });
    const docs = [
      ["Lock storms", "database is locked, again and again, until the writers queue"],
      ["Group commit", "one fsync for many writers: the queue batches them"],
      ["Gardening", "tomatoes want sun and water"],
    ];
    const many = await db.writeMany("INSERT INTO docs(title, body) VALUES (?, ?)", docs);
    await db.write("INSERT INTO docs(title, body) VALUES (?, ?)", ["Writers", "writers writers writers"]);
    const found = await db.query("SELECT title FROM docs WHERE docs MATCH ? ORDER BY rank", ["writers"]);
    const phrase = await db.query("SELECT title FROM docs WHERE docs MATCH ? ORDER BY rowid", ['"database is locked"']);
    const marked = await db.query("SELECT highlight(docs, 1, '[', ']') AS h FROM docs WHERE docs MATCH ?", ["tomatoes"]);
    const none = await db.query("SELECT count(*) AS n FROM docs WHERE docs MATCH ?", ["zebra"]);
    const bad = await db.query("SELECT * FROM docs WHERE docs MATCH ?", ["AND OR"]).then(
      () => null,
      (e) => [e.name, e.code],
    );
    await db.close();
    return { committed: many.committed, found: found.map((f) => f.title), phrase: phrase.map((p) => p.title), marked, none, bad };
  });
  assert.equal(r.committed, 3);
  // bm25: the short document that is all "writers" first, then the two that mention it once.
  assert.equal(r.found[0], "Writers");
  assert.deepEqual([...r.found].sort(), ["Group commit", "Lock storms", "Writers"]);
  assert.deepEqual(r.phrase, ["Lock storms"]);
  assert.deepEqual(r.marked, [{ h: "[tomatoes] want sun and water" }]);
  assert.deepEqual(r.none, [{ n: 0 }]);
  assert.deepEqual(r.bad, ["SqlweirError", "Sql"]);
  assert.deepEqual(browser.pageErrors, []);
});

test("R*Tree: boxes written through the queue, found by an overlap query; an inverted box is rejected alone", async () => {
  const r = await browser.page.evaluate(async () => {
    const { open } = await import("/full.js");
    const db = await open("boxes.db", { migrations: ["CREATE VIRTUAL TABLE boxes USING rtree(id, minX, maxX, minY, maxY)"] });
    const sql = "INSERT INTO boxes(id, minX, maxX, minY, maxY) VALUES (?, ?, ?, ?, ?)";
    const outcome = await db.writeMany(sql, [
      [1, 0, 10, 0, 10],
      [2, 5, 15, 5, 15],
      [3, 20, 30, 20, 30],
      // min above max: R*Tree refuses it (a constraint error), alone.
      [4, 9, 1, 0, 1],
      [5, -5, -1, -5, -1],
    ]);
    const hits = await db.query("SELECT id FROM boxes WHERE maxX >= ? AND minX <= ? AND maxY >= ? AND minY <= ? ORDER BY id", [8, 12, 8, 12]);
    const [{ n }] = await db.query("SELECT count(*) AS n FROM boxes");
    await db.close();
    return { committed: outcome.committed, rejected: outcome.rejected.map((x) => [x.index, x.error.code]), hits: hits.map((h) => h.id), n };
  });
  assert.deepEqual(r.rejected, [[3, "Constraint"]]);
  assert.equal(r.committed, 4);
  assert.deepEqual(r.hits, [1, 2]);
  assert.equal(r.n, 4);
  assert.deepEqual(browser.pageErrors, []);
});
