// The page's one worker: calls and writes go to it as messages numbered by id, and its answers
// (one per call, one per committed batch for the writes) settle them by that id.

import { SqlweirError, settledValue, toError } from "./errors.js";
import { cloneable, pack } from "./pack.js";

/** The page's one worker and its bookkeeping; started by the first `open`. */
class Connection {
  constructor(log) {
    this.log = log;
    this.nextId = 1;
    this.calls = new Map();
    this.writes = new Map();
    this.broken = null;
    // Told first when the worker fails (the hub hands leadership over), before any waiter.
    this.onFail = new Set();
    if (!build) throw new Error("sqlweir: no build chosen: open must come from the package's entry, sqlweir or sqlweir/full");
    this.worker = build.worker();
    this.worker.onmessage = (event) => this.receive(event.data);
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      this.fail(`the sqlweir worker failed: ${event.message || "it could not be loaded"}; check that ${build.files} are served next to the package's modules`);
    };
    this.worker.onmessageerror = () => this.fail("a message from the sqlweir worker could not be read");
    // Startup (README.md, "Startup"): SQLite's wasm downloads and compiles here while the worker's
    // scripts load, and goes to the worker as a module (null if it could not: the worker then
    // fetches it); and the origin's OPFS, whose first use in a profile is slow, is set up
    // meanwhile. Both resolve relative to this file, as the worker does.
    const wasm = build.wasm();
    (WebAssembly.compileStreaming ? WebAssembly.compileStreaming(fetch(wasm)) : Promise.reject(new Error("no compileStreaming")))
      .then((module) => module, () => null)
      .then((module) => this.worker.postMessage({ op: "wasm", module }));
    globalThis.navigator?.storage?.getDirectory?.().catch(() => {});
  }

  fail(message) {
    this.broken = new SqlweirError(message, "Worker");
    if (shared === this) shared = null;
    for (const listener of this.onFail) listener(this);
    for (const waiter of [...this.calls.values(), ...this.writes.values()]) waiter.reject(this.broken);
    this.calls.clear();
    this.writes.clear();
    this.worker.terminate();
  }

  receive(message) {
    if (message.log) return this.log(message.log, message.message);
    // The commit feed: the worker's database `commit` committed batch `batch`, which changed `tables`.
    if (message.commit !== undefined) return this.onCommit?.(message.commit, message.batch, message.tables);
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

  /**
   * Sends one tick's writes. Values that cannot be cloned are refused alone with InvalidInput.
   * With `request` (`{ ids, origin, forget, resent }`), item `i` goes as worker write `ids[i]`;
   * with an `origin` it is recorded under the request id (`origin`, the item's own id), its
   * markers below `forget` are dropped, and `resent` writes are looked up first.
   */
  sendWrites(db, items, request = {}) {
    const { ids, origin, forget, resent } = request;
    try {
      const packed = pack(items, ids);
      const seqs = origin == null ? undefined : packed.seqs;
      this.worker.postMessage({ op: "write", db, packed, origin, seqs, forget, resent }, packed.transfer);
      packed.transfer = undefined;
      return;
    } catch {
      // One value could not be cloned (a function, a symbol...): find it, send the rest.
    }
    const renumbered = ids
      ? items.map((item, i) => {
          const copy = item.slice();
          copy[0] = ids[i];
          return copy;
        })
      : items;
    const seqOf = new Map(renumbered.map((copy, i) => [copy[0], items[i][0]]));
    const good = cloneable(renumbered, this.writes);
    const seqs = origin == null ? undefined : Float64Array.from(good, (copy) => seqOf.get(copy[0]));
    if (good.length) this.worker.postMessage({ op: "write", db, items: good, origin, seqs, forget, resent });
  }
}

let shared = null;
let build = null;

/**
 * Chooses the build the page's worker runs, before the first `open`: `worker()` starts its
 * worker, `wasm()` is its wasm's URL, `files` names them for error messages. Called by the
 * package's entries, index.js (the default build) and full.js (sqlweir/full), which hold the
 * `new Worker(new URL(...))` and `new URL(...)` lines bundlers look for, so that an app bundles
 * only the build it imports.
 */
export function useBuild(chosen) {
  build = chosen;
}

/**
 * The page's one worker connection, started on first use and again after one failed. `log`
 * takes the worker's log lines (`log(level, message)`).
 */
export function pageConnection(log) {
  if (!shared) shared = new Connection(log);
  return shared;
}
