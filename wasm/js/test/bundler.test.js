// The package as npm publishes it (wasm/js/dist, its JavaScript minified), under bundlers and
// without one: a tiny app that imports `sqlweir` by name from node_modules is bundled with
// esbuild (minified ESM; the package's worker.js and pkg/ copied next to the bundle, as the
// README's "Bundlers" section says) and with Vite (which bundles the worker and emits the wasm
// by itself), and the same app is served as written with the package beside it and an import
// map; each runs in real headless Chromium, nothing served from the package's own directory.
// Needs the package built (scripts/build-wasm writes pkg/ and dist/; scripts/test-browser runs
// it) and Debian's chromium.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { build as viteBuild } from "vite";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
// Fixed: the OPFS origin includes the port, and the reopen must come back to the same origin.
const PORT = Number(process.env.SQLWEIR_BUNDLER_TEST_PORT ?? 47_816);

// The app: what a web developer writes, with nothing sqlweir-specific about where files live.
const APP = (name) => `
import { open } from "sqlweir";

const migrations = ["CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE, body BLOB)"];

window.app = {
  async fill(count) {
    const db = await open("${name}", { migrations });
    const receipts = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        db.write("INSERT INTO notes(title, body) VALUES (?, ?)", [\`note \${i}\`, new Uint8Array([i % 256, 7])]),
      ),
    );
    let constraint = null;
    await db.write("INSERT INTO notes(title) VALUES (?)", ["note 0"]).catch((e) => (constraint = [e.name, e.code]));
    const [{ n }] = await db.query("SELECT count(*) AS n FROM notes");
    const some = await db.query("SELECT id, title, body FROM notes WHERE id IN (1, ?) ORDER BY id", [count]);
    await db.close();
    return {
      changes: receipts.reduce((sum, r) => sum + r.changes, 0),
      batches: new Set(receipts.map((r) => r.batch)).size,
      constraint,
      n,
      some: some.map(({ id, title, body }) => ({ id, title, body: Array.from(body) })),
    };
  },
  async reopen() {
    const db = await open("${name}", { migrations });
    const rows = await db.query("SELECT title FROM notes ORDER BY id");
    await db.close();
    return rows.map((r) => r.title);
  },
};
window.appReady = true;
`;

const PAGE = (src) => `<!doctype html>
<html>
  <head>
    <meta charset="utf-8" />
    <title>sqlweir under a bundler</title>
    <script type="module" src="${src}"></script>
  </head>
  <body></body>
</html>
`;

let work;
const failed = [];
const served = []; // the paths the browser fetched, the worker's included

/** The esbuild app in `work/esbuild`, output in `dist`: the bundle, the worker and pkg/ next to it. */
async function buildWithEsbuild(dir) {
  const out = join(dir, "dist");
  await writeFile(join(dir, "main.js"), APP("esbuild.db"));
  await build({
    absWorkingDir: dir,
    entryPoints: ["main.js"],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    outfile: join(out, "app.js"),
    logLevel: "silent",
  });
  // The step the README asks of esbuild users: the worker and the wasm next to the bundle.
  await cp(join(dir, "node_modules", "sqlweir", "worker.js"), join(out, "worker.js"));
  await cp(join(dir, "node_modules", "sqlweir", "pkg"), join(out, "pkg"), { recursive: true });
  await writeFile(join(out, "index.html"), PAGE("./app.js"));
  return out;
}

/** The Vite app in `work/vite`, built for the base `/vite/` with Vite's defaults otherwise. */
async function buildWithVite(dir) {
  await writeFile(join(dir, "main.js"), APP("vite.db"));
  await writeFile(join(dir, "index.html"), PAGE("./main.js"));
  await viteBuild({ root: dir, base: "/vite/", configFile: false, logLevel: "silent" });
  return join(dir, "dist");
}

/** The app without a bundler in `work/plain`: served as written, the package in `sqlweir/`. */
async function buildPlain(dir) {
  const out = join(dir, "site");
  await mkdir(out);
  await cp(join(dir, "node_modules", "sqlweir"), join(out, "sqlweir"), { recursive: true, dereference: true });
  await writeFile(join(out, "main.js"), APP("plain.db"));
  const map = `<script type="importmap">{ "imports": { "sqlweir": "./sqlweir/index.js" } }</script>\n    `;
  await writeFile(join(out, "index.html"), PAGE("./main.js").replace("<script", `${map}<script`));
  return out;
}

/** Builds the apps in a fresh `work` directory; returns the mounts of their outputs. */
async function buildApps() {
  work = await mkdtemp(join(tmpdir(), "sqlweir-bundler-"));
  const dist = {};
  for (const [name, buildApp] of [["esbuild", buildWithEsbuild], ["vite", buildWithVite], ["plain", buildPlain]]) {
    // Each app's project: `sqlweir` installed in node_modules (linked to the package as
    // published, wasm/js/dist).
    const dir = join(work, name);
    await mkdir(join(dir, "node_modules"), { recursive: true });
    await symlink(join(ROOT, "dist"), join(dir, "node_modules", "sqlweir"), "dir");
    dist[name] = await buildApp(dir);
  }
  // Only the build outputs are served; one origin, so one port.
  return { "/esbuild/": dist.esbuild, "/vite/": dist.vite, "/plain/": dist.plain };
}

const browser = chromiumHooks(chromium, {
  port: PORT,
  root: buildApps,
  setup: ({ context }) => {
    context.on("requestfailed", (r) => failed.push(`${r.url()} ${r.failure()?.errorText}`));
    context.on("response", (r) => served.push(new URL(r.url()).pathname));
    context.on("response", (r) => r.status() >= 400 && !r.url().endsWith("/favicon.ico") && failed.push(`${r.url()} ${r.status()}`));
  },
});

// Registered after chromiumHooks: runs once the browser and the server have closed.
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function load(app) {
  await browser.page.goto(`http://127.0.0.1:${PORT}/${app}/`);
  await browser.page.waitForFunction(() => window.appReady === true || null, null, { timeout: 30_000 });
}

test("esbuild bundles the package into the app as one ES module", async () => {
  const out = join(work, "esbuild", "dist");
  assert.deepEqual((await readdir(out)).sort(), ["app.js", "index.html", "pkg", "worker.js"]);
  const bundle = await readFile(join(out, "app.js"), "utf8");
  assert.doesNotMatch(bundle, /from\s*["']sqlweir["']|import\s*\(\s*["']sqlweir["']/, "the bare import was resolved");
  assert.match(bundle, /new URL\("\.\/worker\.js",import\.meta\.url\)/, "the worker URL is kept relative to the bundle");
});

test("Vite bundles the worker and emits the wasm on its own", async () => {
  const assets = await readdir(join(work, "vite", "dist", "assets"));
  const worker = assets.find((f) => /^worker-.*\.js$/.test(f));
  assert.ok(worker, `a bundled worker among ${assets.join(", ")}`);
  assert.ok(assets.some((f) => /^sqlweir_wasm_bg-.*\.wasm$/.test(f)), `the wasm among ${assets.join(", ")}`);
  const code = await readFile(join(work, "vite", "dist", "assets", worker), "utf8");
  assert.doesNotMatch(code, /from\s*["']\.\/pkg\//, "the worker's import of the wasm glue was bundled");
});

const COUNT = 2_000;

for (const app of ["esbuild", "vite", "plain"]) {
  test(`${app}: the app opens a database, writes in parallel and queries the rows back`, async () => {
    await load(app);
    const result = await browser.page.evaluate((count) => window.app.fill(count), COUNT);
    assert.equal(result.changes, COUNT);
    assert.ok(result.batches < COUNT, `writes of one tick share batches (${result.batches} batches)`);
    assert.deepEqual(result.constraint, ["SqlweirError", "Constraint"]);
    assert.equal(result.n, COUNT);
    // The page, not the worker, fetched SQLite's wasm: it compiles while the worker starts.
    const wasm = await browser.page.evaluate(() => performance.getEntriesByType("resource").filter((e) => e.name.endsWith(".wasm")).length);
    assert.equal(wasm, 1, "the bundled page fetched the wasm once");
    assert.deepEqual(result.some, [
      { id: 1, title: "note 0", body: [0, 7] },
      { id: COUNT, title: `note ${COUNT - 1}`, body: [(COUNT - 1) % 256, 7] },
    ]);
    assert.deepEqual(browser.pageErrors, []);
    assert.deepEqual(failed, []);
  });

  test(`${app}: the rows are still there after a reload of the page`, async () => {
    await load(app);
    const titles = await browser.page.evaluate(() => window.app.reopen());
    assert.equal(titles.length, COUNT);
    assert.deepEqual(titles.slice(0, 3), ["note 0", "note 1", "note 2"]);
    assert.equal(titles.at(-1), `note ${COUNT - 1}`);
    assert.deepEqual(browser.pageErrors, []);
    assert.deepEqual(failed, []);
  });
}

test("without a bundler the page loads the published modules, minified, and SQLite's wasm", async () => {
  // What the plain app's two tests above fetched.
  const loaded = served.filter((p) => p.startsWith("/plain/"));
  for (const file of ["index.js", "transport.js", "hub.js", "database.js", "worker.js", "pkg/sqlweir_wasm_bg.wasm"]) {
    assert.ok(loaded.includes(`/plain/sqlweir/${file}`), `${file} among ${loaded.join(", ")}`);
  }
  const hub = await readFile(join(work, "plain", "site", "sqlweir", "hub.js"), "utf8");
  assert.equal(hub.split("\n").length < 5 && !hub.includes("/**"), true, "hub.js as published is minified");
});
