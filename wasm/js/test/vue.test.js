// sqlweir/vue in real headless Chromium: a tiny Vue app (render functions, no SFC), built with
// Vite from a temp directory that installed `sqlweir` and `vue`, shows a list with
// `useQuery(db, sql)`. Every committed write to the table it reads shows in the DOM in exactly
// one render with new rows; a write to another table renders nothing; a changed params ref
// subscribes anew; unmounting (the scope's disposal) stops the watch. Asserts counts and
// contents, never timing. See the README's "React and Vue".

import { after } from "node:test";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { chromiumHooks } from "./chromium.js";
import { useQueryCases } from "./use-query-cases.js";
import { buildViteApp } from "./vite-app.js";

const PORT = Number(process.env.SQLWEIR_VUE_PORT ?? 47_828);

// As in react.test.js: `renders` counts each component's renders, `results` holds the rows of
// each render whose rows differed from the last (null while loading); the instance's `query` and
// commit listeners are wrapped so the test sees the watch's queries and listeners.
const APP = `
import { createApp, h, nextTick, ref } from "vue";
import { open } from "sqlweir";
import { useQuery } from "sqlweir/vue";

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
const min = ref(1);

function track(name, rows) {
  renders[name] += 1;
  if (name in results && (renders[name] === 1 || rows !== last[name])) results[name].push(rows === undefined ? null : rows.map((r) => r.name));
  last[name] = rows;
}

const List = {
  props: ["db"],
  setup(props) {
    const { rows, error, loading } = useQuery(props.db, "SELECT name FROM items ORDER BY id");
    return () => {
      track("list", rows.value);
      if (error.value) return h("p", { id: "list-error" }, error.value.code);
      if (loading.value) return h("p", { id: "list-loading" }, "loading");
      return h("ul", { id: "list" }, rows.value.map((r, i) => h("li", { key: i }, r.name)));
    };
  },
};

const Filtered = {
  props: ["db"],
  setup(props) {
    const { rows, loading } = useQuery(props.db, "SELECT name FROM items WHERE id > ? ORDER BY id", () => [min.value]);
    return () => {
      track("filtered", rows.value);
      views.push([min.value, loading.value, rows.value === undefined ? null : rows.value.map((r) => r.name)]);
      return h("ol", { id: "filtered", "data-min": min.value, "data-loading": loading.value }, (rows.value ?? []).map((r, i) => h("li", { key: i }, r.name)));
    };
  },
};

const Broken = {
  props: ["db"],
  setup(props) {
    const { rows, error, loading } = useQuery(props.db, "SELECT * FROM missing");
    return () => {
      track("broken", rows.value);
      return h("p", { id: "broken" }, loading.value ? "loading" : \`\${error.value?.name}:\${error.value?.code}:\${rows.value === undefined}\`);
    };
  },
};

let db;
let app;
window.app = {
  async start(names) {
    db = await open("vue.db", { migrations });
    const query = db.query.bind(db);
    db.query = (sql, params) => (queries.push(sql), query(sql, params));
    const add = db.addEventListener.bind(db);
    const remove = db.removeEventListener.bind(db);
    db.addEventListener = (type, listener, ...rest) => (type === "commit" && commitListeners.add(listener), add(type, listener, ...rest));
    db.removeEventListener = (type, listener, ...rest) => (type === "commit" && commitListeners.delete(listener), remove(type, listener, ...rest));
    db.onCommit((c) => commits.push(c));
    await db.writeMany("INSERT INTO items(name) VALUES (?)", names.map((n) => [n]));
    app = createApp({ render: () => h("div", null, [h(List, { db }), h(Filtered, { db }), h(Broken, { db })]) });
    app.mount("#root");
  },
  write: (name) => db.write("INSERT INTO items(name) VALUES (?)", [name]),
  writeOther: (x) => db.write("INSERT INTO other(x) VALUES (?)", [x]),
  setMin: (n) => (min.value = n),
  unmount: () => app.unmount(),
  /** Resolves once every watch run caused by commits seen so far was answered and rendered. */
  settle: () => db.query("SELECT 1").then(() => nextTick()),
  state: () => ({
    renders: { ...renders },
    results: structuredClone(results),
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
window.appReady = true;
`;

let work;
const browser = chromiumHooks(chromium, {
  port: PORT,
  root: async () => {
    ({ work } = await buildViteApp("sqlweir-vue-", APP, ["vue"]));
    return { "/": join(work, "dist") };
  },
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

useQueryCases(browser, {
  port: PORT,
  paramsTitle: "a changed params getter subscribes anew: the old watch stops, the new one's rows render",
});
