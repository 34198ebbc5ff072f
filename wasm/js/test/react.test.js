// sqlweir/react in real headless Chromium: a tiny React app, built with Vite from a temp
// directory that installed `sqlweir`, `react` and `react-dom`, renders a list with
// `useQuery(db, sql)`. Every committed write to the table it reads shows in the DOM, in exactly
// one render with new rows; a write to another table renders nothing; new params subscribe
// anew; unmounting stops the watch (no more queries, its commit listener gone). And the main
// entry bundles no React. Asserts counts and contents, never timing. See the README's
// "React and Vue".

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";
import { ROOT, buildViteApp } from "./vite-app.js";

const PORT = Number(process.env.SQLWEIR_REACT_PORT ?? 47_827);

// The app. `renders` counts each component's renders; `results` holds the rows of each render
// whose `rows` differed from the previous render's (null while loading). The instance's `query`
// and listener methods are wrapped so the test sees the watch's queries and commit listeners.
const APP = `
import { createElement as h, useState } from "react";
import { createRoot } from "react-dom/client";
import { open } from "sqlweir";
import { useQuery } from "sqlweir/react";

const migrations = [
  "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
  "CREATE TABLE other(x INTEGER)",
];
const renders = { list: 0, filtered: 0, broken: 0 };
const results = { list: [], filtered: [] };
const last = {};
const queries = [];
const commitListeners = new Set();
const commits = [];

function track(name, rows) {
  renders[name] += 1;
  if (name in results && (renders[name] === 1 || rows !== last[name])) results[name].push(rows === undefined ? null : rows.map((r) => r.name));
  last[name] = rows;
}

function List({ db }) {
  const { rows, error, loading } = useQuery(db, "SELECT name FROM items ORDER BY id");
  track("list", rows);
  if (error) return h("p", { id: "list-error" }, error.code);
  if (loading) return h("p", { id: "list-loading" }, "loading");
  return h("ul", { id: "list" }, rows.map((r, i) => h("li", { key: i }, r.name)));
}

let setMin;
function Filtered({ db }) {
  const [min, set] = useState(1);
  setMin = set;
  const { rows, loading } = useQuery(db, "SELECT name FROM items WHERE id > ? ORDER BY id", [min]);
  track("filtered", rows);
  return h("ol", { id: "filtered", "data-min": min, "data-loading": loading }, (rows ?? []).map((r, i) => h("li", { key: i }, r.name)));
}

function Broken({ db }) {
  const { rows, error, loading } = useQuery(db, "SELECT * FROM missing");
  track("broken", rows);
  return h("p", { id: "broken" }, loading ? "loading" : \`\${error?.name}:\${error?.code}:\${rows === undefined}\`);
}

let db;
let root;
window.app = {
  async start(names) {
    db = await open("react.db", { migrations });
    const query = db.query.bind(db);
    db.query = (sql, params) => (queries.push(sql), query(sql, params));
    const add = db.addEventListener.bind(db);
    const remove = db.removeEventListener.bind(db);
    db.addEventListener = (type, listener, ...rest) => (type === "commit" && commitListeners.add(listener), add(type, listener, ...rest));
    db.removeEventListener = (type, listener, ...rest) => (type === "commit" && commitListeners.delete(listener), remove(type, listener, ...rest));
    db.onCommit((c) => commits.push(c));
    await db.writeMany("INSERT INTO items(name) VALUES (?)", names.map((n) => [n]));
    root = createRoot(document.getElementById("root"));
    root.render(h("div", null, h(List, { db }), h(Filtered, { db }), h(Broken, { db })));
  },
  write: (name) => db.write("INSERT INTO items(name) VALUES (?)", [name]),
  writeOther: (x) => db.write("INSERT INTO other(x) VALUES (?)", [x]),
  setMin: (n) => setMin(n),
  unmount: () => root.unmount(),
  /** Resolves once every watch run caused by commits seen so far has been answered. */
  settle: () => query("SELECT 1"),
  state: () => ({
    renders: { ...renders },
    results: structuredClone(results),
    queries: queries.length,
    watchQueries: queries.filter((q) => q !== "SELECT 1").length,
    commitListeners: commitListeners.size,
    commits: commits.length,
    list: document.getElementById("list") ? [...document.querySelectorAll("#list li")].map((li) => li.textContent) : null,
    filtered: [...document.querySelectorAll("#filtered li")].map((li) => li.textContent),
    broken: document.getElementById("broken")?.textContent ?? null,
    root: document.getElementById("root").innerHTML,
  }),
};
const query = (sql) => db.query(sql);
window.appReady = true;
`;

let work;
const browser = chromiumHooks(chromium, {
  port: PORT,
  root: async () => {
    ({ work } = await buildViteApp("sqlweir-react-", APP, ["react", "react-dom"]));
    return { "/": join(work, "dist") };
  },
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const page = () => browser.page;
const state = () => page().evaluate(() => window.app.state());
const domHas = (name) => page().waitForFunction((n) => [...document.querySelectorAll("#list li")].some((li) => li.textContent === n), name, { timeout: 60_000 });

/**
 * After writes that should render nothing: waits until `commits` commits reached the page, then
 * until the watch runs they caused (if any) were answered: their queries went first on the same
 * path. A render with new rows needs such a run (the hook sets state only in watch's callback,
 * after a query), so counting the watch's queries shows whether one could come.
 */
async function settleAfterCommit(commits) {
  await page().waitForFunction((n) => window.app.state().commits >= n, commits, { timeout: 60_000 });
  await page().evaluate(() => window.app.settle());
}

test("the main entry bundles no React and no Vue: index.js's graph imports no framework", async () => {
  const result = await build({
    stdin: { contents: `import { open } from "sqlweir"; globalThis.open = open;`, resolveDir: ROOT },
    bundle: true,
    format: "esm",
    platform: "browser",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.keys(result.metafile.inputs);
  assert.ok(inputs.some((f) => f.endsWith("database.js")), `the bundle has the package: ${inputs.join(", ")}`);
  assert.ok(!inputs.some((f) => /node_modules\/(react|react-dom|vue|@vue)\//.test(f) || /(^|\/)(react|vue)\.js$/.test(f)), inputs.join(", "));
  const code = result.outputFiles[0].text;
  assert.doesNotMatch(code, /\breact\b|useEffect|useState|\bvue\b/i);
  // The framework entries are their own: each imports its framework and, of the package, only
  // pack.js (valueKey), which the main entry has anyway.
  for (const [entry, framework] of [["react.js", "react"], ["vue.js", "vue"]]) {
    const source = await readFile(join(ROOT, entry), "utf8");
    assert.deepEqual([...source.matchAll(/^import\b[^;]*?\bfrom\s*"([^"]+)"/gms)].map((m) => m[1]), [framework, "./pack.js"], entry);
  }
});

test("first render is loading, the next shows the rows; a bad query's error is typed", async () => {
  await page().goto(`http://127.0.0.1:${PORT}/`);
  await page().waitForFunction(() => window.appReady === true || null, null, { timeout: 30_000 });
  await page().evaluate(() => window.app.start(["apple", "banana", "cherry"]));
  await domHas("cherry");
  await page().waitForFunction(() => document.getElementById("broken")?.textContent !== "loading", null, { timeout: 60_000 });
  await page().waitForFunction(() => document.querySelectorAll("#filtered li").length === 2, null, { timeout: 60_000 });
  const s = await state();
  assert.deepEqual(s.list, ["apple", "banana", "cherry"]);
  assert.deepEqual(s.results.list, [null, ["apple", "banana", "cherry"]]);
  assert.equal(s.renders.list, 2, "one loading render, one with the rows");
  assert.deepEqual(s.filtered, ["banana", "cherry"]);
  assert.deepEqual(s.results.filtered, [null, ["banana", "cherry"]]);
  assert.equal(s.broken, "SqlweirError:Sql:true");
  assert.equal(s.renders.broken, 2, "one loading render, one with the error");
  // The app's onCommit and the two live watches (the failed one stopped itself).
  assert.equal(s.commitListeners, 3);
  assert.deepEqual(browser.pageErrors, []);
});

test("each committed write to items shows in the DOM in exactly one new render; another table's renders nothing", async () => {
  let before = await state();
  for (const name of ["damson", "elder"]) {
    await page().evaluate((n) => window.app.write(n), name);
    await domHas(name);
  }
  await page().waitForFunction(() => document.querySelectorAll("#filtered li").length === 4, null, { timeout: 60_000 });
  let s = await state();
  assert.deepEqual(s.list, ["apple", "banana", "cherry", "damson", "elder"]);
  assert.deepEqual(s.results.list.slice(before.results.list.length), [
    ["apple", "banana", "cherry", "damson"],
    ["apple", "banana", "cherry", "damson", "elder"],
  ]);
  assert.equal(s.renders.list, before.renders.list + 2, "one render per write");
  assert.deepEqual(s.filtered, ["banana", "cherry", "damson", "elder"]);
  assert.equal(s.renders.broken, before.renders.broken, "the failed query re-renders never");

  // Unrelated writes: committed and seen, but no watch reruns and nothing renders.
  before = s;
  for (const x of [1, 2, 3]) {
    await page().evaluate((v) => window.app.writeOther(v), x);
    await settleAfterCommit(before.commits + x);
  }
  s = await state();
  assert.equal(s.commits, before.commits + 3);
  assert.equal(s.watchQueries, before.watchQueries, "no watch ran for the other table");
  assert.deepEqual(s.renders, before.renders, "no component rendered");
  assert.deepEqual(s.results, before.results);
  assert.deepEqual(browser.pageErrors, []);
});

test("new params subscribe anew: the old watch stops, the new one's rows render", async () => {
  const before = await state();
  await page().evaluate(() => window.app.setMin(3));
  await page().waitForFunction(
    () => document.getElementById("filtered").dataset.min === "3" && document.getElementById("filtered").dataset.loading === "false",
    null,
    { timeout: 60_000 },
  );
  const s = await state();
  assert.deepEqual(s.filtered, ["damson", "elder"]);
  assert.deepEqual(s.results.filtered.slice(before.results.filtered.length), [null, ["damson", "elder"]]);
  assert.equal(s.commitListeners, before.commitListeners, "one watch stopped, one started");
  assert.deepEqual(s.list, before.list, "the other component kept its rows");
  assert.deepEqual(s.results.list, before.results.list);
});

test("unmounting stops the watches: later writes run no query and render nothing", async () => {
  await page().evaluate(() => window.app.unmount());
  const before = await state();
  assert.equal(before.root, "", "unmounted");
  assert.equal(before.commitListeners, 1, "only the app's own onCommit is left");
  for (const name of ["fig", "grape"]) await page().evaluate((n) => window.app.write(n), name);
  await settleAfterCommit(before.commits + 2);
  const s = await state();
  assert.equal(s.commits, before.commits + 2, "the writes committed and were announced");
  assert.equal(s.watchQueries, before.watchQueries, "no watch ran");
  assert.deepEqual(s.renders, before.renders);
  assert.deepEqual(s.results, before.results);
  assert.deepEqual(browser.pageErrors, []);
});
