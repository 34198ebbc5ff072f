// The benchmark's worker: the package's own worker (staged as package-worker.js, unchanged) plus
// the raw SQLite baselines of the `bench` build (benchRaw), reached over a BroadcastChannel. So
// the baselines and sqlweir run in one worker, on one wasm instance and one OPFS pool. probe.js
// comes first so that its startup timestamps see the package's worker load SQLite.

import { marks } from "./probe.js";
import "./package-worker.js";
import { benchRaw } from "./pkg/sqlweir_wasm.js";

const channel = new BroadcastChannel("sqlweir-bench");
channel.onmessage = async ({ data: { id, probe, name, rows, mode, journal, synchronous } }) => {
  if (probe) {
    channel.postMessage({ id, ok: true, marks });
    return;
  }
  try {
    // The page opens a database through the package first, so the module is initialised.
    const [ms, count] = await benchRaw(name, rows, mode, journal, synchronous);
    channel.postMessage({ id, ok: true, ms, count });
  } catch (e) {
    channel.postMessage({ id, ok: false, error: String(e?.message ?? e) });
  }
};
