// sqlweir: the main-thread client. It starts one dedicated module worker per page, which hosts
// SQLite (compiled to WebAssembly) on the Origin Private File System, and talks to it by
// messages. Writes issued in one tick travel in one message; the worker answers once per
// committed batch. See README.md.
//
// This file is the package's entry for the default build (SQLite without FTS5 and R*Tree; full.js
// is sqlweir/full): it chooses that build's worker and wasm and re-exports the public API. The
// modules, each of which imports only modules listed above it:
//   errors.js     SqlweirError, the client's own errors, errors to and from message objects
//   pack.js       one tick's writes packed into one message
//   transport.js  the page's one worker: calls and writes by message id
//   hub.js        several tabs: the Web Lock leader of a pool directory, forwarding, failover
//   options.js    open's options, checked before anything starts
//   database.js   open, importFile and the Database handle

import { useBuild } from "./transport.js";

// Written inline on purpose: bundlers (webpack 5, Vite, Parcel) recognise exactly
// `new Worker(new URL("...", import.meta.url), { type: "module" })` and bundle the worker, and
// `new URL("...", import.meta.url)` for the wasm; without a bundler both resolve next to this
// file. README.md, "Bundlers".
useBuild({
  worker: () => new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "sqlweir" }),
  wasm: () => new URL("./pkg/sqlweir_wasm_bg.wasm", import.meta.url),
  files: "worker.js and pkg/",
});

export { SqlweirError } from "./errors.js";
export { importFile, open } from "./database.js";
