// sqlweir as an app uses it: `open` from the package (staged by run.mjs, bundled by Vite like
// the peers), each write its own `db.write`, a hand-batched group one `db.transaction`.

import { open } from "sqlweir";
import { SQLITE } from "./workload.js";

export default {
  key: "sqlweir",
  name: "sqlweir",
  isolated: false,
  // Its default (rollback journal, synchronous NORMAL) and its flush-per-commit setting.
  variants: { default: {}, full: { synchronous: "full" } },
  async open(name, options) {
    const db = await open(name, { migrations: [SQLITE.schema], ...options });
    const { journalMode } = await db.metrics();
    const [{ version }] = await db.query("SELECT sqlite_version() AS version");
    const synchronous = options.synchronous ?? "normal";
    return {
      version,
      durability: `journal=${journalMode}, synchronous=${synchronous.toUpperCase()}${options.synchronous ? "" : " (default)"}`,
      write: (params) => db.write(SQLITE.insert, params),
      writeBatch: (rows) => db.transaction(rows.map((params) => ({ sql: SQLITE.insert, params }))),
      writeAll: async (rows) => {
        const { rejected } = await db.writeMany(SQLITE.insert, rows);
        if (rejected.length) throw new Error(`writeMany rejected ${rejected.length} rows: ${rejected[0].error.message}`);
      },
      count: async () => (await db.query(SQLITE.count))[0].n,
      last100: () => db.query(SQLITE.last100),
      close: () => db.close(),
    };
  },
};
