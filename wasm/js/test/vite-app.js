// Builds a tiny app with Vite for the framework tests (react.test.js, vue.test.js): `main.js`
// and an index.html in a fresh temp directory whose node_modules links `sqlweir` to this package
// and the named packages to this package's dev dependencies, as an app that installed them
// would have. Returns the temp directory and the built `dist`.

import { mkdir, mkdtemp, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";

export const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

export async function buildViteApp(prefix, main, packages) {
  const work = await mkdtemp(join(tmpdir(), prefix));
  await mkdir(join(work, "node_modules"), { recursive: true });
  await symlink(ROOT, join(work, "node_modules", "sqlweir"), "dir");
  for (const name of packages) await symlink(join(ROOT, "node_modules", name), join(work, "node_modules", name), "dir");
  await writeFile(join(work, "main.js"), main);
  await writeFile(
    join(work, "index.html"),
    `<!doctype html>\n<html>\n  <head><meta charset="utf-8" /><script type="module" src="./main.js"></script></head>\n  <body><div id="root"></div></body>\n</html>\n`,
  );
  await build({ root: work, base: "/", configFile: false, logLevel: "silent" });
  return { work, dist: join(work, "dist") };
}
