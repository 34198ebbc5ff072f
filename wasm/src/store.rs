//! The store inside the worker: the browser driver of the core's pipeline.
//!
//! Everything runs on the worker's one thread. Accepting a write is synchronous; the writer is a
//! task (`spawn_local`) that polls the pipeline, runs the batches it hands out on the
//! connection, awaits a timer promise when told to sleep, parks when there is no work, and
//! yields to the event loop between batches so new writes and queries are served. Every
//! decision (batching, retry, breaker, flushes, metrics) is the core's. The `RefCell` around the
//! state is never borrowed across an `.await`, and never while calling out to JavaScript.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures_channel::oneshot;
use sqlweir_core::{
    Action, Backend, Body, BodyOutcome, ErrorClass, Health, JobLocks, JobOutcome, JobRun, JobStatus, JobToken, Level,
    ManyOutcome, MetricsSnapshot, Pipeline, PushError, Receipt, Recorded, Request, RequestId, Settled as Batch,
    Settlement, Value, Work, Write, WriteError, WriteResult,
};

use crate::error::{CloseError, LockError, OpenError, QueryError, TxError};
use crate::host;
use crate::opfs;
use crate::options::Options;
use crate::sqlite::{QueryRows, SqliteBackend};

/// Poll interval while waiting for a job lock held by someone else.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// A committed transaction: what each statement did, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct TxOutcome {
    /// Per statement: rows it changed and the connection's last inserted rowid after it.
    pub results: Vec<(u64, i64)>,
    /// The batch (transaction) it committed in.
    pub batch: u64,
}

/// How an accepted write ended, for the ticket kinds that are not Rust futures.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Acked {
    One(Receipt),
    Many(ManyOutcome),
    Transaction(TxOutcome),
}

/// What a queued entry asks of the writer.
pub(crate) enum Op {
    /// A write, batched with its neighbours.
    Write(Write),
    /// Statements that commit together or not at all: run alone, between batches; recorded
    /// under the request id, if any.
    Transaction(Vec<Write>, Option<Request>),
}

impl Op {
    /// The same entry, recorded under the request id `id` (see `sqlweir_core::request`): a
    /// resend of it is answered from its marker, not applied again. `first_send`: its tab never
    /// sent it before, so no marker is looked up.
    pub(crate) fn once(self, id: Option<RequestId>, first_send: bool) -> Op {
        match (self, id) {
            (op, None) => op,
            (Op::Write(w), Some(id)) if first_send => Op::Write(w.once_first(id)),
            (Op::Write(w), Some(id)) => Op::Write(w.once(id)),
            (Op::Transaction(list, _), Some(id)) => Op::Transaction(list, Some(Request { id, first_send })),
        }
    }

    /// The checks a write passes before it is accepted; a transaction's name the statement.
    fn check(&self) -> Result<(), TxError> {
        match self {
            Op::Write(w) => w.check().map_err(TxError::Write),
            Op::Transaction(statements, _) => {
                if statements.is_empty() {
                    return Err(TxError::Write(WriteError::InvalidInput {
                        message: "a transaction needs at least one statement".into(),
                    }));
                }
                statements.iter().enumerate().try_for_each(|(i, w)| w.check().map_err(|e| in_statement(i, e)))
            }
        }
    }
}

/// A statement's error, naming the statement (indexes from 0).
fn in_statement(index: usize, error: WriteError) -> TxError {
    TxError::Statement { index, error }
}

/// Who is waiting for a write's outcome.
pub(crate) enum Ticket {
    /// A Rust future (`Store::write`, the in-worker promise API).
    Reply(oneshot::Sender<Result<Acked, TxError>>),
    /// A write sent by the main thread; its outcome goes out with its batch's report.
    Id(f64),
    /// A flush: everything accepted before it has settled.
    Flush(oneshot::Sender<()>),
}

/// One write's outcome, reported to the batch listener.
pub(crate) struct Settled {
    pub(crate) id: f64,
    pub(crate) result: Result<Acked, TxError>,
}

/// Receives the outcomes of the `Id` tickets settled together (one committed batch, or one
/// failed batch).
pub(crate) type Listener = Rc<dyn Fn(Vec<Settled>)>;

/// Told after each committed batch that changed rows: its id and the tables it changed.
pub(crate) type CommitListener = Rc<dyn Fn(u64, Vec<String>)>;

/// A statement-list transaction as the pipeline runs it: the statements, and what the last run
/// produced (per statement results, or the statement that failed).
pub(crate) struct Statements {
    list: Vec<Write>,
    results: Vec<(u64, i64)>,
    error: Option<TxError>,
    request: Option<Request>,
    /// The batch of the first run, when answered from its marker.
    answered_in: Option<u64>,
}

impl Body<SqliteBackend> for Statements {
    fn run(&mut self, backend: &mut SqliteBackend) -> BodyOutcome {
        self.results.clear();
        self.error = None;
        for (i, w) in self.list.iter().enumerate() {
            let sqlweir_core::Rows::One(values) = &w.rows else {
                unreachable!("transaction statements are built with Write::one")
            };
            let mut result = None;
            backend.execute_many(&w.sql, w.names.as_deref(), &[values.as_slice()], &mut |_, r, _| {
                result = Some(r);
                false
            });
            match result.expect("execute_many reports its one row") {
                Ok(a) => self.results.push((a.changes, a.last_rowid)),
                Err(e) if e.class == ErrorClass::Rejected => {
                    self.error = Some(in_statement(i, WriteError::Backend(e)));
                    return BodyOutcome::Rejected;
                }
                Err(e) => return BodyOutcome::Failed(e),
            }
        }
        BodyOutcome::Commit
    }

    fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    fn recorded(&self, batch: u64) -> Recorded {
        Recorded::Transaction { results: self.results.clone(), batch }
    }

    fn answered(&mut self, recorded: Recorded) {
        match recorded {
            Recorded::Transaction { results, batch } => {
                self.results = results;
                self.answered_in = Some(batch);
            }
            // The id was used for a write first: answered as a mistake, not run.
            _ => self.answered_in = Some(0),
        }
    }
}

struct Inner {
    name: String,
    backend: Option<SqliteBackend>,
    pipeline: Pipeline<Ticket, Statements>,
    locks: JobLocks,
    tokens: HashMap<u32, JobToken>,
    next_token: u32,
    /// Wakes the parked writer task.
    wake: Option<oneshot::Sender<()>>,
    listener: Option<Listener>,
    commit_listener: Option<CommitListener>,
}

impl Inner {
    fn wake_writer(&mut self) {
        if let Some(wake) = self.wake.take() {
            let _ = wake.send(());
        }
    }
}

/// An open database in this worker: `Clone` is a handle to the same store.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use sqlweir_core::params;
/// use sqlweir_wasm::{Options, Store};
///
/// let store = Store::open("app.db", Options::default().migrations(&["CREATE TABLE t(x)"])).await?;
/// let receipt = store.write("INSERT INTO t VALUES (?1)", params![1]).await?;
/// assert_eq!(receipt.changes, 1);
/// let found = store.query("SELECT x FROM t", &[])?;
/// assert_eq!(found.rows.len(), 1);
/// store.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Rc<RefCell<Inner>>,
}

impl Store {
    /// Installs the OPFS pool (once per worker), opens `name`, runs the migrations and starts the
    /// writer. Only in a dedicated worker.
    pub async fn open(name: &str, options: Options) -> Result<Store, OpenError> {
        let config = options.writer_config()?;
        opfs::pool(&options.directory).await?;
        opfs::claim(name)?;
        let backend = match SqliteBackend::open(name, opfs::VFS_NAME, &options) {
            Ok(b) => b,
            Err(e) => {
                opfs::release(name);
                return Err(e);
            }
        };
        let seed = (host::unix_ms() ^ (host::now().as_nanos() as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let inner = Rc::new(RefCell::new(Inner {
            name: name.to_owned(),
            backend: Some(backend),
            pipeline: Pipeline::new(options.queue_capacity, options.backpressure, config, seed),
            locks: JobLocks::new(),
            tokens: HashMap::new(),
            next_token: 0,
            wake: None,
            listener: None,
            commit_listener: None,
        }));
        wasm_bindgen_futures::spawn_local(run_writer(Rc::clone(&inner)));
        Ok(Store { inner })
    }

    /// Writes one statement; resolves after its batch commits.
    pub async fn write(&self, sql: &str, params: Vec<Value>) -> Result<Receipt, WriteError> {
        match self.write_any(Op::Write(Write::one(sql, params))).await.map_err(TxError::into_write)? {
            Acked::One(r) => Ok(r),
            _ => unreachable!("a single write settles as one"),
        }
    }

    /// Writes many parameter rows for one statement; resolves after its batch commits with the
    /// count committed and the rows rejected alone.
    pub async fn write_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> Result<ManyOutcome, WriteError> {
        match self.write_any(Op::Write(Write::many(sql, rows))).await.map_err(TxError::into_write)? {
            Acked::Many(m) => Ok(m),
            _ => unreachable!("a write_many settles as many"),
        }
    }

    /// Runs `statements` in one `BEGIN IMMEDIATE` transaction, alone between batches: all
    /// commit or none does. A failing statement rolls the whole transaction back and its error
    /// (message prefixed `statement N:`) is returned; lock contention retries the whole list
    /// under the retry policy. The statements cannot see each other's results from JavaScript:
    /// decide in SQL (`SET n = n + 1`, `INSERT ... SELECT`, `WHERE` guards).
    pub async fn transaction(&self, statements: Vec<Write>) -> Result<TxOutcome, TxError> {
        match self.write_any(Op::Transaction(statements, None)).await? {
            Acked::Transaction(t) => Ok(t),
            _ => unreachable!("a transaction settles as a transaction"),
        }
    }

    pub(crate) async fn write_any(&self, op: Op) -> Result<Acked, TxError> {
        let (tx, rx) = oneshot::channel();
        // A refused write answers through its reply at once.
        let _ = self.submit(op, Ticket::Reply(tx));
        // The sender is dropped unanswered only if the writer task died, which ends the store.
        rx.await.unwrap_or(Err(TxError::Write(WriteError::Closed)))
    }

    /// Accepts a write, or refuses it with its error (invalid value, closed, queue full under
    /// `Backpressure::Fail`): a refused `Reply` ticket is answered at once, a refused `Id` ticket
    /// comes back settled for the caller to report.
    pub(crate) fn submit(&self, op: Op, ticket: Ticket) -> Result<(), Settled> {
        self.submit_at(op, ticket, host::now())
    }

    /// [`submit`](Self::submit) at host time `now`, read once for a message of many writes.
    pub(crate) fn submit_at(&self, op: Op, ticket: Ticket, now: Duration) -> Result<(), Settled> {
        if let Err(e) = op.check() {
            return refuse(ticket, e);
        }
        let work = match op {
            Op::Write(w) => Work::Write(w),
            Op::Transaction(list, request) => {
                Work::Transaction(Statements { list, results: Vec::new(), error: None, request, answered_in: None })
            }
        };
        let mut s = self.inner.borrow_mut();
        match s.pipeline.push(work, ticket, now) {
            Ok(pushed) => {
                if pushed.wake {
                    s.wake_writer();
                }
                Ok(())
            }
            Err(PushError::Closed((_, ticket))) => refuse(ticket, WriteError::Closed.into()),
            Err(PushError::Full((_, ticket))) => {
                let capacity = s.pipeline.capacity();
                refuse(ticket, WriteError::QueueFull { capacity }.into())
            }
        }
    }

    /// Makes room in memory for `entries` writes about to be submitted at once.
    pub(crate) fn reserve(&self, entries: usize) {
        self.inner.borrow_mut().pipeline.reserve(entries);
    }

    /// Drops the request markers of `origin` below `below` with the next batch: that sender
    /// has heard how those writes ended and will not send them again.
    pub(crate) fn forget(&self, origin: &str, below: u64) {
        self.inner.borrow_mut().pipeline.forget(origin, below);
    }

    /// Sets who receives the outcomes of main-thread writes, one call per settled batch.
    pub(crate) fn set_listener(&self, listener: Listener) {
        self.inner.borrow_mut().listener = Some(listener);
    }

    /// Sets who is told of each committed batch that changed rows (the commit feed).
    pub(crate) fn set_commit_listener(&self, listener: CommitListener) {
        self.inner.borrow_mut().commit_listener = Some(listener);
    }

    /// The tables `sql` reads, from SQLite's authorizer while preparing it (nothing runs), for
    /// live queries.
    pub fn tables_read(&self, sql: &str) -> Result<Vec<String>, QueryError> {
        let s = self.inner.borrow();
        let backend = s.backend.as_ref().ok_or(QueryError::Closed)?;
        backend.tables_read(sql).map_err(QueryError::Backend)
    }

    /// Runs a read-only statement between batches. A read after a write's ack sees the write.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<QueryRows, QueryError> {
        let s = self.inner.borrow();
        let backend = s.backend.as_ref().ok_or(QueryError::Closed)?;
        for (i, v) in params.iter().enumerate() {
            v.check().map_err(|why| QueryError::InvalidInput { message: format!("parameter {}: {why}", i + 1) })?;
        }
        backend.query(sql, params).map_err(QueryError::Backend)
    }

    /// Resolves when every write accepted before the call has settled.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.inner.borrow_mut();
            match s.pipeline.flush(Ticket::Flush(tx)) {
                Ok(pushed) if pushed.wake => s.wake_writer(),
                Ok(_) => {}
                Err(_nothing_pending) => return,
            }
        }
        // Dropped unanswered only if the writer task died; nothing is left to wait for then.
        let _ = rx.await;
    }

    /// Refuses new writes, lets accepted ones settle, then closes the connection. Later calls
    /// fail with `Closed`; closing twice is fine.
    pub async fn close(&self) -> Result<(), CloseError> {
        {
            let mut s = self.inner.borrow_mut();
            if s.pipeline.close() {
                s.wake_writer();
            }
        }
        self.flush().await;
        let (backend, name) = {
            let mut s = self.inner.borrow_mut();
            (s.backend.take(), s.name.clone())
        };
        let Some(backend) = backend else { return Ok(()) };
        let closed = backend.close().map_err(CloseError);
        opfs::release(&name);
        closed
    }

    /// Counters, latencies and facts about the database.
    pub fn metrics(&self) -> MetricsSnapshot {
        let s = self.inner.borrow();
        let mut m = s.pipeline.snapshot();
        m.engine = format!("SQLite {}", rusqlite::version());
        m.journal_mode = s.backend.as_ref().map(|b| b.journal_mode().to_owned()).unwrap_or_default();
        m
    }

    /// Ok, degraded or failing, and why.
    pub fn health(&self) -> Health {
        self.inner.borrow().pipeline.health(host::now())
    }

    /// Takes the job lock `name` for `holder`. With `wait`, keeps trying that long; without, fails
    /// at once with `InProgress` when someone holds it. Returns a token for [`Store::unlock`].
    pub async fn lock(&self, name: &str, holder: &str, wait: Option<Duration>) -> Result<u32, LockError> {
        let deadline = wait.map(|w| host::now() + w);
        loop {
            let held = {
                let mut s = self.inner.borrow_mut();
                if s.pipeline.is_closed() {
                    return Err(LockError::Closed);
                }
                match s.locks.try_acquire(name, holder, host::unix_ms()) {
                    Ok(token) => {
                        s.next_token = s.next_token.wrapping_add(1);
                        let id = s.next_token;
                        s.tokens.insert(id, token);
                        return Ok(id);
                    }
                    Err(status) => status,
                }
            };
            match deadline.and_then(|d| d.checked_sub(host::now())).filter(|left| !left.is_zero()) {
                Some(left) => host::sleep(LOCK_POLL.min(left)).await,
                None => return Err(LockError::InProgress { holder: held.holder, since_ms: held.since_ms }),
            }
        }
    }

    /// Releases a job lock; `failure` records the run as failed with that reason. Returns false
    /// for a token already released.
    pub fn unlock(&self, token: u32, failure: Option<String>) -> bool {
        let mut s = self.inner.borrow_mut();
        let Some(token) = s.tokens.remove(&token) else { return false };
        let outcome = failure.map_or(JobOutcome::Succeeded, JobOutcome::Failed);
        s.locks.release(token, outcome, host::unix_ms());
        true
    }

    /// Who holds the job lock `name`, and its last runs.
    pub fn job_status(&self, name: &str) -> (Option<JobStatus>, Vec<JobRun>) {
        let s = self.inner.borrow();
        (s.locks.status(name), s.locks.history(name))
    }

    /// Makes the next `attempts` batch attempts fail with `SQLITE_BUSY` (tests of the retry path).
    #[cfg(feature = "fault-injection")]
    pub fn inject_busy(&self, attempts: u32) {
        if let Some(b) = self.inner.borrow_mut().backend.as_mut() {
            b.inject_busy(attempts);
        }
    }
}

/// Answers a refused ticket: a `Reply` at once, an `Id` back to the caller to report.
fn refuse(ticket: Ticket, e: TxError) -> Result<(), Settled> {
    match ticket {
        Ticket::Reply(tx) => {
            // The caller awaits the receiver right after; it cannot be gone.
            let _ = tx.send(Err(e));
            Ok(())
        }
        Ticket::Id(id) => Err(Settled { id, result: Err(e) }),
        Ticket::Flush(tx) => {
            let _ = tx.send(());
            Ok(())
        }
    }
}

/// The writer task: polls the pipeline until it is closed and drained.
async fn run_writer(inner: Rc<RefCell<Inner>>) {
    loop {
        let action = inner.borrow_mut().pipeline.poll(host::now());
        log_events(&inner);
        match action {
            Action::Run(mut batch) => {
                let settled = {
                    let mut s = inner.borrow_mut();
                    let s = &mut *s;
                    let started = host::now();
                    let attempted = match s.backend.as_mut() {
                        Some(backend) => batch.attempt(backend),
                        None => unreachable!("the connection closes only after the pipeline stopped"),
                    };
                    s.pipeline.finish(batch, attempted, started, host::now())
                };
                log_events(&inner);
                if let Some(settled) = settled {
                    settle(&inner, settled);
                    // Let queued messages (new writes, queries) run before the next batch.
                    if !inner.borrow().pipeline.is_idle() {
                        host::yield_now().await;
                    }
                }
            }
            // A retry delay or the breaker's cooldown: nothing shortens it.
            Action::Sleep(wait) => host::sleep(wait).await,
            // A batch lingering for more writes: a flush or a close ends the linger early.
            Action::Wait(Some(linger)) => {
                let woken = park(&inner);
                sleep_or_wake(linger, woken).await;
                inner.borrow_mut().wake = None;
            }
            Action::Wait(None) => {
                let _ = park(&inner).await;
            }
            Action::Stopped => return,
        }
    }
}

/// Leaves the writer a way to be woken: the next push, flush or close that finds it parked
/// sends on the returned channel.
fn park(inner: &Rc<RefCell<Inner>>) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    inner.borrow_mut().wake = Some(tx);
    rx
}

/// Waits `d`, or less if the writer is woken first.
async fn sleep_or_wake(d: Duration, mut woken: oneshot::Receiver<()>) {
    let mut sleep = std::pin::pin!(host::sleep(d));
    std::future::poll_fn(|cx| {
        // Woken or timed out: either way the writer polls the pipeline again.
        if sleep.as_mut().poll(cx).is_ready() || Pin::new(&mut woken).poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Hands each entry its result: Rust futures directly, main-thread writes in one report.
fn settle(inner: &Rc<RefCell<Inner>>, mut settled: Batch<Ticket, Statements>) {
    let batch = settled.batch;
    // Before any write is answered: whoever acts on an ack already finds the commit announced.
    let changed = std::mem::take(&mut settled.changed);
    let commit_listener = inner.borrow().commit_listener.clone();
    if let (Some(listener), false) = (commit_listener, changed.is_empty()) {
        listener(batch, changed);
    }
    let mut reports = Vec::new();
    for entry in settled.entries {
        let result = match (entry.work, entry.outcome) {
            (_, Settlement::Failed(e)) => Err(TxError::Write(e)),
            (Work::Write(_), Settlement::Write(r)) => acked(r, batch),
            (Work::Transaction(tx), Settlement::Committed) => match tx.answered_in {
                Some(0) => Err(TxError::Write(reused("a write", "a transaction"))),
                answered => Ok(Acked::Transaction(TxOutcome { results: tx.results, batch: answered.unwrap_or(batch) })),
            },
            (Work::Transaction(tx), Settlement::Rejected) => {
                Err(tx.error.unwrap_or(TxError::Write(WriteError::Closed)))
            }
            (work, outcome) => {
                unreachable!(
                    "{} settled as {outcome:?}",
                    if matches!(work, Work::Write(_)) { "a write" } else { "a transaction" }
                )
            }
        };
        match entry.ticket {
            // The receiver is gone only if its future was dropped: nobody is left to tell.
            Ticket::Reply(tx) => drop(tx.send(result)),
            Ticket::Id(id) => reports.push(Settled { id, result }),
            Ticket::Flush(_) => unreachable!("a flush is not an entry"),
        }
    }
    for flush in settled.flushed {
        if let Ticket::Flush(tx) = flush {
            let _ = tx.send(());
        }
    }
    let listener = inner.borrow().listener.clone();
    if let (Some(listener), false) = (listener, reports.is_empty()) {
        listener(reports);
    }
}

/// The core's log events on the console, at the level the core gives them.
fn log_events(inner: &Rc<RefCell<Inner>>) {
    let events: Vec<_> = inner.borrow_mut().pipeline.drain_events().collect();
    for e in events {
        let line = format!("sqlweir: {e}");
        match e.level() {
            Level::Debug | Level::Info => host::debug(&line),
            Level::Warn | Level::Error => host::warn(&line),
        }
    }
}

fn acked(result: WriteResult, batch: u64) -> Result<Acked, TxError> {
    match result {
        WriteResult::One(Ok(a)) => Ok(Acked::One(Receipt::new(a, batch))),
        WriteResult::One(Err(e)) => Err(TxError::Write(e)),
        WriteResult::Many { committed, rejected } => Ok(Acked::Many(ManyOutcome { committed, rejected, batch })),
        // Sent before under its request id (a resend after a leader change): the first outcome.
        WriteResult::Again(Recorded::One { changes, last_rowid, batch }) => {
            Ok(Acked::One(Receipt { changes, last_rowid, batch, returned: None }))
        }
        WriteResult::Again(Recorded::Many { committed, rejected, batch }) => {
            Ok(Acked::Many(ManyOutcome { committed, rejected, batch }))
        }
        WriteResult::Again(Recorded::Transaction { .. }) => Err(TxError::Write(reused("a transaction", "a write"))),
    }
}

/// The error for a request id recorded for another kind of entry.
fn reused(was: &str, now: &str) -> WriteError {
    WriteError::InvalidInput {
        message: format!("this request id was already used for {was}, not {now}; give each write its own id"),
    }
}
