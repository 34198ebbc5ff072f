// sqlweir: the main-thread client. It starts one dedicated module worker per page, which hosts
// SQLite (compiled to WebAssembly) on the Origin Private File System, and talks to it by
// messages. Writes issued in one tick travel in one message; the worker answers once per
// committed batch. See README.md.
//
// This file is the package's one entry: it re-exports the public API. The modules, each of which
// imports only modules listed above it:
//   errors.js     SqlweirError, the client's own errors, errors to and from message objects
//   pack.js       one tick's writes packed into one message
//   transport.js  the page's one worker: calls and writes by message id
//   hub.js        several tabs: the Web Lock leader of a pool directory, forwarding, failover
//   options.js    open's options, checked before anything starts
//   database.js   open, importFile and the Database handle

export { SqlweirError } from "./errors.js";
export { importFile, open } from "./database.js";
