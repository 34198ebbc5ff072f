// Several tabs (docs/multitab.md). The OPFS pool admits one worker at a time, so one tab per pool
// directory leads: it holds the Web Lock `sqlweir:<directory>` for its whole life and runs the
// worker; the other tabs are followers and forward every call and write to it over the
// BroadcastChannel of the same name. When the leader's tab goes away the browser releases the
// lock, the next waiting tab takes it and leads, and calls in flight are resent (if they change
// nothing) or rejected with `LeaderChanged` (if they might have been applied).
//
// The page's hubs (one per directory) are also where the library's log lines find the
// `logger`s of the page's databases.

import { closedError, inUse, leaderChanged, plainError, plainValue, settledValue, toError } from "./errors.js";
import { cloneable } from "./pack.js";
import { pageConnection } from "./transport.js";

const DEFAULT_DIRECTORY = ".sqlweir";
/** Calls a new leader may run again without harm: they change nothing. */
const RESENDABLE = new Set(["open", "query", "tablesRead", "page", "flush", "metrics", "health", "jobStatus", "exportFile"]);

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
    this.conn = pageConnection(log);
    this.conn.onCommit = (id, batch, tables) => this.commitOf(id, batch, tables);
    this.post({ t: "leader", epoch: this.epoch });
    // This page's own databases open first, then what was waiting or in flight runs here.
    for (const [name, { options }] of this.dbs) {
      this.openEntry(name, options, this.id).catch((e) => log("error", `sqlweir: reopening ${name} failed`, e));
    }
    this.redirect(old);
    if (previous === "follower") this.announce();
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
    // Commits may have gone unannounced while the leader changed: live queries run again.
    if (old !== null) this.emit("resync", {});
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
