// The official SQLite build (@sqlite.org/sqlite-wasm) in the worker an app writes for it
// (sqlite-wasm.worker.js): "opfs-sahpool", the VFS that needs no COOP/COEP headers, and "opfs",
// the one that does. Each write is one message and one autocommit statement; a hand-batched
// group is one message and one transaction with one prepared statement.

import { connect } from "./rpc.js";
import { SQLITE } from "./workload.js";

const SYNCHRONOUS = ["OFF", "NORMAL", "FULL", "EXTRA"];

function store(vfs, isolated) {
  let call;
  return {
    key: `sqlite-wasm-${vfs}`,
    name: `@sqlite.org/sqlite-wasm, ${vfs} VFS`,
    isolated,
    // SQLite's default is synchronous=FULL: a flush (xSync) per commit already.
    variants: { default: {} },
    async open(name) {
      // One worker per VFS for the whole run, as an app keeps one.
      call ??= connect(new Worker(new URL("./sqlite-wasm.worker.js", import.meta.url), { type: "module", name: `sqlite-wasm-${vfs}` }));
      const info = await call("open", { name, vfs, schema: SQLITE.schema });
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
}

export const sahpool = store("opfs-sahpool", false);
export const opfs = store("opfs", true);
