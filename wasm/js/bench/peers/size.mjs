// What a browser downloads for sqlweir and for the stores a web developer would pick instead
// (issue 21): each store's minimal app (size/<store>.js: the peers benchmark's adapter and
// worker, or sql.js's documented use) built with Vite for production, as an app ships it, and
// every file of the build summed (JS, wasm, data), each compressed alone by one method: gzip -9
// and brotli (quality 11). Prints the table and the targets (met or MISSED); writes
// target/bench/size.json.
//
//   node bench/peers/size.mjs [--check] [--stores a,b] [--out PATH]
//
// --check: exits 1 when sqlweir's app is bigger gzipped than size/budget.json allows, so the
// package never grows unseen (scripts/test-browser runs it). Needs wasm/js/pkg
// (scripts/build-wasm) and this directory's node_modules (`npm ci`; scripts/size does both).

import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { build } from "vite";
import sqlocalVite from "sqlocal/vite";
import { stageSqlweir } from "./stage.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../../../..");
const STORES = [
  ["sqlweir", "sqlweir"],
  ["sqlweir-full", "sqlweir/full (FTS5, R*Tree)"],
  ["sqlite-wasm", "@sqlite.org/sqlite-wasm (opfs-sahpool)"],
  ["wa-sqlite", "wa-sqlite (AccessHandlePoolVFS)"],
  ["sql-js", "sql.js (in memory)"],
  ["sqlocal", "SQLocal"],
  ["pglite", "PGlite (opfs-ahp)"],
];
/** The goal for sqlweir's app, gzipped. */
const GOAL = 300_000;

function parseArgs(argv) {
  const a = { check: false, stores: null, out: join(REPO, "target/bench/size.json") };
  for (let i = 0; i < argv.length; i++) {
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
      return argv[++i];
    };
    if (argv[i] === "--check") a.check = true;
    else if (argv[i] === "--stores") a.stores = value().split(",");
    else if (argv[i] === "--out") a.out = value();
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return a;
}

async function files(dir) {
  const out = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(path)));
    else out.push(path);
  }
  return out;
}

/** Builds store `key`'s app alone and measures every file it emitted. */
async function measure(key, work, sqlweir) {
  const outDir = join(work, key);
  await build({
    root: HERE,
    base: "./",
    configFile: false,
    logLevel: "error",
    plugins: key === "sqlocal" ? [sqlocalVite()] : [],
    resolve: { alias: { sqlweir } },
    worker: { format: "es" },
    build: {
      outDir,
      emptyOutDir: true,
      target: "es2022",
      reportCompressedSize: false,
      chunkSizeWarningLimit: 100_000,
      rollupOptions: { input: join(HERE, "size", `${key}.js`) },
    },
  });
  const measured = [];
  for (const path of await files(outDir)) {
    if (path.endsWith(".map")) continue;
    const bytes = await readFile(path);
    measured.push({
      file: relative(outDir, path),
      raw: bytes.length,
      gzip: gzipSync(bytes, { level: 9 }).length,
      brotli: brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length } }).length,
    });
  }
  const sum = (k) => measured.reduce((n, f) => n + f[k], 0);
  const wasm = measured.filter((f) => f.file.endsWith(".wasm"));
  return { raw: sum("raw"), gzip: sum("gzip"), brotli: sum("brotli"), wasmGzip: wasm.reduce((n, f) => n + f.gzip, 0), files: measured };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const stores = STORES.filter(([key]) => !args.stores || args.stores.includes(key));
  await stat(join(HERE, "..", "..", "pkg", "sqlweir_wasm_bg.wasm")).catch(() => {
    throw new Error("wasm/js/pkg is missing: build the package first (scripts/build-wasm)");
  });
  if (stores.some(([key]) => key === "sqlweir-full")) {
    await stat(join(HERE, "..", "..", "pkg-full", "sqlweir_wasm_bg.wasm")).catch(() => {
      throw new Error("wasm/js/pkg-full is missing: build sqlweir/full first (scripts/build-wasm --full)");
    });
  }
  const work = await mkdtemp(join(tmpdir(), "sqlweir-size-"));
  const results = {};
  try {
    const sqlweir = join(work, "package");
    await stageSqlweir(sqlweir);
    for (const [key] of stores) results[key] = await measure(key, work, sqlweir);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const kb = (n) => `${(n / 1000).toFixed(1)} KB`;
  console.log("\nwhat a browser downloads: each store's minimal app built by Vite for production, every file compressed alone");
  const line = (...c) => console.log(c[0].padEnd(42), ...c.slice(1).map((x) => String(x).padStart(11)));
  line("store", "raw", "gzip -9", "brotli 11", "wasm gzip");
  for (const [key, name] of stores) {
    const r = results[key];
    line(name, kb(r.raw), kb(r.gzip), kb(r.brotli), kb(r.wasmGzip));
  }
  const budget = JSON.parse(await readFile(join(HERE, "size", "budget.json"), "utf8"));
  const ours = results.sqlweir;
  const targets = [];
  if (ours) {
    targets.push({ what: `sqlweir's app <= ${kb(GOAL)} gzipped`, met: ours.gzip <= GOAL });
    for (const [key, name] of stores) {
      if (key !== "sqlweir" && key !== "sqlweir-full") targets.push({ what: `sqlweir's app smaller gzipped than ${name}'s`, met: ours.gzip < results[key].gzip });
    }
    targets.push({ what: `sqlweir's app within its budget (size/budget.json, ${kb(budget.sqlweir.gzip)} gzipped)`, met: ours.gzip <= budget.sqlweir.gzip });
    console.log("\ntargets (issue 21, measured in this run):");
    for (const t of targets) console.log(`  ${t.what.padEnd(70)} ${t.met ? "met" : "MISSED"}`);
  }
  await mkdir(dirname(args.out), { recursive: true });
  await writeFile(args.out, JSON.stringify({ method: "vite build (production), every emitted file; gzip -9, brotli quality 11", results, targets, budget }, null, 2));
  console.log(`results written to ${args.out}`);
  if (args.check && ours && ours.gzip > budget.sqlweir.gzip) {
    console.error(`sqlweir's app is ${ours.gzip} bytes gzipped, over its budget of ${budget.sqlweir.gzip}: find what grew, or raise the budget in wasm/js/bench/peers/size/budget.json with the reason in the commit`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
