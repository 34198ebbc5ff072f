//! The field report's incident, scaled down: another connection holds `BEGIN EXCLUSIVE` for
//! seconds, again and again, while collectors write continuously through one store. The store
//! retries, opens and closes its breaker, reports it in health and metrics, and loses nothing:
//! with the default retry budget no write fails; with a tiny budget each write that exceeds it
//! fails with a typed `Busy`, and the counts reconcile exactly.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{INSERT, count, open, temp_db};
use rusqlite::Connection;
use sqlweir::{HealthStatus, Options, Receipt, RetryPolicy, Store, Ticket, WriteError, params};

const COLLECTORS: usize = 4;
/// Tickets a collector keeps in flight before it waits for the oldest.
const IN_FLIGHT: usize = 32;

/// What one collector saw: `(seq, result)` for every write the store accepted.
type Outcomes = Vec<(i64, Result<Receipt, WriteError>)>;

/// Health samples, each tagged with the storm phase it was taken in.
type Samples = Arc<Mutex<Vec<(usize, HealthStatus)>>>;

/// Starts `COLLECTORS` threads writing `INSERT`s (source `c<n>`, ts = seq, payload `c<n>:<seq>`)
/// until `stop` is set, each keeping a window of tickets in flight.
fn start_collectors(store: &Store, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Outcomes>> {
    (0..COLLECTORS)
        .map(|c| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut in_flight: VecDeque<(i64, Ticket<Receipt>)> = VecDeque::new();
                let mut done = Vec::new();
                let mut seq = 0i64;
                while !stop.load(Ordering::Acquire) {
                    in_flight
                        .push_back((seq, store.write(INSERT, params![seq, format!("c{c}"), format!("c{c}:{seq}")])));
                    seq += 1;
                    if in_flight.len() >= IN_FLIGHT {
                        let (s, t) = in_flight.pop_front().expect("window is full");
                        done.push((s, t.wait()));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                done.extend(in_flight.into_iter().map(|(s, t)| (s, t.wait())));
                done
            })
        })
        .collect()
}

/// Samples `health()` every few ms, tagging each sample with the storm phase it was taken in.
fn start_monitor(
    store: &Store,
    phase: &Arc<AtomicUsize>,
    stop: &Arc<AtomicBool>,
) -> (Samples, std::thread::JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let (store, phase, stop, out) = (store.clone(), phase.clone(), stop.clone(), samples.clone());
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let p = phase.load(Ordering::Acquire);
            let status = store.health().status;
            out.lock().expect("samples").push((p, status));
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (samples, handle)
}

/// Holds `BEGIN EXCLUSIVE` from its own connection for `hold`, `times` times with `gap` between,
/// setting `phase` to the hold's number (1-based, odd = holding) while it holds.
fn storm(path: &Path, times: usize, hold: Duration, gap: Duration, phase: &AtomicUsize) {
    let conn = Connection::open(path).expect("outside connection");
    // The outside connection waits for the writer's current batch, as a real process would.
    conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
    for k in 0..times {
        conn.execute_batch("BEGIN EXCLUSIVE").expect("exclusive lock");
        phase.store(2 * k + 1, Ordering::Release);
        std::thread::sleep(hold);
        phase.store(2 * k + 2, Ordering::Release);
        conn.execute_batch("COMMIT").expect("release the lock");
        std::thread::sleep(gap);
    }
}

/// Every row in the table, by collector and seq, with its rowid and payload.
fn rows_by_key(store: &Store) -> BTreeMap<(String, i64), (i64, String)> {
    let rows: Vec<(i64, String, i64, String)> =
        store.query_as("SELECT id, source, ts, payload FROM events", &[]).expect("read all");
    let n = rows.len();
    let map: BTreeMap<_, _> = rows.into_iter().map(|(id, src, ts, payload)| ((src, ts), (id, payload))).collect();
    assert_eq!(map.len(), n, "no (collector, seq) written twice");
    map
}

/// Joins the collectors and checks that the table holds exactly the acked writes, each at the
/// rowid its receipt named and with its own payload. Returns (acked, busy errors).
fn reconcile(store: &Store, collectors: Vec<std::thread::JoinHandle<Outcomes>>) -> (usize, Vec<WriteError>) {
    let mut acked = BTreeMap::new();
    let mut failed = Vec::new();
    for (c, handle) in collectors.into_iter().enumerate() {
        let outcomes = handle.join().expect("collector");
        let seqs: Vec<i64> = outcomes.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (0..outcomes.len() as i64).collect::<Vec<_>>(), "every ticket resolved exactly once");
        for (seq, result) in outcomes {
            match result {
                Ok(r) => {
                    acked.insert((format!("c{c}"), seq), (r.last_rowid, format!("c{c}:{seq}")));
                }
                Err(e) => failed.push(((format!("c{c}"), seq), e)),
            }
        }
    }
    let present = rows_by_key(store);
    let missing: Vec<_> = acked.iter().filter(|(k, v)| present.get(*k) != Some(*v)).take(5).collect();
    let extra: Vec<_> = present.iter().filter(|(k, _)| !acked.contains_key(*k)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "acked but not in the table as acked: {missing:?}; unacked rows: {extra:?}"
    );
    assert_eq!(present.len(), acked.len(), "the table holds exactly the acked writes");
    for (key, _) in &failed {
        assert!(!present.contains_key(key), "failed write {key:?} is in the table");
    }
    (acked.len(), failed.into_iter().map(|(_, e)| e).collect())
}

#[test]
fn five_exclusive_locks_of_three_seconds_delay_writes_but_fail_none() {
    let db = temp_db();
    let store = open(&db, Options::default().jitter_seed(6));
    let (stop, phase) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let (samples, monitor) = start_monitor(&store, &phase, &stop_monitor);
    let collectors = start_collectors(&store, &stop);
    std::thread::sleep(Duration::from_millis(300));
    storm(&db.path, 5, Duration::from_secs(3), Duration::from_millis(300), &phase);
    // Collectors keep writing after the storm, and the queue drains.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    let (acked, failed) = reconcile(&store, collectors);
    store.flush().wait().expect("flush");
    assert!(
        failed.is_empty(),
        "the default budget outlasts the storm: {} failed, first {:?}",
        failed.len(),
        failed.first()
    );

    let m = store.metrics();
    assert_eq!(m.accepted, acked as u64, "every accepted write was acked");
    assert_eq!((m.committed, m.rejected, m.failed), (acked as u64, 0, 0));
    assert_eq!(count(&store, "SELECT count(*) FROM events"), acked as i64);
    assert!(m.retries > 0, "retries: {}", m.retries);
    assert!(m.breaker_opened >= 5, "the breaker opened in every hold: {}", m.breaker_opened);
    assert_eq!(m.breaker, "closed");
    assert!(m.last_error.as_deref().is_some_and(|e| e.contains("locked")), "{:?}", m.last_error);
    assert!(acked > 500, "collectors wrote continuously: {acked} writes");

    // Health: not ok during each hold, failing at some point (breaker open), degraded at some
    // point; once the degraded window has passed without trouble, ok again.
    stop_monitor.store(true, Ordering::Release);
    monitor.join().expect("monitor");
    let samples = samples.lock().expect("samples").clone();
    for k in 0..5 {
        let during: BTreeSet<String> =
            samples.iter().filter(|(p, _)| *p == 2 * k + 1).map(|(_, s)| format!("{s:?}")).collect();
        assert!(during.contains("Failing") || during.contains("Degraded"), "hold {k} showed in health: {during:?}");
    }
    let seen: BTreeSet<String> = samples.iter().map(|(_, s)| format!("{s:?}")).collect();
    assert!(seen.contains("Failing") && seen.contains("Degraded"), "{seen:?}");
    assert_ne!(store.health().status, HealthStatus::Failing);
    // The degraded window (5 s by default) runs from the last trouble; wait it out, bounded.
    for _ in 0..200 {
        if store.health().status == HealthStatus::Ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(store.health().status, HealthStatus::Ok, "{:?}", store.health());
    store.close().expect("close");
}

#[test]
fn past_a_tiny_retry_budget_each_write_fails_with_busy_and_counts_reconcile() {
    let db = temp_db();
    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(4),
        max_attempts: 3,
        budget: Duration::from_millis(20),
    };
    let store = open(&db, Options::default().jitter_seed(7).retry(policy));
    let (stop, phase) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let collectors = start_collectors(&store, &stop);
    std::thread::sleep(Duration::from_millis(200));
    storm(&db.path, 3, Duration::from_secs(1), Duration::from_millis(300), &phase);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    let (acked, failed) = reconcile(&store, collectors);
    store.flush().wait().expect("flush");

    assert!(!failed.is_empty(), "a one-second lock exceeds a 3-attempt budget");
    for e in &failed {
        assert!(matches!(e, WriteError::Busy { attempts: 3, .. }), "{e:?}");
        assert_eq!(e.code(), "Busy");
        assert_eq!(e.sqlite_code().map(|c| c & 0xff), Some(5), "SQLITE_BUSY: {e:?}");
        assert!(e.is_transient());
        assert!(e.to_string().starts_with("database stayed locked through "), "{e}");
    }
    let m = store.metrics();
    assert_eq!(m.failed, failed.len() as u64);
    assert_eq!(m.committed, acked as u64);
    assert_eq!(m.rejected, 0);
    assert_eq!(m.committed + m.failed, m.accepted, "committed + failed == accepted");
    assert_eq!(count(&store, "SELECT count(*) FROM events"), acked as i64);
    assert!(acked > 0, "writes commit between and after the holds");
    store.close().expect("close");
}
