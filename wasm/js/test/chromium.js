// Debian's Chromium as every browser test here starts it: headless; `--no-sandbox` because CI
// runs as root; the networking flags because without them Chromium stalls on this machine's
// refused connections. Shared by the package's tests and the demo page's.

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
import { join } from "node:path";

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
