// The size check's app for sqlweir/full (size.mjs): SQLite with FTS5 and R*Tree; the entry alone.
import { open } from "sqlweir/full";

globalThis.store = { open };
