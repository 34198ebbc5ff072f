//! Errors of the operations that are not writes: open, query, lock, close.
//!
//! Every `Display` is one lowercase phrase, without a trailing period, that ends with what to
//! do. No `Display` repeats the text of its own `source()`, so a chain printer (anyhow's `{:#}`
//! and `{:?}`, or a loop over `source()`) shows each message once:
//!
//! - [`OpenError`] and [`CloseError`] say this layer's part; what SQLite (or the OS) said is
//!   their `source()`.
//! - [`QueryError`], like `WriteError`, is usually logged alone, one line per failed query, so
//!   its `Display` carries SQLite's message itself and it has no `source()`.
//!
//! `Debug` is derived: it shows the fields, for a `fn main() -> Result<(), Box<dyn Error>>`.

use std::fmt;
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
    #[error("cannot open {path}; check that the directory exists and is writable")]
    CannotOpen {
        /// The path given.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: BackendError,
    },
    /// The database server could not be reached or refused the connection.
    #[error("cannot connect to the {target}; check the connection string and that the server runs")]
    Connect {
        /// Where (without credentials).
        target: String,
        /// What the server or the network said.
        #[source]
        source: BackendError,
    },
    /// A migration step failed; steps before it stay applied.
    #[error("migration step {step} failed; fix the step (earlier steps stay applied)")]
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
    #[error("cannot set up the connection; check the database file and the options")]
    Setup(#[source] BackendError),
    /// The writer thread could not be started.
    #[error("cannot start the writer thread; check the process's thread and memory limits")]
    Thread(#[source] std::io::Error),
}

/// Why a query failed.
///
/// Its `Display` includes SQLite's message (or the decoding error): a failed query is usually
/// logged alone. So it has no `source()`, and chain printers show that message once.
#[non_exhaustive]
#[derive(Debug)]
pub enum QueryError {
    /// The database refused the query (bad SQL, a write sent to `query`, a lock, I/O).
    Database(BackendError),
    /// A row did not fit the requested type.
    Decode {
        /// Zero-based row index.
        row: usize,
        /// Why (also in this error's `Display`, so not its `source()`).
        source: RowError,
    },
    /// The store was closed.
    Closed,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Database(e) => write!(f, "query failed: {e}"),
            QueryError::Decode { row, source } => write!(f, "row {row} does not fit the requested type: {source}"),
            QueryError::Closed => f.write_str("store is closed: open it again to query"),
        }
    }
}

impl std::error::Error for QueryError {}

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
    #[error("job {name:?} is already in progress: held by {holder} for {}; wait for it or try later", held_for(*since))]
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
    /// The guard's lease expired and another holder took the job (this holder stalled past
    /// the lease time): its fencing token is stale and refused.
    #[error(
        "job {name:?} was taken by another holder after this holder's lease expired (token {token} is stale); \
         stop the job's work, and keep pauses shorter than Options::job_lease"
    )]
    Lost {
        /// The job's name.
        name: String,
        /// The stale fencing token.
        token: u64,
    },
    /// The database holding the job leases failed.
    #[error("job lease database failed: {0}; check the database and try again")]
    Database(BackendError),
}

/// Why closing did not finish cleanly. The store is closed either way.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// The final WAL checkpoint failed; the data is safe in the WAL and the next open replays it.
    #[error("final checkpoint failed; the data is safe in the WAL and the next open recovers it")]
    Checkpoint(#[source] BackendError),
    /// The writer thread panicked; writes it had not resolved were failed with `Closed`.
    #[error("the writer thread panicked; report this as a bug")]
    WriterPanicked,
}

/// How long a job lock has been held, for its error message: `3.2s`, `2m 5s`.
fn held_for(since: SystemTime) -> String {
    let held = since.elapsed().unwrap_or_default();
    let secs = held.as_secs();
    if secs < 60 { format!("{:.1}s", held.as_secs_f64()) } else { format!("{}m {}s", secs / 60, secs % 60) }
}
