// Drives the peers benchmark (index.html, bench.js) in Debian's headless Chromium with a real
// on-disk profile (OPFS of an incognito context lives in memory): sqlweir and the stores a web
// developer would pick instead, the same workload in one run. Prints one table (rows/s per store
// and case as a ratio to sqlweir in the same run, and the p99 write latency), the targets of the
// issue with met/MISSED, and writes the results as JSON.
//
//   node bench/peers/run.mjs [--rows-call N] [--rows-batch N] [--rows-one N] [--rows-read N]
//                            [--rounds N] [--stores a,b] [--case-timeout S] [--smoke] [--out PATH]
//
// --stores picks among sqlweir, sqlite-wasm-opfs-sahpool, wa-sqlite, pglite, sqlite-wasm-opfs,
// sqlocal (all by default). The page is built with Vite (as apps that use these packages are)
// from this directory, with `sqlweir` resolved to a staged copy of the package: the files its
// package.json publishes and the modules they import, with the wasm/js/pkg build. It is served twice, from two origins: plainly, for sqlweir and the
// stores that need no headers, and with COOP/COEP for those that need SharedArrayBuffer.
// --smoke: tiny counts; fails if any store's case did not run or its row count is off; ratios
// mean nothing. Every case's rows are counted in either mode.

import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";
import sqlocalVite from "sqlocal/vite";
import { chromium } from "playwright-core";
import { closeChromium, launchChromium } from "../../test/chromium.js";
import { stageSqlweir } from "./stage.mjs";
import { serve } from "../../test/server.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGE = resolve(HERE, "../..");
const REPO = resolve(PACKAGE, "../..");
const ISOLATION = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };
const CASES = ["call", "batch", "one", "read"];
const CASE_NAMES = {
  call: "(P) per call",
  batch: "(T) hand-batched, 100 per tx",
  one: "(1) one transaction",
  read: "(R) per call + reads of last 100",
};

function parseArgs(argv) {
  const a = { rows: { call: 2_000, batch: 4_000, one: 100_000, read: 2_000 }, warmUpMs: 2_000, rounds: 1, stores: null, caseTimeoutS: 300, smoke: false, out: null };
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
      return argv[++i];
    };
    const m = /^--rows-(call|batch|one|read)$/.exec(argv[i]);
    if (m) a.rows[m[1]] = Number(value());
    else if (argv[i] === "--rounds") a.rounds = Number(value());
    else if (argv[i] === "--stores") a.stores = value().split(",");
    else if (argv[i] === "--case-timeout") a.caseTimeoutS = Number(value());
    else if (argv[i] === "--out") a.out = value();
    else if (argv[i] === "--smoke") a.smoke = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (a.smoke) Object.assign(a, { rows: { call: 40, batch: 200, one: 200, read: 40 }, warmUpMs: 0, rounds: 1, caseTimeoutS: 60 });
  a.out ??= join(REPO, "target/bench", a.smoke ? "browser-peers-smoke.json" : "browser-peers.json");
  return a;
}

async function buildPage(work) {
  const sqlweir = join(work, "sqlweir");
  await stageSqlweir(sqlweir);
  const outDir = join(work, "dist");
  await build({
    root: HERE,
    base: "./",
    configFile: false,
    logLevel: "error", // the warnings are about PGlite's Node file system, which the page never loads
    plugins: [sqlocalVite()],
    resolve: { alias: { sqlweir } },
    worker: { format: "es" },
    build: { outDir, emptyOutDir: true, target: "es2022", minify: false, reportCompressedSize: false, chunkSizeWarningLimit: 100_000 },
  });
  return outDir;
}

/** The versions installed in this package's node_modules (SQLocal brings its own SQLite build). */
async function versions() {
  const v = async (p) => JSON.parse(await readFile(join(HERE, "node_modules", p, "package.json"), "utf8")).version;
  return {
    "@sqlite.org/sqlite-wasm": await v("@sqlite.org/sqlite-wasm"),
    "wa-sqlite": await v("wa-sqlite"),
    sqlocal: await v("sqlocal"),
    "sqlocal's @sqlite.org/sqlite-wasm": await v("sqlocal/node_modules/@sqlite.org/sqlite-wasm").catch(() => v("@sqlite.org/sqlite-wasm")),
    "@electric-sql/pglite": await v("@electric-sql/pglite"),
    vite: await v("vite"),
  };
}

const median = (xs) => {
  const s = xs.filter((x) => x != null).sort((a, b) => a - b);
  if (!s.length) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function summarise(runs, stores) {
  const summary = [];
  for (const store of stores) {
    for (const variant of store.variants) {
      for (const key of CASES) {
        const rs = runs.filter((r) => r.store === store.key && r.variant === variant && r.case === key);
        if (!rs.length) continue;
        const ok = rs.filter((r) => !r.error && r.count === r.rows);
        const first = rs.find((r) => r.durability) ?? rs[0];
        summary.push({
          store: store.key, name: store.name, variant, case: key, case_name: CASE_NAMES[key], rows: rs[0].rows,
          durability: first.durability ?? null, version: first.version ?? null, rounds: rs.length,
          rows_per_s: ok.length === rs.length ? median(ok.map((r) => r.rows / (r.ms / 1000))) : null,
          rows_per_s_all: ok.map((r) => r.rows / (r.ms / 1000)),
          write_p50_ms: median(ok.map((r) => r.writeP50)), write_p99_ms: median(ok.map((r) => r.writeP99)),
          reads: median(ok.map((r) => r.reads)), read_p99_ms: median(ok.map((r) => r.readP99)),
          error: rs.find((r) => r.error)?.error ?? (ok.length < rs.length ? rs.filter((r) => r.count !== r.rows).map((r) => `counted ${r.count} of ${r.rows} rows`)[0] : null),
        });
      }
    }
  }
  for (const s of summary) {
    const base = summary.find((b) => b.store === "sqlweir" && b.variant === "default" && b.case === s.case);
    s.ratio_to_sqlweir = s.rows_per_s != null && base?.rows_per_s ? s.rows_per_s / base.rows_per_s : null;
  }
  return summary;
}

function targets(summary) {
  const rate = (store, variant, key) => summary.find((s) => s.store === store && s.variant === variant && s.case === key);
  const weir = rate("sqlweir", "default", "call");
  const out = [];
  for (const s of summary.filter((s) => s.store !== "sqlweir" && (s.case === "call" || s.case === "batch"))) {
    const goal = s.case === "call" ? 10 : 1;
    const what = `sqlweir (P) >= ${goal}x ${s.name}${s.variant === "default" ? "" : ` [${s.variant}]`} ${s.case === "call" ? "(P) per call" : "(T) hand-batched"}`;
    if (s.rows_per_s == null || weir?.rows_per_s == null) {
      out.push({ what, goal, ratio: null, met: null, reason: s.error ?? weir?.error ?? "no rate" });
      continue;
    }
    const ratio = weir.rows_per_s / s.rows_per_s;
    out.push({ what, goal, ratio, met: ratio >= goal });
  }
  return out;
}

const fmt = (x, digits = 0) => (x == null ? "-" : x.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits }));

function printTable(summary) {
  const cols = [["store", 46], ["durability", 44], ["case", 32], ["rows", 8], ["rows/s", 10], ["x sqlweir", 9], ["p99 write", 10], ["notes", 0]];
  const line = (cells) => console.log(cells.map((c, i) => (i >= 3 && i <= 6 ? String(c).padStart(cols[i][1]) : String(c).padEnd(cols[i][1]))).join(" ").trimEnd());
  line(cols.map(([c]) => c));
  for (const s of summary) {
    const name = s.variant === "default" ? s.name : `${s.name} [${s.variant}]`;
    const notes = s.error ? `could not run: ${s.error}` : s.case === "read" && s.reads != null ? `${fmt(s.reads)} reads, read p99 ${fmt(s.read_p99_ms, 1)} ms` : "";
    line([name.slice(0, 46), (s.durability ?? "").slice(0, 44), s.case_name, fmt(s.rows), s.error ? "-" : fmt(s.rows_per_s), s.ratio_to_sqlweir == null ? "-" : fmt(s.ratio_to_sqlweir, s.ratio_to_sqlweir < 0.1 ? 4 : 2), s.write_p99_ms == null ? "-" : `${fmt(s.write_p99_ms, 1)} ms`, notes]);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const work = await mkdtemp(join(tmpdir(), "sqlweir-bench-peers-"));
  let plain;
  let isolated;
  let context;
  let profile;
  let stores;
  const runs = [];
  let userAgent;
  try {
    const dist = await buildPage(work);
    plain = await serve(dist, 0);
    isolated = await serve(dist, 0, { headers: ISOLATION });
    ({ context, profile } = await launchChromium(chromium));
    // Requests of workers too: a file the build did not emit would otherwise only show as a
    // store that cannot open.
    const missing = [];
    context.on("response", (r) => r.status() >= 400 && !r.url().endsWith("/favicon.ico") && missing.push(`${r.url()}: ${r.status()}`));
    for (const [server, wantIsolated] of [[plain, false], [isolated, true]]) {
      const page = await context.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(e));
      if (process.env.SQLWEIR_PEERS_CONSOLE) page.on("console", (m) => console.log(`[page] ${m.text()}`));
      await page.goto(`http://127.0.0.1:${server.address().port}/index.html`);
      await page.waitForFunction(() => window.peersReady === true || null, null, { timeout: 30_000 });
      page.setDefaultTimeout(0);
      stores ??= await page.evaluate(() => window.peerStores());
      const keys = stores.filter((s) => s.isolated === wantIsolated && (!args.stores || args.stores.includes(s.key))).map((s) => s.key);
      if (keys.length) {
        const result = await page.evaluate((cfg) => window.runPeers(cfg), { stores: keys, rows: args.rows, warmUpMs: args.warmUpMs, rounds: args.rounds, caseTimeoutMs: args.caseTimeoutS * 1000 });
        if (wantIsolated && !result.crossOriginIsolated) throw new Error("the page served with COOP/COEP is not cross-origin isolated");
        runs.push(...result.runs);
        userAgent = result.userAgent;
      }
      if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
      if (missing.length) throw new Error(`requests failed: ${missing.join("; ")}`);
      await page.close();
    }
  } finally {
    await closeChromium(context, profile);
    for (const s of [plain, isolated]) if (s) await new Promise((r) => s.close(r));
    await rm(work, { recursive: true, force: true });
  }

  const summary = summarise(runs, stores);
  const installed = await versions();
  const seconds = (Date.now() - started) / 1000;
  console.log(`\npeers benchmark: headless Chromium, OPFS, ~100-byte rows, ${args.rounds === 1 ? "one round" : `median of ${args.rounds} rounds`}; rows per case: (P) ${fmt(args.rows.call)}, (T) ${fmt(args.rows.batch)}, (1) ${fmt(args.rows.one)}, (R) ${fmt(args.rows.read)}`);
  console.log(userAgent);
  console.log(Object.entries(installed).map(([k, v]) => `${k} ${v}`).join(", "));
  console.log("x sqlweir: rows/s over sqlweir's (default durability) in the same case and run; p99 write: issue to resolution of a write (of its transaction in (T))\n");
  printTable(summary);

  const goals = targets(summary);
  console.log("\ntargets (ratios measured in this run):");
  for (const t of goals) console.log(`  ${t.what.padEnd(96)} ${t.ratio == null ? "       -" : `${fmt(t.ratio, 2).padStart(9)}x`}  ${t.met == null ? `n/a: ${t.reason}` : args.smoke ? "(not judged in a smoke run)" : t.met ? "met" : "MISSED"}`);
  if (args.smoke) console.log("\n(smoke run: tiny row counts; only that every case ran and every row landed was checked, ratios mean nothing here)");
  console.log(`\n${seconds.toFixed(0)} s in all (build, browser, every store)`);

  await mkdir(dirname(args.out), { recursive: true });
  await writeFile(args.out, JSON.stringify({
    machine: "headless Chromium (Debian), OPFS", user_agent: userAgent, versions: installed, smoke: args.smoke,
    rows: args.rows, rounds: args.rounds, seconds, summary, targets: goals, runs,
  }, null, 2));
  console.log(`results written to ${args.out}`);

  const wrong = runs.filter((r) => !r.error && r.count !== r.rows);
  for (const r of wrong) console.error(`rows counted wrong: ${r.store} [${r.variant}] ${CASE_NAMES[r.case]}: ${r.count} of ${r.rows}`);
  const failed = args.smoke ? runs.filter((r) => r.error) : [];
  for (const r of failed) console.error(`case did not run: ${r.store} [${r.variant}] ${CASE_NAMES[r.case]}: ${r.error}`);
  if (wrong.length || failed.length) process.exit(1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
