// Serves the demo page: www/ at "/", the npm package (wasm/js) at "/sqlweir/", and the demo's
// build of the package's wasm (with the fault-injection hook) at "/sqlweir/pkg/". Used by
// scripts/serve and by the tests. Run directly: `node www/server.js [port]`.

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "../wasm/js/test/server.js";

const WWW = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(WWW);

/** The demo's wasm and glue, built by scripts/build-demo (`scripts/build-wasm --features fault-injection --out-dir ...`). */
export const DEMO_PKG = process.env.SQLWEIR_DEMO_PKG ?? join(REPO, "target", "www", "pkg");

/** Serves the demo on 127.0.0.1:`port`; resolves with the server once it listens. */
export function serveDemo(port) {
  return serve({ "/": WWW, "/sqlweir/": join(REPO, "wasm", "js"), "/sqlweir/pkg/": DEMO_PKG }, port);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] ?? process.env.PORT ?? 8_347);
  serveDemo(port).then(
    () => console.log(`sqlweir demo: http://127.0.0.1:${port}/  (Ctrl-C to stop)`),
    (e) => {
      console.error(`cannot serve on 127.0.0.1:${port}: ${e.message}; pass another port: scripts/serve --port N`);
      process.exit(1);
    },
  );
}
