// Type-checked by `npm run types` (tsc --noEmit, scripts/test-browser): what an app writes with
// the package's .d.ts files. The `@ts-expect-error` lines must stay errors: if a type grows too
// loose to catch them, tsc fails ("unused @ts-expect-error"). Never run.

import { open, importFile, SqlweirError, type Database, type Receipt, type Row } from "sqlweir";
import { open as openFull } from "sqlweir/full";
import { useQuery as useReactQuery } from "sqlweir/react";
import { useQuery as useVueQuery } from "sqlweir/vue";
import { ref } from "vue";

interface Item {
  id: number;
  name: string;
}

export async function app(): Promise<void> {
  const db: Database = await open("app.db", {
    migrations: ["CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT)"],
    journal: "wal",
    synchronous: "full",
    requestIds: true,
    retry: { maxAttempts: 5 },
    logger: console,
  });
  const receipt: Receipt = await db.write("INSERT INTO items(name) VALUES (?)", ["apple"]);
  const rowid: number | bigint = receipt.lastRowid;
  await db.write("INSERT INTO items(name) VALUES (:name)", { name: "pear" });
  const many = await db.writeMany("INSERT INTO items(name) VALUES (?)", [["a"], ["b"]]);
  const firstRejected: number | undefined = many.rejected[0]?.index;
  const items: Item[] = await db.query<Item>("SELECT id, name FROM items WHERE id > ?", [0]);
  const rows: Row[] = await db.query("SELECT 1 AS one");
  const stop = db.watch<Item>("SELECT id, name FROM items", [], (latest) => latest.map((i) => i.name));
  await stop.ready;
  stop();
  const off = db.onCommit(({ batch, tables }) => [batch, tables.join()]);
  off();
  const tx = await db.transaction([{ sql: "INSERT INTO items(name) VALUES (?)", params: ["c"] }]);
  const changes: number = tx.results[0].changes;
  const guard = await db.lock("sync", { timeoutMs: 100 });
  const released: boolean = await guard.release();
  const { queueDepth } = await db.metrics();
  await importFile("copy.db", await db.exportFile());
  try {
    await db.write("INSERT INTO missing VALUES (1)");
  } catch (e) {
    if (e instanceof SqlweirError) console.log(e.code, e.sqliteCode);
  }
  console.log(rowid, firstRejected, items, rows, changes, released, queueDepth, db.role);

  // @ts-expect-error journal is "wal" or "delete"
  await open("bad.db", { journal: "memory" });
  // @ts-expect-error requestIds is a boolean
  await open("bad.db", { requestIds: "yes" });
  // @ts-expect-error a parameter is a value SQLite takes, not an object
  await db.write("INSERT INTO items(name) VALUES (?)", [{ name: "x" }]);
  // @ts-expect-error the rows of a query are typed as asked
  const wrong: string[] = await db.query<Item>("SELECT id, name FROM items");
  console.log(wrong);
}

export async function search(): Promise<string[]> {
  const db = await openFull("notes.db", { migrations: ["CREATE VIRTUAL TABLE notes USING fts5(title, body)"] });
  const hits = await db.query<{ title: string }>("SELECT title FROM notes WHERE notes MATCH ? ORDER BY rank", ["apples"]);
  return hits.map((h) => h.title);
}

export function ReactList({ db }: { db: Database | null }): string {
  const { rows, error, loading } = useReactQuery<Item>(db, "SELECT id, name FROM items WHERE id > ?", [1]);
  // @ts-expect-error rows may be undefined while loading
  const names: string[] = rows.map((r) => r.name);
  console.log(names, error?.code, loading);
  return loading ? "loading" : (rows ?? []).map((r) => r.name).join();
}

export function vueList(db: Database | null): string {
  const min = ref(1);
  const { rows, loading } = useVueQuery<Item>(ref(db), "SELECT id, name FROM items WHERE id > ?", () => [min.value]);
  // @ts-expect-error the refs are read-only
  loading.value = false;
  return (rows.value ?? []).map((r) => r.name).join();
}
