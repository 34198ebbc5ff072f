//! Classification of rusqlite errors into the core's [`BackendError`], by error code only.
//!
//! The core decides retry, salvage or failure from the class; this module is the only place that
//! knows SQLite's codes. Never classify by message text: messages change between SQLite releases.

use rusqlite::ffi;
use sqlweir_core::{BackendError, ErrorClass, ErrorKind};

/// Classifies an error from rusqlite.
pub(crate) fn classify(e: rusqlite::Error) -> BackendError {
    use rusqlite::Error as E;
    let input = |message: String| BackendError::new(ErrorKind::InvalidInput, ErrorClass::Rejected, None, message);
    match e {
        E::SqliteFailure(err, msg) => classify_code(err.extended_code, msg.unwrap_or_else(|| err.to_string())),
        E::SqlInputError { error, msg, .. } => classify_code(error.extended_code, msg),
        E::InvalidParameterCount(given, expected) => {
            input(format!("statement takes {expected} parameters but {given} were given"))
        }
        E::InvalidParameterName(name) => input(format!("no parameter named {name}")),
        E::ExecuteReturnedResults => input("statement returns rows; use query for reads".into()),
        E::MultipleStatement => input("a write is one statement; send several writes instead".into()),
        E::ToSqlConversionFailure(err) => input(format!("parameter cannot be converted: {err}")),
        E::NulError(err) => input(format!("text contains a NUL byte: {err}")),
        E::IntegralValueOutOfRange(i, v) => input(format!("value {v} of column {i} is out of range")),
        E::FromSqlConversionFailure(i, t, err) => input(format!("column {i} of type {t} cannot be read: {err}")),
        E::InvalidColumnType(i, name, t) => input(format!("column {i} ({name}) has unexpected type {t}")),
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
        // IOERR, CORRUPT, NOTADB, CANTOPEN, NOMEM and anything unforeseen: the database is at fault.
        _ => (ErrorKind::Io, Fatal),
    };
    BackendError::new(kind, class, Some(extended_code), message)
}
