// The sqlweir package staged as npm would publish it, for the Vite builds of the peers benchmark
// (run.mjs) and of the size check (size.mjs).

import { cp, mkdir, readFile, readdir, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
// What npm publishes: wasm/js/dist (build-dist.mjs, run by scripts/build-wasm), the JavaScript minified.
const DIST = join(PACKAGE, "dist");

const exists = (path) => stat(path).then(() => true, () => false);

/**
 * The sqlweir package as npm would publish it: wasm/js/dist, and any module its modules import
 * (relative imports and `new URL("./...", import.meta.url)`, followed file to file) that
 * package.json's `files` missed, copied from the source with a warning: the package's modules
 * are being split up, and the bench should measure the tree as it is.
 */
export async function stageSqlweir(dir) {
  if (!(await exists(join(DIST, "pkg", "sqlweir_wasm_bg.wasm")))) {
    throw new Error("wasm/js/dist is missing: build the package first (scripts/build-wasm)");
  }
  await mkdir(dir, { recursive: true });
  await cp(DIST, dir, { recursive: true });
  const roots = (await readdir(DIST)).filter((f) => f.endsWith(".js"));
  const seen = new Set();
  const follow = async (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    const code = await readFile(join(dir, file), "utf8");
    const specifiers = code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s*|new URL\(\s*)["'](\.{1,2}\/[^"']+)["']/g);
    for (const [, spec] of specifiers) {
      const target = join(dirname(file), spec);
      if (!target.endsWith(".js") || target.startsWith("..")) continue;
      // sqlweir/full's build (scripts/build-wasm --full) is staged only when it was built.
      if (target.startsWith("pkg-full/") && !(await exists(join(PACKAGE, target)))) continue;
      try {
        await readFile(join(dir, target));
      } catch {
        console.warn(`warning: wasm/js/${file} imports ${spec}, which package.json "files" leaves out; staged anyway`);
        await mkdir(dirname(join(dir, target)), { recursive: true });
        await cp(join(PACKAGE, target), join(dir, target));
      }
      await follow(target);
    }
  };
  for (const f of roots) await follow(f);
}
