// One tick's writes in one message: `pack` lays them out in columns for the worker, and
// `cloneable` keeps what can still be sent when a message cannot be cloned whole.

import { SqlweirError } from "./errors.js";

const utf8 = new TextEncoder();

/** `counts` entry of an item that travels as it is (not a plain `write`). */
const AS_IS = 0xffffffff;

/**
 * One tick's writes `[id, target, payload, kind, extra]` in columns for the worker's
 * `submitPacked`, under the worker's message `ids` when given (then each item's own id goes in
 * `seqs`: its number at its tab, the request id's second half): plain `write`s (SQL string, array
 * of parameters) as one table of distinct SQL, parameter type tags, numbers in a Float64Array and
 * strings joined in one UTF-8 buffer; every other
 * item (typed writes, writeMany, odd input the worker refuses) as it is, in `legacy`. Keeps the
 * order of the items.
 */
export function pack(items, workerIds) {
  const n = items.length;
  let values = 0;
  for (let i = 0; i < n; i++) {
    const item = items[i];
    if (item[3] === false && typeof item[1] === "string" && Array.isArray(item[2])) values += item[2].length;
  }
  const ids = workerIds ?? new Float64Array(n);
  const seqs = workerIds ? new Float64Array(n) : null;
  const counts = new Uint32Array(n);
  const sqlIndex = new Uint32Array(n);
  const tags = new Uint8Array(values);
  const nums = new Float64Array(values);
  const sqls = [];
  const sqlAt = new Map();
  const strings = [];
  const ends = [];
  const others = [];
  const legacy = [];
  let v = 0;
  let units = 0;
  for (let i = 0; i < n; i++) {
    const item = items[i];
    const params = item[2];
    if (seqs) seqs[i] = item[0];
    else ids[i] = item[0];
    if (item[3] !== false || typeof item[1] !== "string" || !(Array.isArray(params) || params == null)) {
      counts[i] = AS_IS;
      legacy.push(item);
      continue;
    }
    let at = sqlAt.get(item[1]);
    if (at === undefined) {
      at = sqls.length;
      sqls.push(item[1]);
      sqlAt.set(item[1], at);
    }
    sqlIndex[i] = at;
    if (params == null) continue;
    const count = params.length;
    counts[i] = count;
    for (let k = 0; k < count; k++, v++) {
      const value = params[k];
      switch (typeof value) {
        case "number":
          tags[v] = 1;
          nums[v] = value;
          break;
        case "string":
          tags[v] = 2;
          strings.push(value);
          units += value.length;
          ends.push(units);
          break;
        case "boolean":
          tags[v] = 3;
          nums[v] = value ? 1 : 0;
          break;
        default:
          if (value === null) break; // tag 0
          tags[v] = 4;
          others.push(value);
      }
    }
  }
  // The strings as one UTF-8 buffer, transferred rather than cloned. Joined first: one native
  // encode of the whole is several times faster than one per string. The ends stay in UTF-16
  // units, so a surrogate pair split across two strings is still found (the worker gives each
  // half U+FFFD, as when sent alone).
  const text = encodeUtf8(strings.join(""));
  const textEnds = Uint32Array.from(ends);
  return {
    ids,
    counts,
    sqlIndex,
    sqls,
    tags,
    nums,
    text,
    textEnds,
    others,
    legacy,
    seqs,
    transfer: [ids.buffer, counts.buffer, sqlIndex.buffer, tags.buffer, nums.buffer, text.buffer, textEnds.buffer, ...(seqs ? [seqs.buffer] : [])],
  };
}

/**
 * `text` in UTF-8, as `TextEncoder.encode` gives it. `encodeInto` a buffer made for it is several
 * times faster in Chromium (12 MB: about 20 ms against 200 ms). The buffer is sized for ASCII
 * first; the rest of a text that is not goes into one sized for the worst case (3 bytes per
 * UTF-16 unit), and the two are joined.
 */
export function encodeUtf8(text) {
  const ascii = new Uint8Array(text.length);
  const { read, written } = utf8.encodeInto(text, ascii);
  if (read === text.length) return ascii;
  const rest = new Uint8Array((text.length - read) * 3);
  const more = utf8.encodeInto(text.substring(read), rest).written;
  const whole = new Uint8Array(written + more);
  whole.set(ascii.subarray(0, written));
  whole.set(rest.subarray(0, more), written);
  return whole;
}

const CANNOT_SEND =
  "invalid input: a parameter cannot be sent to the worker; use number, bigint, string, boolean, null or Uint8Array";

/**
 * The items of a message that could not be posted whole which can be cloned; each item that
 * cannot (a function or a symbol among its values) is rejected alone with `InvalidInput`, and its
 * waiter removed from `waiters`.
 */
export function cloneable(items, waiters) {
  const good = [];
  for (const item of items) {
    try {
      structuredClone(item);
      good.push(item);
    } catch {
      const waiter = waiters.get(item[0]);
      waiters.delete(item[0]);
      waiter?.reject(new SqlweirError(CANNOT_SEND, "InvalidInput"));
    }
  }
  return good;
}

/**
 * A string that is equal for equal SQL values or rows (bigints and blobs spelled out, which
 * JSON.stringify alone would refuse or lose): how a watched result or a hook's params compare.
 */
export function valueKey(value) {
  return JSON.stringify(value ?? null, (_, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? Array.from(v) : v));
}
