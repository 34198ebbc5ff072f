//! The store inside the worker: the core's queue and writer driven on the worker's event loop.
//!
//! Everything runs on the worker's one thread. Accepting a write is synchronous; the writer is a
//! task (`spawn_local`) that parks when the queue is empty, applies one batch at a time with the
//! core's [`apply`], sleeps on timer promises for retry and breaker waits, and yields to the
//! event loop between batches so new writes and queries are served. The `RefCell` around the
//! state is never borrowed across an `.await`, and never while calling out to JavaScript.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;
use sqlweir_core::{
    Backend, BackendError, BatchOutcome, ErrorClass, ErrorKind, Event, Health, JobLocks, JobOutcome, JobRun, JobStatus,
    JobToken, ManyOutcome, MetricsSnapshot, PushError, Receipt, Step, Value, Write, WriteError, WriteQueue,
    WriteResult, WriterState, apply,
};

use crate::error::{CloseError, LockError, OpenError, QueryError, TxError};
use crate::host;
use crate::opfs;
use crate::options::{Backpressure, Options};
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
    /// Statements that commit together or not at all: run alone, between batches.
    Transaction(Vec<Write>),
}

impl Op {
    /// Parameter rows carried: its weight in the queue.
    fn row_count(&self) -> usize {
        match self {
            Op::Write(w) => w.row_count(),
            Op::Transaction(statements) => statements.len().max(1),
        }
    }

    /// The checks a write passes before it is accepted; a transaction's name the statement.
    fn check(&self) -> Result<(), TxError> {
        match self {
            Op::Write(w) => w.check().map_err(TxError::Write),
            Op::Transaction(statements) => {
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
}

/// One write's outcome, reported to the batch listener.
pub(crate) struct Settled {
    pub(crate) id: f64,
    pub(crate) result: Result<Acked, TxError>,
}

/// Receives the outcomes of the `Id` tickets settled together (one committed batch, or one
/// failed batch).
pub(crate) type Listener = Rc<dyn Fn(Vec<Settled>)>;

struct Pending {
    op: Op,
    ticket: Ticket,
}

struct Inner {
    name: String,
    backend: Option<SqliteBackend>,
    queue: WriteQueue<Pending>,
    /// Writes waiting for room in the queue (`Backpressure::Wait`), in order.
    overflow: VecDeque<Pending>,
    overflow_rows: usize,
    backpressure: Backpressure,
    writer: WriterState,
    locks: JobLocks,
    tokens: BTreeMap<u32, JobToken>,
    next_token: u32,
    /// Wakes the parked writer task.
    wake: Option<oneshot::Sender<()>>,
    /// Writes accepted (queued or waiting for room), and writes settled, since open.
    submitted: u64,
    settled: u64,
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    listener: Option<Listener>,
    closing: bool,
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
            queue: WriteQueue::new(options.queue_capacity),
            overflow: VecDeque::new(),
            overflow_rows: 0,
            backpressure: options.backpressure,
            writer: WriterState::new(config, seed),
            locks: JobLocks::new(),
            tokens: BTreeMap::new(),
            next_token: 0,
            wake: None,
            submitted: 0,
            settled: 0,
            flush_waiters: Vec::new(),
            listener: None,
            closing: false,
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
        match self.write_any(Op::Transaction(statements)).await? {
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
        let refuse = |ticket: Ticket, e: TxError| match ticket {
            Ticket::Reply(tx) => {
                // The caller awaits the receiver right after; it cannot be gone.
                let _ = tx.send(Err(e));
                Ok(())
            }
            Ticket::Id(id) => Err(Settled { id, result: Err(e) }),
        };
        if let Err(e) = op.check() {
            return refuse(ticket, e);
        }
        let mut s = self.inner.borrow_mut();
        if s.closing {
            return refuse(ticket, WriteError::Closed.into());
        }
        let rows = op.row_count();
        let pending = Pending { op, ticket };
        if s.overflow.is_empty() {
            let now = host::now();
            match s.queue.push(pending, rows, now) {
                Ok(()) => {}
                Err(PushError::Closed(p)) => return refuse(p.ticket, WriteError::Closed.into()),
                Err(PushError::Full(p)) => match s.backpressure {
                    Backpressure::Fail => {
                        let capacity = s.queue.capacity();
                        return refuse(p.ticket, WriteError::QueueFull { capacity }.into());
                    }
                    Backpressure::Wait => {
                        s.overflow_rows += rows;
                        s.overflow.push_back(p);
                    }
                },
            }
        } else if s.backpressure == Backpressure::Fail {
            let capacity = s.queue.capacity();
            return refuse(pending.ticket, WriteError::QueueFull { capacity }.into());
        } else {
            // Others already wait for room: queue behind them to keep acceptance order.
            s.overflow_rows += rows;
            s.overflow.push_back(pending);
        }
        s.submitted += 1;
        if let Some(wake) = s.wake.take() {
            let _ = wake.send(());
        }
        Ok(())
    }

    /// Sets who receives the outcomes of main-thread writes, one call per settled batch.
    pub(crate) fn set_listener(&self, listener: Listener) {
        self.inner.borrow_mut().listener = Some(listener);
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
        let rx = {
            let mut s = self.inner.borrow_mut();
            let target = s.submitted;
            if s.settled >= target {
                return;
            }
            let (tx, rx) = oneshot::channel();
            s.flush_waiters.push((target, tx));
            rx
        };
        // Dropped unanswered only if the writer task died; nothing is left to wait for then.
        let _ = rx.await;
    }

    /// Refuses new writes, lets accepted ones settle, then closes the connection. Later calls
    /// fail with `Closed`; closing twice is fine.
    pub async fn close(&self) -> Result<(), CloseError> {
        {
            let mut s = self.inner.borrow_mut();
            s.closing = true;
            s.queue.close();
            if let Some(wake) = s.wake.take() {
                let _ = wake.send(());
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
        let depth = s.queue.rows() + s.overflow_rows;
        let mut m = s.writer.snapshot(depth, s.queue.capacity(), s.queue.accepted());
        rusqlite::version().clone_into(&mut m.sqlite_version);
        m.journal_mode = s.backend.as_ref().map(|b| b.journal_mode().to_owned()).unwrap_or_default();
        m
    }

    /// Ok, degraded or failing, and why.
    pub fn health(&self) -> Health {
        let s = self.inner.borrow();
        s.writer.health(s.queue.rows() + s.overflow_rows, s.queue.capacity(), host::now())
    }

    /// Takes the job lock `name` for `holder`. With `wait`, keeps trying that long; without, fails
    /// at once with `InProgress` when someone holds it. Returns a token for [`Store::unlock`].
    pub async fn lock(&self, name: &str, holder: &str, wait: Option<Duration>) -> Result<u32, LockError> {
        let deadline = wait.map(|w| host::now() + w);
        loop {
            let held = {
                let mut s = self.inner.borrow_mut();
                if s.closing {
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

impl Inner {
    /// Moves writes waiting for room into the queue, in order, while they fit.
    fn admit_overflow(&mut self, now: std::time::Duration) {
        while let Some(front) = self.overflow.front() {
            let rows = front.op.row_count();
            if !self.queue.has_room_for(rows) {
                break;
            }
            let Some(p) = self.overflow.pop_front() else { break };
            self.overflow_rows -= rows;
            if let Err(PushError::Full(p) | PushError::Closed(p)) = self.queue.push(p, rows, now) {
                // The queue refuses only when closed (room was just checked): close lets already
                // accepted writes drain, so keep it at the front for the next round.
                self.overflow_rows += rows;
                self.overflow.push_front(p);
                break;
            }
        }
    }

    fn log_events(&mut self) {
        for event in self.writer.drain_events() {
            match event {
                Event::Retry { batch, attempt, delay, error } => {
                    host::warn(&format!("sqlweir: batch {batch} attempt {attempt} hit {error}; retrying in {delay:?}"));
                }
                Event::Breaker { transition, failures } => {
                    host::warn(&format!("sqlweir: circuit breaker {transition:?} after {failures} failures"));
                }
                Event::Rejected { batch, error } => host::debug(&format!("sqlweir: batch {batch} rejected: {error}")),
                Event::BatchFailed { batch, rows, error } => {
                    host::warn(&format!("sqlweir: batch {batch} of {rows} rows failed: {error}"));
                }
                Event::SlowCommit { batch, rows, took } => {
                    host::warn(&format!("sqlweir: batch {batch} of {rows} rows took {took:?} to commit"));
                }
            }
        }
    }
}

/// The writer task: one batch at a time until the store is closed and drained.
async fn run_writer(inner: Rc<RefCell<Inner>>) {
    loop {
        let parked = {
            let mut s = inner.borrow_mut();
            s.admit_overflow(host::now());
            if s.queue.is_empty() {
                if s.closing && s.overflow.is_empty() {
                    return;
                }
                let (tx, rx) = oneshot::channel();
                s.wake = Some(tx);
                Some(rx)
            } else {
                None
            }
        };
        if let Some(rx) = parked {
            let _ = rx.await;
            continue;
        }
        let linger = {
            let s = inner.borrow();
            let now = host::now();
            s.writer.ready_at(s.queue.rows(), s.queue.oldest_accepted_at(), now).and_then(|at| at.checked_sub(now))
        };
        if let Some(wait) = linger.filter(|w| !w.is_zero()) {
            host::sleep(wait).await;
        }
        run_batch(&inner).await;
        let more = {
            let s = inner.borrow();
            !s.queue.is_empty() || !s.overflow.is_empty()
        };
        if more {
            host::yield_now().await;
        }
    }
}

/// Takes one batch (or one transaction, which runs alone), runs it through its attempts and
/// settles its writes.
async fn run_batch(inner: &Rc<RefCell<Inner>>) {
    let (ops, tickets, mut run) = {
        let mut s = inner.borrow_mut();
        let limit = s.writer.batch_limit();
        let taken = s.queue.take_until(limit, |p| matches!(p.op, Op::Transaction(_)));
        let rows = taken.iter().map(|q| q.rows).sum();
        let left = s.queue.rows() + s.overflow_rows;
        let run = s.writer.start_batch(rows, left);
        let mut ops = Vec::with_capacity(taken.len());
        let mut tickets = Vec::with_capacity(taken.len());
        for q in taken {
            ops.push(q.item.op);
            tickets.push((q.item.ticket, q.accepted_at));
        }
        (ops, tickets, run)
    };
    if ops.is_empty() {
        return;
    }
    if let [Op::Transaction(statements)] = ops.as_slice() {
        let results = vec![run_transaction(inner, statements, &mut run).await];
        settle(inner, tickets, results);
        return;
    }
    let writes: Vec<&Write> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Write(w) => Some(w),
            Op::Transaction(_) => None,
        })
        .collect();
    let step = loop {
        let gate = inner.borrow_mut().writer.gate(host::now());
        if let Some(wait) = gate {
            host::sleep(wait).await;
            continue;
        }
        let step = {
            let mut s = inner.borrow_mut();
            let started = host::now();
            let outcome = match s.backend.as_mut() {
                Some(backend) => apply(backend, &writes),
                None => closed_under_writer(),
            };
            let step = s.writer.finish_attempt(&mut run, outcome, started, host::now());
            s.log_events();
            step
        };
        match step {
            Step::RetryAfter(wait) => host::sleep(wait).await,
            other => break other,
        }
    };
    let batch = run.id;
    let results: Vec<Result<Acked, TxError>> = match step {
        Step::Resolve(results) => results.into_iter().map(|r| acked(r, batch)).collect(),
        Step::Fail(e) => writes.iter().map(|_| Err(TxError::Write(e.clone()))).collect(),
        Step::RetryAfter(_) => unreachable!("retries are handled by the attempt loop"),
    };
    settle(inner, tickets, results);
}

fn closed_under_writer() -> BatchOutcome {
    BatchOutcome::Failed(BackendError::new(
        ErrorKind::Io,
        ErrorClass::Fatal,
        None,
        "the connection was closed under the writer",
    ))
}

/// What one attempt of a transaction came to.
enum TxAttempt {
    /// Committed, or hit the database as a whole: the writer's policy decides.
    Outcome(BatchOutcome),
    /// A statement was rejected: rolled back, the owner gets its error.
    Rejected(TxError),
}

/// Runs a transaction's statements under the same retry policy and breaker as batches.
async fn run_transaction(
    inner: &Rc<RefCell<Inner>>,
    statements: &[Write],
    run: &mut sqlweir_core::BatchRun,
) -> Result<Acked, TxError> {
    loop {
        let gate = inner.borrow_mut().writer.gate(host::now());
        if let Some(wait) = gate {
            host::sleep(wait).await;
            continue;
        }
        let step = {
            let mut s = inner.borrow_mut();
            let started = host::now();
            let attempt = match s.backend.as_mut() {
                Some(backend) => attempt_transaction(backend, statements),
                None => TxAttempt::Outcome(closed_under_writer()),
            };
            let outcome = match attempt {
                TxAttempt::Outcome(outcome) => outcome,
                // Rolled back by the owner's own statement: not the database's trouble, so
                // neither a retry nor a breaker failure (as natively).
                TxAttempt::Rejected(e) => {
                    s.writer.record_rejected(statements.len() as u64);
                    return Err(e);
                }
            };
            let step = s.writer.finish_attempt(run, outcome, started, host::now());
            s.log_events();
            step
        };
        match step {
            Step::RetryAfter(wait) => host::sleep(wait).await,
            Step::Resolve(results) => {
                let results = results
                    .into_iter()
                    .map(|r| match r {
                        WriteResult::One(Ok(a)) => (a.changes, a.last_rowid),
                        _ => (0, 0),
                    })
                    .collect();
                return Ok(Acked::Transaction(TxOutcome { results, batch: run.id }));
            }
            Step::Fail(e) => return Err(TxError::Write(e)),
        }
    }
}

/// One attempt: `BEGIN IMMEDIATE`, every statement, `COMMIT`; any failure rolls back.
fn attempt_transaction(backend: &mut SqliteBackend, statements: &[Write]) -> TxAttempt {
    let abandon = |backend: &mut SqliteBackend, e: BackendError| {
        let _ = backend.rollback();
        TxAttempt::Outcome(if e.class == ErrorClass::Transient {
            BatchOutcome::Transient(e)
        } else {
            BatchOutcome::Failed(e)
        })
    };
    if let Err(e) = backend.begin() {
        return abandon(backend, e);
    }
    let mut results = Vec::with_capacity(statements.len());
    for (i, w) in statements.iter().enumerate() {
        let sqlweir_core::Rows::One(params) = &w.rows else {
            unreachable!("transaction statements are built with Write::one")
        };
        match backend.execute(&w.sql, params) {
            Ok(a) => results.push(WriteResult::One(Ok(a))),
            Err(e) if e.class == ErrorClass::Rejected => {
                let _ = backend.rollback();
                return TxAttempt::Rejected(in_statement(i, WriteError::Backend(e)));
            }
            Err(e) => return abandon(backend, e),
        }
    }
    match backend.commit() {
        Ok(()) => TxAttempt::Outcome(BatchOutcome::Committed { results, replays: 0 }),
        Err(e) => abandon(backend, e),
    }
}

/// Hands each write its result: Rust futures directly, main-thread writes in one report.
fn settle(inner: &Rc<RefCell<Inner>>, tickets: Vec<(Ticket, Duration)>, results: Vec<Result<Acked, TxError>>) {
    let mut reports = Vec::new();
    let (listener, done) = {
        let mut s = inner.borrow_mut();
        let now = host::now();
        let count = tickets.len() as u64;
        for ((ticket, accepted_at), result) in tickets.into_iter().zip(results) {
            s.writer.record_ack(accepted_at, now);
            match ticket {
                // The receiver is gone only if its future was dropped: nobody is left to tell.
                Ticket::Reply(tx) => drop(tx.send(result)),
                Ticket::Id(id) => reports.push(Settled { id, result }),
            }
        }
        s.settled += count;
        let settled = s.settled;
        let (done, waiting): (Vec<_>, Vec<_>) = s.flush_waiters.drain(..).partition(|(target, _)| *target <= settled);
        s.flush_waiters = waiting;
        (s.listener.clone(), done)
    };
    for (_, tx) in done {
        let _ = tx.send(());
    }
    if let (Some(listener), false) = (listener, reports.is_empty()) {
        listener(reports);
    }
}

fn acked(result: WriteResult, batch: u64) -> Result<Acked, TxError> {
    match result {
        WriteResult::One(Ok(a)) => Ok(Acked::One(Receipt::new(a, batch))),
        WriteResult::One(Err(e)) => Err(TxError::Write(e)),
        WriteResult::Many { committed, rejected } => Ok(Acked::Many(ManyOutcome { committed, rejected, batch })),
    }
}
