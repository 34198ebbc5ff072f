// The size check's app for SQLocal (size.mjs): the benchmark's adapter.
import store from "../sqlocal.js";

globalThis.store = store;
