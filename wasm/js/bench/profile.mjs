// Profiles one case of the browser benchmark with Chromium's sampling profiler, in the page and in
// the worker at once, and prints where the time went: the functions with the most self time in
// each thread, and the time per write by part (SQLite, the rest of the wasm, JavaScript, the
// engine's own work such as garbage collection and message passing).
//
//   node bench/profile.mjs --pkg DIR [--case burst|parallel|many] [--rows N] [--top N]
//                          [--callers REGEX] [--save DIR]
//
// --callers prints, for the functions whose name matches, which callers their self time came
// through; --save writes both profiles as .cpuprofile files (Chromium DevTools opens them).
//
// --pkg is a wasm-bindgen output of sqlweir-wasm built with the `bench` feature and with its name
// section kept (scripts/profile-browser builds one), so wasm functions show by name.

import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../test/server.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGE = dirname(HERE);
const MODULES = JSON.parse(await readFile(join(PACKAGE, "package.json"), "utf8")).files.filter((f) => f.endsWith(".js") && !f.includes("/"));

function parseArgs(argv) {
  const a = { pkg: null, case: "burst", rows: 100_000, top: 25, callers: null, save: null };
  for (let i = 0; i < argv.length; i++) {
    const value = () => argv[++i];
    switch (argv[i]) {
      case "--pkg": a.pkg = value(); break;
      case "--case": a.case = value(); break;
      case "--rows": a.rows = Number(value()); break;
      case "--top": a.top = Number(value()); break;
      case "--callers": a.callers = new RegExp(value()); break;
      case "--save": a.save = value(); break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!a.pkg) throw new Error("--pkg DIR is required");
  return a;
}

async function stage(pkg) {
  const site = await mkdtemp(join(tmpdir(), "sqlweir-profile-site-"));
  for (const f of MODULES) await cp(join(PACKAGE, f), join(site, f === "worker.js" ? "package-worker.js" : f));
  for (const f of ["worker.js", "probe.js"]) await cp(join(HERE, f), join(site, f));
  await mkdir(join(site, "bench"));
  for (const f of ["bench.html", "bench.js", "workload.js"]) await cp(join(HERE, f), join(site, "bench", f));
  await cp(pkg, join(site, "pkg"), { recursive: true });
  return site;
}

/** Self time per function of a CDP `Profiler.Profile`, in ms, and the profile's span. */
function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const ms = new Map();
  const deltas = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const f = node.callFrame;
    const name = frameName(f);
    ms.set(name, (ms.get(name) ?? 0) + (deltas[i + 1] ?? 0) / 1000);
  }
  return { ms, span: (profile.endTime - profile.startTime) / 1000 };
}

/** A call frame's printed name: the function and its file. */
function frameName(f) {
  return `${f.functionName || "(anonymous)"} ${f.url ? f.url.split("/").pop() : ""}`.trim();
}

/**
 * The self time (ms) of the functions matching `pattern`, by the first caller up the stack that
 * does not match it.
 */
function callersOf(profile, pattern) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const ms = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    let node = byId.get(profile.samples[i]);
    if (!pattern.test(frameName(node.callFrame))) continue;
    while (node && pattern.test(frameName(node.callFrame))) node = byId.get(parent.get(node.id));
    const name = node ? frameName(node.callFrame) : "(top)";
    ms.set(name, (ms.get(name) ?? 0) + (profile.timeDeltas[i + 1] ?? 0) / 1000);
  }
  return [...ms].sort((a, b) => b[1] - a[1]);
}

/** The part of sqlweir a function belongs to, by its name. */
function part(name) {
  if (/^\(idle\)/.test(name)) return "idle";
  if (/^\((garbage collector|program|root)\)/.test(name)) return "engine (GC, messages, runtime)";
  if (/sqlite3|^sqlite|Vdbe|vdbe|btree|Btree|pager|Pager|^pcache|wal[A-Z]|^mem[A-Z0-9]|^parse|yy_|^sqlite3Parser/.test(name)) return "SQLite (C)";
  if (/\.wasm/.test(name) || /^\$?(core|alloc|std|rusqlite|sqlweir|hashbrown|dlmalloc|wasm_bindgen|js_sys)/.test(name)) return "wasm (Rust)";
  return "JavaScript";
}

function report(title, profile, rows, top) {
  const { ms, span } = selfTimes(profile);
  const sorted = [...ms].sort((a, b) => b[1] - a[1]);
  const parts = new Map();
  for (const [name, t] of ms) parts.set(part(name), (parts.get(part(name)) ?? 0) + t);
  console.log(`\n${title}: ${span.toFixed(0)} ms profiled`);
  for (const [p, t] of [...parts].sort((a, b) => b[1] - a[1])) {
    console.log(`  ${p.padEnd(34)} ${t.toFixed(1).padStart(9)} ms  ${((t * 1000) / rows).toFixed(3).padStart(7)} µs/write`);
  }
  console.log(`  top ${top} by self time:`);
  for (const [name, t] of sorted.slice(0, top)) console.log(`  ${t.toFixed(1).padStart(9)} ms  ${name.slice(0, 110)}`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const site = await stage(args.pkg);
  const userData = await mkdtemp(join(tmpdir(), "sqlweir-profile-chromium-"));
  const server = await serve(site, 0);
  let context;
  try {
    context = await chromium.launchPersistentContext(userData, {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(0);
    const cdp = await context.newCDPSession(page);
    // The worker is a child target of the page: attach to it without flattening, and speak to it
    // through Target.sendMessageToTarget.
    const workers = [];
    const pending = new Map();
    let next = 1;
    cdp.on("Target.attachedToTarget", (e) => {
      if (e.targetInfo.type === "worker") workers.push(e.sessionId);
    });
    cdp.on("Target.receivedMessageFromTarget", (e) => {
      const m = JSON.parse(e.message);
      const waiter = pending.get(m.id);
      if (waiter) {
        pending.delete(m.id);
        if (m.error) waiter.reject(new Error(m.error.message));
        else waiter.resolve(m.result);
      }
    });
    const inWorker = (method, params = {}) =>
      new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject });
        cdp.send("Target.sendMessageToTarget", { sessionId: workers[0], message: JSON.stringify({ id, method, params }) }).catch(reject);
      });
    await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
    await page.goto(`http://127.0.0.1:${server.address().port}/bench/bench.html`);
    await page.waitForFunction(() => typeof window.runBench === "function");
    // Warm-up runs start the worker (through the package: the raw cases need it running) and
    // compile everything the measured run uses.
    const cfg = { rows: Math.min(args.rows, 10_000), naiveRows: 10, rounds: 1, modes: [{ journal: "wal", synchronous: "normal", label: "wal/normal" }] };
    await page.evaluate((c) => window.runBench(c), { ...cfg, only: "burst" });
    await page.evaluate((c) => window.runBench(c), { ...cfg, only: args.case });
    for (let i = 0; i < 50 && workers.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    if (workers.length === 0) throw new Error("the worker target never attached");
    await inWorker("Profiler.enable");
    await inWorker("Profiler.setSamplingInterval", { interval: 100 });
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
    await inWorker("Profiler.start");
    await cdp.send("Profiler.start");
    const result = await page.evaluate((c) => window.runBench(c), { ...cfg, rows: args.rows, naiveRows: args.rows, only: args.case });
    const pageProfile = (await cdp.send("Profiler.stop")).profile;
    const workerProfile = (await inWorker("Profiler.stop")).profile;
    const run = result.runs.find((r) => r.key === args.case);
    console.log(`case ${args.case}: ${args.rows} rows in ${run.ms.toFixed(0)} ms (${((run.ms * 1000) / args.rows).toFixed(2)} µs/write), rows found ${run.count}`);
    report("worker", workerProfile, args.rows, args.top);
    report("page", pageProfile, args.rows, args.top);
    if (args.callers) {
      for (const [title, profile] of [["worker", workerProfile], ["page", pageProfile]]) {
        const by = callersOf(profile, args.callers);
        if (by.length === 0) continue;
        console.log(`\n${title}: self time of ${args.callers} by caller`);
        for (const [name, t] of by.slice(0, args.top)) console.log(`  ${t.toFixed(1).padStart(9)} ms  ${name.slice(0, 110)}`);
      }
    }
    if (args.save) {
      await mkdir(args.save, { recursive: true });
      await writeFile(join(args.save, `worker-${args.case}.cpuprofile`), JSON.stringify(workerProfile));
      await writeFile(join(args.save, `page-${args.case}.cpuprofile`), JSON.stringify(pageProfile));
      console.log(`profiles written to ${args.save}`);
    }
  } finally {
    await context?.close();
    await new Promise((r) => server.close(r));
    await rm(userData, { recursive: true, force: true });
    await rm(site, { recursive: true, force: true });
  }
}

await main();
