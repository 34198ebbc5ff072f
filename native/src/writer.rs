//! The writer thread: the only owner of the write connection.
//!
//! It takes batches from the queue, applies them with the core's salvage logic, follows the
//! core's retry and breaker decisions, sleeps when told to, and resolves tickets only after
//! COMMIT returned.

use sqlweir_core::{Event, Queued, Step, Write, WriteError, WriteResult, apply};
use std::sync::Arc;

use crate::engine::Engine;
use crate::store::{Op, Pending, Shared};
use crate::tx;
use crate::{ManyOutcome, Receipt};

/// Runs until the queue is closed and drained; returns the connection for the final checkpoint.
pub(crate) fn run<E: Engine>(shared: &Arc<Shared>, mut backend: E) -> E {
    while let Some((mut batch, left)) = next_batch(shared) {
        if let [Queued { item: Pending { op: Op::Transaction(_), .. }, .. }] = batch.as_slice() {
            let Some(Queued { item: Pending { op: Op::Transaction(job), .. }, .. }) = batch.pop() else {
                unreachable!("matched a one-transaction batch above")
            };
            tx::run(shared, &mut backend, job, left);
            continue;
        }
        let rows: usize = batch.iter().map(|q| q.rows).sum();
        let writes: Vec<&Write> =
            batch.iter().filter_map(|q| if let Op::Write(w) = &q.item.op { Some(w) } else { None }).collect();
        if writes.is_empty() {
            // Only flush markers: everything before them has resolved.
            resolve(shared, batch, Vec::new(), 0);
            continue;
        }
        let mut run = shared.writer().start_batch(rows, left);
        let step = loop {
            let gate = shared.writer().gate(shared.now());
            log_events(shared);
            if let Some(wait) = gate {
                std::thread::sleep(wait);
                continue;
            }
            let started = shared.now();
            let outcome = apply(&mut backend, &writes);
            let step = shared.writer().finish_attempt(&mut run, outcome, started, shared.now());
            log_events(shared);
            match step {
                Step::RetryAfter(delay) => std::thread::sleep(delay),
                done => break done,
            }
        };
        drop(writes);
        match step {
            Step::Resolve(results) => resolve(shared, batch, results, run.id),
            Step::Fail(error) => fail(shared, batch, &error),
            Step::RetryAfter(_) => unreachable!("the loop above only breaks on Resolve or Fail"),
        }
    }
    backend
}

/// Waits for a batch to be ready (honouring linger) and takes it. `None` once closed and empty.
fn next_batch(shared: &Shared) -> Option<(Vec<Queued<Pending>>, usize)> {
    let mut q = shared.queue();
    loop {
        let now = shared.now();
        // A flush or a close wants what is queued now: no lingering for more.
        let urgent = (q.flushes > 0 || q.queue.is_closed()) && !q.queue.is_empty();
        let ready = if urgent {
            Some(now)
        } else {
            shared.writer().ready_at(q.queue.rows(), q.queue.oldest_accepted_at(), now)
        };
        match ready {
            None if q.queue.is_closed() => return None,
            None => {
                q.writer_waiting = true;
                q = shared.wait_for_work(q, None);
                q.writer_waiting = false;
            }
            Some(at) if at <= now => break,
            Some(at) => {
                q.writer_waiting = true;
                q = shared.wait_for_work(q, Some(at.saturating_sub(now)));
                q.writer_waiting = false;
            }
        }
    }
    let limit = shared.writer().batch_limit();
    let batch = q.queue.take_until(limit, |p| matches!(p.op, Op::Transaction(_)));
    q.flushes -= batch.iter().filter(|e| matches!(e.item.op, Op::Flush)).count();
    let left = q.queue.rows();
    shared.room_made(&mut q);
    Some((batch, left))
}

fn resolve(shared: &Shared, batch: Vec<Queued<Pending>>, results: Vec<WriteResult>, batch_id: u64) {
    let now = shared.now();
    let mut results = results.into_iter();
    let mut wake = Vec::new();
    let mut writer = shared.writer();
    for q in batch {
        let Pending { op, done } = q.item;
        let Op::Write(write) = op else {
            // A flush marker: every write accepted before it has now resolved.
            done.flush();
            continue;
        };
        writer.record_ack(q.accepted_at, now);
        done.complete(results.next().expect("apply returns one result per write"), batch_id, write, &mut wake);
    }
    drop(writer);
    // Every result is in place before anyone is woken: each waiting task wakes once per batch.
    for w in wake {
        w.wake();
    }
}

fn fail(shared: &Shared, batch: Vec<Queued<Pending>>, error: &WriteError) {
    let now = shared.now();
    let mut writer = shared.writer();
    for q in batch {
        writer.record_ack(q.accepted_at, now);
        q.item.done.fail(error.clone());
    }
}

pub(crate) fn log_events(shared: &Shared) {
    let events: Vec<Event> = shared.writer().drain_events().collect();
    for e in events {
        match e {
            Event::Retry { batch, attempt, delay, error } => {
                tracing::debug!(batch, attempt, ?delay, %error, "batch hit lock contention; retrying");
            }
            Event::Breaker { transition, failures } => {
                tracing::warn!(?transition, failures, "circuit breaker changed state");
            }
            Event::Rejected { batch, error } => tracing::info!(batch, %error, "write rejected"),
            Event::BatchFailed { batch, rows, error } => tracing::error!(batch, rows, %error, "batch failed"),
            Event::SlowCommit { batch, rows, took } => tracing::warn!(batch, rows, ?took, "slow commit"),
        }
    }
}

/// Turns a core result into what the owner's ticket expects.
pub(crate) fn one_receipt(result: WriteResult, batch: u64) -> Result<Receipt, WriteError> {
    match result {
        WriteResult::One(r) => r.map(|a| Receipt::new(a, batch)),
        WriteResult::Many { .. } => unreachable!("a single write gets a single result"),
    }
}

/// Turns a core result into a `write_many` outcome.
pub(crate) fn many_outcome(result: WriteResult, batch: u64) -> ManyOutcome {
    match result {
        WriteResult::Many { committed, rejected } => ManyOutcome { committed, rejected, batch },
        WriteResult::One(_) => unreachable!("write_many gets a many result"),
    }
}
