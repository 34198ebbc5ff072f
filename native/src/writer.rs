//! The native drivers of the core's pipeline: the writer thread, and write groups.
//!
//! Whoever holds the write connection (`Shared::conn`) polls the pipeline and runs the batches
//! it hands out; every decision (batching, retry, breaker, flushes, metrics) is the core's.
//!
//! - The **writer thread** holds it for as long as there is work, sleeps when told to (a retry
//!   delay, the breaker), and waits on the condvar when there is none. Async callers and
//!   transactions are always served by it.
//! - A **write group's leader** is a thread blocked in `Ticket::wait` that found the connection
//!   free: it runs the batches itself until its own write has settled, settling everyone else's
//!   in them, then gives the connection back. Threads that arrive meanwhile (followers) wait a
//!   little (`GroupWait`) for the result or for the connection, then sleep on their ticket. A
//!   lone or lock-step writer thus commits without waking the writer thread.
//! - Waiting awake is for short batches only: behind a batch that took longer than a sleep and
//!   a wake-up (`AWAKE_WAIT_MAX_US`) followers sleep at once and a leader does not gather. A
//!   leader gathers (yields once before it takes a batch, so the writers just acked can send
//!   their next writes into it) and waits out a group-commit linger itself, yielding.
//!
//! Nobody strands a write: a leader that gives the connection back with work left wakes the
//! writer thread unless a follower is still waiting for the connection; a follower that stops
//! waiting makes one last try for the connection (see `Lead for Shared`).

use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use sqlweir_core::{Action, Batch, Event, Level, Settled, Settlement, Work};

use crate::engine::Engine;
use crate::error::CloseError;
use crate::options::GroupWait;
use crate::shared::{OnWriter, Shared, WritePipeline};
use crate::ticket::{Done, Lead};
use crate::tx::TxJob;

/// Batches at least this long (µs) are waited for asleep, not by yielding or spinning: a
/// sleep and a wake-up cost tens of µs on a loaded 2-core host (docs/bench.md).
const AWAKE_WAIT_MAX_US: u64 = 100;

/// The longest linger a write group's leader waits out itself (the core's group-commit cap);
/// a longer one (an explicit `Options::linger`) is the writer thread's to wait.
const LEADER_LINGER_MAX: Duration = Duration::from_millis(2);

/// The writer thread: runs until the pipeline is closed and drained, then finishes the
/// connection (the final checkpoint) and closes it.
pub(crate) fn run(shared: &Shared) -> Result<(), CloseError> {
    loop {
        let mut conn = shared.conn();
        let mut p = shared.pipeline();
        let action = p.poll(shared.now());
        let events = drain_events(&mut p);
        match action {
            Action::Run(batch) => {
                drop(p);
                log(events);
                let engine = conn.as_deref_mut().expect("the connection is there until the writer stops");
                run_batch(shared, engine, batch);
            }
            Action::Sleep(wait) => {
                // A leader may take the connection meanwhile; it will be told to sleep too.
                drop(p);
                drop(conn);
                log(events);
                std::thread::sleep(wait);
            }
            Action::Wait(timeout) => {
                drop(conn);
                log(events);
                drop(shared.wait_for_work(p, timeout));
            }
            Action::Stopped => {
                drop(p);
                shared.feed.close();
                let Some(mut engine) = conn.take() else { return Ok(()) };
                return engine.finish();
            }
        }
    }
}

/// Runs one attempt of `batch` on `engine` and settles it if it is done.
fn run_batch(shared: &Shared, engine: &mut dyn Engine, mut batch: Batch<Done, Box<dyn TxJob>>) {
    let started = shared.now();
    let attempted = batch.attempt(engine);
    let ended = shared.now();
    shared.last_batch_us.store(ended.saturating_sub(started).as_micros() as u64, Ordering::Relaxed);
    let mut p = shared.pipeline();
    let settled = p.finish(batch, attempted, started, ended);
    let events = drain_events(&mut p);
    drop(p);
    log(events);
    if let Some(mut settled) = settled {
        // Still holding the connection, so commits are published in the order they were made;
        // before any writer is told, so whoever subscribes after an ack never sees that batch.
        shared.feed.publish(settled.batch, std::mem::take(&mut settled.changed));
        settle(settled);
    }
}

impl Lead for Shared {
    fn lead(&self, done: &dyn Fn() -> bool) {
        if self.group_wait == GroupWait::Handoff {
            self.wake_writer();
            return;
        }
        let mut rounds = 0;
        let mut counted = false;
        loop {
            if done() {
                if counted {
                    self.stop_following();
                }
                return;
            }
            if let Some(mut conn) = self.try_conn() {
                if counted {
                    self.spinners.fetch_sub(1, Ordering::SeqCst);
                    counted = false;
                }
                let handed_off = self.lead_while(&mut conn, done);
                drop(conn);
                if handed_off {
                    // The pipeline has a retry, a linger or the end to wait out: the writer
                    // thread does that; this thread sleeps on its ticket.
                    self.wake_writer();
                    return;
                }
                self.after_leading();
                continue;
            }
            // Someone runs a batch: follow it for a while.
            if !counted {
                self.spinners.fetch_add(1, Ordering::SeqCst);
                counted = true;
            }
            rounds += 1;
            // Waiting awake pays only while batches are shorter than a sleep and a wake-up:
            // behind a long one (an fsync, a big batch) a follower sleeps at once.
            if self.last_batch_us.load(Ordering::Relaxed) >= AWAKE_WAIT_MAX_US {
                self.stop_following();
                return;
            }
            match self.group_wait {
                GroupWait::Yield(n) if rounds <= n => std::thread::yield_now(),
                GroupWait::Spin(n) if rounds <= n => (0..64).for_each(|_| std::hint::spin_loop()),
                _ => {
                    self.stop_following();
                    return;
                }
            }
        }
    }

    fn wake_writer(&self) {
        Shared::wake_writer(self);
    }
}

impl Shared {
    /// Runs the pipeline's batches with the connection held while `done` is false. Returns
    /// true when the pipeline had something other than a batch to hand out (a wait, a sleep,
    /// the end): that is the writer thread's to do.
    fn lead_while(&self, conn: &mut Option<Box<dyn Engine>>, done: &dyn Fn() -> bool) -> bool {
        let Some(engine) = conn.as_deref_mut() else { return true };
        // A transaction closure may run here: this thread is the writer while it leads.
        let _on = OnWriter::enter();
        while !done() {
            let mut p = self.pipeline();
            if self.last_batch_us.load(Ordering::Relaxed) < AWAKE_WAIT_MAX_US {
                // Gather: the writers the last batch acknowledged are about to send their next
                // writes; giving them the core once lets this batch carry them.
                drop(p);
                std::thread::yield_now();
                p = self.pipeline();
            }
            let action = p.poll(self.now());
            let events = drain_events(&mut p);
            drop(p);
            log(events);
            match action {
                Action::Run(batch) => {
                    self.led();
                    run_batch(self, engine, batch);
                }
                // Group commit: the batch waits for the writers the last commit acked. Waiting
                // here, yielding the core to them, costs less than handing the batch to the
                // writer thread (a wake-up for it, a sleep and a wake-up for this thread; a
                // timed sleep overshoots by the timer slack). Bounded by the core's cap.
                Action::Wait(Some(linger)) if linger <= LEADER_LINGER_MAX => std::thread::yield_now(),
                Action::Sleep(_) | Action::Wait(_) | Action::Stopped => return true,
            }
        }
        false
    }

    /// After giving the connection back: if work is left and no follower will take the
    /// connection, the writer thread must. (The fence pairs with `stop_following`'s: of a
    /// leader reading no followers and a follower's last try for the connection, at least one
    /// sees the other.)
    fn after_leading(&self) {
        fence(Ordering::SeqCst);
        if self.spinners.load(Ordering::SeqCst) == 0 && !self.pipeline().is_idle() {
            self.wake_writer();
        }
    }

    /// A follower stops waiting for the connection. If nobody holds it now, nobody may be left
    /// to run what is queued: take it and hand the work to the writer thread.
    fn stop_following(&self) {
        self.spinners.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(conn) = self.try_conn() {
            drop(conn);
            self.after_leading();
        }
    }
}

/// Hands each entry's outcome to its owner; wakes async owners once, after the whole batch.
fn settle(settled: Settled<Done, Box<dyn TxJob>>) {
    let mut wake = Vec::new();
    for entry in settled.entries {
        match (entry.work, entry.outcome) {
            (Work::Write(write), outcome) => entry.ticket.settle(outcome, settled.batch, write, &mut wake),
            (Work::Transaction(job), Settlement::Committed) => job.succeed(),
            (Work::Transaction(job), Settlement::Rejected) => job.reject(),
            (Work::Transaction(job), Settlement::Failed(e)) => job.fail(e),
            (Work::Transaction(_), Settlement::Write(_)) => unreachable!("a transaction settles as one"),
        }
    }
    for flush in settled.flushed {
        flush.flushed();
    }
    // Every result is in place before anyone is woken: each waiting task wakes once per batch.
    for w in wake {
        w.wake();
    }
}

fn drain_events(p: &mut WritePipeline) -> Vec<Event> {
    p.drain_events().collect()
}

/// Log events as `tracing` events, at the level the core gives them.
fn log(events: Vec<Event>) {
    for e in events {
        match e.level() {
            Level::Debug => tracing::debug!(batch = e.batch(), "{e}"),
            Level::Info => tracing::info!(batch = e.batch(), "{e}"),
            Level::Warn => tracing::warn!(batch = e.batch(), "{e}"),
            Level::Error => tracing::error!(batch = e.batch(), "{e}"),
        }
    }
}
