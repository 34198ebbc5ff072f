// One tick's writes in one message: `pack` lays them out in columns for the worker, and
// `cloneable` keeps what can still be sent when a message cannot be cloned whole.

import { SqlweirError } from "./errors.js";

const utf8 = new TextEncoder();

/** `counts` entry of an item that travels as it is (not a plain `write` or `writeMany`). */
const AS_IS = 0xffffffff;

/** `counts` entry of a `writeMany` whose rows are packed (`manyRows`, `rowLens`). */
const MANY = 0xfffffffe;

/** `pack`'s ways of sending an item. */
const AS_IS_WAY = 0;
const WRITE = 1;
const WRITE_MANY = 2;

/** Whether item `[id, sql, payload, kind]` is a plain `write`: SQL and an array of parameters (or none). */
const plainWrite = (item) => item[3] === false && typeof item[1] === "string" && (Array.isArray(item[2]) || item[2] == null);

/** Whether it is a `writeMany` of SQL and an array of parameter arrays. */
const plainMany = (item) => item[3] === true && typeof item[1] === "string" && Array.isArray(item[2]) && item[2].every(Array.isArray);

/**
 * One tick's writes `[id, target, payload, kind, extra]` in columns for the worker's
 * `submitPacked`, under the worker's message `ids` when given (then each item's own id goes in
 * `seqs`: its number at its tab, the request id's second half): plain `write`s (SQL string, array
 * of parameters) and `writeMany`s (SQL string, array of parameter arrays: their number of rows in
 * `manyRows`, each row's length in `rowLens`) as one table of distinct SQL, parameter type tags,
 * numbers in a Float64Array and strings joined in one UTF-8 buffer; every other item (typed
 * writes, odd input the worker refuses) as it is, in `legacy`. Keeps the order of the items.
 */
export function pack(items, workerIds) {
  const n = items.length;
  let values = 0;
  let manyItems = 0;
  let manyRowCount = 0;
  // Each item's way, decided once: a plain write, a packed writeMany, or as it is.
  const ways = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const item = items[i];
    if (plainWrite(item)) {
      ways[i] = WRITE;
      values += item[2]?.length ?? 0;
    } else if (plainMany(item)) {
      ways[i] = WRITE_MANY;
      manyItems++;
      manyRowCount += item[2].length;
      for (const row of item[2]) values += row.length;
    }
  }
  const ids = workerIds ?? new Float64Array(n);
  const seqs = workerIds ? new Float64Array(n) : null;
  const counts = new Uint32Array(n);
  const sqlIndex = new Uint32Array(n);
  const manyRows = new Uint32Array(manyItems);
  const rowLens = new Uint32Array(manyRowCount);
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
  let m = 0;
  let r = 0;
  // Lays out one parameter array's values from `v` on.
  const layOut = (params) => {
    const count = params.length;
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
  };
  for (let i = 0; i < n; i++) {
    const item = items[i];
    const params = item[2];
    if (seqs) seqs[i] = item[0];
    else ids[i] = item[0];
    const many = ways[i] === WRITE_MANY;
    if (ways[i] === AS_IS_WAY) {
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
    if (many) {
      counts[i] = MANY;
      manyRows[m++] = params.length;
      for (const row of params) {
        rowLens[r++] = row.length;
        layOut(row);
      }
    } else if (params != null) {
      counts[i] = params.length;
      layOut(params);
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
    manyRows,
    rowLens,
    transfer: [ids.buffer, counts.buffer, sqlIndex.buffer, manyRows.buffer, rowLens.buffer, tags.buffer, nums.buffer, text.buffer, textEnds.buffer, ...(seqs ? [seqs.buffer] : [])],
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
      // Rejected before it leaves `waiters`: a page's own write settles only while it is there.
      waiters.get(item[0])?.reject(new SqlweirError(CANNOT_SEND, "InvalidInput"));
      waiters.delete(item[0]);
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
