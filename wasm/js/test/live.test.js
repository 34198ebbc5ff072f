// Live queries and the commit feed across tabs: three pages of one origin on one database, the
// built npm package in real headless Chromium. Writes run in the leader; `watch` and `onCommit`
// run in followers (and in the leader). A watched query runs again once per committed batch that
// touched a table it reads and never for other tables; it survives the leader tab closing; its
// stop function ends it. Asserts counts and contents, never timing. See the README's "Live
// queries".

import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";

const PORT = Number(process.env.SQLWEIR_LIVE_PORT ?? 47_826);
const PAGE = `http://127.0.0.1:${PORT}/test/page.html`;
const MIGRATIONS = [
  "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, tag TEXT)",
  "CREATE TABLE other(x INTEGER)",
  "CREATE VIEW named AS SELECT name FROM items WHERE name IS NOT NULL",
];

// Three tabs of their own (`browser.tabs`); the first tab is closed once they are open.
const browser = chromiumHooks(chromium, { port: PORT, url: PAGE, tabs: ["a", "b", "c"] });
const pages = browser.tabs;

/**
 * Opens the database in `page` and starts, there, the watches and the commit listener the tests
 * read. `random()` makes every run of the counting watch a new result, so its callbacks count its
 * runs: a run for a batch that did not touch `items` would show as one callback too many.
 */
function openIn(page) {
  return page.evaluate(async (migrations) => {
    const { open } = await import("sqlweir");
    const db = await open("live.db", { migrations });
    window.db = db;
    window.commits = [];
    db.onCommit((c) => window.commits.push(c));
    window.runs = [];
    window.stopRuns = db.watch("SELECT count(*) AS n, random() AS r FROM items", [], (rows) => window.runs.push(rows[0].n));
    window.names = [];
    window.stopNames = db.watch("SELECT name FROM named ORDER BY name", [], (rows) => window.names.push(rows.map((r) => r.name)));
    window.tagged = [];
    window.stopTagged = db.watch(
      "SELECT count(*) AS n FROM other WHERE x IN (SELECT id FROM items WHERE tag = ?)",
      ["t"],
      (rows) => window.tagged.push(rows[0].n),
    );
    await Promise.all([window.stopRuns.ready, window.stopNames.ready, window.stopTagged.ready]);
    return db.role;
  }, MIGRATIONS);
}

const state = (page) => page.evaluate(() => ({ runs: window.runs, names: window.names, tagged: window.tagged, commits: window.commits }));

/** Waits until `page` has seen `count` commits. */
const commitsSeen = (page, count) => page.waitForFunction((n) => window.commits.length >= n, count, { timeout: 60_000 });

/**
 * Runs a write (`writeMany` when `params` is a list of rows) in the leader, then waits until every
 * page in `watchers` has seen its commit and the watch runs it caused have finished.
 */
async function writeAndWait(leader, watchers, sql, params) {
  const before = await Promise.all(watchers.map((p) => p.evaluate(() => window.commits.length)));
  await leader.evaluate(
    ({ sql, params }) => (Array.isArray(params[0]) ? window.db.writeMany(sql, params) : window.db.write(sql, params)),
    { sql, params },
  );
  await Promise.all(watchers.map((p, i) => commitsSeen(p, before[i] + 1)));
  // The commit reached the page and started the runs it causes; their queries were sent before
  // this one, on the same path, and are answered first.
  await Promise.all(watchers.map((p) => p.evaluate(() => window.db.query("SELECT 1"))));
}

test("watch gives the first result at once; the first tab leads", async () => {
  assert.equal(await openIn(pages.a), "leader");
  assert.equal(await openIn(pages.b), "follower");
  assert.equal(await openIn(pages.c), "follower");
  for (const page of [pages.a, pages.b, pages.c]) {
    assert.deepEqual(await state(page), { runs: [0], names: [[]], tagged: [0], commits: [] });
  }
});

test("a follower's watch runs once per batch that touched its tables, and never for others", async () => {
  const watchers = [pages.a, pages.b, pages.c];
  await writeAndWait(pages.a, watchers, "INSERT INTO items(name) VALUES (?)", ["apple"]);
  await writeAndWait(pages.a, watchers, "INSERT INTO other(x) VALUES (?)", [1]);
  await writeAndWait(pages.a, watchers, "INSERT INTO other(x) VALUES (?)", [2]);
  await writeAndWait(pages.a, watchers, "INSERT INTO items(name, tag) VALUES (?, ?)", ["banana", "t"]);
  // A statement that changes no row is announced to no one: the next commit seen is the next one.
  await pages.a.evaluate(() => window.db.write("DELETE FROM items WHERE id = 99"));
  // One batch, many rows: one run.
  await writeAndWait(pages.a, watchers, "INSERT INTO items(name) VALUES (?)", [["cherry"], ["damson"], ["elder"]]);
  await writeAndWait(pages.a, watchers, "INSERT INTO other(x) VALUES (?)", [3]);
  for (const [label, page] of Object.entries({ a: pages.a, b: pages.b, c: pages.c })) {
    const s = await state(page);
    // items changed in three batches: the first result and three runs; other's batches ran nothing.
    assert.deepEqual(s.runs, [0, 1, 2, 5], `${label}: runs`);
    assert.deepEqual(s.names, [[], ["apple"], ["apple", "banana"], ["apple", "banana", "cherry", "damson", "elder"]], `${label}: names`);
    // A subquery's table counts: banana (id 2, tag t) made other's x = 2 match; x = 3 matched nothing new.
    assert.deepEqual(s.tagged, [0, 1], `${label}: tagged`);
    const tables = s.commits.map((c) => c.tables);
    assert.deepEqual(tables, [["items"], ["other"], ["other"], ["items"], ["items"], ["other"]], `${label}: commits`);
    const batches = s.commits.map((c) => c.batch);
    assert.deepEqual([...batches].sort((x, y) => x - y), batches, `${label}: batch ids in order`);
    assert.equal(new Set(batches).size, batches.length, `${label}: each batch once`);
  }
});

test("bad input: a watch of bad SQL rejects its ready with the typed error; no callback is an InvalidInput", async () => {
  const result = await pages.b.evaluate(async () => {
    const calls = [];
    const stop = window.db.watch("SELECT * FROM nope", [], (rows) => calls.push(rows));
    const error = await stop.ready.catch((e) => e);
    let thrown;
    try {
      window.db.watch("SELECT 1", []);
    } catch (e) {
      thrown = e;
    }
    return { code: error.code, isError: error instanceof Error, calls: calls.length, thrown: thrown?.code };
  });
  assert.deepEqual(result, { code: "Sql", isError: true, calls: 0, thrown: "InvalidInput" });
});

test("closing the leader: the followers' watches go on under the new leader", async () => {
  const written = await pages.a.evaluate(async () => {
    await window.db.write("INSERT INTO items(name) VALUES (?)", ["fig"]);
    return (await window.db.query("SELECT count(*) AS n FROM items"))[0].n;
  });
  assert.equal(written, 6);
  await pages.a.close();
  const roles = async () => Promise.all([pages.b, pages.c].map((p) => p.evaluate(() => window.db.role)));
  while (!(await roles()).includes("leader")) await new Promise((resolve) => setTimeout(resolve, 5));
  const [roleB] = await roles();
  const leader = roleB === "leader" ? pages.b : pages.c;
  const follower = leader === pages.b ? pages.c : pages.b;
  // The fig batch's commit may or may not have reached the followers before the leader went; a
  // leader change makes every watch run again, so the count ends at 6 either way.
  for (const page of [leader, follower]) {
    await page.waitForFunction(() => window.runs.at(-1) === 6, null, { timeout: 60_000 });
  }
  // The new leader's batch reaches both tabs' watches (with the leader change's run, if it was
  // still on its way, before it or seeing it).
  await writeAndWait(leader, [leader, follower], "INSERT INTO items(name) VALUES (?)", ["grape"]);
  for (const page of [leader, follower]) {
    const s = await state(page);
    assert.equal(s.runs.at(-1), 7);
    assert.deepEqual(s.names.at(-1), ["apple", "banana", "cherry", "damson", "elder", "fig", "grape"]);
    assert.deepEqual(s.commits.at(-1).tables, ["items"]);
  }
  // Settled now: the next batch is one run in each tab, through the new leader's feed.
  const before = await Promise.all([leader, follower].map((p) => p.evaluate(() => window.runs.length)));
  await writeAndWait(leader, [leader, follower], "INSERT INTO items(name) VALUES (?)", ["kiwi"]);
  for (const [i, page] of [leader, follower].entries()) {
    const s = await state(page);
    assert.deepEqual(s.runs.slice(before[i]), [8], "one run for the new leader's batch");
  }
});

test("the stop function ends a watch and only that watch", async () => {
  const follower = (await pages.b.evaluate(() => window.db.role)) === "follower" ? pages.b : pages.c;
  const leader = follower === pages.b ? pages.c : pages.b;
  const before = await state(follower);
  await follower.evaluate(() => window.stopRuns());
  await writeAndWait(leader, [follower], "INSERT INTO items(name) VALUES (?)", ["honeydew"]);
  const after = await state(follower);
  assert.deepEqual(after.runs, before.runs, "a stopped watch runs no more");
  assert.equal(after.names.length, before.names.length + 1, "the other watch still runs");
  assert.ok(after.names.at(-1).includes("honeydew"));
  assert.equal(after.commits.length, before.commits.length + 1);
  assert.deepEqual(browser.pageErrors, []);
});
