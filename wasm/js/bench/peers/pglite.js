// PGlite (Postgres compiled to WebAssembly) as its documentation shows it in a browser app: the
// database in a worker on OPFS (opfs-ahp), the page using PGliteWorker. Each write is one
// `query` (Postgres autocommits it); a hand-batched group is one `transaction` whose callback
// awaits one `tx.query` per row. PGlite flushes after every query, inside a transaction too, so
// its one-transaction limit is one statement for all rows: INSERT ... SELECT FROM unnest(arrays).

import { PGliteWorker } from "@electric-sql/pglite/worker";
import { POSTGRES } from "./workload.js";

export default {
  key: "pglite",
  name: "PGlite, opfs-ahp",
  isolated: false,
  // relaxedDurability defaults to false: the file system is flushed after every query.
  variants: { default: {} },
  async open(name) {
    const worker = new Worker(new URL("./pglite.worker.js", import.meta.url), { type: "module", name: "pglite" });
    const pg = await PGliteWorker.create(worker, { dataDir: `opfs-ahp://${name}`, id: name });
    await pg.exec(POSTGRES.schema);
    const { rows: [{ server_version: version }] } = await pg.query("SHOW server_version");
    return {
      version,
      durability: "flush after every query (default)",
      write: (params) => pg.query(POSTGRES.insert, params),
      writeBatch: (rows) =>
        pg.transaction(async (tx) => {
          for (const params of rows) await tx.query(POSTGRES.insert, params);
        }),
      writeAll: (rows) => pg.query(POSTGRES.insertArrays, [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])]),
      count: async () => (await pg.query(POSTGRES.count)).rows[0].n,
      last100: async () => (await pg.query(POSTGRES.last100)).rows,
      close: async () => {
        await pg.close();
        worker.terminate();
      },
    };
  },
};
