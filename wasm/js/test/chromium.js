// Debian's Chromium as every browser test here starts it: headless; `--no-sandbox` because CI
// runs as root; the networking flags because without them Chromium stalls on this machine's
// refused connections. Shared by the package's tests and the demo page's; `chromiumHooks` is the
// package tests' whole setup.

/** The browser binary (Debian's `chromium`; override with CHROMIUM). */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Command-line flags for every launch. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { serve } from "./server.js";

/** The package's directory (wasm/js), which the browser tests serve. */
const PACKAGE = dirname(dirname(fileURLToPath(import.meta.url)));

/**
 * Launches Chromium on a fresh, empty profile (OPFS starts empty) with the caller's
 * playwright-core `chromium` (each test folder installs its own); `options` are added to the
 * launch options (e.g. a viewport). Returns the context and the profile directory.
 */
export async function launchChromium(chromium, options = {}) {
  const profile = await mkdtemp(join(tmpdir(), "sqlweir-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    ...options,
  });
  return { context, profile };
}

/** Closes what `launchChromium` opened and removes its profile. */
export async function closeChromium(context, profile) {
  await context?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
}

/**
 * The package's root under `mounts` (a directory or mounts, as `serve` takes them), with the build
 * the tests run: `SQLWEIR_BUILD=full` (sqlweir/full, scripts/build-wasm --full) serves full.js as
 * /index.js, so every `import ... from "sqlweir"` of the test page gets the full build.
 */
function withBuild(mounts) {
  if (process.env.SQLWEIR_BUILD !== "full") return mounts;
  const all = typeof mounts === "string" ? { "/": mounts } : { ...mounts };
  return { ...all, "/index.js": join(all["/"], "full.js") };
}

/**
 * The setup every browser test file shares, as node:test hooks registered by this call. Before
 * the file's tests: serves `root` on 127.0.0.1:`port` (what `serve` takes, the package's
 * directory by default; or a function, awaited then, that returns it; see `withBuild` for
 * SQLWEIR_BUILD), launches Chromium on a
 * fresh profile (`launch`: more launch options), takes its first tab as `page`, collects that
 * tab's uncaught errors in `pageErrors`, opens `url` in it if given, and awaits `setup(session)`.
 * With `tabs` (labels), opens `url` instead in one tab per label (`session.tabs[label]`, see
 * `openTab`) and closes the first tab (`page` is then null).
 * After them: awaits `beforeClose(page)`, closes Chromium, then the server. Returns the session,
 * `{ server, context, page, pageErrors }`, filled in by the `before` hook.
 *
 * What a file adds before its tests goes in `root` and `setup`, not in a `before` hook of its
 * own: Node 20 runs a file's top-level `before` hooks at once, not one after the other. Its
 * `after` hooks run in turn, in the order registered.
 */
export function chromiumHooks(chromium, { port, root = PACKAGE, url, tabs, launch, setup, beforeClose } = {}) {
  const session = { server: null, context: null, profile: null, page: null, pageErrors: [], tabs: {} };
  before(async () => {
    session.server = await serve(withBuild(typeof root === "function" ? await root() : root), port);
    ({ context: session.context, profile: session.profile } = await launchChromium(chromium, launch));
    session.page = session.context.pages()[0] ?? (await session.context.newPage());
    session.page.on("pageerror", (e) => session.pageErrors.push(e));
    if (tabs) {
      for (const label of tabs) session.tabs[label] = await openTab(session, url, label);
      await session.page.close();
      session.page = null;
    } else if (url) {
      await session.page.goto(url);
    }
    await setup?.(session);
  });
  after(async () => {
    if (session.page && beforeClose) await beforeClose(session.page);
    await closeChromium(session.context, session.profile);
    await new Promise((resolve) => (session.server ? session.server.close(resolve) : resolve()));
  });
  return session;
}

/**
 * Opens `url` in a new tab of the session's browser; the tab's uncaught errors go to the session's
 * `pageErrors`, prefixed with `label`. Returns the tab once loaded.
 */
export async function openTab(session, url, label) {
  const page = await session.context.newPage();
  page.on("pageerror", (e) => session.pageErrors.push(`${label}: ${e.message}`));
  await page.goto(url);
  return page;
}
