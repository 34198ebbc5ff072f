//! The write lifecycle as one I/O-free machine: entries go in, decisions come out.
//!
//! A [`Pipeline`] owns everything between a producer handing over a write and the write's owner
//! hearing how it ended: the bounded queue, the writes waiting for room, flush markers, the
//! batch in progress with its attempts, retries and breaker waits, and every metric. It does no
//! I/O and reads no clock; the host passes `now` in and does what it is told:
//!
//! - [`push`](Pipeline::push) an entry: accepted, or handed back (closed, or full under
//!   [`Backpressure::Fail`]);
//! - [`poll`](Pipeline::poll) at `now` for the next [`Action`]: run a batch on the backend, sleep
//!   (a retry delay, the breaker's cooldown), wait for work, or stop;
//! - after running a batch's [`attempt`](Batch::attempt), report it with
//!   [`finish`](Pipeline::finish): either the batch is kept for a retry, or its entries come
//!   back [`Settled`], each with its outcome, to be handed to their owners.
//!
//! The same machine runs behind the native writer thread (which blocks on a condvar) and the
//! browser worker (which awaits timer promises); nothing else differs between them.
//!
//! ```
//! use std::time::Duration;
//! use sqlweir_core::fake::FakeBackend;
//! use sqlweir_core::{params, Action, Backpressure, NoTransactions, Pipeline, Settlement, Work, Write, WriterConfig};
//!
//! let mut db = FakeBackend::new();
//! let mut p: Pipeline<&str, NoTransactions> = Pipeline::new(100, Backpressure::Fail, WriterConfig::default(), 7);
//! p.push(Work::Write(Write::one("INSERT", params![1])), "ticket 1", Duration::ZERO).unwrap();
//! let now = Duration::from_millis(1); // the host's monotonic clock
//! let settled = loop {
//!     match p.poll(now) {
//!         Action::Run(mut batch) => {
//!             let attempted = batch.attempt(&mut db);
//!             if let Some(settled) = p.finish(batch, attempted, now, now) { break settled; }
//!         }
//!         Action::Sleep(_) | Action::Wait(_) | Action::Stopped => unreachable!("one write is ready at once"),
//!     }
//! };
//! assert_eq!(settled.entries.len(), 1);
//! assert!(matches!(settled.entries[0].outcome, Settlement::Write(_)));
//! assert_eq!(db.committed_values(), vec![1]);
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use crate::backend::{Applied, Backend};
use crate::batch::{BatchOutcome, Ended, Write, WriteResult, apply_numbered, transaction};
use crate::error::{BackendError, WriteError};
use crate::metrics::{Health, MetricsSnapshot};
use crate::queue::{PushError, Queued, WriteQueue};
use crate::request::{Forget, Recorded, Request};
use crate::writer::{BatchRun, Event, Step, WriterConfig, WriterState};

/// What an entry of the queue asks of the writer.
#[derive(Debug)]
pub enum Work<X> {
    /// A write, batched with its neighbours.
    Write(Write),
    /// A transaction body (see [`Body`]): runs alone, between batches, retried whole.
    Transaction(X),
}

impl<X> Work<X> {
    /// Parameter rows carried: the entry's weight against the queue's capacity. A transaction
    /// is one entry and weighs one row.
    pub fn rows(&self) -> usize {
        match self {
            Work::Write(w) => w.row_count(),
            Work::Transaction(_) => 1,
        }
    }
}

/// A transaction's body: the host's code that reads and writes inside one open transaction
/// (natively a closure, in the browser a list of statements). It keeps its own results and
/// its own error for its owner; the pipeline only needs to know how it ended.
pub trait Body<B: ?Sized> {
    /// Runs once inside the open transaction. It may run again after lock contention, on a
    /// fresh transaction.
    fn run(&mut self, backend: &mut B) -> BodyOutcome;

    /// The request id the transaction is recorded under, if any (see [`crate::request`]):
    /// looked up before it runs, recorded with its commit.
    fn request(&self) -> Option<&Request> {
        None
    }

    /// What its marker keeps once it asks to commit in batch `batch` (called only with a
    /// request id).
    fn recorded(&self, batch: u64) -> Recorded {
        Recorded::Transaction { results: Vec::new(), batch }
    }

    /// It was committed before under its request id: it does not run, and settles
    /// [`Settlement::Committed`] with `recorded`, what was recorded then.
    fn answered(&mut self, recorded: Recorded) {
        let _ = recorded;
    }
}

/// How one run of a [`Body`] ended.
#[derive(Debug, PartialEq)]
pub enum BodyOutcome {
    /// It asks to commit.
    Commit,
    /// It gave up by its owner's doing (a statement rejected, the closure's own error): the
    /// transaction rolls back, is not retried, and settles [`Settlement::Rejected`].
    Rejected,
    /// The database failed under it: rolled back; lock contention retries the body under the
    /// retry policy, any other error fails it and counts toward the breaker.
    Failed(BackendError),
}

/// Used as the transaction type of a pipeline whose host queues no transactions.
#[derive(Debug)]
pub enum NoTransactions {}

impl<B: ?Sized> Body<B> for NoTransactions {
    fn run(&mut self, _backend: &mut B) -> BodyOutcome {
        match *self {}
    }
}

/// What the writer does when the queue is full. The same on every host (in JavaScript:
/// `"wait"` or `"fail"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Backpressure {
    /// The entry is accepted and waits behind the queue, in order, until there is room; its
    /// owner's ticket resolves after its commit as usual. Nothing is dropped.
    #[default]
    Wait,
    /// The entry is handed back at once ([`PushError::Full`]): its owner gets `QueueFull`.
    Fail,
}

/// One entry and whom to tell.
#[derive(Debug)]
struct Entry<T, X> {
    work: Work<X>,
    ticket: T,
}

/// A batch taken from the queue: the host runs its [`attempt`](Batch::attempt) on the backend,
/// then gives it back with [`Pipeline::finish`].
#[derive(Debug)]
pub struct Batch<T, X> {
    run: BatchRun,
    entries: Vec<Queued<Entry<T, X>>>,
    /// Markers to drop in this batch's transaction.
    forget: Vec<Forget>,
    /// The tables the last attempt changed, when it committed.
    changed: Vec<String>,
}

/// What one attempt of a batch came to, for [`Pipeline::finish`].
#[derive(Debug, PartialEq)]
pub enum Attempted {
    /// The batch committed, or the database failed it as a whole: the writer's policy decides.
    Batch(BatchOutcome),
    /// A transaction's body gave up by its owner's doing; it was rolled back.
    Rejected,
}

impl<T, X> Batch<T, X> {
    /// The batch id, reported in receipts.
    pub fn id(&self) -> u64 {
        self.run.id
    }

    /// Entries in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no entry (never, for a batch [`Pipeline::poll`] handed out).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs one attempt on `backend`: a transaction's body inside its own transaction, or the
    /// writes with [`apply`]'s salvage. Either way `BEGIN`, `COMMIT` and the rollback of an
    /// abandoned attempt happen in one place ([`transaction`]).
    pub fn attempt<B>(&mut self, backend: &mut B) -> Attempted
    where
        B: Backend + ?Sized,
        X: Body<B>,
    {
        let attempted =
            if let [Queued { item: Entry { work: Work::Transaction(body), .. }, .. }] = self.entries.as_mut_slice() {
                attempt_body(backend, body, self.run.id, &self.forget)
            } else {
                let writes: Vec<&Write> = self
                    .entries
                    .iter()
                    .map(|q| match &q.item.work {
                        Work::Write(w) => w,
                        Work::Transaction(_) => unreachable!("a transaction is always taken alone"),
                    })
                    .collect();
                Attempted::Batch(apply_numbered(backend, &writes, self.run.id, &self.forget))
            };
        // Taken after every attempt, so an abandoned one leaves nothing for the next.
        let changed = backend.take_changed();
        self.changed =
            if matches!(attempted, Attempted::Batch(BatchOutcome::Committed { .. })) { changed } else { Vec::new() };
        attempted
    }
}

fn attempt_body<B: Backend + ?Sized, X: Body<B>>(
    backend: &mut B,
    body: &mut X,
    batch: u64,
    forget: &[Forget],
) -> Attempted {
    let ended = transaction(backend, |b| {
        let found = match body.request() {
            Some(r) if !r.first_send => b.recorded(&r.id).map_err(Ended::Database)?,
            _ => None,
        };
        match found {
            Some(recorded) => body.answered(recorded),
            None => match body.run(b) {
                BodyOutcome::Commit => {
                    if let Some(r) = body.request() {
                        b.record(&r.id.origin, &[(r.id.seq, body.recorded(batch))]).map_err(Ended::Database)?;
                    }
                }
                BodyOutcome::Rejected => return Err(Ended::Body(())),
                BodyOutcome::Failed(e) => return Err(Ended::Database(e)),
            },
        }
        for f in forget {
            b.forget(&f.origin, f.below).map_err(Ended::Database)?;
        }
        Ok(())
    });
    match ended {
        // One entry, counted as one committed row.
        Ok(()) => Attempted::Batch(BatchOutcome::Committed {
            results: vec![WriteResult::One(Ok(Applied::default()))],
            replays: 0,
        }),
        Err(Ended::Database(e)) => Attempted::Batch(BatchOutcome::abandoned(e)),
        Err(Ended::Body(())) => Attempted::Rejected,
    }
}

/// Adds `f` to `list`, keeping one entry per origin, the highest.
fn merge_forget(list: &mut Vec<Forget>, f: Forget) {
    match list.iter_mut().find(|g| g.origin == f.origin) {
        Some(g) => g.below = g.below.max(f.below),
        None => list.push(f),
    }
}

/// How one entry ended.
#[derive(Debug, PartialEq)]
pub enum Settlement {
    /// A write of a committed batch: applied, or rejected alone (see [`WriteResult`]).
    Write(WriteResult),
    /// A transaction committed; its body holds what it produced.
    Committed,
    /// A transaction was rolled back by its own doing; its body holds why.
    Rejected,
    /// The whole batch failed (retry budget spent, the database failed, the store closed):
    /// nothing of it was committed.
    Failed(WriteError),
}

/// One settled entry, handed back to the host with its outcome.
#[derive(Debug)]
pub struct SettledEntry<T, X> {
    /// The entry's work, given back so that its owner (not the writer) frees it.
    pub work: Work<X>,
    /// The host's ticket for it.
    pub ticket: T,
    /// How it ended.
    pub outcome: Settlement,
}

/// Entries settled together: one batch, and the flush markers it completed.
#[derive(Debug)]
pub struct Settled<T, X> {
    /// The batch (transaction) id.
    pub batch: u64,
    /// Its entries, in acceptance order.
    pub entries: Vec<SettledEntry<T, X>>,
    /// Flush tickets whose writes have now all settled.
    pub flushed: Vec<T>,
    /// The tables the batch changed, as the backend reported them ([`Backend::take_changed`]);
    /// empty when it failed, was rejected, or changed nothing. The host publishes them on its
    /// commit feed ([`crate::feed::Feed::publish`]).
    pub changed: Vec<String>,
}

/// What the host does next.
#[derive(Debug)]
pub enum Action<T, X> {
    /// Run this batch's [`attempt`](Batch::attempt) on the backend, then hand it to
    /// [`Pipeline::finish`].
    Run(Batch<T, X>),
    /// A batch waits out a retry delay or the breaker's cooldown: sleep this long, then poll.
    /// New entries do not shorten it.
    Sleep(Duration),
    /// Nothing to run yet: wait until an entry is pushed (the host is told by
    /// [`Pushed::wake`]), or at most this long (a batch lingering for more writes).
    Wait(Option<Duration>),
    /// Closed and drained: nothing will ever run again.
    Stopped,
}

/// An entry was accepted.
#[derive(Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The writer was waiting for work ([`Action::Wait`]): wake it.
    pub wake: bool,
}

/// A batch between attempts.
#[derive(Debug)]
struct Current<T, X> {
    batch: Batch<T, X>,
    /// Host time before which the next attempt must not start (a retry delay).
    not_before: Duration,
}

/// The write lifecycle: queue, writes waiting for room, flushes, attempts and metrics.
///
/// `T` is the host's ticket (whatever resolves an owner), `X` its transaction body.
#[derive(Debug)]
pub struct Pipeline<T, X> {
    queue: WriteQueue<Entry<T, X>>,
    /// Entries waiting for room (`Backpressure::Wait`), in acceptance order.
    waiting: VecDeque<Queued<Entry<T, X>>>,
    waiting_rows: usize,
    backpressure: Backpressure,
    writer: WriterState,
    current: Option<Current<T, X>>,
    /// A batch handed out by `poll` and not yet finished.
    running: bool,
    /// Rows accepted since the start.
    accepted: u64,
    /// Entries accepted and settled since the start: a flush waits for `settled` to reach the
    /// count at its call (entries settle in acceptance order).
    entries_in: u64,
    entries_out: u64,
    flushes: VecDeque<(u64, T)>,
    /// Markers to drop with the next batch that commits.
    forget: Vec<Forget>,
    /// The host waits for work (the last poll said `Wait`).
    parked: bool,
    closed: bool,
}

impl<T, X> Pipeline<T, X> {
    /// A pipeline whose queue holds `capacity` rows, with the writer's tuning and a jitter seed.
    pub fn new(capacity: usize, backpressure: Backpressure, config: WriterConfig, seed: u64) -> Self {
        Pipeline {
            queue: WriteQueue::new(capacity),
            waiting: VecDeque::new(),
            waiting_rows: 0,
            backpressure,
            writer: WriterState::new(config, seed),
            current: None,
            running: false,
            accepted: 0,
            entries_in: 0,
            entries_out: 0,
            flushes: VecDeque::new(),
            forget: Vec::new(),
            parked: false,
            closed: false,
        }
    }

    /// Accepts an entry at host time `now`, or hands it back with its ticket: closed, or full
    /// under [`Backpressure::Fail`]. Under [`Backpressure::Wait`] a full queue keeps the entry
    /// waiting for room, behind any already waiting.
    pub fn push(&mut self, work: Work<X>, ticket: T, now: Duration) -> Result<Pushed, PushError<(Work<X>, T)>> {
        if self.closed {
            return Err(PushError::Closed((work, ticket)));
        }
        let rows = work.rows();
        let entry = Entry { work, ticket };
        if self.waiting.is_empty() {
            match self.queue.push(entry, rows, now) {
                Ok(()) => {}
                Err(PushError::Full(entry) | PushError::Closed(entry)) => match self.backpressure {
                    Backpressure::Fail => return Err(PushError::Full((entry.work, entry.ticket))),
                    Backpressure::Wait => self.wait_for_room(entry, rows, now),
                },
            }
        } else if self.backpressure == Backpressure::Wait {
            // Others already wait for room: go behind them, to keep acceptance order.
            self.wait_for_room(entry, rows, now);
        } else {
            return Err(PushError::Full((entry.work, entry.ticket)));
        }
        self.accepted += rows as u64;
        self.entries_in += 1;
        Ok(Pushed { wake: std::mem::take(&mut self.parked) })
    }

    /// Makes room in memory for `entries` more entries about to be pushed at once (a host's
    /// message of many writes): one allocation each for the queue and the writes waiting for
    /// room, instead of one per doubling.
    pub fn reserve(&mut self, entries: usize) {
        let free = self.queue.capacity().saturating_sub(self.queue.rows());
        self.queue.reserve(entries);
        if self.backpressure == Backpressure::Wait {
            self.waiting.reserve(entries.saturating_sub(free));
        }
    }

    fn wait_for_room(&mut self, entry: Entry<T, X>, rows: usize, now: Duration) {
        self.waiting_rows += rows;
        self.waiting.push_back(Queued { item: entry, rows, accepted_at: now });
    }

    /// Asks to be told when every entry accepted so far has settled: hands `ticket` back at
    /// once when nothing is pending, otherwise returns it in the [`Settled::flushed`] of the
    /// batch that settles the last of them. While a flush waits, batches do not linger.
    pub fn flush(&mut self, ticket: T) -> Result<Pushed, T> {
        if self.entries_out >= self.entries_in {
            return Err(ticket);
        }
        self.flushes.push_back((self.entries_in, ticket));
        Ok(Pushed { wake: std::mem::take(&mut self.parked) })
    }

    /// Drops the markers of `origin` numbered below `below` in the transaction of the next
    /// batch (see [`crate::request`]): its sender has heard how they ended and will not resend
    /// them. Nothing runs for it alone; a batch that fails keeps it for the next one.
    pub fn forget(&mut self, origin: &str, below: u64) {
        merge_forget(&mut self.forget, Forget { origin: origin.to_owned(), below });
    }

    /// Refuses further entries; what is accepted still runs, and then [`poll`](Self::poll)
    /// says [`Action::Stopped`]. Returns whether the writer was waiting for work (wake it).
    pub fn close(&mut self) -> bool {
        // The queue itself stays open: entries waiting for room still move into it.
        self.closed = true;
        std::mem::take(&mut self.parked)
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether nothing is queued, waiting for room or in progress.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.waiting.is_empty() && self.current.is_none() && !self.running
    }

    /// The next thing to do at host time `now`.
    pub fn poll(&mut self, now: Duration) -> Action<T, X> {
        debug_assert!(!self.running, "poll while a batch is out: finish it first");
        if let Some(current) = self.current.take() {
            if let Some(wait) = current.not_before.checked_sub(now).filter(|w| !w.is_zero()) {
                self.current = Some(current);
                return Action::Sleep(wait);
            }
            if let Some(wait) = self.writer.gate(now) {
                self.current = Some(current);
                return Action::Sleep(wait);
            }
            self.running = true;
            return Action::Run(current.batch);
        }
        self.admit_waiting();
        let urgent = !self.flushes.is_empty() || self.closed || !self.waiting.is_empty();
        let ready = if urgent && !self.queue.is_empty() {
            Some(now)
        } else {
            self.writer.ready_at(self.queue.rows(), self.queue.oldest_accepted_at(), now)
        };
        match ready {
            None if self.closed && self.waiting.is_empty() => Action::Stopped,
            None => {
                self.parked = true;
                Action::Wait(None)
            }
            Some(at) if at > now => {
                self.parked = true;
                Action::Wait(Some(at.saturating_sub(now)))
            }
            Some(_) => {
                let entries =
                    self.queue.take_until(self.writer.batch_limit(), |e| matches!(e.work, Work::Transaction(_)));
                let rows = entries.iter().map(|q| q.rows).sum();
                self.admit_waiting();
                let left = self.queue.rows() + self.waiting_rows;
                let run = self.writer.start_batch(rows, left);
                let batch = Batch { run, entries, forget: std::mem::take(&mut self.forget), changed: Vec::new() };
                if let Some(wait) = self.writer.gate(now) {
                    self.current = Some(Current { batch, not_before: now });
                    return Action::Sleep(wait);
                }
                self.running = true;
                Action::Run(batch)
            }
        }
    }

    /// Moves entries waiting for room into the queue, in order, while they fit.
    fn admit_waiting(&mut self) {
        while self.waiting.front().is_some_and(|front| self.queue.has_room_for(front.rows)) {
            let q = self.waiting.pop_front().expect("front was just seen");
            self.waiting_rows -= q.rows;
            // Room was just checked and the queue is never closed, so this accepts; it keeps
            // the entry's own acceptance time.
            let refused = self.queue.push_overflowing(q.item, q.rows, q.accepted_at);
            debug_assert!(refused.is_ok(), "the pipeline never closes its queue");
        }
    }

    /// Reports the attempt of `batch` (started at host time `started`, ended at `now`).
    /// `None`: the batch is kept for a retry (poll again). `Some`: its entries settled.
    pub fn finish(
        &mut self,
        mut batch: Batch<T, X>,
        attempted: Attempted,
        started: Duration,
        now: Duration,
    ) -> Option<Settled<T, X>> {
        self.running = false;
        let outcomes: Vec<Settlement> = match attempted {
            Attempted::Rejected => {
                // Rolled back: the markers to drop wait for the next batch.
                for f in std::mem::take(&mut batch.forget) {
                    merge_forget(&mut self.forget, f);
                }
                self.writer.record_rejected(1);
                vec![Settlement::Rejected]
            }
            Attempted::Batch(outcome) => match self.writer.finish_attempt(&mut batch.run, outcome, started, now) {
                Step::RetryAfter(delay) => {
                    self.current = Some(Current { batch, not_before: now + delay });
                    return None;
                }
                Step::Resolve(results) => {
                    let single_transaction = matches!(
                        batch.entries.as_slice(),
                        [Queued { item: Entry { work: Work::Transaction(_), .. }, .. }]
                    );
                    if single_transaction {
                        vec![Settlement::Committed]
                    } else {
                        results.into_iter().map(Settlement::Write).collect()
                    }
                }
                Step::Fail(error) => {
                    for f in std::mem::take(&mut batch.forget) {
                        merge_forget(&mut self.forget, f);
                    }
                    batch.entries.iter().map(|_| Settlement::Failed(error.clone())).collect()
                }
            },
        };
        debug_assert_eq!(outcomes.len(), batch.entries.len(), "one outcome per entry");
        let id = batch.run.id;
        let changed = std::mem::take(&mut batch.changed);
        let entries = batch
            .entries
            .into_iter()
            .zip(outcomes)
            .map(|(q, outcome)| {
                self.writer.record_ack(q.accepted_at, now);
                SettledEntry { work: q.item.work, ticket: q.item.ticket, outcome }
            })
            .collect::<Vec<_>>();
        self.entries_out += entries.len() as u64;
        let mut flushed = Vec::new();
        while self.flushes.front().is_some_and(|(target, _)| *target <= self.entries_out) {
            let (_, ticket) = self.flushes.pop_front().expect("front was just seen");
            flushed.push(ticket);
        }
        Some(Settled { batch: id, entries, flushed, changed })
    }

    /// Every entry still held (queued, waiting for room, between attempts) and every flush
    /// ticket, for a host whose writer died: it fails them all with `Closed`.
    pub fn drain(&mut self) -> (Vec<(Work<X>, T)>, Vec<T>) {
        self.close();
        let mut entries = Vec::new();
        if let Some(current) = self.current.take() {
            entries.extend(current.batch.entries.into_iter().map(|q| (q.item.work, q.item.ticket)));
        }
        entries.extend(self.queue.take(usize::MAX).into_iter().map(|q| (q.item.work, q.item.ticket)));
        entries.extend(self.waiting.drain(..).map(|q| (q.item.work, q.item.ticket)));
        self.waiting_rows = 0;
        let flushes = self.flushes.drain(..).map(|(_, t)| t).collect();
        (entries, flushes)
    }

    /// Rows waiting: queued, and waiting for room.
    pub fn depth(&self) -> usize {
        self.queue.rows() + self.waiting_rows
    }

    /// The queue's capacity in rows.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Log events since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.writer.drain_events()
    }

    /// A metrics snapshot; the host adds the backend's facts (journal mode, engine).
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.writer.snapshot(self.depth(), self.capacity(), self.accepted)
    }

    /// The health verdict at host time `now`.
    pub fn health(&self, now: Duration) -> Health {
        self.writer.health(self.depth(), self.capacity(), now)
    }
}
