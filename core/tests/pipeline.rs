//! Model-based property test of the whole write lifecycle: the [`Pipeline`] machine (queue,
//! writes waiting for room, batcher, apply with salvage, transactions, retry, breaker, flushes)
//! driven the way a host drives it, against the fault-injecting fake backend. No write lost,
//! duplicated or reordered; every entry settles exactly once, in acceptance order; acked is
//! exactly what is durable; a flush resolves only after everything accepted before it; a
//! settled batch reports the tables of exactly the rows it committed (the commit feed's input).
//!
//! Some entries carry a request id, and some are sent again with the same id (a resend after a
//! lost answer): each id is applied at most once, a resend of a committed write is answered with
//! the first receipt, and the committed markers are exactly the ids of the committed writes
//! (less those forgotten).

use std::time::Duration;

use proptest::prelude::*;
use sqlweir_core::fake::{FakeBackend, Fault};
use std::collections::{BTreeMap, BTreeSet};

use sqlweir_core::{
    Action, Backend, Backpressure, Body, BodyOutcome, ErrorClass, Pipeline, PushError, Recorded, Request, RequestId,
    RetryPolicy, Settlement, Work, Write, WriteResult, WriterConfig, params,
};

const ORIGIN: &str = "tab";

const MAX_ATTEMPTS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Good,
    Constraint,
    RollsBack,
    Io,
    /// A transaction that writes its value and commits.
    Tx,
    /// A transaction that writes its value, then gives up.
    TxGivesUp,
}

#[derive(Clone, Debug)]
enum Op {
    /// A new entry; with a request id when `true`.
    Entry(Kind, bool),
    /// The entry with a request id at this index (modulo their number) is sent again.
    Resend(usize),
    /// Markers of ids below this fraction (per 8) of the entries so far are forgotten.
    Forget(u8),
    /// The next `n` attempts meet lock contention.
    Busy(u32),
    Flush,
    /// The host drives the pipeline until one batch settles (or it has nothing to run).
    Step,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<bool>().prop_map(|m| Op::Entry(Kind::Good, m)),
        1 => any::<bool>().prop_map(|m| Op::Entry(Kind::Constraint, m)),
        1 => any::<bool>().prop_map(|m| Op::Entry(Kind::RollsBack, m)),
        1 => any::<bool>().prop_map(|m| Op::Entry(Kind::Io, m)),
        1 => any::<bool>().prop_map(|m| Op::Entry(Kind::Tx, m)),
        1 => any::<bool>().prop_map(|m| Op::Entry(Kind::TxGivesUp, m)),
        3 => (0usize..64).prop_map(Op::Resend),
        1 => (0u8..8).prop_map(Op::Forget),
        1 => (0u32..6).prop_map(Op::Busy),
        1 => Just(Op::Flush),
        3 => Just(Op::Step),
    ]
}

/// A transaction body: one insert, then commit or give up.
#[derive(Debug)]
struct Tx {
    value: i64,
    gives_up: bool,
    request: Option<Request>,
    answered: Option<Recorded>,
}

impl Body<FakeBackend> for Tx {
    fn run(&mut self, db: &mut FakeBackend) -> BodyOutcome {
        match db.execute("INSERT", &params![self.value]) {
            Ok(_) if self.gives_up => BodyOutcome::Rejected,
            Ok(_) => BodyOutcome::Commit,
            Err(e) if e.class == ErrorClass::Rejected => BodyOutcome::Rejected,
            Err(e) => BodyOutcome::Failed(e),
        }
    }

    fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    fn recorded(&self, batch: u64) -> Recorded {
        Recorded::Transaction { results: vec![(1, self.value)], batch }
    }

    fn answered(&mut self, recorded: Recorded) {
        self.answered = Some(recorded);
    }
}

#[derive(Debug)]
enum Ticket {
    Entry(u64),
    /// A flush, with the number of entries accepted before it.
    Flush(u64),
}

/// How an entry ended, as its owner saw it.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Committed,
    /// Answered from the marker of an earlier copy.
    Again,
    Rejected(&'static str),
    Failed(&'static str),
    Refused,
}

struct Harness {
    db: FakeBackend,
    pipeline: Pipeline<Ticket, Tx>,
    now: Duration,
    kinds: Vec<Kind>,
    /// Per entry: its value and its request id's number (a resend shares both with its first copy).
    values: Vec<i64>,
    requests: Vec<Option<u64>>,
    /// Entries that carry a request id and were sent first (not resends).
    marked: Vec<u64>,
    /// Per request id: what the copy that committed recorded.
    committed_requests: BTreeMap<u64, Recorded>,
    /// Markers below this number were forgotten.
    forgotten_below: u64,
    /// Per entry: every outcome its owner was told.
    seen: Vec<Vec<Seen>>,
    /// Accepted entries, in acceptance order, and the order they settled in.
    accepted: Vec<u64>,
    settled_order: Vec<u64>,
    /// What must be durable, in order: the values of the entries settled committed.
    expected: Vec<i64>,
    /// Lock contention injected so far (a batch may only fail `Busy` if some was).
    busy_injected: bool,
    flushes_resolved: usize,
}

impl Harness {
    fn new(capacity: usize, backpressure: Backpressure) -> Self {
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
            pipeline: Pipeline::new(capacity, backpressure, config, 9),
            now: Duration::ZERO,
            kinds: Vec::new(),
            values: Vec::new(),
            requests: Vec::new(),
            marked: Vec::new(),
            committed_requests: BTreeMap::new(),
            forgotten_below: 0,
            seen: Vec::new(),
            accepted: Vec::new(),
            settled_order: Vec::new(),
            expected: Vec::new(),
            busy_injected: false,
            flushes_resolved: 0,
        }
    }

    fn entry(&mut self, kind: Kind, marked: bool) {
        let id = self.kinds.len() as u64;
        let value = id as i64;
        match kind {
            Kind::Constraint => self.db.fail_value(value, Fault::Constraint),
            Kind::RollsBack => self.db.fail_value(value, Fault::ConstraintRollingBack),
            Kind::Io => self.db.fail_value(value, Fault::Io),
            Kind::Good | Kind::Tx | Kind::TxGivesUp => {}
        }
        if marked {
            self.marked.push(id);
        }
        self.push(kind, value, marked.then_some(id), true);
    }

    /// Sends marked entry `pick` again: the same write under the same request id.
    fn resend(&mut self, pick: usize) {
        let candidates: Vec<u64> = self
            .marked
            .iter()
            .copied()
            .filter(|&m| self.requests[m as usize].is_some_and(|seq| seq >= self.forgotten_below))
            .collect();
        let Some(&first) = candidates.get(pick % candidates.len().max(1)) else { return };
        let (kind, value, request) =
            (self.kinds[first as usize], self.values[first as usize], self.requests[first as usize]);
        self.push(kind, value, request, false);
    }

    /// Queues an entry; a `first` send of a request id is not looked up, a resend is.
    fn push(&mut self, kind: Kind, value: i64, request: Option<u64>, first: bool) {
        let id = self.kinds.len() as u64;
        self.kinds.push(kind);
        self.values.push(value);
        self.requests.push(request);
        self.seen.push(Vec::new());
        let rid = request.map(|seq| RequestId::new(ORIGIN, seq));
        let work = match kind {
            Kind::Tx | Kind::TxGivesUp => Work::Transaction(Tx {
                value,
                gives_up: kind == Kind::TxGivesUp,
                request: rid.map(|id| Request { id, first_send: first }),
                answered: None,
            }),
            _ => {
                let w = Write::one("INSERT", params![value]);
                Work::Write(match rid {
                    Some(rid) if first => w.once_first(rid),
                    Some(rid) => w.once(rid),
                    None => w,
                })
            }
        };
        match self.pipeline.push(work, Ticket::Entry(id), self.now) {
            Ok(_) => self.accepted.push(id),
            // Fail-fast backpressure: the entry comes back to its owner, who gets QueueFull.
            Err(PushError::Full((_, Ticket::Entry(back)))) => {
                assert_eq!(back, id, "the refused entry's own ticket comes back");
                self.seen[id as usize].push(Seen::Refused);
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }

    fn flush(&mut self) {
        let before = self.accepted.len() as u64;
        if let Err(ticket) = self.pipeline.flush(Ticket::Flush(before)) {
            // Handed back at once: nothing may be pending.
            assert!(matches!(ticket, Ticket::Flush(_)));
            assert_eq!(self.settled_order.len(), self.accepted.len(), "flush returned with entries pending");
            self.flushes_resolved += 1;
        }
    }

    /// Drives the pipeline as a host does, until one batch settles or there is nothing to run.
    fn step(&mut self) {
        loop {
            match self.pipeline.poll(self.now) {
                Action::Run(mut batch) => {
                    let attempted = batch.attempt(&mut self.db);
                    let started = self.now;
                    self.now += Duration::from_micros(50);
                    if let Some(settled) = self.pipeline.finish(batch, attempted, started, self.now) {
                        self.settle(settled);
                        return;
                    }
                }
                Action::Sleep(d) | Action::Wait(Some(d)) => self.now += d,
                Action::Wait(None) | Action::Stopped => return,
            }
        }
    }

    fn settle(&mut self, settled: sqlweir_core::Settled<Ticket, Tx>) {
        let failed_with: Option<&'static str> = settled.entries.iter().find_map(|e| match &e.outcome {
            Settlement::Failed(err) => Some(err.code()),
            _ => None,
        });
        if let Some(code) = failed_with {
            match code {
                "Busy" => assert!(self.busy_injected, "a batch failed busy without lock contention"),
                "Io" => assert!(
                    settled.entries.iter().any(|e| matches!(e.ticket, Ticket::Entry(id)
                        if self.kinds[id as usize] == Kind::Io)),
                    "a batch failed with Io but holds no failing write"
                ),
                other => panic!("a batch failed with {other}: salvage must reject such writes alone"),
            }
        }
        let batch = settled.batch;
        // The commit feed's input: the tables of exactly the rows this batch committed (the
        // fake reports one per applied row), nothing from an abandoned or rejected attempt.
        let changed = settled.changed.len();
        let mut committed_here = 0;
        for e in settled.entries {
            let Ticket::Entry(id) = e.ticket else { panic!("a flush ticket settled as an entry") };
            let kind = self.kinds[id as usize];
            let request = self.requests[id as usize];
            let answered = match &e.work {
                Work::Transaction(tx) => tx.answered.clone(),
                Work::Write(_) => None,
            };
            let seen = match (&e.outcome, kind) {
                (Settlement::Failed(err), _) => Seen::Failed(err.code()),
                (Settlement::Write(WriteResult::Again(r)), Kind::Good) => {
                    let seq = request.expect("only a write with a request id is answered from a marker");
                    assert_eq!(
                        self.committed_requests.get(&seq),
                        Some(r),
                        "entry {id}: a resend gets the first receipt"
                    );
                    Seen::Again
                }
                (Settlement::Committed, Kind::Tx) if answered.is_some() => {
                    let seq = request.expect("only a transaction with a request id is answered from a marker");
                    assert_eq!(self.committed_requests.get(&seq), answered.as_ref(), "entry {id}: the first results");
                    Seen::Again
                }
                (Settlement::Write(WriteResult::One(Ok(a))), Kind::Good) => {
                    if let Some(seq) = request {
                        let first = Recorded::One { changes: a.changes, last_rowid: a.last_rowid, batch };
                        assert!(self.committed_requests.insert(seq, first).is_none(), "request {seq} applied twice");
                    }
                    Seen::Committed
                }
                (Settlement::Committed, Kind::Tx) => {
                    if let Some(seq) = request {
                        let first = Recorded::Transaction { results: vec![(1, self.values[id as usize])], batch };
                        assert!(self.committed_requests.insert(seq, first).is_none(), "request {seq} applied twice");
                    }
                    Seen::Committed
                }
                (Settlement::Write(WriteResult::One(Err(err))), Kind::Constraint | Kind::RollsBack) => {
                    Seen::Rejected(err.code())
                }
                (Settlement::Rejected, Kind::TxGivesUp) => Seen::Rejected("GaveUp"),
                (outcome, kind) => panic!("entry {id} of kind {kind:?} settled as {outcome:?}"),
            };
            if seen == Seen::Committed {
                self.expected.push(self.values[id as usize]);
                committed_here += 1;
            }
            assert!(matches!(e.work, Work::Write(_) | Work::Transaction(_)), "the work comes back");
            self.seen[id as usize].push(seen);
            self.settled_order.push(id);
        }
        assert_eq!(
            changed, committed_here,
            "the batch reported the tables of {changed} rows but committed {committed_here}"
        );
        for f in settled.flushed {
            let Ticket::Flush(before) = f else { panic!("an entry ticket came back as a flush") };
            assert!(
                self.settled_order.len() as u64 >= before,
                "a flush resolved before the {before} entries accepted before it settled"
            );
            self.flushes_resolved += 1;
        }
    }
}

fn run(ops: Vec<Op>, capacity: usize, backpressure: Backpressure) -> Result<(), TestCaseError> {
    let mut h = Harness::new(capacity, backpressure);
    let mut flushes = 0;
    for op in ops {
        match op {
            Op::Entry(kind, marked) => h.entry(kind, marked),
            Op::Resend(pick) => h.resend(pick),
            Op::Forget(eighths) => {
                // Only what has settled: its sender heard how it ended and will not resend it.
                // (A pending copy, first or resent, keeps its number unsettled.)
                let unsettled = h.accepted[h.settled_order.len()..]
                    .iter()
                    .map(|&p| h.requests[p as usize].unwrap_or(p))
                    .min()
                    .unwrap_or(h.kinds.len() as u64);
                let below = (h.kinds.len() as u64 * u64::from(eighths) / 8).min(unsettled);
                if below > h.forgotten_below {
                    h.forgotten_below = below;
                    h.pipeline.forget(ORIGIN, below);
                }
            }
            Op::Busy(n) => {
                h.busy_injected |= n > 0;
                h.db.busy_for_attempts(n);
            }
            Op::Flush => {
                flushes += 1;
                h.flush();
            }
            Op::Step => h.step(),
        }
    }
    // Everything settles, then one last good write alone in its batch carries any forget left.
    h.db.busy_for_attempts(0);
    while !h.pipeline.is_idle() {
        h.step();
    }
    h.entry(Kind::Good, false);
    h.pipeline.close();
    while !h.pipeline.is_idle() {
        h.step();
    }
    prop_assert!(matches!(h.pipeline.poll(h.now), Action::Stopped));
    for (id, outcomes) in h.seen.iter().enumerate() {
        prop_assert_eq!(outcomes.len(), 1, "entry {} was told {} times: {:?}", id, outcomes.len(), outcomes);
    }
    prop_assert_eq!(&h.settled_order, &h.accepted, "entries settle in acceptance order");
    prop_assert_eq!(h.flushes_resolved, flushes, "every flush resolved");
    // Durable = acked, in acceptance order, no duplicates.
    prop_assert_eq!(h.db.committed_values(), h.expected.clone());
    prop_assert!(!h.db.in_transaction(), "a transaction was left open");
    // Markers: exactly one per committed write with a request id (less the forgotten), each
    // with what that write's owner was told.
    let kept: BTreeMap<u64, Recorded> = h
        .committed_requests
        .iter()
        .filter(|(seq, _)| **seq >= h.forgotten_below)
        .map(|(s, r)| (*s, r.clone()))
        .collect();
    let markers: BTreeMap<u64, Recorded> =
        h.db.markers()
            .iter()
            .map(|(id, r)| {
                assert_eq!(&*id.origin, ORIGIN);
                (id.seq, r.clone())
            })
            .collect();
    prop_assert_eq!(&markers, &kept, "markers == committed writes with a request id");
    // Each request id is durable at most once (its value appears once at most, however often
    // it was sent), and exactly once when some copy committed.
    let durable = h.db.committed_values();
    let marked_values: BTreeSet<u64> = h.requests.iter().flatten().copied().collect();
    for seq in marked_values {
        let value = h.values[seq as usize];
        let n = durable.iter().filter(|&&v| v == value).count();
        prop_assert_eq!(n, usize::from(h.committed_requests.contains_key(&seq)), "request {} durable {} times", seq, n);
    }
    let m = h.pipeline.snapshot();
    prop_assert_eq!(m.queue_depth, 0);
    let refused = h.seen.iter().filter(|s| s[0] == Seen::Refused).count() as u64;
    prop_assert_eq!(m.accepted, h.kinds.len() as u64 - refused);
    prop_assert_eq!(m.committed + m.rejected + m.failed, m.accepted, "every accepted row is counted once: {:?}", m);
    // A resend answered from a marker counts as committed again: its owner was told so.
    let again = h.seen.iter().filter(|s| s[0] == Seen::Again).count() as u64;
    prop_assert_eq!(m.committed, h.expected.len() as u64 + again);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn acked_is_exactly_durable_and_every_entry_settles_once_in_order(
        ops in proptest::collection::vec(op(), 1..80),
        capacity in 2usize..40,
        wait in any::<bool>(),
    ) {
        run(ops, capacity, if wait { Backpressure::Wait } else { Backpressure::Fail })?;
    }
}

#[test]
fn entries_waiting_for_room_keep_their_order_and_count_in_the_depth() {
    let mut p: Pipeline<u64, Tx> = Pipeline::new(2, Backpressure::Wait, WriterConfig::default(), 1);
    for id in 0..5 {
        p.push(Work::Write(Write::one("INSERT", params![id as i64])), id, Duration::ZERO).expect("accepted");
    }
    assert_eq!(p.depth(), 5, "queued and waiting rows both count");
    let mut db = FakeBackend::new();
    let mut order = Vec::new();
    while !p.is_idle() {
        match p.poll(Duration::ZERO) {
            Action::Run(mut batch) => {
                let attempted = batch.attempt(&mut db);
                let settled = p.finish(batch, attempted, Duration::ZERO, Duration::ZERO).expect("no retry");
                order.extend(settled.entries.into_iter().map(|e| e.ticket));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
    assert_eq!(db.committed_values(), vec![0, 1, 2, 3, 4]);
}
