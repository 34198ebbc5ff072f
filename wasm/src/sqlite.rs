//! The [`Backend`] over rusqlite: one connection on the OPFS pool VFS, owned by the worker.

use rusqlite::{Connection, OpenFlags};
use sqlweir_core::{Applied, Backend, BackendError, Value};
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
    pub(crate) fn open(name: &str, vfs: &str, options: &Options) -> Result<Self, OpenError> {
        let db = |e| OpenError::Database(classify(e));
        let conn = Connection::open_with_flags_and_vfs(name, OpenFlags::default(), vfs).map_err(db)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // No busy handler: SQLite's would sleep synchronously and stall the worker's event loop;
        // the writer retries lock contention itself, with non-blocking sleeps.
        conn.busy_timeout(std::time::Duration::ZERO).map_err(db)?;
        let synchronous = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous).map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        // Setting the journal mode is the first read of the file: a file that is not a database
        // fails here, before anything is accepted. The VFS has no shared memory, so WAL needs
        // exclusive locking set before that first read (the WAL index then lives in the heap);
        // a file left in WAL mode cannot be opened otherwise, so `Delete` takes the same path
        // to switch it back, then returns to normal locking.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(db)?;
        let wanted = match options.journal {
            Journal::Delete => "DELETE",
            Journal::Wal => "WAL",
        };
        let journal_mode: String =
            conn.pragma_update_and_check(None, "journal_mode", wanted, |r| r.get(0)).map_err(db)?;
        if options.journal == Journal::Delete {
            conn.pragma_update(None, "locking_mode", "NORMAL").map_err(db)?;
        }
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
}

/// Runs the migrations past `PRAGMA user_version` (see `sqlweir_sqlite::migrate`).
fn migrate(conn: &Connection, migrations: &[String]) -> Result<(), OpenError> {
    sqlweir_sqlite::migrate(conn, migrations).map_err(|e| match e {
        MigrationError::TooNew { found, known } => OpenError::SchemaTooNew { found, known },
        MigrationError::Step { step, source } => OpenError::Migration { step, source },
        MigrationError::Setup(source) => OpenError::Database(source),
    })
}
