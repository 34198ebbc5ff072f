//! Tickets: what `write` returns (a `Future` for any executor and a blocking `wait()` twin), and
//! `Done`, the writer's side of one, which the pipeline carries with each entry.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use sqlweir_core::{ManyOutcome, Receipt, Recorded, Settlement, Write, WriteError, WriteResult};

/// Where the writer puts a result and the owner finds it.
pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
}

enum SlotState<T> {
    Waiting {
        waker: Option<Waker>,
        blocked: bool,
    },
    /// The result, and the write itself: handed back so that its memory is freed on the
    /// owner's thread when the owner takes the result, not on the writer's.
    Done(Result<T, WriteError>, Option<Write>),
    Taken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a slot lock cannot leave it inconsistent (every update is one
    // assignment), so poisoning is ignored rather than spread to every waiter.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Slot { state: Mutex::new(SlotState::Waiting { waker: None, blocked: false }), ready: Condvar::new() })
    }

    /// Stores the result and wakes the owner. Called exactly once, by the writer.
    pub(crate) fn resolve(&self, result: Result<T, WriteError>) {
        if let Some(w) = self.resolve_deferred(result, None) {
            w.wake();
        }
    }

    /// Stores the result and hands back the owner's waker instead of waking it, so that the
    /// writer wakes each task once after a whole batch is resolved: an owner awaiting many
    /// writes then finds them all done at once, instead of being woken (a syscall and a
    /// context switch) once per write.
    pub(crate) fn resolve_deferred(&self, result: Result<T, WriteError>, write: Option<Write>) -> Option<Waker> {
        let mut state = lock(&self.state);
        let previous = std::mem::replace(&mut *state, SlotState::Done(result, write));
        drop(state);
        let SlotState::Waiting { waker, blocked } = previous else { return None };
        // Only a blocked owner needs the condvar: skipping it saves a syscall per write.
        if blocked {
            self.ready.notify_all();
        }
        waker
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<T, WriteError>> {
        let mut state = lock(&self.state);
        match &mut *state {
            SlotState::Waiting { waker, .. } => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            SlotState::Done(..) => match std::mem::replace(&mut *state, SlotState::Taken) {
                SlotState::Done(r, write) => {
                    drop(state);
                    drop(write);
                    Poll::Ready(r)
                }
                _ => unreachable!("matched Done above"),
            },
            SlotState::Taken => panic!("ticket polled after it completed"),
        }
    }

    /// Whether the result is in (a cheap check for a waiting owner that spins).
    pub(crate) fn is_done(&self) -> bool {
        !matches!(*lock(&self.state), SlotState::Waiting { .. })
    }

    fn wait(&self) -> Result<T, WriteError> {
        let mut state = lock(&self.state);
        loop {
            match &mut *state {
                SlotState::Waiting { blocked, .. } => {
                    *blocked = true;
                    state = self.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                SlotState::Done(..) => match std::mem::replace(&mut *state, SlotState::Taken) {
                    SlotState::Done(r, write) => {
                        drop(state);
                        drop(write);
                        return r;
                    }
                    _ => unreachable!("matched Done above"),
                },
                SlotState::Taken => panic!("ticket waited after it completed"),
            }
        }
    }
}

/// A pending write: resolves after the commit of its batch, or with its own error.
///
/// Await it from any executor (no runtime is required), or call [`Ticket::wait`] from a plain
/// thread. Dropping a ticket does not cancel the write: it is committed or rejected all the
/// same.
#[must_use = "a ticket tells whether the write was committed; await it or call wait()"]
pub struct Ticket<T> {
    state: TicketState<T>,
}

enum TicketState<T> {
    Ready(Option<Result<T, WriteError>>),
    Accepted(Arc<Slot<T>>, Option<Group>),
}

/// Who may run the pipeline for a blocking owner: the store's write group (see `Lead`), and
/// whether this ticket still owes the writer thread its wake-up.
pub(crate) struct Group {
    lead: Arc<dyn Lead>,
    /// The write found the writer thread waiting for work and did not wake it: a blocking owner
    /// may commit it itself, without a hand-off. Whoever else ends up with the ticket (an
    /// awaiting task, or a drop) wakes the writer thread instead.
    owes_wake: bool,
}

/// A write group: a thread blocked on its ticket may take the write connection when nobody
/// holds it and run the pipeline's batches itself (the group's leader), so a lone or lock-step
/// writer pays no hand-off to the writer thread.
pub(crate) trait Lead: Send + Sync {
    /// Runs batches on the calling thread while `done` is false and the connection is free, or
    /// waits a little for whoever holds it; returns when `done` holds or when the owner should
    /// block (someone else is sure to drive what is left).
    fn lead(&self, done: &dyn Fn() -> bool);
    /// Wakes the writer thread (a wake-up that a ticket deferred).
    fn wake_writer(&self);
}

impl<T> Ticket<T> {
    pub(crate) fn ready(result: Result<T, WriteError>) -> Self {
        Ticket { state: TicketState::Ready(Some(result)) }
    }

    /// A ticket resolved by someone else (a reader thread): waiting only waits.
    pub(crate) fn accepted(slot: Arc<Slot<T>>) -> Self {
        Ticket { state: TicketState::Accepted(slot, None) }
    }

    /// A write's ticket: a blocking owner may lead its write group.
    pub(crate) fn in_group(slot: Arc<Slot<T>>, lead: Arc<dyn Lead>, owes_wake: bool) -> Self {
        Ticket { state: TicketState::Accepted(slot, Some(Group { lead, owes_wake })) }
    }

    /// Blocks the calling thread until the write is committed or has failed.
    ///
    /// When nobody is running a batch, the calling thread may run it itself (it leads the write
    /// group: it takes the write connection, commits what is queued, and wakes the others),
    /// so a lone writer's commit needs no hand-off to the writer thread.
    pub fn wait(mut self) -> Result<T, WriteError> {
        match std::mem::replace(&mut self.state, TicketState::Ready(None)) {
            TicketState::Ready(r) => r.unwrap_or_else(|| panic!("ticket waited after it completed")),
            TicketState::Accepted(slot, group) => {
                if let Some(group) = group {
                    group.lead.lead(&|| slot.is_done());
                }
                slot.wait()
            }
        }
    }
}

impl<T: Unpin> Future for Ticket<T> {
    type Output = Result<T, WriteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            TicketState::Ready(r) => {
                Poll::Ready(r.take().unwrap_or_else(|| panic!("ticket polled after it completed")))
            }
            TicketState::Accepted(slot, group) => {
                // An awaited write never runs SQLite on the executor's thread: the writer
                // thread commits it.
                if let Some(group) = group
                    && std::mem::take(&mut group.owes_wake)
                {
                    group.lead.wake_writer();
                }
                slot.poll(cx)
            }
        }
    }
}

/// A ticket dropped unawaited still has its write committed: the writer thread is woken if the
/// ticket had deferred that.
impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        if let TicketState::Accepted(_, Some(group)) = &mut self.state
            && std::mem::take(&mut group.owes_wake)
        {
            group.lead.wake_writer();
        }
    }
}

/// The owner's side of a queued entry, carried through the pipeline. Dropped unresolved (the
/// writer panicked, or the store went away), it fails its ticket with `Closed`, so no owner
/// waits forever.
pub(crate) struct Done(Option<DoneKind>);

pub(crate) enum DoneKind {
    One(Arc<Slot<Receipt>>),
    Many(Arc<Slot<ManyOutcome>>),
    Flush(Arc<Slot<()>>),
}

impl Done {
    pub(crate) fn new(kind: DoneKind) -> Self {
        Done(Some(kind))
    }

    /// The ticket of an entry that resolves its owner itself (a transaction's job).
    pub(crate) fn none() -> Self {
        Done(None)
    }

    /// Resolves with the entry's outcome in batch `batch`; the write goes along, to be freed by
    /// its owner. The owner's waker is pushed to `wake`, for the writer to wake after the whole
    /// batch.
    pub(crate) fn settle(mut self, outcome: Settlement, batch: u64, write: Write, wake: &mut Vec<Waker>) {
        let waker = match (self.0.take(), outcome) {
            (Some(DoneKind::One(slot)), Settlement::Write(WriteResult::One(r))) => {
                slot.resolve_deferred(r.map(|a| Receipt::new(a, batch)), Some(write))
            }
            (Some(DoneKind::Many(slot)), Settlement::Write(WriteResult::Many { committed, rejected })) => {
                slot.resolve_deferred(Ok(ManyOutcome { committed, rejected, batch }), Some(write))
            }
            // Sent before under its request id: answered with what was recorded then.
            (Some(DoneKind::One(slot)), Settlement::Write(WriteResult::Again(r))) => {
                let receipt = match r {
                    Recorded::One { changes, last_rowid, batch } => {
                        Ok(Receipt { changes, last_rowid, batch, returned: None })
                    }
                    other => Err(reused(&write, &other)),
                };
                slot.resolve_deferred(receipt, Some(write))
            }
            (Some(DoneKind::Many(slot)), Settlement::Write(WriteResult::Again(r))) => {
                let outcome = match r {
                    Recorded::Many { committed, rejected, batch } => Ok(ManyOutcome { committed, rejected, batch }),
                    other => Err(reused(&write, &other)),
                };
                slot.resolve_deferred(outcome, Some(write))
            }
            (Some(DoneKind::One(slot)), Settlement::Failed(e)) => slot.resolve_deferred(Err(e), Some(write)),
            (Some(DoneKind::Many(slot)), Settlement::Failed(e)) => slot.resolve_deferred(Err(e), Some(write)),
            (Some(_), other) => unreachable!("a write settled as {other:?}"),
            (None, _) => None,
        };
        wake.extend(waker);
    }

    /// Resolves a flush ticket: everything accepted before it has settled.
    pub(crate) fn flushed(mut self) {
        if let Some(DoneKind::Flush(slot)) = self.0.take() {
            slot.resolve(Ok(()));
        }
    }

    /// Drops the owner's side without resolving it: the entry was handed back, not accepted.
    /// (Dropping it armed would fail the ticket with `Closed`; forgetting it would leak the slot.)
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

/// The error for a request id that was recorded for another kind of write.
fn reused(write: &Write, recorded: &Recorded) -> WriteError {
    let id = write.request.as_deref().map_or_else(String::new, |r| r.id.to_string());
    let was = match recorded {
        Recorded::One { .. } => "a single write",
        Recorded::Many { .. } => "a write_many",
        Recorded::Transaction { .. } => "a transaction",
    };
    WriteError::InvalidInput {
        message: format!("request id {id} was already used for {was}; give each write its own request id"),
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        match self.0.take() {
            Some(DoneKind::One(slot)) => slot.resolve(Err(WriteError::Closed)),
            Some(DoneKind::Many(slot)) => slot.resolve(Err(WriteError::Closed)),
            // A flush whose writes can no longer run has nothing left to wait for.
            Some(DoneKind::Flush(slot)) => slot.resolve(Ok(())),
            None => {}
        }
    }
}
