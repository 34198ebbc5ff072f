// The browser benchmark, in one page and one worker: SQLite's one-transaction limit (L) and one
// commit per row (N) without the weir, then sqlweir with parallel `write` promises (P: 8
// producers keeping 64 writes in flight each; B: every row issued in one tick) and `writeMany`
// (M: chunks of 10,000 rows, up to 3 in flight), for each journal mode asked. Each case uses a
// fresh database; rates are rows per second of the inserts (open and schema not included).
// Driven by run.mjs; results are returned, not judged, here.

import { open } from "sqlweir";

const SCHEMA = "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT, payload TEXT)";
const INSERT = "INSERT INTO events(ts, source, payload) VALUES (?, ?, ?)";
const PAYLOAD = `{"kind":"price","item":"sku-000042","value":1234.5,"pad":"${"p".repeat(48)}"}`; // ~100 bytes
const PRODUCERS = 8;
const WINDOW = 64;
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

let synchronous = "normal";

function raw(name, rows, mode, journal) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    channel.postMessage({ id, name, rows, mode, journal, synchronous });
  });
}

let seq = 0;
const fresh = (what, journal) => `${what}-${journal}-${++seq}.db`;

async function weir(what, journal, rows, work) {
  const db = await open(fresh(what, journal), { migrations: [SCHEMA], journal, synchronous });
  const started = performance.now();
  await work(db, rows);
  const ms = performance.now() - started;
  const metrics = await db.metrics();
  const [{ n }] = await db.query("SELECT count(*) AS n FROM events");
  await db.close();
  return { ms, count: n, meanBatchSize: metrics.meanBatchSize, batches: metrics.batches, journalMode: metrics.journalMode };
}

async function parallel(db, rows) {
  let next = 0;
  const producer = async (p) => {
    for (;;) {
      const start = next;
      if (start >= rows) return;
      next = Math.min(rows, start + WINDOW);
      const inFlight = [];
      for (let i = start; i < next; i++) inFlight.push(db.write(INSERT, [i, `collector-${p}`, PAYLOAD]));
      await Promise.all(inFlight);
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => producer(p)));
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

/** Time from open() to the first committed write, on a fresh database (the first open of the page starts the worker). */
async function firstWrite(journal) {
  const started = performance.now();
  const db = await open(fresh("first", journal), { migrations: [SCHEMA], journal, synchronous });
  const opened = performance.now();
  await db.write(INSERT, [0, "collector", PAYLOAD]);
  const done = performance.now();
  await db.close();
  return { openMs: opened - started, firstWriteMs: done - started };
}

window.runBench = async ({ rows, naiveRows, rounds, journals, synchronous: sync = "normal" }) => {
  synchronous = sync;
  const startup = { cold: await firstWrite(journals[0]) };
  startup.warm = await firstWrite(journals[0]);
  const runs = [];
  for (let round = 0; round < rounds; round++) {
    for (const journal of journals) {
      for (const [key, c] of Object.entries(CASES)) {
        const n = key === "naive" ? naiveRows : rows;
        const r = c.raw ? await raw(fresh(key, journal), n, c.raw, journal) : await weir(key, journal, n, c.work);
        runs.push({ key, name: c.name, journal, round, rows: n, ...r });
      }
    }
  }
  return { startup, runs, userAgent: navigator.userAgent };
};
