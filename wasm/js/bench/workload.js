// The browser benchmarks' workload, one copy: the events table, its INSERT and ~100-byte payload,
// and the (P) shape (PRODUCERS producers each keeping WINDOW `write` promises in flight). Used
// by bench.js (scripts/bench-browser) and by the multi-tab benchmark's pages (multitab.mjs).

export const SCHEMA = "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT, payload TEXT)";
export const INSERT = "INSERT INTO events(ts, source, payload) VALUES (?, ?, ?)";
export const PAYLOAD = `{"kind":"price","item":"sku-000042","value":1234.5,"pad":"${"p".repeat(48)}"}`; // ~100 bytes
export const PRODUCERS = 8;
export const WINDOW = 64;

/** (P): `rows` writes to `db` from PRODUCERS producers, each awaiting WINDOW at a time. */
export async function parallel(db, rows) {
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
