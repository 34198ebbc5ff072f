// sqlweir's worker bootstrap: loads the WebAssembly module, hosts the page's databases and
// relays messages. OPFS synchronous access handles exist only in dedicated workers, which is why
// SQLite lives here and not on the main thread.

import init, { Database, exportFile, importFile } from "./pkg/sqlweir_wasm.js";

// The page compiles SQLite's wasm while this worker starts and sends the module
// (`{ op: "wasm", module }`, transport.js), or null when it could not: then it is fetched here.
let wasmFromPage;
const ready = new Promise((resolve) => (wasmFromPage = resolve)).then((module) =>
  init(module ? { module_or_path: module } : undefined),
);
const databases = new Map();
let nextDb = 1;

// The crate logs through console.debug and console.warn. Here its lines go to the page, which
// hands them to the `logger` option of `open`; until a database asks for them they are dropped.
let logging = false;
for (const level of ["debug", "warn"]) {
  console[level] = (message) => logging && self.postMessage({ log: level, message: String(message) });
}

function plainError(e) {
  if (e && typeof e === "object" && "code" in e) {
    const { name, message, code, sqliteCode, holder, sinceMs } = e;
    const out = { name, message, code, sqliteCode: sqliteCode ?? null };
    if (holder !== undefined) Object.assign(out, { holder, sinceMs });
    return out;
  }
  // A panic or a JavaScript failure inside the worker: not one of sqlweir's typed errors.
  return { name: "SqlweirError", message: `internal error: ${e?.message ?? e}; please report it`, code: "Internal", sqliteCode: null };
}

function database(id) {
  const db = databases.get(id);
  if (!db) throw { name: "SqlweirError", message: "store is closed: open it again", code: "Closed", sqliteCode: null };
  return db;
}

const calls = {
  async open({ name, options, log }) {
    if (log) logging = true;
    const db = await Database.open(name, options);
    const id = nextDb++;
    db.onSettled((settled, receipts) => self.postMessage({ settled, receipts }, [receipts.buffer]));
    db.onCommit((batch, tables) => self.postMessage({ commit: id, batch, tables }));
    databases.set(id, db);
    return id;
  },
  query: ({ db, sql, params }) => database(db).query(sql, params),
  tablesRead: ({ db, sql }) => database(db).tablesRead(sql),
  async exportFile({ db, directory, name }) {
    await database(db).flush();
    return exportFile(directory, name);
  },
  importFile: ({ directory, name, bytes }) => importFile(directory, name, bytes),
  page: ({ db, table, key, after, limit }) => database(db).page(table, key, after, limit),
  flush: ({ db }) => database(db).flush(),
  async close({ db }) {
    const handle = databases.get(db);
    if (!handle) return;
    databases.delete(db);
    await handle.close();
    handle.free();
  },
  metrics: ({ db }) => database(db).metrics(),
  health: ({ db }) => database(db).health(),
  lock: ({ db, name, holder, timeoutMs }) => database(db).lock(name, holder, timeoutMs),
  unlock: ({ db, token, failure }) => database(db).unlock(token, failure),
  jobStatus: ({ db, name }) => database(db).jobStatus(name),
  forget: ({ db, origin, below }) => database(db).forget(origin, below),
  injectBusy({ db, attempts }) {
    const handle = database(db);
    // Present only in builds with the crate's `fault-injection` feature (the demo page's).
    if (typeof handle.injectBusy !== "function") {
      throw { name: "SqlweirError", message: "invalid input: this build has no fault injection; build the package with scripts/build-wasm --features fault-injection", code: "InvalidInput", sqliteCode: null };
    }
    handle.injectBusy(attempts);
  },
};

self.onmessage = async (event) => {
  const message = event.data;
  if (message.op === "wasm") {
    wasmFromPage(message.module);
    return;
  }
  try {
    await ready;
  } catch (e) {
    if (message.call !== undefined) self.postMessage({ call: message.call, ok: false, error: { ...plainError(e), code: "Worker" } });
    return;
  }
  if (message.op === "write") {
    const db = databases.get(message.db);
    const p = message.packed;
    let refused;
    if (!db) {
      const ids = p ? Array.from(p.ids) : message.items.map(([id]) => id);
      refused = ids.flatMap((id) => [id, false, { name: "SqlweirError", message: "store is closed: open it again to write", code: "Closed", sqliteCode: null }]);
    } else {
      // Request ids (docs/multitab.md): item i is recorded under (origin, seqs[i]).
      const { origin, forget } = message;
      const seqs = message.seqs ?? new Float64Array(0);
      const resent = message.resent === true;
      if (origin != null && forget != null) db.forget(origin, forget);
      refused = p
        ? db.submitPacked(p.ids, p.counts, p.sqlIndex, p.manyRows, p.rowLens, p.sqls, p.tags, p.nums, p.text, p.textEnds, p.others, p.legacy, origin, seqs, resent)
        : db.submit(message.items, origin, seqs, resent);
    }
    if (refused.length) self.postMessage({ settled: refused });
    return;
  }
  const handler = calls[message.op];
  try {
    if (!handler) throw new Error(`unknown operation ${message.op}`);
    const value = await handler(message);
    self.postMessage({ call: message.call, ok: true, value }, value instanceof Uint8Array ? [value.buffer] : []);
  } catch (e) {
    self.postMessage({ call: message.call, ok: false, error: plainError(e) });
  }
};
