// `open`, `importFile` and the `Database` handle: the public API, over this page's hub for the
// database's directory.

import { SqlweirError, closedError, inUse, invalid } from "./errors.js";
import { hubFor } from "./hub.js";
import { checkOptions } from "./options.js";
import { valueKey } from "./pack.js";

/** What a queued item asks the worker for, after `false` (write) and `true` (writeMany). */
const WRITE_KIND = { insert: 2, upsert: 3, insertMany: 4, transaction: 5 };

/**
 * A database open in the page's sqlweir worker, or, in a follower tab, in the leader tab's.
 * Dispatches `rolechange` when this tab starts leading.
 */
class Database extends EventTarget {
  #conn;
  #db;
  #name;
  #pending = [];
  #scheduled = false;
  #closed = false;

  constructor(conn, db, name) {
    super();
    this.#conn = conn;
    this.#db = db;
    this.#name = name;
  }

  /** The name the database was opened with. */
  get name() {
    return this.#name;
  }

  /** "leader" when this tab runs the database, "follower" when it forwards to the tab that does. */
  get role() {
    return this.#conn.role;
  }

  /** Calls `listener(role)` when this tab's role changes; returns a function that stops it. */
  onRoleChange(listener) {
    const handler = (event) => listener(event.detail.role);
    this.addEventListener("rolechange", handler);
    return () => this.removeEventListener("rolechange", handler);
  }

  write(sql, params = []) {
    return this.#enqueue(sql, params, false);
  }

  writeMany(sql, rows) {
    return this.#enqueue(sql, rows, true);
  }

  /** Inserts `row`, an object whose fields are columns; resolves like `write`. */
  insert(table, row) {
    return this.#enqueue(table, row, WRITE_KIND.insert);
  }

  /** Inserts `row`, or updates its other fields in the row it conflicts with on `conflictColumns`. */
  upsert(table, row, conflictColumns) {
    return this.#enqueue(table, row, WRITE_KIND.upsert, conflictColumns);
  }

  /** Inserts row objects of one shape as one entry of the queue; resolves like `writeMany`. */
  insertMany(table, rows) {
    return this.#enqueue(table, rows, WRITE_KIND.insertMany);
  }

  /**
   * Runs `[{ sql, params }, ...]` in one transaction on the writer, alone between batches: all
   * commit or none does. Not a closure: see the README's Transactions section.
   */
  transaction(statements) {
    if (typeof statements === "function") {
      return Promise.reject(
        new SqlweirError(
          "invalid input: transaction takes an array of { sql, params } statements, not a function: a closure cannot run inside the worker's transaction; decide in SQL (see the README)",
          "InvalidInput",
        ),
      );
    }
    return this.#enqueue(null, statements, WRITE_KIND.transaction);
  }

  /** One keyset page of `table` ordered by the column `key`: `{ rows, next }`, `next` null at the end. */
  page(table, key, { after = null, limit = 100 } = {}) {
    if (this.#closed) return Promise.reject(closedError());
    if (typeof table !== "string" || typeof key !== "string") {
      return Promise.reject(new SqlweirError("invalid input: page takes the table and key column names as strings", "InvalidInput"));
    }
    return this.#call("page", { table, key, after, limit });
  }

  #enqueue(sql, params, many, extra) {
    if (this.#closed) return Promise.reject(closedError());
    const conn = this.#conn;
    if (conn.broken) return Promise.reject(conn.broken);
    const id = conn.nextId++;
    const promise = conn.expect(id);
    this.#pending.push(extra === undefined ? [id, sql, params, many] : [id, sql, params, many, extra]);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.#sendPending());
    }
    return promise;
  }

  #sendPending() {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const items = this.#pending;
    this.#pending = [];
    this.#conn.sendWrites(this.#db, items);
  }

  #call(op, fields = {}) {
    // Writes issued before this call go first, so a flush or close covers them.
    this.#sendPending();
    return this.#conn.call(op, { db: this.#db, ...fields });
  }

  query(sql, params = []) {
    if (this.#closed) return Promise.reject(closedError());
    return this.#call("query", { sql, params });
  }

  /**
   * Calls `listener({ batch, tables })` after each committed batch that changed rows, in every
   * tab (followers included), once per batch; returns a function that stops it.
   */
  onCommit(listener) {
    const handler = (event) => listener(event.detail);
    this.addEventListener("commit", handler);
    return () => this.removeEventListener("commit", handler);
  }

  /**
   * A live query: runs `sql` now and again after each committed batch that changed a table it
   * reads (SQLite's authorizer says which, views included), and calls `callback(rows)` with the
   * first result and each one that differs from the last. Re-runs are coalesced: at most one
   * runs at a time, and batches that commit meanwhile cause one more. Returns a function that
   * stops it; its `ready` promise settles after the first result (or with the query's error).
   * Errors of later runs go to `onError` (default: the console).
   */
  watch(sql, params, callback, { onError = (e) => console.warn("sqlweir: a watched query failed", e) } = {}) {
    if (typeof callback !== "function") throw invalid("watch takes (sql, params, callback)");
    let tables = null;
    let stopped = false;
    let running = null;
    let again = false;
    let last;
    const run = () => {
      if (stopped) return Promise.resolve();
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        do {
          again = false;
          const rows = await this.query(sql, params);
          const key = valueKey(rows);
          if (!stopped && key !== last) {
            last = key;
            callback(rows);
          }
        } while (again && !stopped);
      })().finally(() => (running = null));
      return running;
    };
    const rerun = () => run().catch((e) => stopped || onError(e));
    const onCommit = (event) => {
      if (tables && event.detail.tables.some((t) => tables.has(t.toLowerCase()))) rerun();
    };
    this.addEventListener("commit", onCommit);
    this.addEventListener("resync", rerun);
    const stop = () => {
      stopped = true;
      this.removeEventListener("commit", onCommit);
      this.removeEventListener("resync", rerun);
    };
    stop.ready = this.#closed
      ? Promise.reject(closedError())
      : this.#call("tablesRead", { sql }).then((read) => {
          tables = new Set(read.map((t) => t.toLowerCase()));
          return run();
        });
    stop.ready.catch(stop);
    return stop;
  }

  /** The whole database file as bytes, once the writes issued before it settled. */
  exportFile() {
    if (this.#closed) return Promise.reject(closedError());
    return this.#call("exportFile", { name: this.#name, directory: this.#conn.directory });
  }

  flush() {
    if (this.#closed) return Promise.resolve();
    return this.#call("flush");
  }

  async close() {
    if (this.#closed) return;
    const done = this.#call("close");
    this.#closed = true;
    await done;
  }

  metrics() {
    if (this.#closed) return Promise.reject(closedError());
    return this.#call("metrics");
  }

  health() {
    if (this.#closed) return Promise.reject(closedError());
    return this.#call("health");
  }

  async lock(name, { holder = "main", timeoutMs } = {}) {
    if (this.#closed) throw closedError();
    const token = await this.#call("lock", { name, holder, timeoutMs });
    let released = false;
    return {
      name,
      holder,
      release: async (failure) => {
        if (released) return false;
        released = true;
        return this.#call("unlock", { token, failure: failure == null ? undefined : String(failure) });
      },
    };
  }

  jobStatus(name) {
    if (this.#closed) return Promise.reject(closedError());
    return this.#call("jobStatus", { name });
  }

  /**
   * Demo and test hook: makes the next `attempts` batch attempts fail with SQLITE_BUSY, as if
   * another connection held the write lock (`0` releases it). Works only in a package built with
   * the crate's `fault-injection` feature; otherwise rejects with `InvalidInput`.
   */
  injectBusy(attempts) {
    if (this.#closed) return Promise.reject(closedError());
    return this.#call("injectBusy", { attempts });
  }
}

/** Rejects where sqlweir cannot run (Node, a browser without OPFS or outside a secure context). */
function checkPlatform() {
  if (typeof Worker === "function" && typeof globalThis.navigator?.storage?.getDirectory === "function") return null;
  return new SqlweirError(
    "unsupported: sqlweir needs a browser with OPFS and Web Workers; run it in a page served over https or from localhost, not in Node",
    "Unsupported",
  );
}

/**
 * Opens (creating if needed) the database `name` in OPFS, runs `options.migrations`, and
 * resolves with a handle once writes can be accepted.
 */
export async function open(name, options = {}) {
  if (typeof name !== "string" || name === "") {
    throw invalid("the database name must be a non-empty string");
  }
  options ??= {};
  const refused = checkOptions(options) ?? checkPlatform();
  if (refused) throw refused;
  // `requestIds` is the tabs' business (hub.js), not the worker's.
  const { logger, requestIds, ...rest } = options;
  const hub = hubFor(typeof options.directory === "string" ? options.directory : undefined);
  await hub.ready;
  if (hub.dbs.has(name)) {
    throw new SqlweirError(`${name} is already open in this page; share the handle from the first open, or close it first`, "InUse");
  }
  const slot = { options: rest, logger, requestIds: requestIds !== false, database: null };
  hub.dbs.set(name, slot);
  try {
    await hub.call("open", { db: name, name, options: rest });
  } catch (e) {
    if (hub.dbs.get(name) === slot) hub.dbs.delete(name);
    throw e;
  }
  slot.database = new Database(hub, name, name);
  return slot.database;
}

/**
 * Writes `bytes`, a whole SQLite database file (from `exportFile`, or any SQLite file), as the
 * database `name`, replacing it if it exists. It must not be open in any tab.
 */
export async function importFile(name, bytes, { directory } = {}) {
  if (typeof name !== "string" || name === "") throw invalid("the database name must be a non-empty string");
  if (bytes instanceof ArrayBuffer) bytes = new Uint8Array(bytes);
  if (!(bytes instanceof Uint8Array)) throw invalid("importFile takes the file's bytes as a Uint8Array or ArrayBuffer");
  // SQLite's header: the magic string, then the page size (1 meaning 65536).
  const page = (bytes[16] << 8) | bytes[17];
  const pageSize = page === 1 ? 65536 : page;
  const magic = new TextDecoder().decode(bytes.subarray(0, 16));
  if (magic !== "SQLite format 3\0" || pageSize < 512 || pageSize & (pageSize - 1) || bytes.length % pageSize) {
    throw invalid("these bytes are not an SQLite database file; pass a whole file, such as exportFile() gives");
  }
  const refused = checkPlatform();
  if (refused) throw refused;
  const hub = hubFor(directory);
  await hub.ready;
  if (hub.dbs.has(name)) throw inUse(name);
  await hub.call("importFile", { db: name, name, bytes });
}
