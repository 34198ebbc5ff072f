// The package as a user gets it, outside a browser: in Node, `open` rejects at once with a typed
// `Unsupported` error and the process then exits by itself (it used to throw a bare
// ReferenceError and leave a BroadcastChannel that kept Node alive forever); what npm would
// publish carries the licenses, the repository fields and every module; the modules import one
// way (no cycles) and import no package (react and vue only from their own entries, which
// resolve by name). No browser needed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const REPO = dirname(dirname(ROOT));
const DIST = join(ROOT, "dist");

/**
 * The package's own modules that `index.js`, `full.js` and `worker.js` reach by static imports (the
 * wasm-bindgen glue in pkg/ aside), each with the modules it imports: name -> [name, ...].
 */
async function moduleGraph() {
  const graph = new Map();
  const visit = async (name) => {
    if (graph.has(name)) return;
    const source = await readFile(join(ROOT, name), "utf8");
    const imports = [...source.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*"\.\/([^"]+)"/gms)]
      .map((m) => m[1])
      .filter((f) => !f.startsWith("pkg/"));
    graph.set(name, imports);
    for (const f of imports) await visit(f);
  };
  await visit("index.js");
  await visit("full.js");
  await visit("worker.js");
  return graph;
}

test("the modules import one way: no import cycle among them", async () => {
  const graph = await moduleGraph();
  assert.deepEqual(
    [...graph.keys()].sort(),
    ["database.js", "errors.js", "full.js", "hub.js", "index.js", "options.js", "pack.js", "transport.js", "worker.js"],
  );
  // Depth-first: reaching a module that is still on the path is a cycle.
  const done = new Set();
  const walk = (name, path) => {
    assert.ok(!path.includes(name), `import cycle: ${[...path, name].join(" -> ")}`);
    if (done.has(name)) return;
    for (const f of graph.get(name)) walk(f, [...path, name]);
    done.add(name);
  };
  for (const name of graph.keys()) walk(name, []);
});

/** Runs `script` as an ES module in a child Node, in the package directory; kills it after `ms`. */
function runNode(script, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

test("in Node, open rejects at once with Unsupported and the process exits on its own", async () => {
  // Imported by the package's name (Node resolves a package's own name from inside it, through
  // its `exports`), as a user's code would.
  const script = `
    import { open, importFile, SqlweirError } from "sqlweir";
    const settle = (p) => p.then(
      () => ({ ok: true }),
      (e) => ({ ok: false, code: e.code, instance: e instanceof SqlweirError, isError: e instanceof Error, message: e.message }),
    );
    // A file's header as importFile checks it: the magic string, then 512-byte pages.
    const file = new Uint8Array(512);
    file.set(new TextEncoder().encode("SQLite format 3\\0"));
    file[16] = 2;
    const started = performance.now();
    const out = {
      open: await settle(open("app.db", { migrations: ["CREATE TABLE t(x)"] })),
      typo: await settle(open("app.db", { migration: [] })),
      importFile: await settle(importFile("app.db", file)),
      ms: performance.now() - started,
    };
    console.log(JSON.stringify(out));
  `;
  const run = await runNode(script);
  assert.equal(run.signal, null, `killed after 10 s: the process did not exit on its own; stderr: ${run.stderr}`);
  assert.equal(run.code, 0, run.stderr);
  const out = JSON.parse(run.stdout);
  const unsupported = {
    ok: false,
    code: "Unsupported",
    instance: true,
    isError: true,
    message: "unsupported: sqlweir needs a browser with OPFS and Web Workers; run it in a page served over https or from localhost, not in Node",
  };
  assert.deepEqual(out.open, unsupported);
  assert.deepEqual(out.importFile, unsupported);
  // Input errors are the same everywhere, Node included.
  assert.equal(out.typo.code, "InvalidInput");
  assert.equal(out.typo.message, "invalid input: unknown option 'migration'; did you mean 'migrations'?");
  assert.ok(out.ms < 1000, `rejected at once, not after ${out.ms} ms`);
});

test("sqlweir/react and sqlweir/vue resolve by name and export useQuery; the main entry imports no framework", async () => {
  const script = `
    const react = await import("sqlweir/react");
    const vue = await import("sqlweir/vue");
    console.log(JSON.stringify({ react: Object.keys(react), vue: Object.keys(vue), reactHook: typeof react.useQuery, vueHook: typeof vue.useQuery }));
  `;
  const run = await runNode(script);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), { react: ["useQuery"], vue: ["useQuery"], reactHook: "function", vueHook: "function" });
  // Every module the main entry and the worker reach imports only the package's own modules.
  for (const name of (await moduleGraph()).keys()) {
    const source = await readFile(join(ROOT, name), "utf8");
    const bare = [...source.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*"([^".][^"]*)"/gms)].map((m) => m[1]);
    assert.deepEqual(bare, [], `${name} imports packages`);
  }
});

test("the published package has the licenses, the repository fields, every module and no Node engine claim", async () => {
  const manifest = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
  assert.equal(manifest.license, "MIT OR Apache-2.0");
  assert.equal(manifest.engines, undefined, "a browser-only package claims no Node version");
  assert.equal(manifest.repository.url, "git+https://github.com/sqlweir/sqlweir.git");
  assert.equal(manifest.repository.directory, "wasm/js");
  assert.match(manifest.homepage, /^https:\/\/github\.com\/sqlweir\/sqlweir\b/);
  assert.equal(manifest.bugs.url, "https://github.com/sqlweir/sqlweir/issues");
  // npm cannot take files from outside the package: the copies must match the repository's.
  for (const name of ["LICENSE-MIT", "LICENSE-APACHE"]) {
    assert.equal(await readFile(join(ROOT, name), "utf8"), await readFile(join(REPO, name), "utf8"), `${name} differs from the repository's`);
  }
  assert.match(await readFile(join(ROOT, "LICENSE-MIT"), "utf8"), /Copyright \(c\) the sqlweir developers/);
  // What `npm publish wasm/js/dist` would upload (build-dist.mjs, run by scripts/build-wasm).
  const { stdout } = await promisify(execFile)("npm", ["pack", "--dry-run", "--json"], { cwd: DIST });
  const files = JSON.parse(stdout)[0].files.map((f) => f.path).sort();
  // Every module the entry and the worker import, each under its own name.
  const modules = [...(await moduleGraph()).keys()];
  // The framework entries (sqlweir/react, sqlweir/vue) with their typings, and every file the
  // exports map names.
  const entries = Object.values(manifest.exports).flatMap((e) => (typeof e === "string" ? [e] : Object.values(e))).map((f) => f.replace(/^\.\//, ""));
  assert.deepEqual(entries.filter((f) => /^(react|vue)\./.test(f)).sort(), ["react.d.ts", "react.js", "vue.d.ts", "vue.js"]);
  for (const name of ["LICENSE-MIT", "LICENSE-APACHE", "README.md", "index.d.ts", "package.json", ...modules, ...entries]) {
    assert.ok(files.includes(name), `${name} in ${files.join(", ")}`);
  }
  // Both builds, each with its glue and wasm; sqlweir/full's with its own worker
  // (scripts/build-wasm, scripts/build-wasm --full).
  for (const name of ["pkg/sqlweir_wasm.js", "pkg/sqlweir_wasm_bg.wasm", "pkg-full/sqlweir_wasm.js", "pkg-full/sqlweir_wasm_bg.wasm", "pkg-full/worker.js"]) {
    assert.ok(files.includes(name), `${name} in the package: build both (scripts/build-wasm, scripts/build-wasm --full)`);
  }
  assert.ok(!files.some((f) => f.startsWith("test/")), "the tests stay out");
  // The frameworks are optional peers: installing sqlweir installs neither.
  assert.deepEqual(manifest.dependencies, undefined);
  for (const name of ["react", "vue"]) {
    assert.ok(manifest.peerDependencies[name], `${name} is a peer`);
    assert.equal(manifest.peerDependenciesMeta[name].optional, true, `${name} is optional`);
  }
});

test("the published modules are the source's, minified: the same exports, fewer bytes, no scripts to run", async () => {
  // Apps without a bundler download them as they are; the source in the repository stays readable.
  const manifest = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
  const published = JSON.parse(await readFile(join(DIST, "package.json"), "utf8"));
  const { scripts: _s, devDependencies: _d, ...kept } = manifest;
  assert.deepEqual(published, kept, "dist/package.json is the source's less scripts and devDependencies");
  // Publishing the readable source by mistake is refused.
  assert.match(manifest.scripts.prepublishOnly, /exit 1/);
  const modules = manifest.files.filter((f) => f.endsWith(".js") && !f.includes("/"));
  assert.ok(modules.length >= 10, modules.join(", "));
  let source = 0;
  let minified = 0;
  for (const name of modules) {
    const [a, b] = await Promise.all([readFile(join(ROOT, name), "utf8"), readFile(join(DIST, name), "utf8")]);
    assert.ok(b.length < a.length * 0.8, `${name}: ${b.length} bytes published against ${a.length} written`);
    assert.ok(!b.includes("\n//"), `${name} keeps no comments`);
    source += a.length;
    minified += b.length;
    // The worker runs only in a worker (self.onmessage); the others load in Node.
    if (name === "worker.js") continue;
    const [mine, theirs] = await Promise.all([import(join(ROOT, name)), import(join(DIST, name))]);
    assert.deepEqual(Object.keys(theirs).sort(), Object.keys(mine).sort(), `${name}'s exports`);
  }
  assert.ok(minified < source / 2, `${minified} bytes published against ${source} written`);
  // The bundlers' worker and wasm lines, which they recognise by their shape, survive minifying.
  assert.match(await readFile(join(DIST, "index.js"), "utf8"), /new Worker\(new URL\("\.\/worker\.js",import\.meta\.url\),\{type:"module"/);
  assert.match(await readFile(join(DIST, "index.js"), "utf8"), /new URL\("\.\/pkg\/sqlweir_wasm_bg\.wasm",import\.meta\.url\)/);
  // The wasm-bindgen glue too: it is generated, its readable source is the Rust.
  const glue = await readFile(join(DIST, "pkg", "sqlweir_wasm.js"), "utf8");
  assert.ok(glue.length < (await readFile(join(ROOT, "pkg", "sqlweir_wasm.js"), "utf8")).length * 0.8);
  assert.deepEqual(await readFile(join(DIST, "pkg", "sqlweir_wasm_bg.wasm")), await readFile(join(ROOT, "pkg", "sqlweir_wasm_bg.wasm")));
});

test("pack's UTF-8 encoder gives TextEncoder's bytes for every kind of text", async () => {
  // encodeUtf8 replaced TextEncoder.encode (ten times slower in Chromium); its second buffer
  // serves texts that are not all ASCII, and a surrogate pair must not be cut between the two.
  const { encodeUtf8 } = await import("../pack.js");
  const reference = new TextEncoder();
  const texts = [
    "",
    "collector",
    "plain ascii ".repeat(1000),
    "é",
    "ascii then é then ascii",
    "日本語のテキスト",
    "emoji 😀 at the end 😀",
    "😀",
    "a\uD800b", // a lone high surrogate
    "\uDC00 lone low first",
    "x".repeat(4096) + "\uD83D\uDE00" + "y".repeat(10),
    "mixed ß∂ƒ 🎉 " + "z".repeat(300) + "\uD83D", // ends on half a pair
  ];
  for (const text of texts) {
    assert.deepEqual([...encodeUtf8(text)], [...reference.encode(text)], JSON.stringify(text.slice(0, 40)));
  }
});
