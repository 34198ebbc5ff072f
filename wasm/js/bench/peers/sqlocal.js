// SQLocal as its documentation shows it: a client on the page (it starts its own worker, which
// runs the official SQLite build on the "opfs" VFS, so the page must be cross-origin isolated).
// Each write is one `sql` call; a hand-batched group is one `batch` call, its documented way to
// run many statements in one transaction and one message. A `batch` of ~100,000 statements
// overflows the stack (the worker spreads every result into one `push`), so all rows at once go
// in one `transaction` of batches of 10,000.

import { SQLocal } from "sqlocal";
import { SQLITE } from "./workload.js";

const BATCH_LIMIT = 10_000;

export default {
  key: "sqlocal",
  name: "SQLocal (official build, opfs VFS)",
  isolated: true,
  // SQLite's default is synchronous=FULL: a flush (xSync) per commit already.
  variants: { default: {} },
  async open(name) {
    const db = new SQLocal({ databasePath: name });
    await db.sql(SQLITE.schema);
    const [{ journal_mode: journal }] = await db.sql("PRAGMA journal_mode");
    const [{ synchronous }] = await db.sql("PRAGMA synchronous");
    const [{ version }] = await db.sql("SELECT sqlite_version() AS version");
    return {
      version,
      durability: `journal=${journal}, synchronous=${["OFF", "NORMAL", "FULL", "EXTRA"][synchronous] ?? synchronous} (default)`,
      write: (params) => db.sql(SQLITE.insert, ...params),
      writeBatch: (rows) => db.batch((sql) => rows.map((params) => sql(SQLITE.insert, ...params))),
      writeAll: (rows) =>
        db.transaction(async (tx) => {
          for (let i = 0; i < rows.length; i += BATCH_LIMIT) {
            await tx.batch((sql) => rows.slice(i, i + BATCH_LIMIT).map((params) => sql(SQLITE.insert, ...params)));
          }
        }),
      count: async () => (await db.sql(SQLITE.count))[0].n,
      last100: () => db.sql(SQLITE.last100),
      close: () => db.destroy(),
    };
  },
};
