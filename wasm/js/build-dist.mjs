// The package as npm publishes it, in wasm/js/dist (gitignored): package.json and every file its
// `files` lists, at the same paths, with each JavaScript module minified by esbuild (one module
// for one module: imports, exports and the `new Worker(new URL(...))` lines bundlers look for are
// kept, so the layout and module identity are the readable source's). Apps without a bundler
// download these; bundlers minify either. scripts/build-wasm runs it after each build (pkg/ and,
// once built, pkg-full/); publish with `npm publish wasm/js/dist`.
//   node build-dist.mjs    prints the modules' gzipped bytes, as written and minified

import { cp, mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { transform } from "esbuild";

const PACKAGE = dirname(fileURLToPath(import.meta.url));
const DIST = join(PACKAGE, "dist");
// The browsers sqlweir needs (OPFS synchronous access handles in workers) all run ES2022.
const TARGET = "es2022";

const exists = (path) => stat(path).then(() => true, () => false);

/** Every file under `path` (itself if it is a file), relative to the package. */
async function filesOf(path) {
  const full = join(PACKAGE, path);
  if (!(await stat(full)).isDirectory()) return [path];
  const entries = await readdir(full, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(PACKAGE, join(e.parentPath ?? e.path, e.name)));
}

async function main() {
  const manifest = JSON.parse(await readFile(join(PACKAGE, "package.json"), "utf8"));
  await rm(DIST, { recursive: true, force: true });
  await mkdir(DIST, { recursive: true });
  // What users install: no scripts (the source's prepublishOnly refuses to publish it) and no
  // devDependencies.
  const { scripts: _s, devDependencies: _d, ...published } = manifest;
  await writeFile(join(DIST, "package.json"), `${JSON.stringify(published, null, 2)}\n`);
  const sizes = [];
  for (const entry of manifest.files) {
    if (!(await exists(join(PACKAGE, entry)))) {
      // sqlweir/full's build is made by `scripts/build-wasm --full`, after the default one.
      if (entry.startsWith("pkg-full")) continue;
      throw new Error(`wasm/js/${entry} is missing: build the package first (scripts/build-wasm)`);
    }
    for (const file of await filesOf(entry)) {
      const out = join(DIST, file);
      await mkdir(dirname(out), { recursive: true });
      if (!file.endsWith(".js")) {
        await cp(join(PACKAGE, file), out);
        continue;
      }
      const source = await readFile(join(PACKAGE, file), "utf8");
      const { code } = await transform(source, { format: "esm", minify: true, target: TARGET, legalComments: "none" });
      await writeFile(out, code);
      sizes.push([file, gzipSync(source, { level: 9 }).length, gzipSync(code, { level: 9 }).length]);
    }
  }
  const total = (i) => sizes.reduce((sum, s) => sum + s[i], 0);
  console.log(`wasm/js/dist: ${sizes.length} modules minified, gzipped ${total(1)} -> ${total(2)} bytes`);
}

await main();
