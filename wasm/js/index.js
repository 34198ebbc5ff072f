// sqlweir: the main-thread client. It starts one dedicated module worker per page, which hosts
// SQLite (compiled to WebAssembly) on the Origin Private File System, and talks to it by
// messages. Writes issued in one tick travel in one message; the worker answers once per
// committed batch. See README.md.

const WORKER_URL = new URL("./worker.js", import.meta.url);

/** An error from sqlweir: a real `Error` with a stable `code` and the SQLite code, if any. */
export class SqlweirError extends Error {
  constructor(message, code, sqliteCode = null, details = {}) {
    super(message);
    this.name = "SqlweirError";
    this.code = code;
    this.sqliteCode = sqliteCode;
    Object.assign(this, details);
  }
}

function toError(plain) {
  if (plain instanceof Error && "code" in plain) return plain;
  const { message = String(plain), code = "Internal", sqliteCode = null, name: _n, stack: _s, ...details } =
    plain ?? {};
  return new SqlweirError(message, code, sqliteCode, details);
}

function settledValue(value) {
  // A writeMany outcome carries its rejected rows' errors as plain objects.
  if (value && Array.isArray(value.rejected)) {
    return { ...value, rejected: value.rejected.map(({ index, error }) => ({ index, error: toError(error) })) };
  }
  return value;
}

/** The page's one worker and its bookkeeping; started by the first `open`. */
class Connection {
  constructor() {
    this.nextId = 1;
    this.calls = new Map();
    this.writes = new Map();
    this.broken = null;
    this.worker = new Worker(WORKER_URL, { type: "module", name: "sqlweir" });
    this.worker.onmessage = (event) => this.receive(event.data);
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      this.fail(`the sqlweir worker failed: ${event.message || "it could not be loaded"}; check that worker.js and pkg/ are served next to index.js`);
    };
    this.worker.onmessageerror = () => this.fail("a message from the sqlweir worker could not be read");
  }

  fail(message) {
    this.broken = new SqlweirError(message, "Worker");
    for (const waiter of [...this.calls.values(), ...this.writes.values()]) waiter.reject(this.broken);
    this.calls.clear();
    this.writes.clear();
    if (shared === this) shared = null;
    this.worker.terminate();
  }

  receive(message) {
    if (message.settled) {
      const r = message.settled;
      for (let i = 0; i < r.length; i += 3) {
        const waiter = this.writes.get(r[i]);
        if (!waiter) continue;
        this.writes.delete(r[i]);
        if (r[i + 1]) waiter.resolve(settledValue(r[i + 2]));
        else waiter.reject(toError(r[i + 2]));
      }
      return;
    }
    const waiter = this.calls.get(message.call);
    if (!waiter) return;
    this.calls.delete(message.call);
    if (message.ok) waiter.resolve(message.value);
    else waiter.reject(toError(message.error));
  }

  call(op, fields = {}) {
    if (this.broken) return Promise.reject(this.broken);
    const call = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(call, { resolve, reject });
      this.worker.postMessage({ op, call, ...fields });
    });
  }

  /** Sends one tick's writes. Values that cannot be cloned are refused alone with InvalidInput. */
  sendWrites(db, items) {
    try {
      this.worker.postMessage({ op: "write", db, items });
      return;
    } catch {
      // One value could not be cloned (a function, a symbol...): find it, send the rest.
    }
    const good = [];
    for (const item of items) {
      try {
        structuredClone(item);
        good.push(item);
      } catch {
        const waiter = this.writes.get(item[0]);
        this.writes.delete(item[0]);
        waiter?.reject(
          new SqlweirError(
            "invalid input: a parameter cannot be sent to the worker; use number, bigint, string, boolean, null or Uint8Array",
            "InvalidInput",
          ),
        );
      }
    }
    if (good.length) this.worker.postMessage({ op: "write", db, items: good });
  }
}

let shared = null;

/**
 * A database open in the page's sqlweir worker.
 */
class Database {
  #conn;
  #db;
  #name;
  #pending = [];
  #scheduled = false;
  #closed = false;

  constructor(conn, db, name) {
    this.#conn = conn;
    this.#db = db;
    this.#name = name;
  }

  /** The name the database was opened with. */
  get name() {
    return this.#name;
  }

  write(sql, params = []) {
    return this.#enqueue(sql, params, false);
  }

  writeMany(sql, rows) {
    return this.#enqueue(sql, rows, true);
  }

  #enqueue(sql, params, many) {
    if (this.#closed) return Promise.reject(closedError());
    const conn = this.#conn;
    if (conn.broken) return Promise.reject(conn.broken);
    const id = conn.nextId++;
    const promise = new Promise((resolve, reject) => conn.writes.set(id, { resolve, reject }));
    this.#pending.push([id, sql, params, many]);
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

function closedError() {
  return new SqlweirError("store is closed: open it again to write", "Closed");
}

/**
 * Opens (creating if needed) the database `name` in OPFS, runs `options.migrations`, and
 * resolves with a handle once writes can be accepted.
 */
export async function open(name, options = {}) {
  if (typeof name !== "string" || name === "") {
    throw new SqlweirError("invalid input: the database name must be a non-empty string", "InvalidInput");
  }
  if (!shared) shared = new Connection();
  const conn = shared;
  const db = await conn.call("open", { name, options });
  return new Database(conn, db, name);
}
