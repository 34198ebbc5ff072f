// A tiny static file server for the browser tests and the demo page, on 127.0.0.1 only. The
// port is fixed by the caller: OPFS storage belongs to an origin, and the origin includes the
// port, so a reload must come back to the same one.

import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve, sep } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".md": "text/markdown; charset=utf-8",
};

/** The file under the longest matching mount, or null when the path climbs out of it. */
function locate(mounts, path) {
  for (const [prefix, dir] of mounts) {
    if (!prefix.endsWith("/")) {
      // A mount of one file.
      if (path === prefix) return dir;
      continue;
    }
    if (path !== prefix.slice(0, -1) && !path.startsWith(prefix)) continue;
    const file = join(dir, path.slice(prefix.length - 1));
    return file.startsWith(dir + sep) || file === dir ? file : null;
  }
  return null;
}

/**
 * Serves `root` on 127.0.0.1:`port`; resolves with the server once it listens. `root` is a
 * directory, or mounts `{ "/": dir, "/sqlweir/": dir, ... }` (URL prefixes ending in "/"; the
 * longest match wins; a path not ending in "/" mounts one file). A directory's `index.html` answers for it. `headers` go on every answer
 * (the peers benchmark serves its cross-origin-isolated page with COOP/COEP this way).
 */
export function serve(root, port, { headers = {} } = {}) {
  const mounts = Object.entries(typeof root === "string" ? { "/": root } : root)
    .map(([prefix, dir]) => [prefix, resolve(dir)])
    .sort(([a], [b]) => b.length - a.length);
  const server = createServer(async (req, res) => {
    let file = locate(mounts, normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)));
    if (!file) {
      res.writeHead(403, headers).end();
      return;
    }
    try {
      if ((await stat(file)).isDirectory()) file = join(file, "index.html");
      const body = await readFile(file);
      res.writeHead(200, { ...headers, "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404, headers).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}
