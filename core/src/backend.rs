//! The seam between the write path and a database: the one trait a platform implements.

use std::sync::Arc;

use crate::error::BackendError;
use crate::request::{Recorded, RequestId, unsupported};
use crate::value::Value;

/// What one executed write did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// Rows inserted, updated or deleted by the statement.
    pub changes: u64,
    /// The connection's last inserted rowid after the statement.
    pub last_rowid: i64,
    /// The rows of its `RETURNING` clause; `None` for a statement without one. (Boxed: most
    /// writes have none, and every write carries this field.)
    pub returned: Option<Box<Returned>>,
}

/// The rows a write's `RETURNING` clause produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Returned {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One `Vec<Value>` per row, in the columns' order.
    pub rows: Vec<Vec<Value>>,
}

/// A database connection the writer drives. Exactly one exists per store: the writer owns it.
///
/// Errors come back already classified ([`BackendError::class`]), by error code and never by
/// message text, so the core decides retry, salvage or failure without knowing the database.
pub trait Backend {
    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite).
    fn begin(&mut self) -> Result<(), BackendError>;
    /// Runs one statement with one parameter row inside the open transaction.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Applied, BackendError>;
    /// Commits the open transaction.
    fn commit(&mut self) -> Result<(), BackendError>;
    /// Rolls the open transaction back; a no-op when none is open.
    fn rollback(&mut self) -> Result<(), BackendError>;
    /// Runs `sql` once per row of `rows`, in order, and reports each row to `each` with its
    /// index, its result and whether the transaction can go on (`kept`). Stops when `each`
    /// returns `false`.
    ///
    /// `kept` is `false` after a rejected row when the database rolled the transaction back,
    /// and also when the failed statement may have left part of its effect behind (SQLite's
    /// `OR FAIL` and `RAISE(FAIL)` keep the rows changed before the failure): then the caller
    /// rolls back and replays the batch without that row.
    ///
    /// The default calls [`execute`](Self::execute) per row; backends override it to prepare
    /// the statement once for the whole group (a `write_many`, or a run of single writes of
    /// one statement).
    ///
    /// With `names`, each row's values are bound to those parameter names, in order; the
    /// default refuses them (a backend that binds by name overrides this).
    fn execute_many(
        &mut self,
        sql: &str,
        names: Option<&[String]>,
        rows: &[&[Value]],
        each: &mut dyn FnMut(usize, Result<Applied, BackendError>, bool) -> bool,
    ) {
        for (i, params) in rows.iter().enumerate() {
            let result = match names {
                None => self.execute(sql, params),
                Some(_) => Err(BackendError::new(
                    crate::error::ErrorKind::InvalidInput,
                    crate::error::ErrorClass::Rejected,
                    None,
                    "this database takes positional parameters only (?1, ?2, ...)",
                )),
            };
            let kept = result.is_ok() || self.in_transaction();
            if !each(i, result, kept) {
                return;
            }
        }
    }

    /// Looks up the marker of request `id` inside the open transaction: how the write recorded
    /// under it ended, or `None` when none was. See [`crate::request`].
    ///
    /// The default has no markers: it refuses with `Unsupported`.
    fn recorded(&mut self, id: &RequestId) -> Result<Option<Recorded>, BackendError> {
        let _ = id;
        Err(unsupported("a write with a request id"))
    }

    /// [`Backend::recorded`] for several writes of one sender (`seqs`, its numbers), in one
    /// go: a backend may answer them with one query. The default asks `recorded` once each.
    fn recorded_many(&mut self, origin: &Arc<str>, seqs: &[u64]) -> Result<Vec<Option<Recorded>>, BackendError> {
        seqs.iter().map(|&seq| self.recorded(&RequestId { origin: Arc::clone(origin), seq })).collect()
    }

    /// Writes the markers of the committed writes of `origin` in this batch (`entries`: each
    /// write's number and how it ended, in batch order) inside the open transaction, so that
    /// they commit if and only if the writes do. Called once per sender per batch, so a backend
    /// may keep them as one row (SQLite does).
    ///
    /// The default has no markers: it refuses with `Unsupported`.
    fn record(&mut self, origin: &str, entries: &[(u64, Recorded)]) -> Result<(), BackendError> {
        let _ = (origin, entries);
        Err(unsupported("a write with a request id"))
    }

    /// Drops the markers of `origin` numbered below `below`, inside the open transaction (no
    /// resend of them can come any more).
    ///
    /// The default has no markers: nothing to drop.
    fn forget(&mut self, origin: &str, below: u64) -> Result<(), BackendError> {
        let _ = (origin, below);
        Ok(())
    }

    /// Whether a transaction is still open. Checked after a rejected write: some errors make the
    /// database roll the whole transaction back, and then the batch is replayed without it.
    fn in_transaction(&self) -> bool;

    /// The tables the transaction just committed changed, for the commit feed
    /// ([`crate::feed`]), and forgets them; what [`begin`](Self::begin) started afresh. The
    /// default knows none (a backend without a feed).
    fn take_changed(&mut self) -> Vec<String> {
        Vec::new()
    }
}
