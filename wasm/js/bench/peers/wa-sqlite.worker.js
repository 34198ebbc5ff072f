// The worker an app writes around wa-sqlite: its synchronous build with AccessHandlePoolVFS,
// the synchronous OPFS VFS the npm package ships (OPFSCoopSyncVFS is in the GitHub repository,
// not in the package npm serves as `wa-sqlite`). The API is asynchronous even on this build;
// rpc.js runs one message at a time, so a transaction's statements never interleave. One
// database at a time.

import SQLiteESMFactory from "wa-sqlite/dist/wa-sqlite.mjs";
import * as SQLite from "wa-sqlite";
import { AccessHandlePoolVFS } from "wa-sqlite/src/examples/AccessHandlePoolVFS.js";
import { serve } from "./rpc.js";

let sqlite3;
let vfs;
let db;

async function run(sql, params) {
  for await (const stmt of sqlite3.statements(db, sql)) {
    if (params) sqlite3.bind_collection(stmt, params);
    await sqlite3.step(stmt);
  }
}

async function select(sql) {
  const rows = [];
  for await (const stmt of sqlite3.statements(db, sql)) {
    const columns = sqlite3.column_names(stmt);
    while ((await sqlite3.step(stmt)) === SQLite.SQLITE_ROW) {
      const values = sqlite3.row(stmt);
      rows.push(Object.fromEntries(columns.map((c, i) => [c, values[i]])));
    }
  }
  return rows;
}

serve({
  async open({ name, schema }) {
    if (!sqlite3) {
      sqlite3 = SQLite.Factory(await SQLiteESMFactory());
      vfs = new AccessHandlePoolVFS("/bench-wa-sqlite");
      await vfs.isReady;
      sqlite3.vfs_register(vfs, true);
    }
    // Each database of the run keeps its file and its journal's; the pool grows as needed.
    if (vfs.getCapacity() - vfs.getSize() < 4) await vfs.addCapacity(4);
    db = await sqlite3.open_v2(name);
    await run(schema);
    return {
      version: sqlite3.libversion(),
      journal: (await select("PRAGMA journal_mode"))[0].journal_mode,
      synchronous: (await select("PRAGMA synchronous"))[0].synchronous,
    };
  },
  async write({ sql, params }) {
    await run(sql, params);
    return sqlite3.changes(db);
  },
  async batch({ sql, rows }) {
    await run("BEGIN");
    try {
      for await (const stmt of sqlite3.statements(db, sql)) {
        for (const r of rows) {
          sqlite3.bind_collection(stmt, r);
          await sqlite3.step(stmt);
          await sqlite3.reset(stmt);
        }
      }
      await run("COMMIT");
    } catch (e) {
      await run("ROLLBACK").catch(() => {});
      throw e;
    }
    return rows.length;
  },
  query({ sql }) {
    return select(sql);
  },
  async close() {
    if (db) await sqlite3.close(db);
    db = null;
  },
});
