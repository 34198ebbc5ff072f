//! Lock contention from outside the store: retries, the breaker, and zero lost writes.
//! The field reports' incident (a collector disabled for 25 minutes by `database is locked`),
//! scaled down.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{INSERT, count, open, temp_db};
use rusqlite::Connection;
use sqlweir::{HealthStatus, Options, RetryPolicy, WriteError, params};

/// Holds `BEGIN EXCLUSIVE` on the file from another connection until told to release.
fn hold_exclusive(path: &std::path::Path) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let conn = Connection::open(path).expect("outside connection");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("exclusive lock");
    let (tx, rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _ = rx.recv();
        conn.execute_batch("COMMIT").expect("release");
    });
    (tx, holder)
}

#[test]
fn an_outside_exclusive_lock_for_two_seconds_costs_retries_not_writes() {
    let db = temp_db();
    let store = open(&db, Options::default().jitter_seed(1));
    store.write(INSERT, params![0, "warmup", "x"]).wait().expect("warmup");
    let (release, holder) = hold_exclusive(&db.path);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let tickets: Vec<_> = (0..250).map(|i| store.write(INSERT, params![i, format!("w{w}"), "x"])).collect();
                tickets.into_iter().map(sqlweir::Ticket::wait).collect::<Vec<_>>()
            })
        })
        .collect();
    // Writes are queued and the writer is retrying while the lock is held.
    while store.metrics().retries < 3 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_ne!(store.health().status, HealthStatus::Ok, "contention shows in health");
    std::thread::sleep(Duration::from_secs(2));
    release.send(()).expect("release");
    holder.join().expect("holder");
    let results: Vec<_> = writers.into_iter().flat_map(|w| w.join().expect("writer")).collect();
    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(Result::is_ok), "no write lost to the lock");
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 1001);
    let m = store.metrics();
    assert!(m.retries >= 3, "retries: {}", m.retries);
    assert_eq!((m.failed, m.rejected), (0, 0));
    assert!(m.last_error.as_deref().is_some_and(|e| e.contains("locked")), "{:?}", m.last_error);
}

#[test]
fn breaker_opens_under_a_held_lock_and_closes_after_it() {
    let db = temp_db();
    let store = open(&db, Options::default().jitter_seed(2).breaker(3, Duration::from_millis(200)));
    store.write(INSERT, params![0, "warmup", "x"]).wait().expect("warmup");
    let (release, holder) = hold_exclusive(&db.path);
    let ticket = store.write(INSERT, params![1, "during", "x"]);
    while store.metrics().breaker_opened == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(store.metrics().breaker, "open" | "half-open"));
    let health = store.health();
    assert_ne!(health.status, HealthStatus::Ok);
    assert!(health.reason.as_deref().is_some_and(|r| r.contains("locked")), "{health:?}");
    // While open, accepted writes stay queued.
    let queued = store.write(INSERT, params![2, "queued", "x"]);
    release.send(()).expect("release");
    holder.join().expect("holder");
    ticket.wait().expect("the write during the lock commits after it");
    queued.wait().expect("queued write commits");
    let m = store.metrics();
    assert_eq!(m.breaker, "closed");
    assert!(m.breaker_opened >= 1);
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 3);
    assert_ne!(store.health().status, HealthStatus::Failing);
}

#[test]
fn a_lock_longer_than_the_retry_budget_fails_each_write_with_busy() {
    let db = temp_db();
    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        max_attempts: 5,
        budget: Duration::from_secs(10),
    };
    let store = open(&db, Options::default().retry(policy).breaker(1000, Duration::ZERO));
    let (release, holder) = hold_exclusive(&db.path);
    let errors: Vec<WriteError> =
        (0..3).map(|i| store.write(INSERT, params![i, "b", "x"])).map(|t| t.wait().unwrap_err()).collect();
    release.send(()).expect("release");
    holder.join().expect("holder");
    for e in &errors {
        assert!(matches!(e, WriteError::Busy { attempts: 5, .. }), "{e:?}");
        assert_eq!(e.sqlite_code().map(|c| c & 0xff), Some(5), "SQLITE_BUSY");
        assert!(e.is_transient());
    }
    assert_eq!(store.metrics().failed, 3);
    store.write(INSERT, params![9, "after", "x"]).wait().expect("store works after the lock clears");
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 1);
}
