//! The writer thread: the only owner of the write connection, and the native driver of the
//! core's pipeline. It polls the pipeline, runs the batches it hands out on the connection,
//! sleeps or blocks on the condvar when told to, and resolves tickets only after COMMIT
//! returned. Every decision (batching, retry, breaker, flushes, metrics) is the core's.

use sqlweir_core::{Action, Event, Level, Settled, Settlement, Work};

use crate::engine::Engine;
use crate::shared::{Shared, WritePipeline};
use crate::tx::TxJob;

/// Runs until the pipeline is closed and drained; returns the connection for the final
/// checkpoint.
pub(crate) fn run<E: Engine>(shared: &Shared, mut engine: E) -> E {
    let mut p = shared.pipeline();
    loop {
        let action = p.poll(shared.now());
        let events = drain_events(&mut p);
        match action {
            Action::Run(mut batch) => {
                drop(p);
                log(events);
                let started = shared.now();
                let attempted = batch.attempt(&mut engine);
                let mut locked = shared.pipeline();
                let settled = locked.finish(batch, attempted, started, shared.now());
                let events = drain_events(&mut locked);
                drop(locked);
                log(events);
                if let Some(settled) = settled {
                    settle(settled);
                }
                p = shared.pipeline();
            }
            Action::Sleep(wait) => {
                drop(p);
                log(events);
                std::thread::sleep(wait);
                p = shared.pipeline();
            }
            Action::Wait(timeout) => {
                log(events);
                p = shared.wait_for_work(p, timeout);
            }
            Action::Stopped => return engine,
        }
    }
}

/// Hands each entry's outcome to its owner; wakes async owners once, after the whole batch.
fn settle(settled: Settled<crate::ticket::Done, Box<dyn TxJob>>) {
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
