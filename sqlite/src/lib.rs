//! sqlweir-sqlite: the SQLite side of the core's `Backend` seam, shared by the native crate
//! (rusqlite over the bundled SQLite) and the browser build (rusqlite over sqlite-wasm-rs).
//!
//! One write connection ([`SqliteBackend`]), errors classified by extended result code
//! ([`classify`]), values bound and read without copies ([`Bind`], [`read_value`]), queries
//! ([`query`]) and migrations kept in `PRAGMA user_version` ([`migrate`]).
//!
//! ```
//! use sqlweir_core::{apply, params, BatchOutcome, Write};
//! use sqlweir_sqlite::SqliteBackend;
//!
//! let conn = rusqlite::Connection::open_in_memory().unwrap();
//! conn.execute_batch("CREATE TABLE t(x INTEGER UNIQUE)").unwrap();
//! let mut db = SqliteBackend::new(conn);
//! let writes = [Write::one("INSERT INTO t VALUES (?1)", params![1]), Write::one("INSERT INTO t VALUES (?1)", params![1])];
//! let BatchOutcome::Committed { results, .. } = apply(&mut db, &writes) else { panic!() };
//! assert_eq!(results.iter().map(|r| r.committed_rows()).sum::<u64>(), 1, "the duplicate was rejected alone");
//! ```

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, ffi};
use sqlweir_core::{Applied, Backend, BackendError, ErrorClass, ErrorKind, Value};

/// The one write connection of a store. The host's writer owns it.
pub struct SqliteBackend {
    /// The connection. Hosts use it directly for setup, checkpoints and closing.
    pub conn: Connection,
    busy_left: u32,
}

impl SqliteBackend {
    /// Wraps an open, configured connection.
    pub fn new(conn: Connection) -> Self {
        SqliteBackend { conn, busy_left: 0 }
    }

    /// Makes the next `attempts` transactions fail with `SQLITE_BUSY` (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    pub fn inject_busy(&mut self, attempts: u32) {
        self.busy_left = attempts;
    }
}

impl Backend for SqliteBackend {
    fn begin(&mut self) -> Result<(), BackendError> {
        if self.busy_left > 0 {
            self.busy_left -= 1;
            return Err(classify_code(ffi::SQLITE_BUSY, "database is locked (injected)".into()));
        }
        // IMMEDIATE takes the write lock up front, so contention shows here, before any work.
        self.conn.prepare_cached("BEGIN IMMEDIATE").and_then(|mut s| s.execute([])).map(drop).map_err(classify)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Applied, BackendError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(classify)?;
        if stmt.readonly() {
            return Err(not_a_write(sql));
        }
        let changes = stmt.execute(rusqlite::params_from_iter(params.iter().map(Bind))).map_err(classify)?;
        Ok(Applied { changes: changes as u64, last_rowid: self.conn.last_insert_rowid() })
    }

    fn execute_many(
        &mut self,
        sql: &str,
        rows: &[&[Value]],
        each: &mut dyn FnMut(usize, Result<Applied, BackendError>, bool) -> bool,
    ) {
        // One prepared statement for the whole group: the cache lookup is paid once, not per row.
        let prepared = self
            .conn
            .prepare_cached(sql)
            .map_err(classify)
            .and_then(|stmt| if stmt.readonly() { Err(not_a_write(sql)) } else { Ok(stmt) });
        let mut stmt = match prepared {
            Ok(stmt) => stmt,
            Err(e) => {
                // The statement itself is wrong: every row is rejected with the same error.
                let open = !self.conn.is_autocommit();
                for i in 0..rows.len() {
                    if !each(i, Err(e.clone()), open) {
                        return;
                    }
                }
                return;
            }
        };
        for (i, params) in rows.iter().enumerate() {
            let result = stmt
                .execute(rusqlite::params_from_iter(params.iter().map(Bind)))
                .map(|changes| Applied { changes: changes as u64, last_rowid: self.conn.last_insert_rowid() })
                .map_err(classify);
            let open = result.is_ok() || !self.conn.is_autocommit();
            if !each(i, result, open) {
                return;
            }
        }
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        self.conn.prepare_cached("COMMIT").and_then(|mut s| s.execute([])).map(drop).map_err(classify)
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

/// The error for a statement that does not write: SELECT, and also BEGIN/COMMIT/ROLLBACK/
/// SAVEPOINT, which inside a batch would break its atomicity.
fn not_a_write(sql: &str) -> BackendError {
    BackendError::new(
        ErrorKind::InvalidInput,
        ErrorClass::Rejected,
        None,
        format!("statement does not write (a read or transaction control): {sql}; use query for reads"),
    )
}

/// Column names and rows of a query.
pub type Found = (Vec<String>, Vec<Vec<Value>>);

/// Runs a query; with `read_only`, a statement that would change the database is refused
/// before it runs.
pub fn query(conn: &Connection, sql: &str, params: &[Value], read_only: bool) -> Result<Found, BackendError> {
    let mut stmt = conn.prepare_cached(sql).map_err(classify)?;
    if read_only && !stmt.readonly() {
        return Err(BackendError::new(
            ErrorKind::InvalidInput,
            ErrorClass::Rejected,
            None,
            "query runs read-only statements; send changes with write",
        ));
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut cursor = stmt.query(rusqlite::params_from_iter(params.iter().map(Bind))).map_err(classify)?;
    while let Some(row) = cursor.next().map_err(classify)? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(read_value(row.get_ref(i).map_err(classify)?));
        }
        rows.push(values);
    }
    Ok((columns, rows))
}

/// Why migrations did not finish.
#[derive(Debug)]
pub enum MigrationError {
    /// `PRAGMA user_version` is past the steps given: a newer program migrated this database.
    TooNew {
        /// The version found.
        found: i64,
        /// Steps given.
        known: usize,
    },
    /// Step `step` (zero-based) failed; the steps before it stay applied.
    Step {
        /// The failing step.
        step: usize,
        /// What SQLite said.
        source: BackendError,
    },
    /// Reading the version failed.
    Setup(BackendError),
}

/// Runs the steps past `PRAGMA user_version`, each in its own transaction with its version bump,
/// so a failed step leaves the database at the step before it.
pub fn migrate(conn: &Connection, steps: &[String]) -> Result<(), MigrationError> {
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| MigrationError::Setup(classify(e)))?;
    let known = steps.len();
    if version > known as i64 {
        return Err(MigrationError::TooNew { found: version, known });
    }
    for (step, sql) in steps.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        let apply = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            conn.execute_batch(sql)?;
            // user_version takes no parameters; the value is a number we computed.
            conn.execute_batch(&format!("PRAGMA user_version = {}", step + 1))?;
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = apply() {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            return Err(MigrationError::Step { step, source: classify(e) });
        }
    }
    Ok(())
}

/// Binds a core [`Value`] without copying it.
pub struct Bind<'a>(pub &'a Value);

impl ToSql for Bind<'_> {
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

/// Reads a column into a core [`Value`]. Text that is not valid UTF-8 is converted lossily.
pub fn read_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Classifies a rusqlite error by its extended result code, never by its message.
pub fn classify(e: rusqlite::Error) -> BackendError {
    use rusqlite::Error as E;
    let input = |msg: String| BackendError::new(ErrorKind::InvalidInput, ErrorClass::Rejected, None, msg);
    match e {
        E::SqliteFailure(err, msg) => classify_code(err.extended_code, msg.unwrap_or_else(|| err.to_string())),
        E::SqlInputError { error, msg, .. } => classify_code(error.extended_code, msg),
        E::InvalidParameterCount(given, expected) => {
            input(format!("statement takes {expected} parameters but {given} were given"))
        }
        E::ExecuteReturnedResults => input("statement returns rows; use query for reads".into()),
        E::MultipleStatement => input("a write is one statement; send several writes instead".into()),
        E::ToSqlConversionFailure(err) => input(format!("parameter cannot be converted: {err}")),
        E::NulError(err) => input(format!("text contains a NUL byte: {err}")),
        E::InvalidParameterName(name) => input(format!("no parameter named {name}")),
        E::IntegralValueOutOfRange(i, v) => input(format!("value {v} of column {i} is out of range")),
        E::FromSqlConversionFailure(i, t, err) => input(format!("column {i} of type {t} cannot be read: {err}")),
        E::InvalidColumnType(i, name, t) => input(format!("column {i} ({name}) has unexpected type {t}")),
        other => BackendError::new(ErrorKind::Io, ErrorClass::Fatal, None, other.to_string()),
    }
}

/// Classifies an SQLite (extended) result code.
pub fn classify_code(extended_code: i32, message: String) -> BackendError {
    use ErrorClass::{Fatal, Rejected, Transient};
    let (kind, class) = match extended_code & 0xff {
        ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => (ErrorKind::Busy, Transient),
        ffi::SQLITE_CONSTRAINT => (ErrorKind::Constraint, Rejected),
        ffi::SQLITE_MISMATCH | ffi::SQLITE_RANGE | ffi::SQLITE_TOOBIG => (ErrorKind::InvalidInput, Rejected),
        // Syntax errors, unknown tables and columns: the statement is wrong, not the database.
        ffi::SQLITE_ERROR => (ErrorKind::Sql, Rejected),
        // One write that does not fit is refused alone; smaller ones may still fit.
        ffi::SQLITE_FULL => (ErrorKind::DiskFull, Rejected),
        ffi::SQLITE_READONLY => (ErrorKind::ReadOnly, Fatal),
        // IOERR, CORRUPT, NOTADB, CANTOPEN, NOMEM and anything unforeseen: the database is at fault.
        _ => (ErrorKind::Io, Fatal),
    };
    BackendError::new(kind, class, Some(extended_code), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlweir_core::{BatchOutcome, Write, WriteResult, apply, params};

    fn db() -> SqliteBackend {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(x INTEGER UNIQUE NOT NULL)").unwrap();
        SqliteBackend::new(conn)
    }

    #[test]
    fn errors_are_classified_by_code() {
        let mut b = db();
        b.begin().unwrap();
        let dup = b.execute("INSERT INTO t VALUES (1)", &[]).and_then(|_| b.execute("INSERT INTO t VALUES (1)", &[]));
        let e = dup.unwrap_err();
        assert_eq!((e.kind, e.class, e.code), (ErrorKind::Constraint, ErrorClass::Rejected, Some(2067)));
        let e = b.execute("INSERT INTO nowhere VALUES (1)", &[]).unwrap_err();
        assert_eq!((e.kind, e.class), (ErrorKind::Sql, ErrorClass::Rejected));
        let e = b.execute("INSERT INTO t VALUES (?1)", &[]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        for sql in ["SELECT 1", "COMMIT", "SAVEPOINT s"] {
            assert_eq!(b.execute(sql, &[]).unwrap_err().kind, ErrorKind::InvalidInput, "{sql}");
        }
        assert!(b.in_transaction(), "the refused statements did not end the transaction");
        b.rollback().unwrap();
        assert_eq!(classify_code(517, "x".into()).class, ErrorClass::Transient, "SQLITE_BUSY_SNAPSHOT");
        assert_eq!(classify_code(266, "x".into()).class, ErrorClass::Fatal, "SQLITE_IOERR_READ");
    }

    #[test]
    fn a_group_with_a_bad_statement_rejects_every_row_and_the_rest_commits() {
        let mut b = db();
        let writes = [
            Write::one("INSERT INTO t VALUES (?1)", params![1]),
            Write::many("INSERT INTO nope VALUES (?1)", vec![params![2], params![3]]),
            Write::one("INSERT INTO t VALUES (?1)", params![4]),
        ];
        let BatchOutcome::Committed { results, .. } = apply(&mut b, &writes) else { panic!("commits") };
        assert!(matches!(&results[1], WriteResult::Many { committed: 0, rejected } if rejected.len() == 2));
        let (_, rows) = query(&b.conn, "SELECT x FROM t ORDER BY x", &[], true).unwrap();
        assert_eq!(rows, vec![vec![Value::Integer(1)], vec![Value::Integer(4)]]);
        assert!(query(&b.conn, "DELETE FROM t", &[], true).is_err(), "read-only queries refuse writes");
    }

    #[test]
    fn migrations_track_user_version_and_stop_at_a_bad_step() {
        let conn = Connection::open_in_memory().unwrap();
        let steps = vec!["CREATE TABLE a(x)".to_string(), "CREATE TABLE b(".to_string()];
        assert!(matches!(migrate(&conn, &steps), Err(MigrationError::Step { step: 1, .. })));
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 1);
        assert!(matches!(migrate(&conn, &[]), Err(MigrationError::TooNew { found: 1, known: 0 })));
    }
}
