// sqlweir/full: the same API as the default entry (index.js), on a build of SQLite with FTS5 (full-
// text search) and R*Tree (range queries over boxes) compiled in: pkg-full/, with its own worker
// (pkg-full/worker.js), from `scripts/build-wasm --full`. Import one of the two entries in an app:
// the page's one worker runs the build of the entry evaluated last before the first `open`.

import { useBuild } from "./transport.js";

// Inline for bundlers, as in index.js.
useBuild({
  worker: () => new Worker(new URL("./pkg-full/worker.js", import.meta.url), { type: "module", name: "sqlweir" }),
  wasm: () => new URL("./pkg-full/sqlweir_wasm_bg.wasm", import.meta.url),
  files: "pkg-full/",
});

export { SqlweirError } from "./errors.js";
export { importFile, open } from "./database.js";
