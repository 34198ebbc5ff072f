// sqlweir: the main-thread client. It starts one dedicated module worker per page, which hosts
// SQLite (compiled to WebAssembly) on the Origin Private File System, and talks to it by
// messages. Writes issued in one tick travel in one message; the worker answers once per
// committed batch. See README.md.

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
    // Written inline on purpose: bundlers (webpack 5, Vite, Parcel) recognise exactly
    // `new Worker(new URL("...", import.meta.url), { type: "module" })` and bundle the worker;
    // without a bundler it resolves next to this file. README.md, "Bundlers".
    this.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "sqlweir" });
    this.worker.onmessage = (event) => this.receive(event.data);
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      this.fail(`the sqlweir worker failed: ${event.message || "it could not be loaded"}; check that worker.js and pkg/ are served next to index.js`);
    };
    this.worker.onmessageerror = () => this.fail("a message from the sqlweir worker could not be read");
    // Startup (README.md, "Startup"): SQLite's wasm downloads and compiles here while the worker's
    // scripts load, and goes to the worker as a module (null if it could not: the worker then
    // fetches it); and the origin's OPFS, whose first use in a profile is slow, is set up
    // meanwhile. Both resolve relative to this file, as the worker does.
    const wasm = new URL("./pkg/sqlweir_wasm_bg.wasm", import.meta.url);
    (WebAssembly.compileStreaming ? WebAssembly.compileStreaming(fetch(wasm)) : Promise.reject(new Error("no compileStreaming")))
      .then((module) => module, () => null)
      .then((module) => this.worker.postMessage({ op: "wasm", module }));
    globalThis.navigator?.storage?.getDirectory?.().catch(() => {});
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
    if (message.log) return log(message.log, message.message);
    if (message.settled) {
      const receipts = message.receipts;
      if (receipts) {
        for (let i = 0; i < receipts.length; i += 4) {
          const waiter = this.writes.get(receipts[i]);
          if (!waiter) continue;
          this.writes.delete(receipts[i]);
          waiter.resolve({ changes: receipts[i + 1], lastRowid: receipts[i + 2], batch: receipts[i + 3] });
        }
      }
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
      const packed = pack(items);
      this.worker.postMessage({ op: "write", db, packed }, packed.transfer);
      packed.transfer = undefined;
      return;
    } catch {
      // One value could not be cloned (a function, a symbol...): find it, send the rest.
    }
    const good = cloneable(items, this.writes);
    if (good.length) this.worker.postMessage({ op: "write", db, items: good });
  }
}

let shared = null;

/**
 * The items of a message that could not be posted whole which can be cloned; each item that
 * cannot (a function or a symbol among its values) is rejected alone with `InvalidInput`, and its
 * waiter removed from `waiters`.
 */
function cloneable(items, waiters) {
  const good = [];
  for (const item of items) {
    try {
      structuredClone(item);
      good.push(item);
    } catch {
      const waiter = waiters.get(item[0]);
      waiters.delete(item[0]);
      waiter?.reject(new SqlweirError(CANNOT_SEND, "InvalidInput"));
    }
  }
  return good;
}

/** `counts` entry of an item that travels as it is (not a plain `write`). */
const AS_IS = 0xffffffff;

/**
 * One tick's writes `[id, target, payload, kind, extra]` in columns for the worker's
 * `submitPacked`: plain `write`s (SQL string, array of parameters) as one table of distinct SQL,
 * parameter type tags, numbers in a Float64Array and strings joined in one string; every other
 * item (typed writes, writeMany, odd input the worker refuses) as it is, in `legacy`. Keeps the
 * order of the items.
 */
function pack(items) {
  const n = items.length;
  let values = 0;
  for (let i = 0; i < n; i++) {
    const item = items[i];
    if (item[3] === false && typeof item[1] === "string" && Array.isArray(item[2])) values += item[2].length;
  }
  const ids = new Float64Array(n);
  const counts = new Uint32Array(n);
  const sqlIndex = new Uint32Array(n);
  const tags = new Uint8Array(values);
  const nums = new Float64Array(values);
  const sqls = [];
  const sqlAt = new Map();
  const strings = [];
  const ends = [];
  const others = [];
  const legacy = [];
  let v = 0;
  let units = 0;
  for (let i = 0; i < n; i++) {
    const item = items[i];
    const params = item[2];
    ids[i] = item[0];
    if (item[3] !== false || typeof item[1] !== "string" || !(Array.isArray(params) || params == null)) {
      counts[i] = AS_IS;
      legacy.push(item);
      continue;
    }
    let at = sqlAt.get(item[1]);
    if (at === undefined) {
      at = sqls.length;
      sqls.push(item[1]);
      sqlAt.set(item[1], at);
    }
    sqlIndex[i] = at;
    if (params == null) continue;
    const count = params.length;
    counts[i] = count;
    for (let k = 0; k < count; k++, v++) {
      const value = params[k];
      switch (typeof value) {
        case "number":
          tags[v] = 1;
          nums[v] = value;
          break;
        case "string":
          tags[v] = 2;
          strings.push(value);
          units += value.length;
          ends.push(units);
          break;
        case "boolean":
          tags[v] = 3;
          nums[v] = value ? 1 : 0;
          break;
        default:
          if (value === null) break; // tag 0
          tags[v] = 4;
          others.push(value);
      }
    }
  }
  return {
    ids,
    counts,
    sqlIndex,
    sqls,
    tags,
    nums,
    text: strings.join(""),
    textEnds: Uint32Array.from(ends),
    others,
    legacy,
    transfer: [ids.buffer, counts.buffer, sqlIndex.buffer, tags.buffer, nums.buffer],
  };
}

// Several tabs (docs/multitab.md). The OPFS pool admits one worker at a time, so one tab per pool
// directory leads: it holds the Web Lock `sqlweir:<directory>` for its whole life and runs the
// worker; the other tabs are followers and forward every call and write to it over the
// BroadcastChannel of the same name. When the leader's tab goes away the browser releases the
// lock, the next waiting tab takes it and leads, and calls in flight are resent (if they change
// nothing) or rejected with `LeaderChanged` (if they might have been applied).

const DEFAULT_DIRECTORY = ".sqlweir";
/** Calls a new leader may run again without harm: they change nothing. */
const RESENDABLE = new Set(["open", "query", "page", "flush", "metrics", "health", "jobStatus", "exportFile"]);
const CANNOT_SEND =
  "invalid input: a parameter cannot be sent to the worker; use number, bigint, string, boolean, null or Uint8Array";

function leaderChanged(what) {
  return new SqlweirError(
    `leader changed: the tab running the database went away before answering, so this ${what} may or may not have been applied; retry it (make such writes idempotent)`,
    "LeaderChanged",
  );
}

/** An error as a plain object, for a channel (structured clone drops an Error's own fields). */
function plainError(e) {
  const err = toError(e);
  const out = { name: err.name, message: err.message, code: err.code, sqliteCode: err.sqliteCode ?? null };
  for (const [key, value] of Object.entries(err)) if (!(key in out)) out[key] = value;
  return out;
}

function plainValue(value) {
  if (value && Array.isArray(value.rejected)) {
    return { ...value, rejected: value.rejected.map(({ index, error }) => ({ index, error: plainError(error) })) };
  }
  return value;
}

/** This page's end of one pool directory: leader (runs the worker) or follower (forwards). */
class Hub {
  constructor(directory) {
    this.id = globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random()}`;
    this.directory = directory;
    this.role = null;
    this.leader = null;
    this.epoch = 0;
    this.conn = null;
    this.nextId = 1;
    this.writes = new Map(); // this page's writes: id -> { resolve, reject, sentTo }
    this.calls = new Map(); // this page's calls: id -> { resolve, reject, op, fields, sentTo }
    this.dbs = new Map(); // this page's open databases: name -> { options, database }
    this.entries = new Map(); // leader: databases open in the worker: name -> { id, ready, users }
    this.waiting = []; // follower: what waits for a leader to be known
    this.outbox = new Map(); // leader: follower id -> settled writes, flat [id, ok, value, ...]
    this.channel = new BroadcastChannel(`sqlweir:${directory}`);
    this.channel.onmessage = (event) => this.receive(event.data);
    this.ready = this.elect();
  }

  get broken() {
    return this.role === "leader" ? (this.conn?.broken ?? null) : null;
  }

  async elect() {
    const locks = globalThis.navigator?.locks;
    if (!locks) {
      this.becomeLeader(); // no Web Locks: one tab at a time, as without multi-tab support
      return;
    }
    const name = `sqlweir:${this.directory}`;
    const first = await new Promise((resolve, reject) => {
      locks
        .request(name, { ifAvailable: true }, (lock) => {
          resolve(lock !== null);
          return lock ? new Promise(() => {}) : undefined; // held for the page's life
        })
        .catch(reject);
    });
    if (first) {
      this.becomeLeader();
      return;
    }
    this.role = "follower";
    this.post({ t: "hello" });
    locks
      .request(name, () => {
        this.becomeLeader();
        return new Promise(() => {});
      })
      .catch((e) => log("error", "sqlweir: waiting for the leader lock failed", e));
  }

  becomeLeader() {
    const previous = this.role;
    const old = this.leader;
    this.role = "leader";
    this.leader = this.id;
    this.epoch += 1;
    if (!shared) shared = new Connection();
    this.conn = shared;
    this.post({ t: "leader", epoch: this.epoch });
    // This page's own databases open first, then what was waiting or in flight runs here.
    for (const [name, { options }] of this.dbs) {
      this.openEntry(name, options, this.id).catch((e) => log("error", `sqlweir: reopening ${name} failed`, e));
    }
    this.redirect(old);
    if (previous === "follower") this.announce();
  }

  announce() {
    for (const { database } of this.dbs.values()) {
      database?.dispatchEvent(new CustomEvent("rolechange", { detail: { role: this.role } }));
    }
  }

  /** After a leader change: settles or resends what was in flight to `old`, then runs what waited. */
  redirect(old) {
    if (old !== null) {
      for (const [id, w] of this.writes) {
        if (w.sentTo !== old) continue;
        this.writes.delete(id);
        w.reject(leaderChanged("write"));
      }
      for (const [id, c] of this.calls) {
        if (c.sentTo !== old) continue;
        if (c.op === "close") {
          this.calls.delete(id);
          c.resolve(undefined); // the tab that had it open is gone: nothing is left to close
        } else if (RESENDABLE.has(c.op)) {
          c.sentTo = null;
          this.waiting.push({ call: id });
        } else {
          this.calls.delete(id);
          c.reject(leaderChanged(`${c.op} call`));
        }
      }
    }
    const waiting = this.waiting;
    this.waiting = [];
    if (this.role === "follower") {
      for (const [name, { options }] of this.dbs) {
        this.call("open", { db: name, name, options }).catch((e) => log("error", `sqlweir: reopening ${name} failed`, e));
      }
    }
    for (const action of waiting) this.dispatch(action);
  }

  // The interface `Database` uses: nextId, writes, broken, call, sendWrites.

  call(op, fields = {}) {
    const id = this.nextId++;
    if (op === "close") this.dbs.delete(fields.db);
    // Job-lock tokens are numbered per worker: one from an earlier leader must not release
    // whatever lock the new leader gave the same number.
    if (op === "unlock" && fields.token?.leader !== undefined) {
      if (fields.token.leader !== this.leader) return Promise.resolve(false);
      fields = { ...fields, token: fields.token.token };
    }
    const c = { op, fields, sentTo: null };
    const done = new Promise((resolve, reject) => {
      Object.assign(c, { resolve, reject });
      this.calls.set(id, c);
      this.dispatch({ call: id });
    });
    return op === "lock" ? done.then((token) => ({ leader: c.sentTo, token })) : done;
  }

  sendWrites(name, items) {
    this.dispatch({ writes: name, items });
  }

  dispatch(action) {
    if (this.role === "leader") {
      if (action.call === undefined) {
        this.submit(action.writes, action.items, (id) => this.ownWrite(id));
        return;
      }
      const c = this.calls.get(action.call);
      if (!c) return;
      this.calls.delete(action.call);
      c.sentTo = this.id;
      this.run(c.op, c.fields, this.id).then(c.resolve, c.reject);
    } else if (this.leader === null) {
      this.waiting.push(action);
    } else if (action.call !== undefined) {
      const c = this.calls.get(action.call);
      if (!c) return;
      c.sentTo = this.leader;
      this.post({ t: "req", to: this.leader, rid: action.call, op: c.op, fields: c.fields });
    } else {
      for (const [id] of action.items) {
        const w = this.writes.get(id);
        if (w) w.sentTo = this.leader;
      }
      this.forwardWrites(action.writes, action.items);
    }
  }

  /** Follower: one tick's writes to the leader; values that cannot be cloned are refused alone. */
  forwardWrites(name, items) {
    try {
      this.post({ t: "writes", to: this.leader, db: name, items });
      return;
    } catch {
      // One value could not be cloned: find it, send the rest.
    }
    const good = cloneable(items, this.writes);
    if (good.length) this.post({ t: "writes", to: this.leader, db: name, items: good });
  }

  /** The waiter of this page's write `id`, moved to the worker's bookkeeping as it is sent. */
  ownWrite(id) {
    const w = this.writes.get(id);
    if (w) {
      this.writes.delete(id);
      return w;
    }
    const settle = (ok) => (value) => {
      const w = this.writes.get(id);
      if (!w) return;
      this.writes.delete(id);
      if (ok) w.resolve(value);
      else w.reject(value);
    };
    return { resolve: settle(true), reject: settle(false) };
  }

  // Leader: the databases open in the worker, shared by every tab that opened them.

  /** Runs a call of `user` (a tab id) on the worker. */
  run(op, fields, user) {
    const { db: name, ...rest } = fields;
    if (op === "open") return this.openEntry(name, fields.options, user).then(() => name);
    if (op === "importFile") {
      if (this.entries.has(name)) return Promise.reject(inUse(name));
      return this.conn.call(op, { ...rest, directory: this.directory });
    }
    if (op === "close") return this.closeEntry(name, user);
    const entry = this.entries.get(name);
    if (!entry) return Promise.reject(closedError());
    const go = (id) => this.conn.call(op, { ...rest, db: id });
    return entry.id !== null ? go(entry.id) : entry.ready.then(go);
  }

  openEntry(name, options, user) {
    let entry = this.entries.get(name);
    if (!entry) {
      entry = { id: null, users: new Set() };
      entry.ready = this.conn.call("open", { name, options, log: wantsLog() }).then(
        (id) => (entry.id = id),
        (e) => {
          if (this.entries.get(name) === entry) this.entries.delete(name);
          throw e;
        },
      );
      this.entries.set(name, entry);
    }
    entry.users.add(user);
    return entry.ready;
  }

  closeEntry(name, user) {
    const entry = this.entries.get(name);
    if (!entry) return Promise.resolve();
    entry.users.delete(user);
    // Another tab still uses it: let this tab's writes settle, keep it open.
    if (entry.users.size > 0) return entry.ready.then((id) => this.conn.call("flush", { db: id }));
    this.entries.delete(name);
    return entry.ready.then(
      (id) => this.conn.call("close", { db: id }),
      () => undefined,
    );
  }

  /** Sends writes `[id, ...]` to the worker; `waiterFor(id)` settles each. Keeps their order. */
  submit(name, items, waiterFor) {
    const entry = this.entries.get(name);
    const refuse = (e) => {
      for (const [id] of items) waiterFor(id).reject(toError(e));
    };
    if (!entry) return refuse(closedError());
    const go = (db) => {
      const conn = this.conn;
      if (conn.broken) return refuse(conn.broken);
      // The items are this hub's own (a tick's queue, or a follower's message): renumbered in place.
      for (const item of items) {
        const workerId = conn.nextId++;
        conn.writes.set(workerId, waiterFor(item[0]));
        item[0] = workerId;
      }
      conn.sendWrites(db, items);
    };
    if (entry.id !== null) go(entry.id);
    else entry.ready.then(go, refuse);
  }

  reply(to, id, ok, value) {
    if (this.outbox.size === 0) queueMicrotask(() => this.flushOutbox());
    let out = this.outbox.get(to);
    if (!out) this.outbox.set(to, (out = []));
    out.push(id, ok, value);
  }

  flushOutbox() {
    for (const [to, r] of this.outbox) this.post({ t: "settled", to, r });
    this.outbox.clear();
  }

  post(message) {
    this.channel.postMessage({ ...message, from: this.id });
  }

  receive(m) {
    switch (m.t) {
      case "hello":
        if (this.role === "leader") this.post({ t: "leader", epoch: this.epoch });
        return;
      case "leader": {
        if (m.epoch < this.epoch || this.role === "leader") return;
        this.epoch = m.epoch;
        if (m.from === this.leader) return;
        const old = this.leader;
        this.leader = m.from;
        this.redirect(old);
        return;
      }
      case "req":
        if (m.to !== this.id || this.role !== "leader") return;
        this.run(m.op, m.fields, m.from).then(
          (value) => this.post({ t: "res", to: m.from, rid: m.rid, ok: true, value: plainValue(value) }),
          (e) => this.post({ t: "res", to: m.from, rid: m.rid, ok: false, error: plainError(e) }),
        );
        return;
      case "writes":
        if (m.to !== this.id || this.role !== "leader") return;
        this.submit(m.db, m.items, (id) => ({
          resolve: (value) => this.reply(m.from, id, true, plainValue(value)),
          reject: (e) => this.reply(m.from, id, false, plainError(e)),
        }));
        return;
      case "res": {
        if (m.to !== this.id) return;
        const c = this.calls.get(m.rid);
        if (!c) return;
        this.calls.delete(m.rid);
        if (m.ok) c.resolve(m.value);
        else c.reject(toError(m.error));
        return;
      }
      case "settled": {
        if (m.to !== this.id) return;
        const r = m.r;
        for (let i = 0; i < r.length; i += 3) {
          const w = this.writes.get(r[i]);
          if (!w) continue;
          this.writes.delete(r[i]);
          if (r[i + 1]) w.resolve(settledValue(r[i + 2]));
          else w.reject(toError(r[i + 2]));
        }
        return;
      }
      default:
    }
  }
}

const hubs = new Map();


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
    const promise = new Promise((resolve, reject) => conn.writes.set(id, { resolve, reject }));
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

function closedError() {
  return new SqlweirError("store is closed: open it again to write", "Closed");
}

/** `open`'s options (the worker checks their values; serde cannot see unknown keys of a JS object). */
const OPTIONS = [
  "migrations",
  "queueCapacity",
  "backpressure",
  "batchRows",
  "batchRowsCeiling",
  "lingerMs",
  "synchronous",
  "journal",
  "retry",
  "breakerThreshold",
  "breakerCooldownMs",
  "directory",
  "logger",
];
const RETRY_OPTIONS = ["baseMs", "capMs", "maxAttempts", "budgetMs"];

function invalid(message) {
  return new SqlweirError(`invalid input: ${message}`, "InvalidInput");
}

/** Edit distance of `a` and `b` (case ignored), for "did you mean". */
function distance(a, b) {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

/** The first key of `object` not in `known`, as an error that suggests the close one. */
function unknownKey(object, known, prefix) {
  const key = Object.keys(object).find((k) => !known.includes(k));
  if (key === undefined) return null;
  const close = known.find((k) => distance(key, k) <= Math.min(2, key.length >> 1)) ??
    known.find((k) => key.length > 3 && (k.startsWith(key) || key.startsWith(k)));
  const hint = close ? `did you mean '${prefix}${close}'?` : `the options are ${known.map((k) => prefix + k).join(", ")}`;
  return invalid(`unknown option '${prefix}${key}'; ${hint}`);
}

function checkOptions(options) {
  if (typeof options !== "object" || Array.isArray(options)) return invalid("the options of open must be an object");
  const { retry, logger } = options;
  if (retry != null && (typeof retry !== "object" || Array.isArray(retry))) return invalid("retry must be an object");
  if (logger != null && typeof logger !== "object") {
    return invalid("logger must be an object with debug, info, warn and error methods, such as console");
  }
  return unknownKey(options, OPTIONS, "") ?? (retry ? unknownKey(retry, RETRY_OPTIONS, "retry.") : null);
}

/** Rejects where sqlweir cannot run (Node, a browser without OPFS or outside a secure context). */
function checkPlatform() {
  if (typeof Worker === "function" && typeof globalThis.navigator?.storage?.getDirectory === "function") return null;
  return new SqlweirError(
    "unsupported: sqlweir needs a browser with OPFS and Web Workers; run it in a page served over https or from localhost, not in Node",
    "Unsupported",
  );
}

function inUse(name) {
  return new SqlweirError(`${name} is open; close it in every tab before importing over it`, "InUse");
}

function hubFor(directory = DEFAULT_DIRECTORY) {
  let hub = hubs.get(directory);
  if (!hub) hubs.set(directory, (hub = new Hub(directory)));
  return hub;
}

/** Whether a database of this page was given a `logger`: the worker then sends its log lines. */
function wantsLog() {
  for (const hub of hubs.values()) for (const slot of hub.dbs.values()) if (slot.logger) return true;
  return false;
}

/**
 * The library's own log lines: to every `logger` given to a database open in this page; without
 * one, errors only (failures no promise reports), to the console.
 */
function log(level, ...args) {
  const loggers = new Set();
  for (const hub of hubs.values()) for (const slot of hub.dbs.values()) if (slot.logger) loggers.add(slot.logger);
  if (loggers.size === 0 && level === "error") loggers.add(console);
  for (const logger of loggers) logger[level]?.(...args);
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
  const { logger, ...rest } = options;
  const hub = hubFor(typeof options.directory === "string" ? options.directory : undefined);
  await hub.ready;
  if (hub.dbs.has(name)) {
    throw new SqlweirError(`${name} is already open in this page; share the handle from the first open, or close it first`, "InUse");
  }
  const slot = { options: rest, logger, database: null };
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
