// The size check's app for sqlweir (size.mjs): the benchmark's adapter, kept whole.
import store from "../sqlweir.js";

globalThis.store = store;
