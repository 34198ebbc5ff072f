// The demo page: producers writing through sqlweir, live metrics, a race against a commit per
// row, faults, and the latest rows. Everything talks to the npm package `sqlweir` only.

import { open } from "sqlweir";
import { TimeChart } from "./chart.js";

const EVENTS = ["CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, source TEXT NOT NULL, payload TEXT NOT NULL)"];
const INSERT = "INSERT INTO events(ts, source, payload) VALUES (?, ?, ?)";
const RACE = ["CREATE TABLE race(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, source TEXT NOT NULL, payload TEXT NOT NULL)"];
const RACE_INSERT = "INSERT INTO race(ts, source, payload) VALUES (?, ?, ?)";
/** Writes each producer keeps unacknowledged, like a collector reading from a socket. */
const IN_FLIGHT = 64;
const POLL_MS = 250;
const LOCK_MS = 3_000;
/** u32::MAX attempts: the "lock" stays until released with 0. */
const HOLD = 4_294_967_295;
const RELOAD_NOTE = "sqlweir-demo:before-reload";

const $ = (id) => document.getElementById(id);
const fmt = (n) => Math.round(n).toLocaleString("en-US");
const ms = (t) => (t >= 1000 ? `${(t / 1000).toFixed(2)} s` : `${Math.round(t)} ms`);

let db = null;
let raceDbs = null;
let busy = false; // a race, a clear or a reload owns the page
let lockAvailable = false;
let collecting = false;
let producers = [];

// ---------------------------------------------------------------- status and log

function status(text, state) {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = state;
  el.hidden = state === "ready";
}

function log(html, kind = "info") {
  const li = document.createElement("li");
  li.className = kind;
  const time = new Date().toLocaleTimeString("en-GB");
  li.innerHTML = `<time>${time}</time><div>${html}</div>`;
  const list = $("log");
  list.prepend(li);
  while (list.children.length > 6) list.lastElementChild.remove();
  return li;
}

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function describe(error) {
  const code = error?.code ? `<code>${escape(error.code)}</code>` : "";
  const sqlite = error?.sqliteCode != null ? ` (SQLite ${error.sqliteCode})` : "";
  return `${code}${sqlite}: ${escape(error?.message ?? error)}`;
}

function setButtons() {
  const ready = db !== null && !busy;
  $("collect").disabled = !ready;
  $("hero-start").disabled = !ready;
  $("race-run").disabled = !ready;
  $("hero-race").disabled = !ready;
  $("fault-bad-row").disabled = !ready;
  $("fault-lock").disabled = !ready || !lockAvailable || lockHeld;
  $("fault-reload").disabled = !ready;
  $("fault-clear").disabled = !ready;
  $("producers").disabled = db === null;
}

// ---------------------------------------------------------------- collectors

function payload(seq) {
  const temp = (18 + 6 * Math.sin(seq / 40) + Math.random()).toFixed(2);
  return `{"seq":${seq},"temp":${temp},"rh":${40 + (seq % 17)}}`;
}

async function producer(name, run) {
  let seq = 0;
  while (collecting && run === runId) {
    const writes = [];
    for (let i = 0; i < IN_FLIGHT; i++) writes.push(db.write(INSERT, [Date.now(), name, payload(seq++)]));
    const outcomes = await Promise.allSettled(writes);
    const failed = outcomes.find((o) => o.status === "rejected");
    if (failed) log(`${escape(name)}: a write failed ${describe(failed.reason)}`, "bad");
  }
}

let runId = 0;

function startCollectors() {
  if (collecting || !db) return;
  collecting = true;
  runId += 1;
  const n = Number($("producers").value);
  producers = Array.from({ length: n }, (_, k) => producer(`collector-${k + 1}`, runId));
  $("collector").dataset.state = "running";
  $("collect").textContent = "Stop";
  $("hero-start").textContent = "Stop the collectors";
}

async function stopCollectors() {
  if (!collecting) return;
  collecting = false;
  $("collect").disabled = true;
  $("collector").dataset.state = "stopping";
  await Promise.all(producers);
  producers = [];
  await db.flush();
  await Promise.all([poll(), refreshRows()]);
  $("collector").dataset.state = "idle";
  $("collect").textContent = "Start";
  $("hero-start").textContent = `Start ${$("producers").value} collectors`;
  setButtons();
}

async function toggleCollectors() {
  if (collecting) await stopCollectors();
  else startCollectors();
}

// ---------------------------------------------------------------- metrics

const charts = {};
let last = null;

/**
 * Wraps an async refresh so that a call made while one runs gets a fresh run after it (not the
 * stale one in flight), and calls pile up into at most one.
 */
function coalesce(fn) {
  let running = null;
  let queued = null;
  const run = () => {
    if (!running) {
      running = fn().finally(() => {
        running = null;
      });
      return running;
    }
    queued ??= running
      .catch(() => {})
      .then(() => {
        queued = null;
        return run();
      });
    return queued;
  };
  return run;
}

function setCounter(id, value) {
  const el = $(id);
  el.dataset.value = String(value);
  el.textContent = fmt(value);
}

function badge(id, text, kind) {
  const el = $(id);
  el.textContent = text;
  el.className = `badge ${kind}`;
}

const poll = coalesce(async () => {
  const [m, health] = await Promise.all([db.metrics(), db.health()]);
  const now = performance.now();
  let rate = 0;
  let rowsPerBatch = null;
  if (last) {
    const seconds = (now - last.at) / 1000;
    rate = seconds > 0 ? (m.committed - last.m.committed) / seconds : 0;
    const batches = m.batches - last.m.batches;
    if (batches > 0) rowsPerBatch = (m.committed + m.rejected - last.m.committed - last.m.rejected) / batches;
  }
  last = { at: now, m };
  const latency = m.batches > 0 ? [m.commitP50Ms, m.commitP99Ms] : [null, null];
  charts.rate.push([rate]);
  charts.queue.push([m.queueDepth]);
  charts.batch.push([rowsPerBatch ?? 0]);
  charts.latency.push(latency);

  $("c-rate").textContent = fmt(rate);
  $("hero-rate").textContent = fmt(rate);
  $("c-queue").textContent = fmt(m.queueDepth);
  $("c-batch").textContent = rowsPerBatch === null ? "–" : fmt(rowsPerBatch);
  $("c-p50").textContent = latency[0] === null ? "–" : `p50 ${latency[0].toFixed(1)}`;
  $("c-p99").textContent = latency[1] === null ? "–" : `p99 ${latency[1].toFixed(1)}`;
  setCounter("m-accepted", m.accepted);
  setCounter("m-committed", m.committed);
  setCounter("m-retries", m.retries);
  setCounter("m-rejected", m.rejected);
  setCounter("m-failed", m.failed);
  setCounter("m-batches", m.batches);
  badge("m-breaker", m.breaker, m.breaker === "closed" ? "ok" : m.breaker === "open" ? "bad" : "warn");
  badge("m-health", health.status, health.status === "ok" ? "ok" : health.status === "failing" ? "bad" : "warn");
  $("m-health").title = health.reason ?? "";
  $("sqlite-version").textContent = `${m.engine}, journal mode ${m.journalMode}.`;
  return m;
});

// ---------------------------------------------------------------- latest rows

const TOTAL_SQL = "SELECT count(*) AS n FROM events";
const LATEST_SQL = "SELECT id, ts, source, payload FROM events ORDER BY id DESC LIMIT 12";

function showTotal(n) {
  const total = $("rows-total");
  total.dataset.value = String(n);
  total.textContent = fmt(n);
  $("hero-rows").textContent = fmt(n);
}

function showLatest(rows) {
  const body = $("rows-body");
  if (rows.length === 0) {
    body.innerHTML = `<tr class="empty"><td colspan="4">No rows yet: start the collectors.</td></tr>`;
  } else {
    body.innerHTML = rows
      .map(
        (r) =>
          `<tr><td class="n">${r.id}</td><td>${new Date(Number(r.ts)).toLocaleTimeString("en-GB")}</td>` +
          `<td>${escape(r.source)}</td><td class="payload">${escape(r.payload)}</td></tr>`,
      )
      .join("");
  }
}

/**
 * Live: `db.watch` runs both queries again after each committed batch that touched `events`
 * (coalesced while the collectors run), in this tab and any other on the same database.
 */
function watchRows() {
  const onError = (e) => log(`<b>Latest rows:</b> ${describe(e)}`, "bad");
  db.watch(TOTAL_SQL, [], ([{ n }]) => showTotal(n), { onError });
  db.watch(LATEST_SQL, [], showLatest, { onError });
}

/** The same two reads at once, for the moments that must show the table as it is now. */
const refreshRows = coalesce(async () => {
  const [[{ n }], rows] = await Promise.all([db.query(TOTAL_SQL), db.query(LATEST_SQL)]);
  showTotal(n);
  showLatest(rows);
  return n;
});

// ---------------------------------------------------------------- the race

function lane(id) {
  const el = $(id);
  return {
    el,
    show(done, total, batches, time) {
      el.querySelector(".bar i").style.width = `${(100 * done) / total}%`;
      el.querySelector(".lane-rows").textContent = `${fmt(done)} / ${fmt(total)} rows`;
      el.querySelector(".lane-tx").textContent = `${fmt(batches)} transaction${batches === 1 ? "" : "s"}`;
      el.querySelector(".lane-time").textContent = time === null ? "…" : ms(time);
    },
  };
}

async function runSide(store, view, rows) {
  const batches = new Set();
  let done = 0;
  let finished = null;
  let frame = 0;
  const paint = () => {
    view.show(done, rows.length, batches.size, finished);
    if (finished === null) frame = requestAnimationFrame(paint);
  };
  paint();
  const started = performance.now();
  await Promise.all(
    rows.map((params) =>
      store.write(RACE_INSERT, params).then((r) => {
        done += 1;
        batches.add(r.batch);
      }),
    ),
  );
  finished = performance.now() - started;
  cancelAnimationFrame(frame);
  view.show(done, rows.length, batches.size, finished);
  const [{ n }] = await store.query("SELECT count(*) AS n FROM race");
  return { time: finished, batches: batches.size, count: n };
}

async function race() {
  if (busy || !db) return;
  busy = true;
  setButtons();
  const section = $("race");
  section.dataset.state = "running";
  const verdict = $("race-verdict");
  verdict.dataset.ratio = "";
  verdict.classList.remove("win");
  try {
    const resume = collecting;
    if (collecting) {
      verdict.textContent = "Pausing the collectors…";
      await stopCollectors();
    }
    if (!raceDbs) {
      verdict.textContent = "Opening the two race databases…";
      raceDbs = {
        perRow: await open("race-per-row.db", { migrations: RACE, batchRows: 1, batchRowsCeiling: 1 }),
        sqlweir: await open("race-sqlweir.db", { migrations: RACE }),
      };
    }
    const n = Number($("race-rows").value);
    const rows = Array.from({ length: n }, (_, i) => [Date.now(), "race", payload(i)]);
    const perRowView = lane("lane-per-row");
    const sqlweirView = lane("lane-sqlweir");
    perRowView.show(0, n, 0, null);
    sqlweirView.show(0, n, 0, null);
    await Promise.all([raceDbs.perRow.write("DELETE FROM race"), raceDbs.sqlweir.write("DELETE FROM race")]);

    verdict.textContent = `Writing ${fmt(n)} rows with a commit per row…`;
    const perRow = await runSide(raceDbs.perRow, perRowView, rows);
    verdict.textContent = `Writing the same ${fmt(n)} rows through sqlweir…`;
    const batched = await runSide(raceDbs.sqlweir, sqlweirView, rows);
    if (perRow.count !== n || batched.count !== n) {
      throw new Error(`a table holds ${perRow.count} and ${batched.count} rows, expected ${n} each`);
    }
    const ratio = perRow.time / batched.time;
    const shown = ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(1);
    verdict.dataset.ratio = String(ratio);
    verdict.classList.add("win");
    verdict.innerHTML =
      `sqlweir wrote the ${fmt(n)} rows <b id="race-ratio">${shown}×</b> as fast ` +
      `(${fmt(perRow.batches)} transactions vs ${fmt(batched.batches)}), and every row is in its table.`;
    $("hero-ratio").textContent = `${shown}×`;
    section.dataset.state = "done";
    busy = false;
    setButtons();
    if (resume) startCollectors();
  } catch (e) {
    section.dataset.state = "failed";
    verdict.innerHTML = `The race failed: ${describe(e)}`;
  } finally {
    busy = false;
    setButtons();
  }
}

// ---------------------------------------------------------------- faults

async function injectBadRow() {
  const rows = Array.from({ length: 20 }, (_, i) => [Date.now(), "fault-demo", i === 9 ? null : payload(i)]);
  // One tick: the 20 writes travel to the worker together and commit in the same batch.
  const outcomes = await Promise.allSettled(rows.map((params) => db.write(INSERT, params)));
  const rejected = outcomes.filter((o) => o.status === "rejected");
  const committed = outcomes.filter((o) => o.status === "fulfilled");
  const batches = [...new Set(committed.map((o) => o.value.batch))];
  const where = batches.length === 1 ? `transaction #${batches[0]}` : `transactions ${batches.map((b) => `#${b}`).join(", ")}`;
  const item = log(
    `<b>Salvage:</b> <span class="tally">${rejected.length} rejected, ${committed.length} committed</span>. ` +
      `Row 10 ${rejected.length ? describe(rejected[0].reason) : "was not rejected"}; the other rows committed in ${where}.`,
    rejected.length === 1 ? "good" : "bad",
  );
  item.id = "bad-row-result";
  item.dataset.rejected = String(rejected.length);
  item.dataset.committed = String(committed.length);
  await Promise.all([poll(), refreshRows()]);
}

let lockHeld = false;

async function holdLock() {
  if (lockHeld) return;
  lockHeld = true;
  setButtons();
  const started = collecting;
  if (!collecting) startCollectors();
  const before = await poll();
  await db.injectBusy(HOLD);
  const item = log("<b>Write lock held</b>: every <code>BEGIN IMMEDIATE</code> now fails with <code>SQLITE_BUSY</code>…", "warn");
  const until = performance.now() + LOCK_MS;
  await new Promise((resolve) => {
    const tick = () => {
      const left = until - performance.now();
      const m = last?.m ?? before;
      // Accepted and not yet settled: what waits for the lock, whatever the queue's own count.
      const waiting = m.accepted - m.committed - m.rejected - m.failed;
      item.dataset.waiting = String(waiting);
      item.querySelector("div").innerHTML =
        `<b>Write lock held</b> (${Math.max(0, left / 1000).toFixed(1)} s left): ${fmt(m.retries - before.retries)} retries so far, ` +
        `breaker <code>${m.breaker}</code>, ${fmt(waiting)} writes waiting to commit.`;
      if (left <= 0) resolve();
      else setTimeout(tick, 100);
    };
    tick();
  });
  await db.injectBusy(0);
  await db.flush();
  const after = await poll();
  item.className = after.failed === before.failed ? "good" : "bad";
  item.id = "lock-result";
  item.dataset.retries = String(after.retries - before.retries);
  item.dataset.failed = String(after.failed - before.failed);
  item.dataset.breakerOpened = String(after.breakerOpened - before.breakerOpened);
  item.querySelector("div").innerHTML =
    `<b>Lock released after 3 s:</b> ${fmt(after.retries - before.retries)} retries, breaker opened ` +
    `${fmt(after.breakerOpened - before.breakerOpened)} times, ${fmt(after.failed - before.failed)} writes failed; ` +
    `the queued writes committed once the lock was free.`;
  if (!started) await stopCollectors();
  lockHeld = false;
  setButtons();
}

async function reload() {
  busy = true;
  setButtons();
  await stopCollectors();
  const n = await refreshRows();
  sessionStorage.setItem(RELOAD_NOTE, String(n));
  location.reload();
}

async function clearAll() {
  busy = true;
  setButtons();
  try {
    await stopCollectors();
    const { changes } = await db.write("DELETE FROM events");
    if (raceDbs) await Promise.all([raceDbs.perRow.write("DELETE FROM race"), raceDbs.sqlweir.write("DELETE FROM race")]);
    log(`<b>Cleared:</b> deleted ${fmt(changes)} rows (one write, one transaction).`, "info");
    await Promise.all([poll(), refreshRows()]);
  } finally {
    busy = false;
    setButtons();
  }
}

/** Runs a button's action; a failure is shown on the page, never thrown into the console. */
function action(fn) {
  return async () => {
    try {
      await fn();
    } catch (e) {
      log(`That did not work: ${describe(e)}`, "bad");
    }
  };
}

// ---------------------------------------------------------------- start

async function main() {
  charts.rate = new TimeChart($("chart-rate"), { series: [{ color: "#0f766e", fill: true }] });
  charts.queue = new TimeChart($("chart-queue"), { series: [{ color: "#7c3aed", fill: true }] });
  charts.batch = new TimeChart($("chart-batch"), { series: [{ color: "#2563eb", fill: true }] });
  charts.latency = new TimeChart($("chart-latency"), { series: [{ color: "#0891b2" }, { color: "#ea580c" }] });

  $("producers").addEventListener("input", (e) => {
    $("producers-out").textContent = e.target.value;
    if (!collecting) $("hero-start").textContent = `Start ${e.target.value} collectors`;
  });
  $("collect").addEventListener("click", action(toggleCollectors));
  $("hero-start").addEventListener("click", action(toggleCollectors));
  $("race-run").addEventListener("click", action(race));
  $("hero-race").addEventListener("click", () => {
    $("race").scrollIntoView({ behavior: "smooth", block: "start" });
    action(race)();
  });
  $("fault-bad-row").addEventListener("click", action(injectBadRow));
  $("fault-lock").addEventListener("click", action(holdLock));
  $("fault-reload").addEventListener("click", action(reload));
  $("fault-clear").addEventListener("click", action(clearAll));
  setButtons();

  try {
    db = await open("events.db", { migrations: EVENTS });
  } catch (e) {
    const hint =
      e?.code === "Storage"
        ? " Is the demo open in another tab? The browser lets one tab at a time hold the database."
        : "";
    status(`Could not open the database: ${e?.message ?? e}.${hint}`, "failed");
    return;
  }
  // Probe the fault-injection hook: 0 attempts changes nothing; a build without it refuses.
  lockAvailable = await db.injectBusy(0).then(
    () => true,
    () => false,
  );
  if (!lockAvailable) {
    $("fault-lock").title = "this build of the package has no fault-injection hook (scripts/serve builds it)";
  }
  status("", "ready");
  setButtons();

  const before = sessionStorage.getItem(RELOAD_NOTE);
  sessionStorage.removeItem(RELOAD_NOTE);
  const n = await refreshRows();
  await poll();
  if (before !== null) {
    const item = log(
      `<b>Reloaded:</b> the table had ${fmt(Number(before))} rows before the reload and has ${fmt(n)} now: ` +
        `every acknowledged write survived, stored in OPFS.`,
      Number(before) === n ? "good" : "bad",
    );
    item.id = "reload-result";
    Object.assign(item.dataset, { before, after: String(n) });
  }
  document.body.dataset.ready = "true";

  setInterval(() => poll().catch(() => {}), POLL_MS);
  watchRows();
}

main();
