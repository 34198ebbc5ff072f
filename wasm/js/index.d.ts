// Type declarations of the npm package `sqlweir`.

/** A value a parameter can take. Anything else is rejected with `InvalidInput`, never coerced. */
export type SqlValue = number | bigint | string | boolean | null | Uint8Array;

/** A value read back: integers beyond 2^53 as `bigint`, BLOBs as `Uint8Array`. */
export type SqlResult = number | bigint | string | null | Uint8Array;

/** A row as a plain object keyed by column name. */
export type Row = Record<string, SqlResult>;

/** Stable error codes: branch on these, never on messages. */
export type ErrorCode =
  | "Busy"
  | "Constraint"
  | "InvalidInput"
  | "Sql"
  | "DiskFull"
  | "ReadOnly"
  | "Io"
  | "QueueFull"
  | "Closed"
  | "Migration"
  | "Storage"
  | "InUse"
  | "InProgress"
  | "Worker"
  | "LeaderChanged"
  | "Unsupported"
  | "Internal";

/** Every rejection of sqlweir: a real `Error` with a stable code and the SQLite code. */
export class SqlweirError extends Error {
  readonly name: "SqlweirError";
  /** What went wrong, stable across versions. */
  readonly code: ErrorCode;
  /** SQLite's (extended) result code, e.g. 2067 for a UNIQUE constraint; null when none. */
  readonly sqliteCode: number | null;
  /** For `InProgress`: who holds the job lock. */
  readonly holder?: string;
  /** For `InProgress`: since when the lock is held, in ms since the Unix epoch. */
  readonly sinceMs?: number;
  /** For a failed `transaction`: the index (from 0) of the statement that failed. */
  readonly statement?: number;
}

/** Options of `open`. An unknown key is an error. */
export interface OpenOptions {
  /** Schema steps in order; progress is kept in `PRAGMA user_version`, each step in its own transaction. */
  migrations?: string[];
  /** Rows the write queue holds (default 10,000). */
  queueCapacity?: number;
  /** When the queue is full: `"wait"` (default) keeps the promise pending, `"fail"` rejects with `QueueFull`. */
  backpressure?: "wait" | "fail";
  /** Rows per batch at first (default 100); grows under load. */
  batchRows?: number;
  /** Largest batch under load (default 10,000). */
  batchRowsCeiling?: number;
  /** How long the writer waits for more writes before a batch that is not full, ms (default 0). */
  lingerMs?: number;
  /** What an acknowledged write survives: see the README's durability table (default `"normal"`; `"full"` flushes every commit before its acks). */
  synchronous?: "normal" | "full";
  /** SQLite's journal: `"wal"` (default) or `"delete"` (the rollback journal); a database in the other mode is converted on open. */
  journal?: "wal" | "delete";
  /** Retry of batches that hit lock contention. */
  retry?: { baseMs?: number; capMs?: number; maxAttempts?: number; budgetMs?: number };
  /** Consecutive failed batches that open the circuit breaker (default 5). */
  breakerThreshold?: number;
  /** How long an open breaker waits before a trial batch, ms (default 500). */
  breakerCooldownMs?: number;
  /** OPFS directory of the VFS pool; one per page (default `.sqlweir`). */
  directory?: string;
  /**
   * Whether this tab's writes carry request ids (default `true`): the leader tab records each in
   * the write's own transaction, so a write in flight when the leader tab goes away is sent to
   * the next leader and applied exactly once. `false` saves one small row per write, and such a
   * write then rejects with `LeaderChanged` instead (it may or may not have been applied).
   */
  requestIds?: boolean;
  /**
   * Where sqlweir's own log lines go (a rejected write at `debug`, retries and slow commits at
   * `warn`): `console`, or any object with some of these methods. Without one, only errors that
   * no promise reports reach `console.error`.
   */
  logger?: Logger;
}

/** A sink for sqlweir's log lines; a missing method drops that level. */
export interface Logger {
  debug?(...args: unknown[]): void;
  info?(...args: unknown[]): void;
  warn?(...args: unknown[]): void;
  error?(...args: unknown[]): void;
}

/** A committed write. */
export interface Receipt {
  /** Rows the statement changed. */
  changes: number;
  /** The last inserted rowid after the statement. */
  lastRowid: number | bigint;
  /** The batch (transaction) it committed in. */
  batch: number;
  /** The rows of the statement's `RETURNING` clause, as plain objects; absent without one. */
  rows?: Record<string, unknown>[];
}

/** A committed `writeMany`. */
export interface ManyOutcome {
  /** Rows committed. */
  committed: number;
  /** Rows rejected alone, by index into the rows given. */
  rejected: { index: number; error: SqlweirError }[];
  /** The batch (transaction) it committed in. */
  batch: number;
}

/**
 * A row for `insert`, `upsert` and `insertMany`: its own enumerable fields are the columns.
 * A field that is `undefined` (or absent) is left out: the column keeps its DEFAULT on insert,
 * and an upsert leaves it unchanged. Other values follow `SqlValue`; anything else rejects with
 * `InvalidInput` naming the field.
 */
export type RowInput = Record<string, SqlValue | undefined>;

/** One statement of a `transaction`. */
export interface Statement {
  sql: string;
  params?: SqlValue[];
}

/** A committed `transaction`: what each statement did, in order. */
export interface TransactionOutcome {
  results: { changes: number; lastRowid: number | bigint }[];
  /** The batch (transaction) it committed in; no other write shares it. */
  batch: number;
}

/** One keyset page. */
export interface Page<T = Row> {
  /** Up to `limit` rows ordered by the key column. */
  rows: T[];
  /** The last row's key when the page is full: pass it as `after`. Null when no row follows. */
  next: SqlResult;
}

/** Counters and latencies of a database. */
export interface Metrics {
  queueDepth: number;
  queueCapacity: number;
  accepted: number;
  committed: number;
  rejected: number;
  failed: number;
  retries: number;
  replays: number;
  batches: number;
  meanBatchSize: number;
  batchLimit: number;
  commitP50Ms: number;
  commitP99Ms: number;
  ackP50Ms: number;
  ackP99Ms: number;
  breaker: "closed" | "open" | "half-open";
  breakerOpened: number;
  lastError: string | null;
  journalMode: string;
  /** The database engine and its version, e.g. `"SQLite 3.50.4"`. */
  engine: string;
}

/** The health verdict and why. */
export interface Health {
  status: "ok" | "degraded" | "failing";
  reason: string | null;
}

/** A held job lock. */
export interface JobGuard {
  name: string;
  holder: string;
  /** Releases the lock; `failure` records the run as failed with that reason. False if already released. */
  release(failure?: string): Promise<boolean>;
}

/** Who holds a job lock and its last runs. */
export interface JobStatus {
  holder: { holder: string; sinceMs: number } | null;
  runs: { holder: string; startedMs: number; durationMs: number; failure: string | null }[];
}

/** This tab's part for a database: it runs it (`"leader"`) or forwards to the tab that does. */
export type Role = "leader" | "follower";

/** Dispatched on a `Database` when this tab's role changes (a follower took over). */
export interface RoleChangeEvent extends CustomEvent<{ role: Role }> {
  readonly type: "rolechange";
}

/**
 * A database open in the page's sqlweir worker, or, in a follower tab, in the leader tab's
 * (see the README's "Several tabs"). Dispatches `rolechange` when this tab starts leading.
 */
export interface Database extends EventTarget {
  /** The name it was opened with. */
  readonly name: string;
  /** Whether this tab runs the database (`"leader"`) or forwards its calls to the tab that does. */
  readonly role: Role;
  /** Calls `listener` with the new role when it changes; returns a function that stops it. */
  onRoleChange(listener: (role: Role) => void): () => void;
  addEventListener(type: "rolechange", listener: (event: RoleChangeEvent) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  /**
   * Writes one statement; resolves once its batch has committed. Parameters by position
   * (`?`, `?1`) as an array, or by name (`:id`, `@id`, `$id`) as an object `{ id: 1 }`; a
   * missing or extra name rejects the write with `InvalidInput`.
   */
  write(sql: string, params?: SqlValue[] | Record<string, SqlValue>): Promise<Receipt>;
  /** Writes many parameter rows for one statement; resolves once committed, with the rows rejected alone. */
  writeMany(sql: string, rows: SqlValue[][]): Promise<ManyOutcome>;
  /**
   * Inserts `row` into `table` (columns from its fields, identifiers quoted); resolves once its
   * batch has committed. A field that is not a column rejects with `Sql` naming it.
   */
  insert(table: string, row: RowInput): Promise<Receipt>;
  /**
   * Inserts `row`, or, when it conflicts on `conflictColumns` (a PRIMARY KEY or UNIQUE column
   * set, which must be fields of the row), updates the row's other fields in place: no
   * duplicate. With only the conflict columns as fields it does nothing on a conflict.
   */
  upsert(table: string, row: RowInput, conflictColumns: string | string[]): Promise<Receipt>;
  /**
   * Inserts rows that all have the first row's fields (in any order) as one queue entry; resolves
   * like `writeMany`, with the rows rejected alone. No rows resolves with `{ committed: 0, rejected: [], batch: 0 }`.
   */
  insertMany(table: string, rows: RowInput[]): Promise<ManyOutcome>;
  /**
   * Keyset pagination: up to `limit` (default 100, at most 100,000) rows of `table` whose `key`
   * column is greater than `after` (from the start when null), ordered by `key`. Each page costs
   * the same, and with a key that only grows (an INTEGER PRIMARY KEY) rows written meanwhile are
   * neither skipped nor repeated. `next` is null once a page is not full.
   */
  page<T = Row>(table: string, key: string, options?: { after?: SqlValue | null; limit?: number }): Promise<Page<T>>;
  /**
   * Runs the statements in one `BEGIN IMMEDIATE` transaction on the writer, alone between
   * batches: all of them commit or none does. A failing statement rolls everything back and
   * rejects with its error (`statement` says which). Lock contention retries the whole list.
   * Not a closure: the statements cannot read each other's results from JavaScript, so decide in
   * SQL (`SET n = n + 1`, `INSERT ... SELECT`, `WHERE` guards). Passing a function rejects with
   * `InvalidInput`.
   */
  transaction(statements: Statement[]): Promise<TransactionOutcome>;
  /**
   * Runs a read-only statement between batches. A read issued after a write's ack sees it. `T`
   * (an interface or a type alias) describes the rows; it is not checked at run time.
   */
  query<T = Row>(sql: string, params?: SqlValue[]): Promise<T[]>;
  /**
   * Calls `listener` after each committed batch that changed rows, in every tab (followers
   * included), once per batch, with the batch id and the tables it changed. Returns a function
   * that stops it.
   */
  onCommit(listener: (commit: { batch: number; tables: string[] }) => void): () => void;
  /**
   * A live query: runs `sql` now and again after each committed batch that changed a table it
   * reads (SQLite's authorizer decides which), calling `callback` with the first result and each
   * one that differs from the last; re-runs are coalesced. Returns a function that stops it;
   * its `ready` settles after the first result, or rejects with the query's error.
   */
  watch<T = Row>(
    sql: string,
    params: SqlValue[],
    callback: (rows: T[]) => void,
    options?: { onError?: (error: SqlweirError) => void },
  ): (() => void) & { ready: Promise<void> };
  /**
   * The whole database file, once every write issued before it settled: read between batches
   * (in WAL mode, the WAL's commits included), its header set to rollback-journal mode so it
   * opens on its own, e.g. with `importFile` or the sqlite3 shell.
   */
  exportFile(): Promise<Uint8Array>;
  /** Resolves when every write issued before it has settled. */
  flush(): Promise<void>;
  /** Lets accepted writes settle, then closes; later calls reject with `Closed`. */
  close(): Promise<void>;
  metrics(): Promise<Metrics>;
  health(): Promise<Health>;
  /** Takes an exclusive job lock, or rejects with `InProgress` (after `timeoutMs`, if given). */
  lock(name: string, options?: { holder?: string; timeoutMs?: number }): Promise<JobGuard>;
  jobStatus(name: string): Promise<JobStatus>;
  /**
   * Demo and test hook: makes the next `attempts` batch attempts fail with SQLITE_BUSY, as if
   * another connection held the write lock (`0` releases it). Only in a package built with the
   * crate's `fault-injection` feature (`scripts/build-wasm --features fault-injection`);
   * otherwise rejects with `InvalidInput`.
   */
  injectBusy(attempts: number): Promise<void>;
}

/**
 * Opens (creating if needed) the database `name` in OPFS and runs the migrations. Rejects with
 * `InvalidInput` for an unknown option, `Unsupported` outside a browser with OPFS and workers.
 */
export function open(name: string, options?: OpenOptions): Promise<Database>;

/**
 * Writes `bytes`, a whole SQLite database file (from `exportFile` or elsewhere), as the database
 * `name` in OPFS, replacing any database of that name. Rejects with `InvalidInput` when the bytes
 * are not an SQLite file, `InUse` while `name` is open in any tab.
 */
export function importFile(name: string, bytes: Uint8Array | ArrayBuffer, options?: { directory?: string }): Promise<void>;
