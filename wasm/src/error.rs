//! Errors of the browser store: opening, reading and job locks. Writes use the core's
//! [`WriteError`]. Each error has a stable [`Coded::code`], the `code` property JavaScript sees.

use std::fmt;

use sqlweir_core::{BackendError, WriteError};

/// A stable error code and the SQLite code behind it, for the JavaScript `Error` objects.
pub trait Coded: fmt::Display {
    /// The stable name (`"Constraint"`, `"Closed"`, ...).
    fn code(&self) -> &'static str;
    /// The SQLite (extended) result code, where there is one.
    fn sqlite_code(&self) -> Option<i32>;
    /// For a transaction: the index of the statement that failed (JavaScript's `statement`).
    fn statement(&self) -> Option<usize> {
        None
    }
}

impl Coded for WriteError {
    fn code(&self) -> &'static str {
        WriteError::code(self)
    }
    fn sqlite_code(&self) -> Option<i32> {
        WriteError::sqlite_code(self)
    }
}

/// Why a database could not be opened.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum OpenError {
    /// An option is malformed.
    Options {
        /// What is wrong.
        message: String,
    },
    /// The OPFS pool could not be installed (not in a dedicated worker, no OPFS, or another tab
    /// holds the pool).
    Storage {
        /// What the browser said.
        message: String,
    },
    /// This worker already has the database open; a second connection would corrupt it.
    InUse {
        /// The database name.
        name: String,
    },
    /// SQLite refused the file (not a database, corrupt, read-only, pool full).
    Database(BackendError),
    /// A migration failed; the database stays at the version before it.
    Migration {
        /// Zero-based index of the failing step.
        step: usize,
        /// What SQLite said.
        source: BackendError,
    },
    /// The database was migrated by a newer program: it has more migrations than given.
    SchemaTooNew {
        /// `PRAGMA user_version` found.
        found: i64,
        /// Migrations given.
        known: usize,
    },
}

impl Coded for OpenError {
    fn code(&self) -> &'static str {
        match self {
            OpenError::Options { .. } => "InvalidInput",
            OpenError::Storage { .. } => "Storage",
            OpenError::InUse { .. } => "InUse",
            OpenError::Database(e) => e.kind.code(),
            OpenError::Migration { .. } | OpenError::SchemaTooNew { .. } => "Migration",
        }
    }
    fn sqlite_code(&self) -> Option<i32> {
        match self {
            OpenError::Database(e) | OpenError::Migration { source: e, .. } => e.code,
            _ => None,
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Options { message } => write!(f, "invalid options: {message}"),
            OpenError::Storage { message } => write!(
                f,
                "cannot use OPFS storage: {message}; run in a dedicated worker of a secure context, and close other tabs \
                 of this site that hold the database"
            ),
            OpenError::InUse { name } => {
                write!(
                    f,
                    "{name} is already open in this page; share the handle from the first open, or close it first"
                )
            }
            OpenError::Database(e) => {
                write!(f, "cannot open the database: {e}; check that the file is an SQLite database")
            }
            OpenError::Migration { step, source } => {
                write!(f, "migration {step} failed: {source}; fix it, the database stays at version {step}")
            }
            OpenError::SchemaTooNew { found, known } => write!(
                f,
                "database is at schema version {found} but only {known} migrations were given; open it with the newer \
                 program's migrations"
            ),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Database(e) | OpenError::Migration { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// Why a transaction did not commit. It was rolled back: none of its statements stayed.
///
/// Plain writes settle with [`TxError::Write`] too, which is why the store's internal outcomes
/// carry this type.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum TxError {
    /// A statement failed on its own (a constraint, bad SQL, a bad value).
    Statement {
        /// Its index in the list, from 0.
        index: usize,
        /// Its error.
        error: WriteError,
    },
    /// The transaction as a whole failed: busy past the retry budget, closed, storage.
    Write(WriteError),
}

impl TxError {
    /// The underlying write error.
    pub fn into_write(self) -> WriteError {
        match self {
            TxError::Statement { error, .. } | TxError::Write(error) => error,
        }
    }
}

impl From<WriteError> for TxError {
    fn from(e: WriteError) -> Self {
        TxError::Write(e)
    }
}

impl Coded for TxError {
    fn code(&self) -> &'static str {
        match self {
            TxError::Statement { error, .. } | TxError::Write(error) => error.code(),
        }
    }
    fn sqlite_code(&self) -> Option<i32> {
        match self {
            TxError::Statement { error, .. } | TxError::Write(error) => error.sqlite_code(),
        }
    }
    fn statement(&self) -> Option<usize> {
        match self {
            TxError::Statement { index, .. } => Some(*index),
            TxError::Write(_) => None,
        }
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Statement { index, error } => {
                f.write_str("transaction rolled back, none of its statements stayed: ")?;
                match error {
                    WriteError::Backend(e) => write!(f, "statement {index} failed: {e}; fix that statement"),
                    WriteError::InvalidInput { message } => write!(f, "statement {index}: invalid input: {message}"),
                    other => write!(f, "statement {index} failed: {other}"),
                }
            }
            TxError::Write(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TxError::Statement { error, .. } | TxError::Write(error) => Some(error),
        }
    }
}

/// Why a query failed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum QueryError {
    /// The store was closed.
    Closed,
    /// A parameter could not be used.
    InvalidInput {
        /// What is wrong with it.
        message: String,
    },
    /// SQLite refused the query.
    Backend(BackendError),
}

impl Coded for QueryError {
    fn code(&self) -> &'static str {
        match self {
            QueryError::Closed => "Closed",
            QueryError::InvalidInput { .. } => "InvalidInput",
            QueryError::Backend(e) => e.kind.code(),
        }
    }
    fn sqlite_code(&self) -> Option<i32> {
        match self {
            QueryError::Backend(e) => e.code,
            _ => None,
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Closed => f.write_str("store is closed: open it again to read"),
            QueryError::InvalidInput { message } => write!(f, "invalid input: {message}"),
            QueryError::Backend(e) => write!(f, "query failed: {e}; check the statement"),
        }
    }
}

impl std::error::Error for QueryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueryError::Backend(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a job lock was not given.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockError {
    /// Someone else holds it.
    InProgress {
        /// Who holds it.
        holder: String,
        /// Since when (Unix ms).
        since_ms: u64,
    },
    /// The store was closed.
    Closed,
}

impl Coded for LockError {
    fn code(&self) -> &'static str {
        match self {
            LockError::InProgress { .. } => "InProgress",
            LockError::Closed => "Closed",
        }
    }
    fn sqlite_code(&self) -> Option<i32> {
        None
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::InProgress { holder, since_ms } => write!(
                f,
                "job already in progress: held by {holder} since {since_ms} ms after the epoch; wait for it or pass a \
                 timeout"
            ),
            LockError::Closed => f.write_str("store is closed: open it again to take job locks"),
        }
    }
}

impl std::error::Error for LockError {}

/// Why closing failed. The store is closed all the same: later calls fail with `Closed`.
#[derive(Clone, Debug, PartialEq)]
pub struct CloseError(pub BackendError);

impl Coded for CloseError {
    fn code(&self) -> &'static str {
        self.0.kind.code()
    }
    fn sqlite_code(&self) -> Option<i32> {
        self.0.code
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "closing the database failed: {}; every acked write is committed, reopen to check", self.0)
    }
}

impl std::error::Error for CloseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
