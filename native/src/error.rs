//! Errors of the operations that are not writes: open, query, lock, close.

use std::path::PathBuf;
use std::time::SystemTime;

use sqlweir_core::{BackendError, RowError};

/// Why a store could not be opened.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file exists but is not an SQLite database.
    #[error("{path} is not an SQLite database; point the store at a database file or a new path")]
    NotADatabase {
        /// The path given.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: BackendError,
    },
    /// This process already has a store open on the file.
    #[error(
        "{path} is already open in this process; clone the Store handle instead of opening it twice (one file, one writer)"
    )]
    AlreadyOpen {
        /// The path given.
        path: PathBuf,
    },
    /// The file (or its directory) cannot be written.
    #[error("{path} is read-only; the store needs write access to the file and its directory")]
    ReadOnly {
        /// The path given.
        path: PathBuf,
        /// What SQLite said, when it said something.
        #[source]
        source: Option<BackendError>,
    },
    /// The file cannot be opened or created.
    #[error("cannot open {path}: {source}; check that the directory exists and is writable")]
    CannotOpen {
        /// The path given.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: BackendError,
    },
    /// The database server could not be reached or refused the connection.
    #[error("cannot connect to the {target}: {source}; check the connection string and that the server runs")]
    Connect {
        /// Where (without credentials).
        target: String,
        /// What the server or the network said.
        #[source]
        source: BackendError,
    },
    /// A migration step failed; steps before it stay applied.
    #[error("migration step {step} failed: {source}; fix the step (earlier steps stay applied)")]
    Migration {
        /// Zero-based index of the failing step.
        step: usize,
        /// What SQLite said.
        #[source]
        source: BackendError,
    },
    /// The database was migrated by a newer program.
    #[error(
        "database schema version {found} is newer than the {known} migrations this program knows; upgrade the program"
    )]
    SchemaTooNew {
        /// `PRAGMA user_version` found.
        found: i64,
        /// Migrations given.
        known: usize,
    },
    /// Setting up the connection failed.
    #[error("cannot set up the connection: {0}")]
    Setup(#[source] BackendError),
    /// The writer thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Why a query failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The database refused the query (bad SQL, a write sent to `query`, a lock, I/O).
    #[error("query failed: {0}")]
    Database(#[source] BackendError),
    /// A row did not fit the requested type.
    #[error("row {row} does not fit the requested type: {source}")]
    Decode {
        /// Zero-based row index.
        row: usize,
        /// Why.
        #[source]
        source: RowError,
    },
    /// The store was closed.
    #[error("store is closed: open it again to query")]
    Closed,
}

impl QueryError {
    /// The SQLite (extended) result code, where there is one.
    pub fn sqlite_code(&self) -> Option<i32> {
        match self {
            QueryError::Database(e) => e.code,
            _ => None,
        }
    }
}

/// Why a job lock was not taken.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockError {
    /// Somebody else holds it.
    #[error("job {name:?} already in progress: held by {holder} since {since:?}; wait for it or try later")]
    InProgress {
        /// The job's name.
        name: String,
        /// Who holds it.
        holder: String,
        /// Since when.
        since: SystemTime,
    },
    /// The store was closed.
    #[error("store is closed: open it again to take job locks")]
    Closed,
}

/// Why closing did not finish cleanly. The store is closed either way.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// The final WAL checkpoint failed; the data is safe in the WAL and the next open replays it.
    #[error("final checkpoint failed: {0}; the data is safe in the WAL and the next open recovers it")]
    Checkpoint(#[source] BackendError),
    /// The writer thread panicked; writes it had not resolved were failed with `Closed`.
    #[error("the writer thread panicked; report this as a bug")]
    WriterPanicked,
}
