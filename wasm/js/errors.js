// sqlweir's errors: `SqlweirError`, the errors the client raises itself, and errors to and from
// the plain objects that carry them in messages (from the worker, and between tabs).

/** An error from sqlweir: a real `Error` with a stable `code` and the SQLite code, if any. */
export class SqlweirError extends Error {
  constructor(message, code, sqliteCode = null, details = {}) {
    super(message);
    this.name = "SqlweirError";
    this.code = code;
    this.sqliteCode = sqliteCode;
    Object.assign(this, details);
  }
}

/** A `SqlweirError` from a plain error object of a message (an error with a `code` as it is). */
export function toError(plain) {
  if (plain instanceof Error && "code" in plain) return plain;
  const { message = String(plain), code = "Internal", sqliteCode = null, name: _n, stack: _s, ...details } =
    plain ?? {};
  return new SqlweirError(message, code, sqliteCode, details);
}

/** A settled write's value from a message, its errors rebuilt. */
export function settledValue(value) {
  // A writeMany outcome carries its rejected rows' errors as plain objects.
  if (value && Array.isArray(value.rejected)) {
    return { ...value, rejected: value.rejected.map(({ index, error }) => ({ index, error: toError(error) })) };
  }
  return value;
}

/** An error as a plain object, for a channel (structured clone drops an Error's own fields). */
export function plainError(e) {
  const err = toError(e);
  const out = { name: err.name, message: err.message, code: err.code, sqliteCode: err.sqliteCode ?? null };
  for (const [key, value] of Object.entries(err)) if (!(key in out)) out[key] = value;
  return out;
}

/** A settled value as a plain object, for a channel (`settledValue` undoes it). */
export function plainValue(value) {
  if (value && Array.isArray(value.rejected)) {
    return { ...value, rejected: value.rejected.map(({ index, error }) => ({ index, error: plainError(error) })) };
  }
  return value;
}

export function leaderChanged(what) {
  return new SqlweirError(
    `leader changed: the tab running the database went away before answering, so this ${what} may or may not have been applied; retry it (make such writes idempotent)`,
    "LeaderChanged",
  );
}

export function closedError() {
  return new SqlweirError("store is closed: open it again to write", "Closed");
}

export function invalid(message) {
  return new SqlweirError(`invalid input: ${message}`, "InvalidInput");
}

export function inUse(name) {
  return new SqlweirError(`${name} is open; close it in every tab before importing over it`, "InUse");
}
