// Several tabs on one database: one browser context, pages of the same origin, the built npm
// package in real headless Chromium. The first page leads (Web Lock) and runs the worker; the
// others forward to it. Followers stream plain INSERTs, writeMany calls and transactions while the
// leader page is closed, crashed (CDP Page.crash), three times in a row, or its worker fails: no
// write is rejected with LeaderChanged, every write settles, and every write that settled Ok is in
// the database exactly once (request ids, docs/multitab.md). Asserts counts and contents, never
// timing.

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
  // One upsert per committed transaction: a transaction applied twice would count twice.
  "CREATE TABLE counters(k TEXT PRIMARY KEY, n INTEGER NOT NULL)",
];
const ROWS = 5_000;
/** Writes per stream across a failover (a writeMany writes 3 rows, a transaction 1 row and 1 upsert). */
const STREAM = 3_000;
/** How long any one write may take to settle, failovers included, before the test calls it lost. */
const SETTLE_MS = 60_000;

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
      // Writes `count` rows of `phase`, `chunk` at a time, each with `db.write` (plain INSERTs, not
      // idempotent), and the same writes in the legacy shape (`kind` "idempotent"): every write
      // that settled Ok is in `acked`, every other outcome in `errors`.
      window.stream = async (phase, count, chunk) => {
        const state = { acked: [], leaderChanged: 0, retried: 0, errors: [] };
        window.progress = state;
        const sql = "INSERT INTO rows(tab, seq, phase) VALUES (?, ?, ?)";
        const put = async (seq) => {
          try {
            await db.write(sql, [label, seq, phase]);
          } catch (e) {
            if (e.code === "LeaderChanged") state.leaderChanged++;
            throw e;
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
      // `count` writes of `shape` ("write": one plain INSERT; "many": a writeMany of 3 rows;
      // "tx": a transaction of an INSERT and a counter upsert) for `phase`, `chunk` in flight;
      // each must settle within SETTLE_MS. `window.progress` shows what settled so far.
      window.shaped = async (phase, shape, count, chunk, settleMs) => {
        const state = { shape, settled: 0, ok: [], errors: [], leaderChanged: 0 };
        window.progress = state;
        const sql = "INSERT INTO rows(tab, seq, phase) VALUES (?, ?, ?)";
        const upsert = "INSERT INTO counters(k, n) VALUES (?, 1) ON CONFLICT(k) DO UPDATE SET n = n + 1";
        const start = (i) => {
          if (shape === "write") return db.write(sql, [label, i, phase]);
          if (shape === "many") return db.writeMany(sql, [0, 1, 2].map((j) => [label, i * 3 + j, phase]));
          return db.transaction([{ sql, params: [label, i, phase] }, { sql: upsert, params: [`${label}:${phase}`] }]);
        };
        const bounded = (p) => {
          let timer;
          const late = new Promise((_, reject) => {
            timer = setTimeout(() => reject(Object.assign(new Error(`did not settle within ${settleMs} ms`), { code: "Timeout" })), settleMs);
          });
          return Promise.race([p, late]).finally(() => clearTimeout(timer));
        };
        const put = async (i) => {
          try {
            const r = await bounded(start(i));
            if (shape === "many" && (r.committed !== 3 || r.rejected.length)) state.errors.push(`writeMany ${i}: ${JSON.stringify(r)}`);
            else if (shape === "tx" && r.results?.length !== 2) state.errors.push(`transaction ${i}: ${JSON.stringify(r)}`);
            else state.ok.push(i);
          } catch (e) {
            if (e.code === "LeaderChanged") state.leaderChanged++;
            state.errors.push(`${e.code}: ${e.message}`);
          }
          state.settled++;
        };
        for (let from = 0; from < count; from += chunk) {
          const batch = [];
          for (let i = from; i < Math.min(count, from + chunk); i++) batch.push(put(i));
          await Promise.all(batch);
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


/** Which of `pages` leads now. */
async function leaderOf(pages) {
  for (const page of pages) if ((await role(page)) === "leader") return page;
  return null;
}

/** Waits until one of `pages` leads (bounded; the lock is released when the leader goes). */
async function waitForLeader(pages) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const leader = await leaderOf(pages);
    if (leader) return leader;
    if (Date.now() > deadline) throw new Error("no tab took the lead within 60 s");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Waits until every page's stream settled `more` writes beyond what it had settled before. */
async function progressed(pages, more) {
  const before = await Promise.all(pages.map((p) => p.evaluate(() => window.progress.settled)));
  await Promise.all(
    pages.map((p, i) => p.waitForFunction((n) => window.progress.settled >= n, before[i] + more, { timeout: 60_000 })),
  );
}

async function crash(page) {
  const cdp = await page.context().newCDPSession(page);
  const crashed = page.waitForEvent("crash");
  cdp.send("Page.crash").catch(() => {}); // never answers: the renderer is gone
  await crashed;
  await page.close();
}

const SHAPES = ["write", "many", "tx"];

/** Rows a settled-Ok write of `shape` number `i` wrote. */
const rowsOf = (shape, i) => (shape === "many" ? [i * 3, i * 3 + 1, i * 3 + 2] : [i]);

/**
 * Checks, from `reader`, that the writes of `phase` are each in the database exactly once: for a
 * stream that ran to its end (`states`, by label), exactly its settled-Ok writes; for a tab that
 * went away mid-stream (`cut`, by label: what it had seen settle Ok), at least those; and no row
 * twice anywhere.
 */
async function checkPhase(reader, phase, states, cut = {}) {
  const found = await reader.evaluate(async (phase) => {
    const rows = await window.db.query("SELECT tab, seq FROM rows WHERE phase = ? ORDER BY tab, seq", [phase]);
    const counters = await window.db.query("SELECT k, n FROM counters WHERE k LIKE ?", [`%:${phase}`]);
    return { rows, counters };
  }, phase);
  const byTab = {};
  for (const { tab, seq } of found.rows) (byTab[tab] ??= []).push(seq);
  for (const [tab, seqs] of Object.entries(byTab)) {
    assert.equal(new Set(seqs).size, seqs.length, `phase ${phase}: tab ${tab} has a row twice`);
  }
  const counters = Object.fromEntries(found.counters.map(({ k, n }) => [k, n]));
  for (const [tab, s] of Object.entries(states)) {
    assert.deepEqual(s.errors, [], `phase ${phase}, tab ${tab} (${s.shape})`);
    assert.equal(s.leaderChanged, 0);
    assert.equal(s.ok.length, STREAM, `phase ${phase}, tab ${tab}: every write settled Ok`);
    const expected = s.ok.flatMap((i) => rowsOf(s.shape, i)).sort((x, y) => x - y);
    assert.deepEqual(byTab[tab] ?? [], expected, `phase ${phase}, tab ${tab} (${s.shape}): each settled-Ok write once, nothing else`);
    if (s.shape === "tx") assert.equal(counters[`${tab}:${phase}`], STREAM, `phase ${phase}, tab ${tab}: each transaction once`);
  }
  for (const [tab, { shape, ok }] of Object.entries(cut)) {
    const present = new Set(byTab[tab] ?? []);
    const missing = ok.flatMap((i) => rowsOf(shape, i)).filter((seq) => !present.has(seq));
    assert.deepEqual(missing, [], `phase ${phase}, tab ${tab} (gone mid-stream): its acked writes are there`);
    const n = (byTab[tab] ?? []).length;
    if (shape === "tx") assert.equal(counters[`${tab}:${phase}`] ?? 0, n, `phase ${phase}, tab ${tab}: one upsert per row`);
  }
  return found.rows.length;
}

/** Starts a stream of each shape, one per page of `pages`; resolves with the states by label. */
function streams(pages, labels, phase, shapes = SHAPES) {
  return pages.map((page, k) => {
    const running = page.evaluate(({ phase, shape, count, settleMs }) => window.shaped(phase, shape, count, 10, settleMs), {
      phase,
      shape: shapes[k % shapes.length],
      count: STREAM,
      settleMs: SETTLE_MS,
    });
    running.catch(() => {}); // a tab killed mid-stream never answers; its promise is not awaited
    return running;
  });
}

/** What each phase's check took, run again after every tab reloads. */
const checked = [];

async function byLabel(pages, promises) {
  const states = await Promise.all(promises);
  const labels = await Promise.all(pages.map((p) => p.evaluate(() => window.label)));
  return Object.fromEntries(labels.map((l, i) => [l, states[i]]));
}

const diagnostics = [];

test("closing the leader mid-stream: a follower leads; plain writes, writeMany and transactions apply exactly once", async (t) => {
  assert.equal(await role(pages.a), "leader");
  pages.d = await openTab(browser, PAGE, "d");
  assert.equal(await openIn(pages.d, "d"), "follower");
  // A job lock taken through the old leader; its worker numbers tokens from 1, as the next will.
  await pages.b.evaluate(async () => {
    window.staleGuard = await window.db.lock("before-failover", { holder: "b" });
  });
  const followers = [pages.b, pages.c, pages.d];
  const running = streams(followers, null, 2);
  await progressed(followers, 200);
  const closedAt = Date.now();
  await pages.a.close();
  delete pages.a;
  const leader = await waitForLeader(followers);
  const takeoverMs = Date.now() - closedAt;
  const settledAtTakeover = await Promise.all(followers.map((p) => p.evaluate(() => window.progress.settled)));
  const states = await byLabel(followers, running);
  assert.ok(settledAtTakeover.every((n) => n < STREAM), `the leader closed mid-stream: ${settledAtTakeover}`);
  const rows = await checkPhase(leader, 2, states);
  checked.push([2, states, {}]);
  assert.equal(rows, STREAM + 3 * STREAM + STREAM);
  assert.deepEqual(await leader.evaluate(() => window.roles), ["leader"]);
  for (const f of followers.filter((p) => p !== leader)) assert.deepEqual(await f.evaluate(() => window.roles), []);
  // Nothing acked by the old leader was lost, and the file survived its worker's end mid-stream.
  const [check] = await leader.evaluate(() => window.db.query("SELECT count(*) AS n FROM rows WHERE phase = 1"));
  assert.equal(check.n, 15_000);
  const [integrity] = await leader.evaluate(() => window.db.query("PRAGMA integrity_check"));
  assert.deepEqual(integrity, { integrity_check: "ok" });
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
  const line = `page closed: a follower led ${takeoverMs} ms after the close; settled by then ${settledAtTakeover.join(" + ")}`;
  diagnostics.push(line);
  t.diagnostic(line);
});

test("crashing the leader mid-stream (CDP Page.crash): plain writes, writeMany and transactions apply exactly once", async (t) => {
  const alive = [pages.b, pages.c, pages.d];
  const leader = await leaderOf(alive);
  pages.e = await openTab(browser, PAGE, "e");
  assert.equal(await openIn(pages.e, "e"), "follower");
  const followers = [...alive.filter((p) => p !== leader), pages.e];
  const running = streams(followers, null, 3);
  await progressed(followers, 200);
  const crashedAt = Date.now();
  await crash(leader);
  for (const k of Object.keys(pages)) if (pages[k] === leader) delete pages[k];
  const next = await waitForLeader(followers);
  const takeoverMs = Date.now() - crashedAt;
  const settledAtTakeover = await Promise.all(followers.map((p) => p.evaluate(() => window.progress.settled)));
  const states = await byLabel(followers, running);
  assert.ok(settledAtTakeover.every((n) => n < STREAM), `the leader crashed mid-stream: ${settledAtTakeover}`);
  await checkPhase(next, 3, states);
  checked.push([3, states, {}]);
  const line = `page crashed: a follower led ${takeoverMs} ms after the crash; settled by then ${settledAtTakeover.join(" + ")}`;
  diagnostics.push(line);
  t.diagnostic(line);
});

test("three failovers in a row across four tabs (close, crash, close): every write applies exactly once", async (t) => {
  pages.f = await openTab(browser, PAGE, "f");
  assert.equal(await openIn(pages.f, "f"), "follower");
  let alive = Object.values(pages);
  assert.equal(alive.length, 4);
  let leader = await leaderOf(alive);
  const followers = alive.filter((p) => p !== leader);
  const running = streams(followers, null, 4);
  const labels = await Promise.all(followers.map((p) => p.evaluate(() => window.label)));
  const cut = {};
  const takeovers = [];
  for (const kill of [(p) => p.close(), crash, (p) => p.close()]) {
    const streaming = followers.filter((p) => alive.includes(p) && p !== leader);
    await progressed(streaming, 150);
    // A streaming tab that leads now and is killed: what it saw settle Ok must be there.
    const i = followers.indexOf(leader);
    if (i >= 0) cut[labels[i]] = await leader.evaluate(() => ({ shape: window.progress.shape, ok: [...window.progress.ok], settled: window.progress.settled }));
    const at = Date.now();
    await kill(leader);
    alive = alive.filter((p) => p !== leader);
    for (const k of Object.keys(pages)) if (pages[k] === leader) delete pages[k];
    leader = await waitForLeader(alive);
    takeovers.push(Date.now() - at);
  }
  assert.equal(alive.length, 1);
  const last = alive[0];
  const k = followers.indexOf(last);
  const state = await running[k];
  assert.ok(Object.values(cut).every((c) => c.settled < STREAM), "each killed streaming tab died mid-stream");
  assert.ok(Object.keys(cut).length >= 1, "the streaming tabs took the lead in turn");
  await checkPhase(last, 4, { [labels[k]]: state }, cut);
  checked.push([4, { [labels[k]]: state }, cut]);
  const line = `three failovers: new leaders ${takeovers.join(", ")} ms after each kill; tabs killed mid-stream after ${Object.values(cut).map((c) => c.settled).join(", ")} settled writes`;
  diagnostics.push(line);
  t.diagnostic(line);
});

test("the leader's worker failing hands the lead over: writes in flight settle once, no Worker error", async (t) => {
  const [old] = Object.values(pages);
  assert.equal(await role(old), "leader");
  pages.g = await openTab(browser, PAGE, "g");
  pages.h = await openTab(browser, PAGE, "h");
  assert.equal(await openIn(pages.g, "g"), "follower");
  assert.equal(await openIn(pages.h, "h"), "follower");
  // The old leader streams its own writes, a follower forwards its own.
  const writers = [old, pages.g];
  const running = streams(writers, null, 5, ["write", "tx"]);
  await progressed(writers, 200);
  const worker = old.workers().find((w) => w.url().endsWith("/worker.js"));
  assert.ok(worker, "the leader page runs the sqlweir worker");
  // An uncaught error in the worker's global scope: the page sees the worker fail.
  await worker.evaluate(() => setTimeout(() => {
    throw new Error("injected worker failure");
  }));
  const states = await byLabel(writers, running);
  const next = await leaderOf([pages.g, pages.h]);
  assert.ok(next, "a follower leads now");
  assert.equal(await role(old), "follower");
  assert.equal((await old.evaluate(() => window.roles)).at(-1), "follower", "it was told it no longer leads");
  await checkPhase(next, 5, states);
  checked.push([5, states, {}]);
  t.diagnostic(`worker failure: ${await next.evaluate(() => window.label)} leads after ${await old.evaluate(() => window.label)}'s worker failed`);
});

test("after reloading every page the data is there, and the markers of gone tabs are dropped", async (t) => {
  const all = Object.values(pages);
  const before = await all[0].evaluate(async () => (await window.db.query("SELECT count(*) AS n FROM _sqlweir_requests"))[0].n);
  await Promise.all(all.map((p) => p.reload()));
  const labels = Object.keys(pages);
  const opened = await Promise.all(all.map((p, i) => openIn(p, labels[i])));
  assert.deepEqual([...opened].sort(), ["follower", "follower", "leader"]);
  for (const page of all) {
    const counts = await page.evaluate(async () =>
      window.db.query("SELECT phase, count(*) AS count, count(DISTINCT tab || ':' || seq) AS distinct_rows FROM rows GROUP BY phase ORDER BY phase"),
    );
    for (const c of counts) assert.equal(c.count, c.distinct_rows, `phase ${c.phase}: no row twice`);
    assert.deepEqual(counts[0], { phase: 1, count: 15_000, distinct_rows: 15_000 });
    assert.equal(counts[1].count, 5 * STREAM, "phase 2: every write of the three streams, once");
    assert.equal(counts[2].count, 5 * STREAM, "phase 3: every write of the three streams, once");
  }
  const leader = await leaderOf(all);
  // Every write that settled Ok, in every phase, is there exactly once.
  for (const [phase, states, cut] of checked) await checkPhase(leader, phase, states, cut);
  assert.deepEqual(checked.map(([phase]) => phase), [2, 3, 4, 5]);
  for (const phase of [2, 3]) {
    const rows = await leader.evaluate(async (phase) => {
      const perTab = await window.db.query("SELECT tab, count(*) AS n FROM rows WHERE phase = ? GROUP BY tab", [phase]);
      const counters = await window.db.query("SELECT k, n FROM counters WHERE k LIKE ?", [`%:${phase}`]);
      return { perTab: perTab.map((r) => r.n).sort((x, y) => x - y), counters: counters.map((c) => c.n) };
    }, phase);
    assert.deepEqual(rows, { perTab: [STREAM, STREAM, 3 * STREAM], counters: [STREAM] });
  }
  // Every tab that wrote is gone (a reload is a new tab): the new leader drops their markers with
  // the next batch.
  const deadline = Date.now() + 60_000;
  let after;
  for (let i = 0; ; i++) {
    after = await leader.evaluate(async (i) => {
      await window.db.write("INSERT INTO uniq(k) VALUES (?)", [`sweep ${i}`]);
      return (await window.db.query("SELECT count(*) AS n FROM _sqlweir_requests"))[0].n;
    }, i);
    if (after <= 1 || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(after <= 1, `markers left of gone tabs: ${after}`);
  assert.ok(before <= 200, `the marker table stayed small through the streams: ${before} rows`);
  const line = `request markers: ${before} rows after the streams (about the writes then unanswered), ${after} after the gone tabs' were dropped`;
  diagnostics.push(line);
  t.diagnostic(line);

  const follower = all.find((p) => p !== leader);
  const closed = await follower.evaluate(async () => {
    await window.db.close();
    return (await window.db.query("SELECT 1").catch((e) => e)).code;
  });
  assert.equal(closed, "Closed");
  // A follower's close, and then the leader's own close, leave the database open for the others.
  await leader.evaluate(() => window.db.close());
  const other = all.find((p) => p !== leader && p !== follower);
  const still = await other.evaluate(async () => {
    const receipt = await window.db.write("INSERT INTO uniq(k) VALUES (?)", ["after the leader closed its handle"]);
    const [{ n }] = await window.db.query("SELECT count(*) AS n FROM uniq WHERE k = 'after the leader closed its handle'");
    return { changes: receipt.changes, n };
  });
  assert.deepEqual(still, { changes: 1, n: 1 });
  assert.deepEqual(browser.pageErrors, []);
});
