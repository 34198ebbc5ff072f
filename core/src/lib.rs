//! sqlweir-core: the sqlweir write path as I/O-free state machines.
//!
//! Many producers write to one database; a bounded [`WriteQueue`] takes their writes in order,
//! one writer lets them through in batches ([`apply`]), retries lock contention
//! ([`RetryPolicy`]), stops hammering a failing database ([`Breaker`]) and keeps [`metrics`].
//! Nothing here does I/O, reads a clock or sleeps: the host (the native crate `sqlweir`, or the
//! browser worker in `sqlweir-wasm`) passes `now` in, owns the connection behind the [`Backend`]
//! seam, and does the waiting. That is what lets the same code run on threads and in a browser.
//!
//! ```
//! use std::time::Duration;
//! use sqlweir_core::{apply, params, BatchOutcome, Write, WriteQueue};
//! use sqlweir_core::fake::FakeBackend;
//!
//! let mut queue = WriteQueue::new(1_000);
//! for i in 0..3 {
//!     queue.push(Write::one("INSERT INTO t VALUES (?1)", params![i]), 1, Duration::ZERO).unwrap();
//! }
//! let batch: Vec<Write> = queue.take(100).into_iter().map(|q| q.item).collect();
//! let mut db = FakeBackend::new();
//! assert!(matches!(apply(&mut db, &batch), BatchOutcome::Committed { .. }));
//! assert_eq!(db.committed_values(), vec![0, 1, 2]);
//! ```
#![forbid(unsafe_code)]

pub mod backend;
pub mod batch;
pub mod breaker;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod feed;
pub mod joblock;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod request;
pub mod retry;
pub mod row;
pub mod typed;
pub mod value;
pub mod writer;

pub use backend::{Applied, Backend, Returned};
pub use batch::{BatchOutcome, Batcher, ManyOutcome, Receipt, Rows, Write, WriteResult, apply, apply_numbered};
pub use breaker::{Breaker, BreakerState, Transition};
pub use error::{BackendError, ErrorClass, ErrorKind, WriteError};
pub use feed::{Commit, Feed, FeedItem};
pub use joblock::{JobLocks, JobOutcome, JobRun, JobStatus, JobToken, Lease, LeaseDecision};
pub use metrics::{Health, HealthStatus, MetricsSnapshot};
pub use pipeline::{
    Action, Attempted, Backpressure, Batch, Body, BodyOutcome, NoTransactions, Pipeline, Pushed, Settled, SettledEntry,
    Settlement, Work,
};
pub use queue::{PushError, Queued, WriteQueue};
pub use request::{Forget, Recorded, Request, RequestId};
pub use retry::{Jitter, RetryPolicy};
pub use row::{RowError, from_row};
pub use typed::{RowData, ShapeError, insert_sql, quote_identifier, to_row, upsert_sql};
pub use value::Value;
pub use writer::{BatchRun, Event, Level, Step, WriterConfig, WriterState};
