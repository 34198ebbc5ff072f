// The size check's app for PGlite on opfs-ahp (size.mjs): the benchmark's adapter and worker.
import store from "../pglite.js";

globalThis.store = store;
