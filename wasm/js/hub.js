// Several tabs (docs/multitab.md). The OPFS pool admits one worker at a time, so one tab per pool
// directory leads: it holds the Web Lock `sqlweir:<directory>` and runs the worker; the other tabs
// are followers and forward every call and write to it over the BroadcastChannel of the same name.
// When the leader's tab goes away (or its worker fails) the lock is released, the next waiting tab
// takes it and leads. Every write carries a request id (its tab's id and its number there) that the
// leader's worker records in the same transaction as the write, so writes in flight are sent again
// to the new leader, which answers those already committed from their markers: each applies once.
// Calls in flight are resent (if they change nothing) or rejected with `LeaderChanged`.
//
// The page's hubs (one per directory) are also where the library's log lines find the
// `logger`s of the page's databases.

import { closedError, inUse, leaderChanged, plainError, plainValue, settledValue, toError } from "./errors.js";
import { cloneable } from "./pack.js";
import { pageConnection } from "./transport.js";

const DEFAULT_DIRECTORY = ".sqlweir";
/** Calls a new leader may run again without harm: they change nothing. */
const RESENDABLE = new Set(["open", "query", "tablesRead", "page", "flush", "metrics", "health", "jobStatus", "exportFile"]);
/** Each tab holds `sqlweir-tab:<directory>:<id>` for its life: the leader drops the markers of tabs gone. */
const TAB_LOCK = "sqlweir-tab:";
/** Worker failures a tab hands the lead over for; after that its calls and writes fail with `Worker`. */
const MAX_HANDOVERS = 3;

/** This page's end of one pool directory: leader (runs the worker) or follower (forwards). */
class Hub {
  constructor(directory) {
    this.id = globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random()}`;
    this.directory = directory;
    this.role = null;
    this.leader = null;
    this.epoch = 0;
    // One more at every change of who leads, or of the leader's worker: what was sent in an
    // earlier term and is not settled goes again in the new one.
    this.term = 0;
    this.conn = null;
    this.nextId = 1;
    this.writes = new Map(); // this page's writes: id -> PageWrite
    this.calls = new Map(); // this page's calls: id -> { resolve, reject, op, fields, sentTo, term }
    this.dbs = new Map(); // this page's open databases: name -> { options, logger, requestIds, database }
    this.entries = new Map(); // leader: databases open in the worker: name -> { id, ready, users }
    this.waiting = []; // follower: what waits for a leader to be known
    this.outbox = new Map(); // leader: follower id -> settled writes, flat [id, ok, value, ...]
    this.releaseLock = null; // leader: gives the Web Lock back
    this.handovers = 0;
    this.failures = new WeakSet(); // the `Worker` errors of workers this tab handed the lead over for
    this.onWorkerFail = (conn) => this.handOver(conn);
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
    // This tab's own lock first, so that a leader never takes it for gone while it writes.
    await new Promise((resolve) => {
      locks
        .request(`${TAB_LOCK}${this.directory}:${this.id}`, () => {
          resolve();
          return new Promise(() => {}); // held for the page's life
        })
        .catch(resolve);
    });
    const first = await new Promise((resolve, reject) => {
      locks
        .request(`sqlweir:${this.directory}`, { ifAvailable: true }, (lock) => {
          resolve(lock !== null);
          return lock ? this.hold() : undefined;
        })
        .catch(reject);
    });
    if (first) {
      this.becomeLeader();
      return;
    }
    this.role = "follower";
    this.post({ t: "hello" });
    this.queueForLock();
  }

  /** What a granted lock's callback returns: settles when this tab gives the lead up. */
  hold() {
    return new Promise((resolve) => (this.releaseLock = resolve));
  }

  /** Waits in line for the leader lock; leads when granted (the leader before went away). */
  queueForLock() {
    globalThis.navigator.locks
      .request(`sqlweir:${this.directory}`, () => {
        this.becomeLeader();
        return this.hold();
      })
      .catch((e) => log("error", "sqlweir: waiting for the leader lock failed", e));
  }

  becomeLeader() {
    const previous = this.role;
    this.role = "leader";
    this.leader = this.id;
    this.epoch += 1;
    this.term += 1;
    this.conn = pageConnection(log);
    this.conn.onFail.add(this.onWorkerFail);
    this.conn.onCommit = (id, batch, tables) => this.commitOf(id, batch, tables);
    this.post({ t: "leader", epoch: this.epoch });
    // This page's own databases open first, then what was waiting or in flight runs here.
    for (const [name, { options }] of this.dbs) {
      this.openEntry(name, options, this.id).catch((e) => log("error", `sqlweir: reopening ${name} failed`, e));
    }
    this.redirect();
    if (previous === "follower") this.announce();
  }

  /**
   * The leader's worker failed: give the lead up (another tab, or this one with a new worker,
   * takes it), and let the writes that were in the worker go again to whoever leads next.
   */
  handOver(conn) {
    if (this.role !== "leader" || this.conn !== conn || this.releaseLock === null) return;
    if (this.handovers >= MAX_HANDOVERS) return;
    this.handovers += 1;
    this.failures.add(conn.broken);
    log("warn", `sqlweir: ${conn.broken.message}; handing the lead over to another tab or a new worker`);
    this.role = "follower";
    this.leader = null;
    this.term += 1;
    this.conn = null;
    this.entries = new Map();
    const release = this.releaseLock;
    this.releaseLock = null;
    this.announce();
    release();
    this.queueForLock();
  }

  announce() {
    this.emit("rolechange", { role: this.role });
  }

  /** Dispatches `type` on every database of this page, or on the one named `name`. */
  emit(type, detail, name = null) {
    for (const [n, { database }] of this.dbs) {
      if (name === null || n === name) database?.dispatchEvent(new CustomEvent(type, { detail }));
    }
  }

  /** Leader: the worker's database `id` committed `batch`, changing `tables`: tell every tab. */
  commitOf(id, batch, tables) {
    for (const [name, entry] of this.entries) {
      if (entry.id !== id) continue;
      this.post({ t: "commit", db: name, batch, tables });
      this.emit("commit", { batch, tables }, name);
    }
  }

  /**
   * After a leader change: sends again (same request ids) the writes that were in flight to an
   * earlier leader, settles or resends its calls, then runs what waited.
   */
  redirect() {
    const now = this.term;
    const resend = new Map(); // database name -> items, in the order first sent
    for (const [id, w] of this.writes) {
      if (w.term === null || w.term === now) continue;
      if (!w.ids) {
        w.reject(leaderChanged("write")); // opened with requestIds: false
        continue;
      }
      w.term = null;
      let items = resend.get(w.db);
      if (!items) resend.set(w.db, (items = []));
      items.push(w.item);
    }
    for (const [id, c] of this.calls) {
      if (c.term === null || c.term === now) continue;
      if (c.op === "close") {
        this.calls.delete(id);
        c.resolve(undefined); // the tab that had it open is gone: nothing is left to close
      } else if (RESENDABLE.has(c.op)) {
        c.term = null;
        this.waiting.push({ call: id });
      } else {
        this.calls.delete(id);
        c.reject(leaderChanged(`${c.op} call`));
      }
    }
    const waiting = this.waiting;
    this.waiting = [];
    if (this.role === "follower") {
      for (const [name, { options }] of this.dbs) {
        this.call("open", { db: name, name, options }).catch((e) => log("error", `sqlweir: reopening ${name} failed`, e));
      }
    }
    for (const [name, items] of resend) this.dispatch({ writes: name, items, resent: true });
    for (const action of waiting) this.dispatch(action);
    // Commits may have gone unannounced while the leader changed: live queries run again (not at
    // the first leader this tab knows, term 1: nothing was missed then).
    if (this.term > 1) this.emit("resync", {});
  }

  // The interface `Database` uses: nextId, broken, expect, call, sendWrites.

  /** The promise of this page's write `id`, settled by its receipt or its error. */
  expect(id) {
    return new Promise((resolve, reject) => this.writes.set(id, new PageWrite(this, id, resolve, reject)));
  }

  call(op, fields = {}) {
    const id = this.nextId++;
    if (op === "close") this.dbs.delete(fields.db);
    // Job-lock tokens are numbered per worker: one from an earlier leader must not release
    // whatever lock the new leader gave the same number.
    if (op === "unlock" && fields.token?.leader !== undefined) {
      if (fields.token.leader !== this.leader) return Promise.resolve(false);
      fields = { ...fields, token: fields.token.token };
    }
    const c = { op, fields, sentTo: null, term: null };
    const done = new Promise((resolve, reject) => {
      Object.assign(c, { resolve, reject });
      this.calls.set(id, c);
      this.dispatch({ call: id });
    });
    return op === "lock" ? done.then((token) => ({ leader: c.sentTo, token })) : done;
  }

  /** One tick's writes of database `name`, `[id, target, payload, kind, extra]` each. */
  sendWrites(name, items) {
    const ids = this.dbs.get(name)?.requestIds !== false;
    for (const item of items) {
      const w = this.writes.get(item[0]);
      if (!w) continue;
      w.db = name;
      w.item = item;
      w.ids = ids;
      w.term = null;
    }
    this.dispatch({ writes: name, items });
  }

  /** The lowest number of this tab's writes not yet settled: none below it will be sent again. */
  low() {
    for (const id of this.writes.keys()) return id; // a Map keeps insertion order: ids ascend
    return this.nextId;
  }

  dispatch(action) {
    if (this.role === "leader") {
      if (action.call === undefined) {
        for (const item of action.items) {
          const w = this.writes.get(item[0]);
          if (w) w.term = this.term;
        }
        const origin = this.dbs.get(action.writes)?.requestIds === false ? null : this.id;
        this.submit(action.writes, action.items, origin, this.low(), action.resent === true, (id) => this.writes.get(id));
        return;
      }
      const c = this.calls.get(action.call);
      if (!c) return;
      this.calls.delete(action.call);
      c.sentTo = this.id;
      c.term = this.term;
      this.run(c.op, c.fields, this.id).then(c.resolve, c.reject);
    } else if (this.leader === null) {
      this.waiting.push(action);
    } else if (action.call !== undefined) {
      const c = this.calls.get(action.call);
      if (!c) return;
      c.sentTo = this.leader;
      c.term = this.term;
      this.post({ t: "req", to: this.leader, rid: action.call, op: c.op, fields: c.fields });
    } else {
      for (const item of action.items) {
        const w = this.writes.get(item[0]);
        if (w) w.term = this.term;
      }
      this.forwardWrites(action.writes, action.items, action.resent === true);
    }
  }

  /**
   * Follower: one tick's writes to the leader (or writes sent to an earlier one, `resent`, which
   * the leader looks up first); values that cannot be cloned are refused alone.
   */
  forwardWrites(name, items, resent) {
    const message = { t: "writes", to: this.leader, db: name, items, low: this.low() };
    if (resent) message.resent = true;
    if (this.dbs.get(name)?.requestIds === false) message.ids = false;
    try {
      this.post(message);
      return;
    } catch {
      // One value could not be cloned: find it, send the rest.
    }
    const good = cloneable(items, this.writes);
    if (good.length) this.post({ ...message, items: good });
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
      const conn = this.conn;
      entry.ready = conn.call("open", { name, options, log: wantsLog() }).then(
        (id) => {
          entry.id = id;
          this.sweep(conn, id);
          return id;
        },
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

  /**
   * Drops the request markers of tabs that are gone (their tab lock is free): nobody is left to
   * send their writes again. Run when a database opens in this leader.
   */
  async sweep(conn, db) {
    const locks = globalThis.navigator?.locks;
    if (!locks) return;
    try {
      const prefix = `${TAB_LOCK}${this.directory}:`;
      const { held = [] } = await locks.query();
      const alive = new Set(held.map((l) => l.name).filter((n) => n?.startsWith(prefix)).map((n) => n.slice(prefix.length)));
      const origins = await conn.call("query", { db, sql: "SELECT DISTINCT origin FROM _sqlweir_requests", params: [] }).catch(() => []);
      for (const { origin } of origins) {
        if (!alive.has(origin)) await conn.call("forget", { db, origin, below: Number.MAX_SAFE_INTEGER });
      }
    } catch (e) {
      log("debug", "sqlweir: dropping the request markers of closed tabs failed", e);
    }
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

  /**
   * Sends writes `[id, ...]` to the worker, recorded under the request ids (`origin`, id) unless
   * `origin` is null, dropping the markers of `origin` below `low`; `resent` ones (sent to an
   * earlier leader) are looked up first. `waiterFor(id)` settles each (none if it settled
   * already). Keeps their order; the items are not changed (this tab's own are kept for a resend).
   */
  submit(name, items, origin, low, resent, waiterFor) {
    const entry = this.entries.get(name);
    const refuse = (e) => {
      for (const [id] of items) waiterFor(id)?.reject(toError(e));
    };
    if (!entry) return refuse(closedError());
    const go = (db) => {
      const conn = this.conn;
      // The worker failed and the lead went to another tab meanwhile: their tabs send them there.
      if (conn === null || this.failures.has(conn.broken)) return;
      if (conn.broken) return refuse(conn.broken);
      const ids = new Float64Array(items.length);
      for (let i = 0; i < items.length; i++) {
        const workerId = conn.nextId++;
        conn.writes.set(workerId, waiterFor(items[i][0]));
        ids[i] = workerId;
      }
      conn.sendWrites(db, items, { ids, origin, forget: origin === null ? undefined : low, resent });
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
        // The same leader again with a newer epoch led, stopped (its worker failed) and leads again.
        if (m.from === this.leader && m.epoch === this.epoch) return;
        this.epoch = m.epoch;
        this.leader = m.from;
        this.term += 1;
        this.redirect();
        return;
      }
      case "commit":
        if (m.from === this.leader) this.emit("commit", { batch: m.batch, tables: m.tables }, m.db);
        return;
      case "req":
        if (m.to !== this.id || this.role !== "leader") return;
        this.run(m.op, m.fields, m.from).then(
          (value) => this.post({ t: "res", to: m.from, rid: m.rid, ok: true, value: plainValue(value) }),
          (e) => this.post({ t: "res", to: m.from, rid: m.rid, ok: false, error: plainError(e) }),
        );
        return;
      case "writes":
        if (m.to !== this.id || this.role !== "leader") return;
        this.submit(m.db, m.items, m.ids === false ? null : m.from, m.low, m.resent === true, (id) => ({
          resolve: (value) => this.reply(m.from, id, true, plainValue(value)),
          // A failed worker's writes are not answered: their tab sends them to the next leader.
          reject: (e) => this.failures.has(e) || this.reply(m.from, id, false, plainError(e)),
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
          if (r[i + 1]) w.resolve(settledValue(r[i + 2]));
          else w.reject(toError(r[i + 2]));
        }
        return;
      }
      default:
    }
  }
}

/**
 * One of this page's writes until it settles: its promise's functions, and where it was sent
 * (kept for a resend to the next leader). When this tab leads it is also the worker's waiter of
 * the write. Every field is set here, so that each write's object has one shape from the start.
 */
class PageWrite {
  constructor(hub, id, resolved, rejected) {
    this.hub = hub;
    this.id = id;
    this.resolved = resolved;
    this.rejected = rejected;
    this.db = null; // the database's name, once sent
    this.item = null; // `[id, target, payload, kind, extra]`, once sent
    this.ids = true; // recorded under its request id (the database was not opened with requestIds: false)
    this.term = null; // the term it was last sent in; null while it waits to be sent
  }

  /** Settles the write with its receipt, unless it settled already. */
  resolve(value) {
    if (this.hub.writes.delete(this.id)) this.resolved(value);
  }

  /** Settles the write with `error`, unless it settled already or its worker failed (it goes to the next leader). */
  reject(error) {
    if (this.hub.failures.has(error)) return;
    if (this.hub.writes.delete(this.id)) this.rejected(error);
  }
}

/** This page's hubs, by pool directory. */
const hubs = new Map();

/** This page's hub for the pool `directory`, created by the first call. */
export function hubFor(directory = DEFAULT_DIRECTORY) {
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
