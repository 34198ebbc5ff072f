// wa-sqlite's synchronous build on AccessHandlePoolVFS, in the worker an app writes for it
// (wa-sqlite.worker.js). Each write is one message and one autocommit statement; a hand-batched
// group is one message and one transaction with one prepared statement.

import { connect } from "./rpc.js";
import { SQLITE } from "./workload.js";

const SYNCHRONOUS = ["OFF", "NORMAL", "FULL", "EXTRA"];
let call;

export default {
  key: "wa-sqlite",
  name: "wa-sqlite, AccessHandlePoolVFS (sync build)",
  isolated: false,
  // SQLite's default is synchronous=FULL: a flush (xSync) per commit already.
  variants: { default: {} },
  async open(name) {
    call ??= connect(new Worker(new URL("./wa-sqlite.worker.js", import.meta.url), { type: "module", name: "wa-sqlite" }));
    const info = await call("open", { name, schema: SQLITE.schema });
    return {
      version: info.version,
      durability: `journal=${info.journal}, synchronous=${SYNCHRONOUS[info.synchronous] ?? info.synchronous} (default)`,
      write: (params) => call("write", { sql: SQLITE.insert, params }),
      writeBatch: (rows) => call("batch", { sql: SQLITE.insert, rows }),
      count: async () => (await call("query", { sql: SQLITE.count }))[0].n,
      last100: () => call("query", { sql: SQLITE.last100 }),
      close: () => call("close"),
    };
  },
};
