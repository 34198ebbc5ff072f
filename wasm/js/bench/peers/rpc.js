// The message protocol of the peers whose library runs in a worker the app writes itself (the
// official SQLite build and wa-sqlite): what an app does to keep its page responsive. Each call
// is one message to the worker and one answer; the worker handles the messages one at a time in
// arrival order, so an awaiting handler (wa-sqlite's API is asynchronous) cannot interleave with
// another call's statements inside a transaction.

/** Page side: `call(op, args)` resolves with the handler's value or rejects with its error. */
export function connect(worker) {
  const waiting = new Map();
  let nextId = 1;
  let broken = null;
  worker.onmessage = ({ data: { id, ok, value, error } }) => {
    const w = waiting.get(id);
    waiting.delete(id);
    if (ok) w.resolve(value);
    else w.reject(new Error(error));
  };
  worker.onerror = (event) => {
    broken = new Error(`the worker failed: ${event.message || "it could not be loaded"}`);
    for (const w of waiting.values()) w.reject(broken);
    waiting.clear();
  };
  return (op, args) => {
    if (broken) return Promise.reject(broken);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ id, op, args });
    });
  };
}

/** Worker side: answers each message with `handlers[op](args)`, one message after another. */
export function serve(handlers) {
  let previous = Promise.resolve();
  self.onmessage = ({ data: { id, op, args } }) => {
    previous = previous.then(async () => {
      try {
        self.postMessage({ id, ok: true, value: await handlers[op](args) });
      } catch (e) {
        self.postMessage({ id, ok: false, error: String(e?.message ?? e) });
      }
    });
  };
}
