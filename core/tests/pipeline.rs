//! Model-based property test of the whole write path (queue, batcher, apply with salvage,
//! retry, breaker) against the fault-injecting fake backend: no write lost, duplicated or
//! reordered; every ticket resolves exactly once; acked is exactly what is durable.

use std::time::Duration;

use proptest::prelude::*;
use sqlweir_core::fake::{FakeBackend, Fault};
use sqlweir_core::{
    Backend, RetryPolicy, Step, Write, WriteError, WriteQueue, WriteResult, WriterConfig, WriterState, apply, params,
};

const MAX_ATTEMPTS: u32 = 3;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Good,
    Constraint,
    RollsBack,
    Io,
}

#[derive(Clone, Debug)]
enum Op {
    Write(Kind),
    /// The next `n` attempts meet lock contention.
    Busy(u32),
    /// The writer runs one batch.
    Step,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Write(Kind::Good)),
        1 => Just(Op::Write(Kind::Constraint)),
        1 => Just(Op::Write(Kind::RollsBack)),
        1 => Just(Op::Write(Kind::Io)),
        1 => (0u32..6).prop_map(Op::Busy),
        3 => Just(Op::Step),
    ]
}

struct Harness {
    db: FakeBackend,
    queue: WriteQueue<(u64, Write)>,
    writer: WriterState,
    now: Duration,
    kinds: Vec<Kind>,
    /// Per ticket: how many times it resolved, and how.
    resolved: Vec<Vec<Result<(), WriteError>>>,
    /// Reference model: lock contention still to come.
    busy_left: u32,
    /// Reference model: what must be durable, in order.
    expected: Vec<i64>,
}

impl Harness {
    fn new(capacity: usize) -> Self {
        let config = WriterConfig {
            batch_rows: 4,
            batch_rows_ceiling: 16,
            retry: RetryPolicy {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(8),
                max_attempts: MAX_ATTEMPTS,
                budget: Duration::from_secs(60),
            },
            breaker_threshold: 2,
            breaker_cooldown: Duration::from_millis(10),
            ..WriterConfig::default()
        };
        Harness {
            db: FakeBackend::new(),
            queue: WriteQueue::new(capacity),
            writer: WriterState::new(config, 9),
            now: Duration::ZERO,
            kinds: Vec::new(),
            resolved: Vec::new(),
            busy_left: 0,
            expected: Vec::new(),
        }
    }

    fn write(&mut self, kind: Kind) {
        let id = self.kinds.len() as u64;
        let value = id as i64;
        match kind {
            Kind::Good => {}
            Kind::Constraint => self.db.fail_value(value, Fault::Constraint),
            Kind::RollsBack => self.db.fail_value(value, Fault::ConstraintRollingBack),
            Kind::Io => self.db.fail_value(value, Fault::Io),
        }
        self.kinds.push(kind);
        self.resolved.push(Vec::new());
        if let Err(refused) = self.queue.push((id, Write::one("INSERT", params![value])), 1, self.now) {
            // Fail-fast backpressure: the write comes back to its owner, who gets QueueFull.
            let sqlweir_core::PushError::Full((id, _)) = refused else { panic!("queue never closes here") };
            self.resolved[id as usize].push(Err(WriteError::QueueFull { capacity: self.queue.capacity() }));
        }
    }

    fn step(&mut self) {
        let batch = self.queue.take(self.writer.batch_limit());
        if batch.is_empty() {
            return;
        }
        let mut run = self.writer.start_batch(batch.len(), self.queue.rows());
        let writes: Vec<&Write> = batch.iter().map(|q| &q.item.1).collect();
        let step = loop {
            if let Some(wait) = self.writer.gate(self.now) {
                self.now += wait;
                continue;
            }
            let outcome = apply(&mut self.db, &writes);
            self.now += Duration::from_micros(50);
            match self.writer.finish_attempt(&mut run, outcome, self.now, self.now) {
                Step::RetryAfter(d) => self.now += d,
                done => break done,
            }
        };
        // The reference model decides the batch's fate from what the test injected.
        let ids: Vec<u64> = batch.iter().map(|q| q.item.0).collect();
        let model_busy = self.busy_left >= MAX_ATTEMPTS;
        self.busy_left = if model_busy { self.busy_left - MAX_ATTEMPTS } else { 0 };
        let model_io = !model_busy && ids.iter().any(|&id| matches!(self.kinds[id as usize], Kind::Io));
        match step {
            Step::Resolve(results) => {
                assert!(!model_busy && !model_io, "batch committed although the model says it fails");
                assert_eq!(results.len(), ids.len());
                for (id, r) in ids.iter().zip(results) {
                    let kind = self.kinds[*id as usize];
                    match (kind, r) {
                        (Kind::Good, WriteResult::One(Ok(_))) => {
                            self.expected.push(*id as i64);
                            self.resolved[*id as usize].push(Ok(()));
                        }
                        (Kind::Constraint | Kind::RollsBack, WriteResult::One(Err(e))) => {
                            assert_eq!(e.code(), "Constraint");
                            self.resolved[*id as usize].push(Err(e));
                        }
                        (kind, r) => panic!("write {id} of kind {kind:?} resolved as {r:?}"),
                    }
                }
            }
            Step::Fail(e) => {
                match &e {
                    WriteError::Busy { attempts, .. } => {
                        assert!(model_busy, "failed busy although the model commits");
                        assert_eq!(*attempts, MAX_ATTEMPTS);
                    }
                    other => {
                        assert!(model_io, "failed with {other:?} although the model commits");
                        assert_eq!(other.code(), "Io");
                    }
                }
                for id in ids {
                    self.resolved[id as usize].push(Err(e.clone()));
                }
            }
            Step::RetryAfter(_) => unreachable!("loop breaks only on Resolve or Fail"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn acked_is_exactly_durable_and_every_ticket_resolves_once(
        ops in proptest::collection::vec(op(), 1..80),
        capacity in 2usize..40,
    ) {
        let mut h = Harness::new(capacity);
        for op in ops {
            match op {
                Op::Write(kind) => h.write(kind),
                Op::Busy(n) => {
                    h.busy_left += n;
                    h.db.busy_for_attempts(h.busy_left);
                }
                Op::Step => h.step(),
            }
        }
        while !h.queue.is_empty() {
            h.step();
        }
        for (id, outcomes) in h.resolved.iter().enumerate() {
            prop_assert_eq!(outcomes.len(), 1, "ticket {} resolved {} times", id, outcomes.len());
        }
        // Durable = acked, in acceptance order, no duplicates.
        prop_assert_eq!(h.db.committed_values(), h.expected.clone());
        let acked: Vec<i64> = h.resolved.iter().enumerate()
            .filter(|(_, o)| matches!(o.first(), Some(Ok(()))))
            .map(|(id, _)| id as i64)
            .collect();
        prop_assert_eq!(acked, h.expected);
        prop_assert!(!h.db.in_transaction(), "a transaction was left open");
    }
}
