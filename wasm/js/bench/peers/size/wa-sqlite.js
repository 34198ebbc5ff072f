// The size check's app for wa-sqlite with AccessHandlePoolVFS (size.mjs): the benchmark's adapter and worker.
import store from "../wa-sqlite.js";

globalThis.store = store;
