//! The rusqlite side of the `Backend` seam: the write connection, error classification by
//! extended result code, and value conversion at the edge.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, ffi};
use sqlweir_core::{Applied, Backend, BackendError, ErrorClass, ErrorKind, Value};

use crate::engine::Engine;
use crate::error::{CloseError, QueryError};
use crate::read::{Rows, run as run_query};

/// The one write connection, owned by the writer thread.
pub(crate) struct SqliteBackend {
    pub(crate) conn: Connection,
}

impl Backend for SqliteBackend {
    fn begin(&mut self) -> Result<(), BackendError> {
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

impl Engine for SqliteBackend {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        run_query(&self.conn, sql, params)
    }

    fn finish(&mut self) -> Result<(), CloseError> {
        // TRUNCATE leaves an empty WAL behind, so the file alone holds everything.
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|e| CloseError::Checkpoint(classify(e)))?;
        if busy != 0 {
            return Err(CloseError::Checkpoint(classify_code(
                ffi::SQLITE_BUSY,
                "a reader kept the checkpoint from finishing".into(),
            )));
        }
        Ok(())
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

/// Binds a core [`Value`] without copying it.
pub(crate) struct Bind<'a>(pub(crate) &'a Value);

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
pub(crate) fn read_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Classifies a rusqlite error by its extended result code, never by its message.
pub(crate) fn classify(e: rusqlite::Error) -> BackendError {
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
        other => BackendError::new(ErrorKind::Io, ErrorClass::Fatal, None, other.to_string()),
    }
}

/// Classifies an SQLite (extended) result code.
pub(crate) fn classify_code(extended_code: i32, message: String) -> BackendError {
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
        _ => (ErrorKind::Io, Fatal),
    };
    BackendError::new(kind, class, Some(extended_code), message)
}
