//! The single writer's decisions: batch sizing, retry, breaker, metrics and log events.
//!
//! The host owns the queue, the connection and the clock; it runs a loop like this one:
//!
//! ```
//! use std::time::Duration;
//! use sqlweir_core::{apply, params, Step, Write, WriteQueue, WriterConfig, WriterState};
//! use sqlweir_core::fake::FakeBackend;
//!
//! let mut db = FakeBackend::new();
//! let mut queue = WriteQueue::new(100);
//! let mut writer = WriterState::new(WriterConfig::default(), 42);
//! queue.push(Write::one("INSERT", params![1]), 1, Duration::ZERO).unwrap();
//!
//! let now = Duration::from_millis(1); // the host's monotonic clock
//! let batch = queue.take(writer.batch_limit());
//! let mut run = writer.start_batch(batch.len(), queue.rows());
//! let writes: Vec<&Write> = batch.iter().map(|q| &q.item).collect();
//! loop {
//!     if let Some(wait) = writer.gate(now) { /* sleep `wait`, then */ continue; }
//!     let outcome = apply(&mut db, &writes);
//!     match writer.finish_attempt(&mut run, outcome, now, now) {
//!         Step::Resolve(results) => { assert_eq!(results.len(), 1); break; }
//!         Step::RetryAfter(_delay) => { /* sleep, then loop */ }
//!         Step::Fail(_error) => { /* fail every write of the batch */ break; }
//!     }
//! }
//! assert_eq!(db.committed_values(), vec![1]);
//! ```

use std::time::Duration;

use crate::batch::{BatchOutcome, Batcher, WriteResult};
use crate::breaker::{Breaker, BreakerState, Transition};
use crate::error::{BackendError, ErrorKind, WriteError};
use crate::metrics::{Health, HealthStatus, Metrics, MetricsSnapshot};
use crate::retry::{Jitter, RetryPolicy};

/// Tuning of the writer. Hosts build it from their `Options`.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Base batch cap in rows.
    pub batch_rows: usize,
    /// Largest batch the cap may grow to under load.
    pub batch_rows_ceiling: usize,
    /// How long to wait for more writes when a batch is not full.
    pub linger: Duration,
    /// Without a linger, a batch waits briefly for the producers the last commit acked (group
    /// commit) only after commits at least this slow ([`crate::batch::GROUP_COMMIT_MIN`] by
    /// default).
    pub group_commit_min: Duration,
    /// Retry policy for lock contention.
    pub retry: RetryPolicy,
    /// Consecutive failed attempts that open the breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open.
    pub breaker_cooldown: Duration,
    /// Commits slower than this are logged.
    pub slow_commit: Duration,
    /// Trouble (a retry, a failure) within this window keeps health at degraded.
    pub degraded_window: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            batch_rows: 100,
            batch_rows_ceiling: 10_000,
            linger: Duration::ZERO,
            group_commit_min: crate::batch::GROUP_COMMIT_MIN,
            retry: RetryPolicy::default(),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_millis(500),
            slow_commit: Duration::from_secs(1),
            degraded_window: Duration::from_secs(5),
        }
    }
}

/// Something worth a log line; hosts turn these into `tracing` events or console messages.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A batch hit lock contention and will be retried after `delay`.
    Retry {
        /// The batch.
        batch: u64,
        /// Attempts failed so far.
        attempt: u32,
        /// Wait before the next attempt.
        delay: Duration,
        /// What the database said.
        error: BackendError,
    },
    /// The breaker changed state.
    Breaker {
        /// The change.
        transition: Transition,
        /// Consecutive failures at the time.
        failures: u32,
    },
    /// A write was rejected alone.
    Rejected {
        /// The batch.
        batch: u64,
        /// Its error.
        error: WriteError,
    },
    /// A whole batch failed.
    BatchFailed {
        /// The batch.
        batch: u64,
        /// Rows in it.
        rows: usize,
        /// The error every write of it gets.
        error: WriteError,
    },
    /// A commit took longer than the slow-commit threshold.
    SlowCommit {
        /// The batch.
        batch: u64,
        /// Rows in it.
        rows: usize,
        /// How long the attempt took.
        took: Duration,
    },
}

/// How much a log event matters; hosts map it to their logger's levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Routine: a write rejected alone (its owner was told), a retry under contention.
    Debug,
    /// Worth knowing.
    Info,
    /// Worth a developer's attention: the breaker changed state, a slow commit.
    Warn,
    /// A whole batch failed.
    Error,
}

impl Event {
    /// How much it matters.
    pub fn level(&self) -> Level {
        match self {
            Event::Retry { .. } | Event::Rejected { .. } => Level::Debug,
            Event::Breaker { .. } | Event::SlowCommit { .. } => Level::Warn,
            Event::BatchFailed { .. } => Level::Error,
        }
    }

    /// The batch it is about, if any.
    pub fn batch(&self) -> Option<u64> {
        match self {
            Event::Retry { batch, .. }
            | Event::Rejected { batch, .. }
            | Event::BatchFailed { batch, .. }
            | Event::SlowCommit { batch, .. } => Some(*batch),
            Event::Breaker { .. } => None,
        }
    }
}

/// One line, the same on every host.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Retry { batch, attempt, delay, error } => {
                write!(f, "batch {batch} hit lock contention on attempt {attempt} ({error}); retrying in {delay:?}")
            }
            Event::Breaker { transition, failures } => {
                write!(f, "circuit breaker {} after {failures} consecutive failures", transition.name())
            }
            Event::Rejected { batch, error } => write!(f, "a write of batch {batch} was rejected: {error}"),
            Event::BatchFailed { batch, rows, error } => write!(f, "batch {batch} of {rows} rows failed: {error}"),
            Event::SlowCommit { batch, rows, took } => {
                write!(f, "batch {batch} of {rows} rows took {took:?} to commit")
            }
        }
    }
}

/// One batch's progress through its attempts.
#[derive(Clone, Debug)]
pub struct BatchRun {
    /// The batch id, reported in receipts.
    pub id: u64,
    rows: usize,
    attempts: u32,
    waited: Duration,
}

/// What the host does after an attempt.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Committed: resolve each write with its result (in batch order).
    Resolve(Vec<WriteResult>),
    /// Lock contention: wait this long, then run the same batch again.
    RetryAfter(Duration),
    /// Give up: every write of the batch fails with this error.
    Fail(WriteError),
}

/// The writer's state: owned by the one writer, read by whoever asks for metrics.
#[derive(Debug)]
pub struct WriterState {
    config: WriterConfig,
    batcher: Batcher,
    breaker: Breaker,
    jitter: Jitter,
    metrics: Metrics,
    next_batch: u64,
    events: Vec<Event>,
}

impl WriterState {
    /// A writer with its configuration and a jitter seed.
    pub fn new(config: WriterConfig, seed: u64) -> Self {
        WriterState {
            batcher: Batcher::new(config.batch_rows, config.batch_rows_ceiling, config.linger)
                .group_commit_min(config.group_commit_min),
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            jitter: Jitter::new(seed),
            metrics: Metrics::default(),
            next_batch: 1,
            events: Vec::new(),
            config,
        }
    }

    /// Rows to take for the next batch.
    pub fn batch_limit(&self) -> usize {
        self.batcher.limit()
    }

    /// When to take the next batch given what waits (see [`Batcher::ready_at`]).
    pub fn ready_at(
        &self,
        queued_rows: usize,
        oldest_accepted_at: Option<Duration>,
        now: Duration,
    ) -> Option<Duration> {
        self.batcher.ready_at(queued_rows, oldest_accepted_at, now)
    }

    /// Starts a batch of `taken_rows` rows, with `left_rows` still queued behind it.
    pub fn start_batch(&mut self, taken_rows: usize, left_rows: usize) -> BatchRun {
        self.batcher.on_taken(taken_rows, left_rows);
        let id = self.next_batch;
        self.next_batch += 1;
        BatchRun { id, rows: taken_rows, attempts: 0, waited: Duration::ZERO }
    }

    /// How long to wait before the next attempt (the breaker is open), or `None` to go now.
    pub fn gate(&mut self, now: Duration) -> Option<Duration> {
        let (wait, transition) = self.breaker.wait(now);
        if let Some(transition) = transition {
            self.events.push(Event::Breaker { transition, failures: self.breaker.consecutive_failures() });
        }
        wait
    }

    /// Reports an attempt (started at host time `started`, ended at `now`) and decides.
    pub fn finish_attempt(
        &mut self,
        run: &mut BatchRun,
        outcome: BatchOutcome,
        started: Duration,
        now: Duration,
    ) -> Step {
        run.attempts += 1;
        let took = now.saturating_sub(started);
        match outcome {
            BatchOutcome::Committed { results, replays } => {
                if let Some(transition) = self.breaker.on_success() {
                    self.events.push(Event::Breaker { transition, failures: 0 });
                }
                let m = &mut self.metrics;
                m.batches += 1;
                m.replays += u64::from(replays);
                m.batch_rows += run.rows as u64;
                m.commit_latency.record(took);
                self.batcher.on_committed(run.rows, took, now);
                for r in &results {
                    m.committed += r.committed_rows();
                    m.rejected += r.rejected_rows();
                    let rejected = match r {
                        WriteResult::One(Err(e)) => vec![e],
                        WriteResult::Many { rejected, .. } => rejected.iter().map(|(_, e)| e).collect(),
                        WriteResult::One(Ok(_)) | WriteResult::Again(_) => Vec::new(),
                    };
                    for e in rejected {
                        self.events.push(Event::Rejected { batch: run.id, error: e.clone() });
                    }
                }
                if took >= self.config.slow_commit {
                    self.events.push(Event::SlowCommit { batch: run.id, rows: run.rows, took });
                }
                Step::Resolve(results)
            }
            BatchOutcome::Transient(error) => {
                self.trouble(&error, now);
                let delay = self.config.retry.next_delay(run.attempts, run.waited, self.jitter.next_u64());
                match delay {
                    Some(delay) => {
                        run.waited += delay;
                        self.metrics.retries += 1;
                        self.events.push(Event::Retry { batch: run.id, attempt: run.attempts, delay, error });
                        Step::RetryAfter(delay)
                    }
                    // Lock contention past the budget is `Busy`; any other transient trouble
                    // (a connection that keeps dropping) is reported as what it was.
                    None if error.kind == ErrorKind::Busy => self
                        .fail(run, WriteError::Busy { attempts: run.attempts, waited: run.waited, code: error.code }),
                    None => self.fail(run, WriteError::Backend(error)),
                }
            }
            BatchOutcome::Failed(error) => {
                self.trouble(&error, now);
                self.fail(run, WriteError::Backend(error))
            }
        }
    }

    fn trouble(&mut self, error: &BackendError, now: Duration) {
        self.metrics.last_error = Some(error.to_string());
        self.metrics.last_trouble_at = Some(now);
        if let Some(transition) = self.breaker.on_failure(now) {
            self.events.push(Event::Breaker { transition, failures: self.breaker.consecutive_failures() });
        }
    }

    fn fail(&mut self, run: &BatchRun, error: WriteError) -> Step {
        self.metrics.failed += run.rows as u64;
        self.events.push(Event::BatchFailed { batch: run.id, rows: run.rows, error: error.clone() });
        Step::Fail(error)
    }

    /// Counts `rows` rejected by their owner's own doing outside a batch (a transaction whose
    /// statement or closure failed and was rolled back), so that after a flush
    /// `accepted == committed + rejected + failed` holds for transactions too.
    pub fn record_rejected(&mut self, rows: u64) {
        self.metrics.rejected += rows;
    }

    /// Records one acknowledgement (a write resolved, with any result) for ack latency.
    pub fn record_ack(&mut self, accepted_at: Duration, now: Duration) {
        self.metrics.ack_latency.record(now.saturating_sub(accepted_at));
    }

    /// Log events since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// A metrics snapshot; the host adds the queue's figures and the backend's facts.
    pub fn snapshot(&self, queue_depth: usize, queue_capacity: usize, accepted: u64) -> MetricsSnapshot {
        let m = &self.metrics;
        MetricsSnapshot {
            queue_depth,
            queue_capacity,
            accepted,
            committed: m.committed,
            rejected: m.rejected,
            failed: m.failed,
            retries: m.retries,
            replays: m.replays,
            batches: m.batches,
            mean_batch_size: if m.batches == 0 { 0.0 } else { m.batch_rows as f64 / m.batches as f64 },
            batch_limit: self.batcher.limit(),
            commit_p50: m.commit_latency.quantile(0.5),
            commit_p99: m.commit_latency.quantile(0.99),
            ack_p50: m.ack_latency.quantile(0.5),
            ack_p99: m.ack_latency.quantile(0.99),
            breaker: self.breaker.state().name(),
            breaker_opened: self.breaker.times_opened(),
            last_error: m.last_error.clone(),
            journal_mode: String::new(),
            engine: String::new(),
        }
    }

    /// The health verdict at host time `now`.
    pub fn health(&self, queue_depth: usize, queue_capacity: usize, now: Duration) -> Health {
        let last_error = self.metrics.last_error.as_deref().unwrap_or("unknown error");
        let failing = |reason: String| Health { status: HealthStatus::Failing, reason: Some(reason) };
        let degraded = |reason: String| Health { status: HealthStatus::Degraded, reason: Some(reason) };
        match self.breaker.state() {
            BreakerState::Open { .. } => {
                return failing(format!(
                    "circuit breaker open after {} failed attempts; writes stay queued: {last_error}",
                    self.breaker.consecutive_failures()
                ));
            }
            BreakerState::HalfOpen => {
                return degraded(format!("circuit breaker half-open, trying a batch: {last_error}"));
            }
            BreakerState::Closed => {}
        }
        if self.breaker.consecutive_failures() > 0 {
            return degraded(format!(
                "retrying after {} failed attempts: {last_error}",
                self.breaker.consecutive_failures()
            ));
        }
        if queue_depth * 10 >= queue_capacity * 9 {
            return degraded(format!("queue nearly full: {queue_depth} of {queue_capacity} rows waiting"));
        }
        if let Some(at) = self.metrics.last_trouble_at
            && now.saturating_sub(at) < self.config.degraded_window
        {
            return degraded(format!("recovered from: {last_error}"));
        }
        Health { status: HealthStatus::Ok, reason: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Write, apply};
    use crate::fake::{FakeBackend, Fault};
    use crate::params;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn config() -> WriterConfig {
        WriterConfig {
            retry: RetryPolicy { base: MS(1), cap: MS(4), max_attempts: 4, budget: MS(1000) },
            breaker_threshold: 3,
            breaker_cooldown: MS(100),
            ..WriterConfig::default()
        }
    }

    #[test]
    fn busy_batch_is_retried_then_commits_and_health_recovers() {
        let mut db = FakeBackend::new();
        db.busy_for_attempts(2);
        let mut w = WriterState::new(config(), 1);
        let writes = [Write::one("INSERT", params![1])];
        let mut run = w.start_batch(1, 0);
        assert!(matches!(w.finish_attempt(&mut run, apply(&mut db, &writes), MS(0), MS(1)), Step::RetryAfter(_)));
        assert_eq!(w.health(0, 10, MS(1)).status, HealthStatus::Degraded);
        assert!(matches!(w.finish_attempt(&mut run, apply(&mut db, &writes), MS(2), MS(3)), Step::RetryAfter(_)));
        assert!(matches!(w.finish_attempt(&mut run, apply(&mut db, &writes), MS(4), MS(5)), Step::Resolve(_)));
        let m = w.snapshot(0, 10, 1);
        assert_eq!((m.retries, m.committed, m.batches), (2, 1, 1));
        assert_eq!(w.health(0, 10, MS(10_000)).status, HealthStatus::Ok);
        assert_eq!(w.drain_events().filter(|e| matches!(e, Event::Retry { .. })).count(), 2);
    }

    #[test]
    fn exhausted_retries_fail_every_write_with_busy() {
        let mut db = FakeBackend::new();
        db.busy_for_attempts(100);
        let mut w = WriterState::new(WriterConfig { breaker_threshold: 100, ..config() }, 1);
        let writes = [Write::one("INSERT", params![1]), Write::one("INSERT", params![2])];
        let mut run = w.start_batch(2, 0);
        let step = loop {
            match w.finish_attempt(&mut run, apply(&mut db, &writes), MS(0), MS(0)) {
                Step::RetryAfter(_) => {}
                other => break other,
            }
        };
        assert!(matches!(step, Step::Fail(WriteError::Busy { attempts: 4, .. })), "{step:?}");
        assert_eq!(w.snapshot(0, 10, 2).failed, 2);
        assert!(db.committed_values().is_empty());
    }

    #[test]
    fn breaker_opens_gates_and_closes_after_a_good_trial() {
        let mut db = FakeBackend::new();
        db.busy_for_attempts(3);
        let mut w = WriterState::new(config(), 1);
        let writes = [Write::one("INSERT", params![7])];
        let mut run = w.start_batch(1, 0);
        for _ in 0..3 {
            assert_eq!(w.gate(MS(10)), None);
            w.finish_attempt(&mut run, apply(&mut db, &writes), MS(10), MS(10));
        }
        assert_eq!(w.health(0, 10, MS(10)).status, HealthStatus::Failing);
        assert_eq!(w.snapshot(0, 10, 1).breaker, "open");
        assert_eq!(w.gate(MS(50)), Some(MS(60)));
        assert_eq!(w.gate(MS(110)), None, "cooldown over: half-open trial");
        assert!(matches!(w.finish_attempt(&mut run, apply(&mut db, &writes), MS(110), MS(111)), Step::Resolve(_)));
        assert_eq!(w.snapshot(0, 10, 1).breaker, "closed");
        let transitions: Vec<Transition> = w
            .drain_events()
            .filter_map(|e| if let Event::Breaker { transition, .. } = e { Some(transition) } else { None })
            .collect();
        assert_eq!(transitions, vec![Transition::Opened, Transition::HalfOpened, Transition::Closed]);
    }

    #[test]
    fn fatal_error_fails_the_batch_and_counts_toward_the_breaker() {
        let mut db = FakeBackend::new();
        db.fail_value(1, Fault::Io);
        let mut w = WriterState::new(config(), 1);
        let mut run = w.start_batch(1, 0);
        let step = w.finish_attempt(&mut run, apply(&mut db, &[Write::one("INSERT", params![1])]), MS(0), MS(0));
        assert!(matches!(step, Step::Fail(ref e) if e.code() == "Io"), "{step:?}");
        assert_eq!(w.health(0, 10, MS(0)).status, HealthStatus::Degraded);
    }

    #[test]
    fn full_queue_degrades_health() {
        let w = WriterState::new(config(), 1);
        let h = w.health(95, 100, MS(0));
        assert_eq!(h.status, HealthStatus::Degraded);
        assert!(h.reason.unwrap().contains("95 of 100"));
    }
}
