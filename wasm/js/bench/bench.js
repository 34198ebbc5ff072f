// The browser benchmark, in one page and one worker: SQLite's one-transaction limit (L) and one
// commit per row (N) without the weir, then sqlweir with parallel `write` promises (P: 8
// producers keeping 64 writes in flight each; B: every row issued in one tick) and `writeMany`
// (M: chunks of 10,000 rows, up to 3 in flight), for each mode asked (a journal and a synchronous
// setting). Each case uses a fresh database; rates are rows per second of the inserts (open and
// schema not included). Also the time from open() to the first committed write, split into its
// phases with the timestamps the benchmark's worker records (probe.js). Driven by run.mjs;
// results are returned, not judged, here.

import { open } from "sqlweir";
import { INSERT, PAYLOAD, PRODUCERS, SCHEMA, WINDOW, parallel } from "./workload.js";

const CHUNK = 10_000;

const channel = new BroadcastChannel("sqlweir-bench");
const waiting = new Map();
let nextId = 1;
channel.onmessage = ({ data }) => {
  const w = waiting.get(data.id);
  waiting.delete(data.id);
  if (data.ok) w.resolve(data);
  else w.reject(new Error(data.error));
};

function ask(message) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    channel.postMessage({ id, ...message });
  });
}

const raw = (name, rows, mode, { journal, synchronous }) => ask({ name, rows, mode, journal, synchronous });

let seq = 0;
const fresh = (what, { journal, synchronous }) => `${what}-${journal}-${synchronous}-${++seq}.db`;

async function weir(what, mode, rows, work) {
  const { journal, synchronous } = mode;
  const db = await open(fresh(what, mode), { migrations: [SCHEMA], journal, synchronous });
  const started = performance.now();
  await work(db, rows);
  const ms = performance.now() - started;
  const metrics = await db.metrics();
  const [{ n }] = await db.query("SELECT count(*) AS n FROM events");
  await db.close();
  return { ms, count: n, meanBatchSize: metrics.meanBatchSize, batches: metrics.batches, journalMode: metrics.journalMode };
}

async function burst(db, rows) {
  const all = new Array(rows);
  for (let i = 0; i < rows; i++) all[i] = db.write(INSERT, [i, "collector", PAYLOAD]);
  await Promise.all(all);
}

async function many(db, rows) {
  const pending = [];
  for (let i = 0; i < rows; i += CHUNK) {
    const chunk = [];
    for (let j = i; j < Math.min(rows, i + CHUNK); j++) chunk.push([j, "collector", PAYLOAD]);
    pending.push(db.writeMany(INSERT, chunk));
    if (pending.length > 2) {
      const out = await pending.shift();
      if (out.rejected.length) throw new Error(`${out.rejected.length} rows rejected`);
    }
  }
  for (const out of await Promise.all(pending)) if (out.rejected.length) throw new Error(`${out.rejected.length} rows rejected`);
}

const CASES = {
  limit: { name: "(L) limit: one transaction, one prepared statement", raw: "limit" },
  naive: { name: "(N) naive: one autocommit INSERT per row", raw: "naive" },
  parallel: { name: `(P) sqlweir: parallel write promises, ${PRODUCERS} producers x ${WINDOW} in flight`, work: parallel },
  burst: { name: "(B) sqlweir: every write issued in one tick", work: burst },
  many: { name: `(M) sqlweir: writeMany, chunks of ${CHUNK.toLocaleString("en")}`, work: many },
};

/** Milliseconds since the page's time origin of an absolute timestamp (timeOrigin + now). */
const sinceOrigin = (t) => t - performance.timeOrigin;

/**
 * Time from open() to the first committed write, on `name` (a fresh database unless given; the
 * first open of the page starts the worker). `workerReadyMs`: until the worker's module ran and SQLite's wasm was
 * compiled and instantiated (the worker's timestamps; only on the first open); `openMs`: until
 * open() resolved (pool, file, migrations); `firstWriteMs`: until the first write's ack.
 */
async function firstWrite(mode, cold, name = fresh("first", mode)) {
  const { journal, synchronous } = mode;
  const started = performance.now();
  const db = await open(name, { migrations: [SCHEMA], journal, synchronous });
  const opened = performance.now();
  await db.write(INSERT, [0, "collector", PAYLOAD]);
  const done = performance.now();
  await db.close();
  const out = { openMs: opened - started, firstWriteMs: done - started, workerReadyMs: 0 };
  if (cold) {
    const { marks } = await ask({ probe: true });
    out.marks = Object.fromEntries(Object.entries(marks).map(([k, t]) => [k, sinceOrigin(t) - started]));
    out.workerReadyMs = out.marks.wasmReady ?? 0;
  }
  return out;
}

/** The database both startup measurements open: created on the first visit, found on the next. */
const STARTUP_DB = "startup.db";

/** Later opens measured; the median is reported (they are cheap, and one is noisy). */
const LATER_OPENS = 5;

/** The page's first open on a fresh profile (nothing in OPFS yet), then later opens. */
window.startupFresh = async (mode) => {
  const cold = await firstWrite(mode, true, STARTUP_DB);
  const later = [];
  for (let i = 0; i < LATER_OPENS; i++) later.push(await firstWrite(mode, false));
  later.sort((a, b) => a.firstWriteMs - b.firstWriteMs);
  return { cold, warm: later[(LATER_OPENS - 1) / 2], laterFirstWriteMs: later.map((l) => l.firstWriteMs) };
};

/** After a reload: the page's first open again, of the database the last visit made. */
window.startupReturning = async (mode) => ({ returning: await firstWrite(mode, true, STARTUP_DB) });

window.runBench = async ({ rows, naiveRows, rounds, modes, only = null }) => {
  const runs = [];
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      for (const [key, c] of Object.entries(CASES)) {
        if (only && key !== only) continue;
        const n = key === "naive" ? naiveRows : rows;
        const r = c.raw ? await raw(fresh(key, mode), n, c.raw, mode) : await weir(key, mode, n, c.work);
        runs.push({ key, name: c.name, mode: mode.label, journal: mode.journal, synchronous: mode.synchronous, round, rows: n, ...r });
      }
    }
  }
  return { runs, userAgent: navigator.userAgent };
};
