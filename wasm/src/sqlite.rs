//! The [`Backend`] over rusqlite: one connection on the OPFS pool VFS, owned by the worker.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, TransactionBehavior, params_from_iter};
use sqlweir_core::{Applied, Backend, BackendError, ErrorClass, ErrorKind, Value};

use crate::classify::classify;
#[cfg(feature = "fault-injection")]
use crate::classify::classify_code;
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

/// The write and read connection of one database.
pub(crate) struct SqliteBackend {
    conn: Connection,
    journal_mode: String,
    #[cfg(feature = "fault-injection")]
    busy_left: u32,
}

impl SqliteBackend {
    /// Opens `name` on the VFS `vfs`, applies the pragmas and runs the migrations.
    pub(crate) fn open(name: &str, vfs: &str, options: &Options) -> Result<Self, OpenError> {
        let db = |e| OpenError::Database(classify(e));
        let mut conn = Connection::open_with_flags_and_vfs(name, OpenFlags::default(), vfs).map_err(db)?;
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
        migrate(&mut conn, &options.migrations)?;
        Ok(SqliteBackend {
            conn,
            journal_mode,
            #[cfg(feature = "fault-injection")]
            busy_left: 0,
        })
    }

    /// The journal mode SQLite reported at open.
    pub(crate) fn journal_mode(&self) -> &str {
        &self.journal_mode
    }

    /// Runs a read-only statement.
    pub(crate) fn query(&self, sql: &str, params: &[Value]) -> Result<QueryRows, BackendError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(classify)?;
        if !stmt.readonly() {
            return Err(BackendError::new(
                ErrorKind::InvalidInput,
                ErrorClass::Rejected,
                None,
                "query runs read-only statements; send changes with write",
            ));
        }
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let width = columns.len();
        let mut found = stmt.query(params_from_iter(params.iter().map(Param))).map_err(classify)?;
        let mut rows = Vec::new();
        while let Some(row) = found.next().map_err(classify)? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(value_of(row.get_ref(i).map_err(classify)?));
            }
            rows.push(values);
        }
        Ok(QueryRows { columns, rows })
    }

    /// The connection, for the raw baselines of the benchmark.
    #[cfg(feature = "bench")]
    pub(crate) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Closes the connection, releasing its files in the pool.
    pub(crate) fn close(self) -> Result<(), BackendError> {
        self.conn.close().map_err(|(_, e)| classify(e))
    }

    /// Makes the next `attempts` transactions fail with `SQLITE_BUSY`.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn inject_busy(&mut self, attempts: u32) {
        self.busy_left = attempts;
    }
}

impl Backend for SqliteBackend {
    fn begin(&mut self) -> Result<(), BackendError> {
        #[cfg(feature = "fault-injection")]
        if self.busy_left > 0 {
            self.busy_left -= 1;
            return Err(classify_code(rusqlite::ffi::SQLITE_BUSY, "database is locked (injected)".into()));
        }
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(classify)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Applied, BackendError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(classify)?;
        let changes = stmt.execute(params_from_iter(params.iter().map(Param))).map_err(classify)?;
        Ok(Applied { changes: changes as u64, last_rowid: self.conn.last_insert_rowid() })
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        self.conn.execute_batch("COMMIT").map_err(classify)
    }

    fn rollback(&mut self) -> Result<(), BackendError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("ROLLBACK").map_err(classify)
    }

    fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }
}

/// Runs the migrations past `PRAGMA user_version`, each in its own transaction with its version
/// bump, so a failed step leaves the database at the step before it.
fn migrate(conn: &mut Connection, migrations: &[String]) -> Result<(), OpenError> {
    let db = |e| OpenError::Database(classify(e));
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db)?;
    let done = usize::try_from(version).unwrap_or(usize::MAX);
    if done > migrations.len() {
        return Err(OpenError::SchemaTooNew { version, known: migrations.len() });
    }
    for (index, sql) in migrations.iter().enumerate().skip(done) {
        let failed = |e| OpenError::Migration { index, error: classify(e) };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", index as i64 + 1).map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

/// A core value bound as a parameter, without copying text or bytes.
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn value_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        // SQLite does not check that TEXT is UTF-8; bytes that are not come back replaced.
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}
