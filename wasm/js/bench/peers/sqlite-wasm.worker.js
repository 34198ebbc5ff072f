// The worker an app writes around the official SQLite build (@sqlite.org/sqlite-wasm): its
// "opfs-sahpool" VFS (no COOP/COEP needed) or its "opfs" VFS (needs SharedArrayBuffer, so a
// cross-origin-isolated page), through the oo1 API the package's README shows. The package's own
// Worker1/Promiser APIs are deprecated, so the page talks to it with rpc.js. One database at a time.

import sqlite3InitModule from "@sqlite.org/sqlite-wasm";
import { serve } from "./rpc.js";

let sqlite3;
let pool;
let db;

serve({
  async open({ name, vfs, schema }) {
    sqlite3 ??= await sqlite3InitModule();
    if (vfs === "opfs-sahpool") {
      pool ??= await sqlite3.installOpfsSAHPoolVfs({ name: "bench-sahpool", directory: "/bench-sahpool" });
      // Each database of the run keeps its file and its journal's; the pool grows as needed.
      await pool.reserveMinimumCapacity(pool.getFileCount() + 4);
      db = new pool.OpfsSAHPoolDb(`/${name}`);
    } else if (vfs === "opfs") {
      // OpfsDb exists once the VFS installed (the README's `"opfs" in sqlite3` no longer works:
      // since 3.52 the init deletes `sqlite3.opfs`).
      if (!sqlite3.oo1.OpfsDb) throw new Error("the opfs VFS did not install: it needs SharedArrayBuffer and Atomics (COOP/COEP headers)");
      db = new sqlite3.oo1.OpfsDb(`/${name}`, "c");
    } else {
      throw new Error(`unknown VFS ${vfs}`);
    }
    db.exec(schema);
    return {
      version: sqlite3.version.libVersion,
      journal: db.selectValue("PRAGMA journal_mode"),
      synchronous: db.selectValue("PRAGMA synchronous"),
    };
  },
  // One autocommit statement per call, as an app's generic "run this SQL" message does.
  write({ sql, params }) {
    db.exec({ sql, bind: params });
    return db.changes();
  },
  // What a careful developer writes for many rows: one transaction, one prepared statement.
  batch({ sql, rows }) {
    db.transaction(() => {
      const stmt = db.prepare(sql);
      try {
        for (const r of rows) stmt.bind(r).stepReset();
      } finally {
        stmt.finalize();
      }
    });
    return rows.length;
  },
  query({ sql }) {
    return db.selectObjects(sql);
  },
  close() {
    db?.close();
    db = null;
  },
});
