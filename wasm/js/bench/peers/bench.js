// The peers benchmark's page: the same workload for sqlweir and for each store a web developer
// would pick instead, driven from the page the way an app drives its database. For each store,
// durability variant and case: a fresh database, the case timed, then its rows counted. Rates,
// latencies and counts are returned, not judged, here (run.mjs judges them).
//
//   (P) per call: 8 producers keep 64 writes in flight each, every write its own call
//   (T) hand-batched: 8 producers, each with one transaction of 100 writes in flight
//   (1) one transaction: every row in one call, the store's own limit (`writeAll` where the
//       store has a faster way than `writeBatch` to put many rows in one transaction)
//   (R) (P) while a reader keeps reading the last 100 rows

import sqlweir from "./sqlweir.js";
import { opfs, sahpool } from "./sqlite-wasm.js";
import waSqlite from "./wa-sqlite.js";
import sqlocal from "./sqlocal.js";
import pglite from "./pglite.js";
import { row } from "./workload.js";

const STORES = [sqlweir, sahpool, waSqlite, pglite, opfs, sqlocal];
const PRODUCERS = 8;
const WINDOW = 64;
const TRANSACTION = 100;

/** (P): each write is issued alone and its latency (issue to resolution) is kept. */
async function perCall(conn, rows, latency) {
  let next = 0;
  const producer = async (p) => {
    while (next < rows) {
      const start = next;
      next = Math.min(rows, start + WINDOW);
      const inFlight = [];
      for (let i = start; i < next; i++) {
        const issued = performance.now();
        inFlight.push(conn.write(row(i, p)).then(() => (latency[i] = performance.now() - issued)));
      }
      await Promise.all(inFlight);
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => producer(p)));
}

/** (T): a write's latency is its transaction's. */
async function handBatched(conn, rows, latency) {
  let next = 0;
  const producer = async (p) => {
    while (next < rows) {
      const start = next;
      next = Math.min(rows, start + TRANSACTION);
      const group = [];
      for (let i = start; i < next; i++) group.push(row(i, p));
      const issued = performance.now();
      await conn.writeBatch(group);
      latency.fill(performance.now() - issued, start, start + group.length);
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => producer(p)));
}

async function oneTransaction(conn, rows) {
  const all = [];
  for (let i = 0; i < rows; i++) all.push(row(i, 0));
  await (conn.writeAll ?? conn.writeBatch)(all);
}

/** (R): (P), and one reader reading the newest 100 rows, one read after another, until it ends. */
async function readWhileWriting(conn, rows, latency, reads) {
  let writing = true;
  const reader = (async () => {
    while (writing) {
      const issued = performance.now();
      const got = await conn.last100();
      reads.push(performance.now() - issued);
      if (got.length > 100) throw new Error(`a read of the last 100 rows returned ${got.length}`);
    }
  })();
  try {
    await perCall(conn, rows, latency);
  } finally {
    writing = false;
    await reader;
  }
}

const CASES = {
  call: { name: "(P) per call", work: perCall },
  batch: { name: "(T) hand-batched, 100 per transaction", work: handBatched },
  one: { name: "(1) one transaction", work: oneTransaction },
  read: { name: "(R) per call, reading the last 100 rows", work: readWhileWriting },
};

const quantile = (xs, q) => {
  if (!xs.length) return null;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const timeout = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms));

let seq = 0;

/** One case on a fresh database: its rate, latencies and row count, or why it could not run. */
async function runCase(store, variant, key, rows, caseTimeoutMs) {
  const c = CASES[key];
  const name = `${store.key}-${variant}-${key}-${Date.now().toString(36)}-${++seq}.db`;
  const out = { store: store.key, variant, case: key, rows };
  let conn;
  try {
    const opening = performance.now();
    conn = await Promise.race([store.open(name, store.variants[variant]), timeout(caseTimeoutMs, "open")]);
    out.openMs = performance.now() - opening;
    out.durability = conn.durability;
    out.version = conn.version ?? null;
    const latency = new Float64Array(rows).fill(NaN);
    const reads = [];
    const started = performance.now();
    await Promise.race([c.work(conn, rows, latency, reads), timeout(caseTimeoutMs, c.name)]);
    out.ms = performance.now() - started;
    const written = Array.from(latency).filter((x) => !Number.isNaN(x));
    if (key !== "one") Object.assign(out, { writeP50: quantile(written, 0.5), writeP99: quantile(written, 0.99) });
    if (key === "read") Object.assign(out, { reads: reads.length, readP50: quantile(reads, 0.5), readP99: quantile(reads, 0.99) });
    out.count = Number(await Promise.race([conn.count(), timeout(caseTimeoutMs, "count")]));
    const last = await conn.last100();
    out.lastRead = last.length;
  } catch (e) {
    out.error = String(e?.message ?? e);
    console.error(`${store.key}/${variant}/${key}:`, e);
  }
  // A store stuck in a timed-out case may never close; the next case opens its own database.
  if (conn && !out.error) await conn.close();
  else if (conn) await Promise.race([conn.close(), new Promise((r) => setTimeout(r, 5_000))]).catch(() => {});
  return out;
}

/**
 * Before a store's first timed case: an untimed database written to for `ms` (and at least one
 * round of each shape), so that no store's first case pays for its worker's start, its wasm's
 * compile tiers or the JIT. A second of writes is a few dozen rows for the slowest stores and
 * ~100,000 for sqlweir, whose wasm tiers up only under that much load.
 */
async function warmUp(store, ms) {
  const [variant] = Object.keys(store.variants);
  const conn = await store.open(`${store.key}-warm-${Date.now().toString(36)}-${++seq}.db`, store.variants[variant]);
  const started = performance.now();
  let written = 0;
  do {
    await perCall(conn, PRODUCERS * WINDOW, new Float64Array(PRODUCERS * WINDOW));
    await handBatched(conn, PRODUCERS * TRANSACTION, new Float64Array(PRODUCERS * TRANSACTION));
    await conn.last100();
    written += PRODUCERS * (WINDOW + TRANSACTION);
  } while (performance.now() - started < ms);
  const n = Number(await conn.count());
  await conn.close();
  if (n !== written) throw new Error(`warm-up of ${store.key}: counted ${n} of ${written} rows`);
}

window.peerStores = () => STORES.map(({ key, name, isolated, variants }) => ({ key, name, isolated, variants: Object.keys(variants) }));

window.runPeers = async ({ stores, rows, warmUpMs, rounds, caseTimeoutMs }) => {
  const runs = [];
  const warm = new Set();
  for (let round = 0; round < rounds; round++) {
    for (const store of STORES.filter((s) => stores.includes(s.key))) {
      if (warmUpMs && !warm.has(store.key) && (!store.isolated || crossOriginIsolated)) {
        await warmUp(store, warmUpMs).catch((e) => console.error(`warm-up of ${store.key} failed:`, e));
        warm.add(store.key);
      }
      for (const variant of Object.keys(store.variants)) {
        for (const key of Object.keys(CASES)) {
          if (store.isolated && !crossOriginIsolated) {
            runs.push({ store: store.key, variant, case: key, rows: rows[key], round, error: "needs a cross-origin-isolated page (COOP/COEP)" });
            continue;
          }
          runs.push({ ...(await runCase(store, variant, key, rows[key], caseTimeoutMs)), round });
        }
      }
    }
  }
  return { runs, userAgent: navigator.userAgent, crossOriginIsolated };
};

window.peersReady = true;
