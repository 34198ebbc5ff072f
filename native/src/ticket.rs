//! Tickets: what `write` returns. A `Future` for any executor and a blocking `wait()` twin.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use sqlweir_core::{Write, WriteError};

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
        self.resolve_keeping(result, None);
    }

    /// Like [`resolve`](Self::resolve), also handing over the write, to be dropped by the owner.
    pub(crate) fn resolve_keeping(&self, result: Result<T, WriteError>, write: Option<Write>) {
        if let Some(w) = self.resolve_deferred(result, write) {
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
/// same. (A ticket dropped while waiting for room in a full queue has its write queued past the
/// capacity; await or wait tickets to get backpressure.)
#[must_use = "a ticket tells whether the write was committed; await it or call wait()"]
pub struct Ticket<T> {
    state: TicketState<T>,
}

enum TicketState<T> {
    Ready(Option<Result<T, WriteError>>),
    Accepted(Arc<Slot<T>>),
    /// The queue was full under `Backpressure::Wait`: the write waits here to be accepted.
    Unaccepted(Box<dyn Admit<T>>),
}

/// An entry waiting for room in the queue.
pub(crate) trait Admit<T>: Send {
    /// Tries to enqueue; on success returns the slot. When full, registers `waker` for room.
    fn try_admit(&mut self, waker: Option<&Waker>) -> Option<Result<Arc<Slot<T>>, WriteError>>;
    /// Blocks until enqueued (or the store closes).
    fn admit_blocking(&mut self) -> Result<Arc<Slot<T>>, WriteError>;
    /// The ticket was dropped before the write got room: enqueue it past the capacity rather
    /// than lose it.
    fn admit_dropped(&mut self);
}

impl<T> Ticket<T> {
    pub(crate) fn ready(result: Result<T, WriteError>) -> Self {
        Ticket { state: TicketState::Ready(Some(result)) }
    }

    pub(crate) fn accepted(slot: Arc<Slot<T>>) -> Self {
        Ticket { state: TicketState::Accepted(slot) }
    }

    pub(crate) fn unaccepted(admit: Box<dyn Admit<T>>) -> Self {
        Ticket { state: TicketState::Unaccepted(admit) }
    }

    /// Blocks the calling thread until the write is committed or has failed.
    pub fn wait(mut self) -> Result<T, WriteError> {
        match std::mem::replace(&mut self.state, TicketState::Ready(None)) {
            TicketState::Ready(r) => r.unwrap_or_else(|| panic!("ticket waited after it completed")),
            TicketState::Accepted(slot) => slot.wait(),
            TicketState::Unaccepted(mut admit) => admit.admit_blocking()?.wait(),
        }
    }
}

/// A ticket still waiting for room when dropped has its write queued anyway, past the
/// capacity: a dropped ticket never cancels a write. Await or `wait()` tickets to get
/// backpressure.
impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        if let TicketState::Unaccepted(admit) = &mut self.state {
            admit.admit_dropped();
        }
    }
}

impl<T: Unpin> Future for Ticket<T> {
    type Output = Result<T, WriteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                TicketState::Ready(r) => {
                    return Poll::Ready(r.take().unwrap_or_else(|| panic!("ticket polled after it completed")));
                }
                TicketState::Accepted(slot) => return slot.poll(cx),
                TicketState::Unaccepted(admit) => match admit.try_admit(Some(cx.waker())) {
                    None => return Poll::Pending,
                    Some(Ok(slot)) => this.state = TicketState::Accepted(slot),
                    Some(Err(e)) => return Poll::Ready(Err(e)),
                },
            }
        }
    }
}
