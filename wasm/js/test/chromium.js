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
