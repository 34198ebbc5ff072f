//! Transactions on the writer: a closure that reads, decides and writes inside one
//! `BEGIN IMMEDIATE` transaction, run between batches, retried whole on lock contention (the
//! core's pipeline runs it: see `sqlweir_core::Body`).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlweir_core::{Applied, Body, BodyOutcome, ErrorClass, Value, Write, WriteError, from_row, insert_sql, to_row};

use crate::engine::Engine;
use crate::error::QueryError;
use crate::read::Rows;
use crate::ticket::{Slot, Ticket};

/// Why a transaction did not commit. The transaction was rolled back: none of its writes stay.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// A statement failed (its own error), or the transaction could not commit: lock contention
    /// past the retry budget (`Busy`), the store closed, or the database failed.
    // No `#[source]`: the inner error's text is in this message already, and a chain printer
    // (anyhow's `{:#}`) would repeat it.
    #[error("transaction write failed: {0}")]
    Write(WriteError),
    /// A query inside the transaction failed.
    #[error("transaction query failed: {0}")]
    Query(QueryError),
    /// The closure gave up, with its reason ([`TxError::abort`]).
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The closure panicked; the writer rolled back and went on.
    #[error("transaction closure panicked: {0}; this is a bug in the closure")]
    Panicked(String),
}

impl TxError {
    /// An error for a closure that decides not to commit.
    pub fn abort(reason: impl Into<String>) -> Self {
        TxError::Aborted(reason.into())
    }
}

impl From<WriteError> for TxError {
    fn from(e: WriteError) -> Self {
        TxError::Write(e)
    }
}

impl From<QueryError> for TxError {
    fn from(e: QueryError) -> Self {
        TxError::Query(e)
    }
}

/// The open transaction, as the closure sees it. Reads see the transaction's own writes.
pub struct Tx<'c> {
    backend: &'c mut dyn Engine,
    /// A statement that failed after changing rows (`OR FAIL`, `RAISE(FAIL)`): its partial
    /// effect cannot be undone alone, so the transaction will not commit, whatever the closure
    /// returns.
    spoiled: Option<WriteError>,
}

impl Tx<'_> {
    /// Runs a query inside the transaction.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        crate::read::check_params(params)?;
        self.backend.query(sql, params)
    }

    /// Runs a query and deserializes each row into `T` (see `Store::query_as`).
    pub fn query_as<T: DeserializeOwned>(&mut self, sql: &str, params: &[Value]) -> Result<Vec<T>, QueryError> {
        let rows = self.query(sql, params)?;
        rows.rows
            .iter()
            .enumerate()
            .map(|(i, r)| from_row(&rows.columns, r).map_err(|source| QueryError::Decode { row: i, source }))
            .collect()
    }

    /// Runs one write statement; returns the rows it changed.
    ///
    /// A statement that fails leaves nothing behind: SQLite undoes it, or, when it failed after
    /// changing rows (`OR FAIL`, a trigger's `RAISE(FAIL)`), the whole transaction is rolled
    /// back at its end with this error, even if the closure goes on and returns `Ok`.
    pub fn execute(&mut self, sql: &str, params: Vec<Value>) -> Result<u64, TxError> {
        Ok(self.run(&Write::one(sql, params))?.changes)
    }

    fn run(&mut self, write: &Write) -> Result<Applied, TxError> {
        write.check()?;
        let sqlweir_core::Rows::One(values) = &write.rows else { unreachable!("a Tx write holds one row") };
        let mut result = Err(WriteError::Closed);
        let mut kept = true;
        self.backend.execute_many(&write.sql, write.names.as_deref(), &[values.as_slice()], &mut |_, r, k| {
            result = r.map_err(WriteError::Backend);
            kept = k;
            false
        });
        if let (Err(e), false) = (&result, kept) {
            self.spoiled.get_or_insert_with(|| e.clone());
        }
        Ok(result?)
    }

    /// Runs one write statement with named parameters (see `Store::write_named`); returns the
    /// rows it changed.
    pub fn execute_named(&mut self, sql: &str, params: Vec<(String, Value)>) -> Result<u64, TxError> {
        Ok(self.run(&Write::named(sql, params))?.changes)
    }

    /// Inserts a serde struct (or map) into `table`; returns its rowid.
    pub fn insert<T: Serialize + ?Sized>(&mut self, table: &str, row: &T) -> Result<i64, TxError> {
        let data = to_row(row).map_err(|e| WriteError::InvalidInput { message: e.to_string() })?;
        let sql = insert_sql(table, &data.columns).map_err(|e| WriteError::InvalidInput { message: e.to_string() })?;
        Ok(self.run(&Write::one(sql, data.values))?.last_rowid)
    }
}

/// A queued transaction, type-erased for the pipeline: the core runs it as a [`Body`] inside
/// one transaction of its own, under the same retry policy and breaker as batches.
pub(crate) trait TxJob: Send {
    /// Runs the closure once inside the open transaction; keeps its value or its error.
    fn attempt(&mut self, backend: &mut dyn Engine) -> BodyOutcome;
    /// Resolves the ticket with the value after the commit.
    fn succeed(self: Box<Self>);
    /// Resolves the ticket with the error of the closure's last run (it rolled back).
    fn reject(self: Box<Self>);
    /// Resolves the ticket with the transaction's failure. A database error the closure met
    /// itself is reported as the closure saw it; otherwise (lock contention past the budget,
    /// a failed COMMIT) as `error`.
    fn fail(self: Box<Self>, error: WriteError);
}

impl Body<dyn Engine> for Box<dyn TxJob> {
    fn run(&mut self, backend: &mut dyn Engine) -> BodyOutcome {
        self.attempt(backend)
    }
}

struct Job<R, F> {
    f: F,
    value: Option<R>,
    error: Option<TxError>,
    slot: Option<TxSlot<R>>,
}

impl<R: Send, F: FnMut(&mut Tx<'_>) -> Result<R, TxError> + Send> TxJob for Job<R, F> {
    fn attempt(&mut self, backend: &mut dyn Engine) -> BodyOutcome {
        self.value = None;
        self.error = None;
        let mut spoiled = None;
        let f = &mut self.f;
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let mut tx = Tx { backend, spoiled: None };
            let ran = f(&mut tx);
            spoiled = tx.spoiled;
            ran
        }));
        let error = match ran {
            Ok(Ok(value)) => match spoiled {
                None => {
                    self.value = Some(value);
                    return BodyOutcome::Commit;
                }
                Some(e) => TxError::Write(e),
            },
            Ok(Err(e)) => e,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(why, "transaction closure panicked; rolled back");
                TxError::Panicked(why)
            }
        };
        // The database failing under the closure (lock contention, I/O) is the pipeline's to
        // decide: retry the whole transaction, or fail it and count toward the breaker. Any
        // other error is the closure's own: rolled back, not retried.
        let cause = match &error {
            TxError::Write(WriteError::Backend(cause)) | TxError::Query(QueryError::Database(cause))
                if cause.class != ErrorClass::Rejected =>
            {
                Some(cause.clone())
            }
            _ => None,
        };
        self.error = Some(error);
        cause.map_or(BodyOutcome::Rejected, BodyOutcome::Failed)
    }

    fn succeed(mut self: Box<Self>) {
        if let (Some(slot), Some(value)) = (self.slot.take(), self.value.take()) {
            slot.resolve(Ok(Ok(value)));
        }
    }

    fn reject(mut self: Box<Self>) {
        if let (Some(slot), Some(error)) = (self.slot.take(), self.error.take()) {
            slot.resolve(Ok(Err(error)));
        }
    }

    fn fail(mut self: Box<Self>, error: WriteError) {
        let error = match (self.error.take(), error) {
            (Some(own), WriteError::Backend(_)) => own,
            (_, error) => TxError::Write(error),
        };
        if let Some(slot) = self.slot.take() {
            slot.resolve(Ok(Err(error)));
        }
    }
}

impl<R, F> Drop for Job<R, F> {
    fn drop(&mut self) {
        // Never ran (the store closed or the writer stopped): the owner hears `Closed`.
        if let Some(slot) = self.slot.take() {
            slot.resolve(Err(WriteError::Closed));
        }
    }
}

/// Where a transaction's result lands.
pub(crate) type TxSlot<R> = Arc<Slot<Result<R, TxError>>>;

pub(crate) fn job<R, F>(f: F) -> (Box<dyn TxJob>, TxSlot<R>)
where
    R: Send + 'static,
    F: FnMut(&mut Tx<'_>) -> Result<R, TxError> + Send + 'static,
{
    let slot = Slot::new();
    (Box::new(Job { f, value: None, error: None, slot: Some(slot.clone()) }), slot)
}

/// A pending transaction: resolves with the closure's value after COMMIT, or with why not.
#[must_use = "a transaction ticket tells whether it committed; await it or call wait()"]
pub struct TxTicket<R> {
    pub(crate) inner: Ticket<Result<R, TxError>>,
}

impl<R> TxTicket<R> {
    /// Blocks until the transaction committed or failed.
    pub fn wait(self) -> Result<R, TxError> {
        self.inner.wait().map_err(TxError::Write)?
    }
}

impl<R: Unpin> Future for TxTicket<R> {
    type Output = Result<R, TxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx).map(|r| r.map_err(TxError::Write).and_then(|inner| inner))
    }
}
