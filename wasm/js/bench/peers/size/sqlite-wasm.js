// The size check's app for @sqlite.org/sqlite-wasm on opfs-sahpool (size.mjs): the benchmark's adapter and worker.
import { sahpool } from "../sqlite-wasm.js";

globalThis.store = sahpool;
