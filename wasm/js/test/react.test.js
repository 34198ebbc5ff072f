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
import { useQueryCases } from "./use-query-cases.js";
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
const views = [];

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
  views.push([min, loading, rows === undefined ? null : rows.map((r) => r.name)]);
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
    views: structuredClone(views),
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

useQueryCases(browser, {
  port: PORT,
  paramsTitle: "new params subscribe anew: the old watch stops, the new one's rows render",
  // React renders once while loading: the loading render's null comes before the new rows.
  newParams: (s, before) => assert.deepEqual(s.results.filtered.slice(before.results.filtered.length), [null, ["damson", "elder"]]),
});
