// `open`'s options, checked before anything starts: an unknown key is refused with the option
// it is likely a typo of.

import { invalid } from "./errors.js";

/** `open`'s options (the worker checks their values; serde cannot see unknown keys of a JS object). */
const OPTIONS = [
  "migrations",
  "queueCapacity",
  "backpressure",
  "batchRows",
  "batchRowsCeiling",
  "lingerMs",
  "synchronous",
  "journal",
  "retry",
  "breakerThreshold",
  "breakerCooldownMs",
  "directory",
  "logger",
  "requestIds",
];
const RETRY_OPTIONS = ["baseMs", "capMs", "maxAttempts", "budgetMs"];

/** Edit distance of `a` and `b` (case ignored), for "did you mean". */
function distance(a, b) {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length];
}

/** The first key of `object` not in `known`, as an error that suggests the close one. */
function unknownKey(object, known, prefix) {
  const key = Object.keys(object).find((k) => !known.includes(k));
  if (key === undefined) return null;
  const close = known.find((k) => distance(key, k) <= Math.min(2, key.length >> 1)) ??
    known.find((k) => key.length > 3 && (k.startsWith(key) || key.startsWith(k)));
  const hint = close ? `did you mean '${prefix}${close}'?` : `the options are ${known.map((k) => prefix + k).join(", ")}`;
  return invalid(`unknown option '${prefix}${key}'; ${hint}`);
}

/** The error `open` rejects with for these options, or null when they are fine. */
export function checkOptions(options) {
  if (typeof options !== "object" || Array.isArray(options)) return invalid("the options of open must be an object");
  const { retry, logger, requestIds } = options;
  if (requestIds != null && typeof requestIds !== "boolean") return invalid("requestIds must be true or false");
  if (retry != null && (typeof retry !== "object" || Array.isArray(retry))) return invalid("retry must be an object");
  if (logger != null && typeof logger !== "object") {
    return invalid("logger must be an object with debug, info, warn and error methods, such as console");
  }
  return unknownKey(options, OPTIONS, "") ?? (retry ? unknownKey(retry, RETRY_OPTIONS, "retry.") : null);
}
