//! The [`Backend`] over rusqlite: one connection on the OPFS pool VFS, owned by the worker.

use rusqlite::{Connection, OpenFlags};
use std::sync::Arc;

use sqlweir_core::{Applied, Backend, BackendError, ErrorClass, ErrorKind, Recorded, RequestId, Value};
use sqlweir_sqlite::{MigrationError, classify};

use crate::error::OpenError;
use crate::options::{Journal, Options, Synchronous};

/// Statements kept prepared per connection: a store usually runs a handful of distinct writes.
const STATEMENT_CACHE: usize = 64;

/// A query's result: column names and rows of values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryRows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One vector of values per row, in column order.
    pub rows: Vec<Vec<Value>>,
}

/// The write and read connection of one database: the shared rusqlite backend (crate
/// `sqlweir-sqlite`, the same as native) and what the worker needs around it.
pub(crate) struct SqliteBackend {
    inner: sqlweir_sqlite::SqliteBackend,
    journal_mode: String,
}

impl SqliteBackend {
    /// Opens `name` on the VFS `vfs`, applies the pragmas and runs the migrations.
    ///
    /// The order of the pragmas is load-bearing; see [`exclusive_before_first_read`].
    pub(crate) fn open(name: &str, vfs: &str, options: &Options) -> Result<Self, OpenError> {
        let db = |e| OpenError::Database(classify(e));
        let conn = Connection::open_with_flags_and_vfs(name, OpenFlags::default(), vfs).map_err(db)?;
        exclusive_before_first_read(&conn).map_err(db)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // No busy handler: SQLite's would sleep synchronously and stall the worker's event loop;
        // the writer retries lock contention itself, with non-blocking sleeps.
        conn.busy_timeout(std::time::Duration::ZERO).map_err(db)?;
        // The first read of the file (synchronous reads the schema): a file that is not a
        // database fails here, before anything is accepted. Set before the journal mode, so that
        // converting a file, or a new one, to WAL (a commit through a rollback journal) runs
        // under the setting asked for, not SQLite's default FULL: one flush fewer.
        let synchronous = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous).map_err(db)?;
        // A file in the other journal mode is converted (WAL to DELETE checkpoints the WAL into
        // the database and removes it).
        let journal_mode = set_journal_mode(&conn, options.journal)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        migrate(&conn, &options.migrations)?;
        let inner = sqlweir_sqlite::SqliteBackend::new(conn).map_err(OpenError::Database)?;
        Ok(SqliteBackend { inner, journal_mode })
    }

    /// The journal mode SQLite reported at open.
    pub(crate) fn journal_mode(&self) -> &str {
        &self.journal_mode
    }

    /// Runs a read-only statement.
    pub(crate) fn query(&self, sql: &str, params: &[Value]) -> Result<QueryRows, BackendError> {
        let (columns, rows) = self.inner.query(sql, params, true)?;
        Ok(QueryRows { columns, rows })
    }

    /// The tables a query reads (for live queries); nothing runs.
    pub(crate) fn tables_read(&self, sql: &str) -> Result<Vec<String>, BackendError> {
        self.inner.tables_read(sql)
    }

    /// The connection, for the raw baselines of the benchmark.
    #[cfg(feature = "bench")]
    pub(crate) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.inner.conn
    }

    /// Closes the connection, releasing its files in the pool.
    pub(crate) fn close(self) -> Result<(), BackendError> {
        self.inner.conn.close().map_err(|(_, e)| classify(e))
    }

    /// Makes the next `attempts` transactions fail with `SQLITE_BUSY`.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn inject_busy(&mut self, attempts: u32) {
        self.inner.inject_busy(attempts);
    }
}

/// Every write goes through the shared backend: classification by code, salvage, the refusal of
/// reads and transaction control inside a batch.
impl Backend for SqliteBackend {
    fn begin(&mut self) -> Result<(), BackendError> {
        self.inner.begin()
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Applied, BackendError> {
        self.inner.execute(sql, params)
    }

    fn execute_many(
        &mut self,
        sql: &str,
        names: Option<&[String]>,
        rows: &[&[Value]],
        each: &mut dyn FnMut(usize, Result<Applied, BackendError>, bool) -> bool,
    ) {
        self.inner.execute_many(sql, names, rows, each);
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        self.inner.commit()
    }

    fn rollback(&mut self) -> Result<(), BackendError> {
        self.inner.rollback()
    }

    fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }

    fn recorded(&mut self, id: &RequestId) -> Result<Option<Recorded>, BackendError> {
        self.inner.recorded(id)
    }

    fn recorded_many(&mut self, origin: &Arc<str>, seqs: &[u64]) -> Result<Vec<Option<Recorded>>, BackendError> {
        self.inner.recorded_many(origin, seqs)
    }

    fn record(&mut self, origin: &str, entries: &[(u64, Recorded)]) -> Result<(), BackendError> {
        self.inner.record(origin, entries)
    }

    fn forget(&mut self, origin: &str, below: u64) -> Result<(), BackendError> {
        self.inner.forget(origin, below)
    }

    fn take_changed(&mut self) -> Vec<String> {
        self.inner.take_changed()
    }
}

/// Puts a fresh connection in exclusive locking mode; must run before any statement reads the
/// file.
///
/// The OPFS pool VFS has no shared memory (its I/O methods are version 1, without `xShmMap`), so
/// SQLite can read a database in WAL mode only in exclusive locking mode, where it keeps the WAL
/// index in the heap (`sqlite3PagerWalSupported`). The first read of a file whose header says
/// WAL (bytes 18 and 19 are 2, which outlives a clean close: the close checkpoints and removes
/// the `-wal` file but leaves the header), or beside which a `-wal` file was left (a crash: the
/// pool keeps the slot), opens the WAL, and in normal locking mode that fails with
/// `SQLITE_CANTOPEN` ("unable to open database file"). That is why a WAL database could not be
/// reopened: `PRAGMA synchronous` came first, and it reads the schema (`PragFlg_NeedSchema` in
/// SQLite's pragma table). `locking_mode` reads nothing, so it goes first. The browser build also
/// makes EXCLUSIVE SQLite's default (`SQLITE_DEFAULT_LOCKING_MODE=1` in `.cargo/config.toml`), so
/// no connection of this build starts in normal mode; this keeps the open path right without it.
fn exclusive_before_first_read(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
}

/// Sets the journal mode and returns the one SQLite reports, or a typed error when SQLite kept
/// another: a store never runs in a mode it was not asked for.
fn set_journal_mode(conn: &Connection, journal: Journal) -> Result<String, OpenError> {
    let db = |e| OpenError::Database(classify(e));
    let wanted = match journal {
        Journal::Delete => "delete",
        Journal::Wal => "wal",
    };
    let found: String = conn.pragma_update_and_check(None, "journal_mode", wanted, |r| r.get(0)).map_err(db)?;
    if !found.eq_ignore_ascii_case(wanted) {
        return Err(OpenError::Database(BackendError::new(
            ErrorKind::Io,
            ErrorClass::Fatal,
            None,
            format!("SQLite kept journal mode {found:?} when asked for {wanted:?}"),
        )));
    }
    if journal == Journal::Delete {
        // Out of WAL, normal locking is allowed again; it is what a rollback journal had
        // before WAL became the default.
        conn.pragma_update(None, "locking_mode", "NORMAL").map_err(db)?;
    }
    Ok(found.to_ascii_lowercase())
}

/// Runs the migrations past `PRAGMA user_version` (see `sqlweir_sqlite::migrate`).
fn migrate(conn: &Connection, migrations: &[String]) -> Result<(), OpenError> {
    sqlweir_sqlite::migrate(conn, migrations).map_err(|e| match e {
        MigrationError::TooNew { found, known } => OpenError::SchemaTooNew { found, known },
        MigrationError::Step { step, source } => OpenError::Migration { step, source },
        MigrationError::Setup(source) => OpenError::Database(source),
    })
}
