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
  /** What an acknowledged write survives: see the README's durability table (default `"normal"`). */
  synchronous?: "normal" | "full";
  /** SQLite's journal: `"delete"` (default, the rollback journal) or `"wal"` (experimental: see the README's durability section). */
  journal?: "wal" | "delete";
  /** Retry of batches that hit lock contention. */
  retry?: { baseMs?: number; capMs?: number; maxAttempts?: number; budgetMs?: number };
  /** Consecutive failed batches that open the circuit breaker (default 5). */
  breakerThreshold?: number;
  /** How long an open breaker waits before a trial batch, ms (default 500). */
  breakerCooldownMs?: number;
  /** OPFS directory of the VFS pool; one per page (default `.sqlweir`). */
  directory?: string;
}

/** A committed write. */
export interface Receipt {
  /** Rows the statement changed. */
  changes: number;
  /** The last inserted rowid after the statement. */
  lastRowid: number | bigint;
  /** The batch (transaction) it committed in. */
  batch: number;
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
  sqliteVersion: string;
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

/** A database open in the page's sqlweir worker. */
export interface Database {
  /** The name it was opened with. */
  readonly name: string;
  /** Writes one statement; resolves once its batch has committed. */
  write(sql: string, params?: SqlValue[]): Promise<Receipt>;
  /** Writes many parameter rows for one statement; resolves once committed, with the rows rejected alone. */
  writeMany(sql: string, rows: SqlValue[][]): Promise<ManyOutcome>;
  /** Runs a read-only statement between batches. A read issued after a write's ack sees it. */
  query<T extends Row = Row>(sql: string, params?: SqlValue[]): Promise<T[]>;
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

/** Opens (creating if needed) the database `name` in OPFS and runs the migrations. */
export function open(name: string, options?: OpenOptions): Promise<Database>;
