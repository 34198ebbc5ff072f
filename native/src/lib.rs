//! sqlweir: many writers, one SQLite database, no `database is locked`.
//!
//! Producers call [`Store::write`] from any thread or task; writes wait in a bounded queue, one
//! writer thread commits them in batches, and each write's [`Ticket`] resolves only after the
//! COMMIT of its batch, or with that write's own typed error. Lock contention is retried with
//! backoff, a failing database trips a circuit breaker, and everything shows in
//! [`Store::metrics`] and [`Store::health`].
//!
//! ```
//! use sqlweir::{params, Options, Store, Wait};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path().join("events.db"), Options::default().migrations(&[
//!     "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT, payload TEXT)",
//! ]))?;
//! let sql = "INSERT INTO events(ts, source, payload) VALUES (?1, ?2, ?3)";
//! let receipt = futures::executor::block_on(store.write(sql, params![1, "collector-1", "hello"]))?; // any executor
//! let receipt2 = store.write(sql, params![2, "collector-2", "hi"]).wait()?; // blocking twin
//! assert!(receipt2.last_rowid > receipt.last_rowid);
//! let outcome = store.write_many(sql, vec![params![3, "c3", "a"], params![4, "c3", "b"]]).wait()?;
//! assert_eq!(outcome.committed, 2);
//! let n: Vec<i64> = store.query_as("SELECT count(*) FROM events", &[])?;
//! assert_eq!(n, vec![4]);
//! let guard = store.lock("nightly-sync", Wait::FailFast)?;
//! assert!(store.lock("nightly-sync", Wait::FailFast).is_err());
//! guard.succeed();
//! println!("{:?} {:?}", store.metrics(), store.health());
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Values
//!
//! [`params!`] takes the integers, floats, text, bytes and options of std (a `u64` above
//! `i64::MAX` is refused with `InvalidInput`, never wrapped) and, with the features `chrono`,
//! `time`, `uuid` and `serde_json` (off by default), dates, UUIDs and JSON values. Each is stored
//! as the same text the typed layer ([`Store::insert`]) stores for it; see [`Value`].
//!
//! # Errors
//!
//! Each error's `Display` is one lowercase phrase that ends with what to do, and never repeats
//! its `source()`: print the chain (anyhow's `{:#}`) to see what SQLite said under an
//! [`OpenError`]; a [`WriteError`] or [`QueryError`] carries SQLite's message itself.
//!
//! # Design
//!
//! - **One writer, by construction.** The write connection is moved into the writer thread at
//!   open and never leaves it; handles only reach the queue. Queries use a separate pool of
//!   read-only connections, so under WAL they never wait for a batch.
//! - **The decisions live in `sqlweir-core`**, a platform-neutral crate of I/O-free state
//!   machines (queue, batch apply with salvage, retry policy, breaker, job locks, metrics). This
//!   crate supplies the connection, the clock, the threads and the waiting; the browser build
//!   supplies a worker, OPFS and timers instead.
//! - **Acked means committed.** A ticket resolves `Ok` only after COMMIT returned; see
//!   [`Synchronous`] for what that means on a crash or a power loss.
//! - **Nothing is dropped silently.** A full queue hands the write back as an error or a
//!   waiting ticket; a rejected write gets its own error; a store that stops (close, drop, or a
//!   writer panic) fails whatever it could not commit with `Closed`.
//! - **Drop.** Dropping the last handle flushes every accepted write, joins the writer and
//!   checkpoints, as `close` does; errors are logged with `tracing` instead of returned.

mod engine;
mod error;
mod feed;
mod files;
mod job;
mod lease;
mod mutex;
mod open;
mod options;
#[cfg(feature = "postgres")]
mod postgres;
mod read;
mod shared;
mod sqlite;
mod store;
mod ticket;
mod tx;
mod typed;
mod watch;
mod writer;

pub use error::{CloseError, LockError, OpenError, QueryError};
pub use feed::{Blocking, Subscription};
pub use job::{JobGuard, Wait};
pub use options::{Backpressure, GroupWait, Options, Synchronous};
pub use read::{QueryTicket, Rows};
/// A serde field adapter: `#[serde(with = "sqlweir::json")]` stores a field (a
/// `serde_json::Value`, a `Vec`, a nested struct) as its JSON text in one column and reads it
/// back. Feature `serde_json`.
#[cfg(feature = "serde_json")]
pub use sqlweir_core::value::json;
pub use sqlweir_core::{
    BackendError, Commit, ErrorKind, FeedItem, Health, HealthStatus, JobOutcome, JobRun, JobStatus, MetricsSnapshot,
    Recorded, RequestId, RetryPolicy, RowError, Value, WriteError, named_params, params,
};
pub use sqlweir_core::{ManyOutcome, Receipt};
pub use store::Store;
pub use ticket::Ticket;
pub use tx::{Tx, TxError, TxTicket};
pub use typed::Page;
pub use watch::Watch;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
