//! The write path end to end on real database files: concurrency, order, salvage, backpressure.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{INSERT, count, open, temp_db};
use futures::executor::block_on;
use sqlweir::{Backpressure, ErrorKind, Options, Store, Value, WriteError, params};

#[test]
fn sixteen_threads_times_a_thousand_writes_all_land() {
    let db = temp_db();
    let store = open(&db, Options::default());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let r = store.write(INSERT, params![i, format!("t{t}"), format!("{t}:{i}")]).wait().expect("write");
                    assert_eq!(r.changes, 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("producer thread");
    }
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 16_000);
    let payloads: BTreeSet<String> =
        store.query_as::<String>("SELECT payload FROM events", &[]).expect("payloads").into_iter().collect();
    let expected: BTreeSet<String> = (0..16).flat_map(|t| (0..1000).map(move |i| format!("{t}:{i}"))).collect();
    assert_eq!(payloads, expected, "every write present exactly once with its own content");
    let m = store.metrics();
    assert_eq!((m.accepted, m.committed, m.rejected, m.failed), (16_000, 16_000, 0, 0));
    assert!(m.batches > 0 && m.batches <= 16_000);
    store.close().expect("close");
}

#[test]
fn async_writes_from_many_tasks_keep_each_producers_order() {
    let db = temp_db();
    let store = open(&db, Options::default());
    let tickets: Vec<_> = (0..4)
        .flat_map(|p| (0..500).map(move |i| (p, i)))
        .map(|(p, i)| store.write(INSERT, params![i, format!("p{p}"), None::<String>]))
        .collect();
    let receipts = block_on(futures::future::join_all(tickets));
    assert!(receipts.iter().all(Result::is_ok));
    for p in 0..4 {
        let ts: Vec<i64> = store
            .query_as("SELECT ts FROM events WHERE source = ?1 ORDER BY id", &params![format!("p{p}")])
            .expect("query");
        assert_eq!(ts, (0..500).collect::<Vec<i64>>(), "acceptance order is commit order");
    }
}

#[test]
fn a_batch_with_one_unique_violation_commits_the_other_99() {
    let db = temp_db();
    // Linger long enough that all 100 writes form one batch.
    let store = Store::open(
        &db.path,
        Options::default()
            .migrations(&["CREATE TABLE u(k INTEGER UNIQUE, v TEXT)"])
            .batch_rows(100)
            .linger(Duration::from_secs(2)),
    )
    .expect("open");
    let tickets: Vec<_> = (0..100)
        .map(|i| store.write("INSERT INTO u(k, v) VALUES (?1, ?2)", params![if i == 57 { 3 } else { i }, i]))
        .collect();
    let results: Vec<_> = tickets.into_iter().map(sqlweir::Ticket::wait).collect();
    let batches: BTreeSet<u64> = results.iter().filter_map(|r| r.as_ref().ok().map(|x| x.batch)).collect();
    assert_eq!(batches.len(), 1, "all in one batch");
    let errors: Vec<(usize, &WriteError)> =
        results.iter().enumerate().filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e))).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, 57);
    assert_eq!(errors[0].1.kind(), Some(ErrorKind::Constraint));
    assert_eq!(errors[0].1.sqlite_code(), Some(2067), "SQLITE_CONSTRAINT_UNIQUE");
    assert!(errors[0].1.to_string().contains("UNIQUE constraint failed: u.k"), "{}", errors[0].1);
    assert_eq!(count(&store, "SELECT count(*) FROM u"), 99);
    assert_eq!(count(&store, "SELECT count(*) FROM u WHERE v = 57"), 0);
    assert_eq!(store.metrics().rejected, 1);
}

#[test]
fn a_write_that_rolls_back_the_transaction_is_replayed_out() {
    let db = temp_db();
    let store = Store::open(
        &db.path,
        Options::default()
            .migrations(&[
                "CREATE TABLE r(v INTEGER)",
                "CREATE TRIGGER no_13 BEFORE INSERT ON r WHEN NEW.v = 13 BEGIN SELECT RAISE(ROLLBACK, 'thirteen refused'); END",
            ])
            .linger(Duration::from_secs(2))
            .batch_rows(20),
    )
    .expect("open");
    let tickets: Vec<_> = (0..20).map(|i| store.write("INSERT INTO r(v) VALUES (?1)", params![i])).collect();
    let results: Vec<_> = tickets.into_iter().map(sqlweir::Ticket::wait).collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert!(results[13].as_ref().is_err_and(|e| e.to_string().contains("thirteen refused")));
    let values: Vec<i64> = store.query_as("SELECT v FROM r ORDER BY v", &[]).expect("query");
    assert_eq!(values, (0..20).filter(|v| *v != 13).collect::<Vec<i64>>(), "nothing lost, nothing applied twice");
    assert_eq!(store.metrics().replays, 1);
}

#[test]
fn write_many_reports_rejected_rows_and_commits_the_rest() {
    let db = temp_db();
    let store = open(&db, Options::default());
    let rows: Vec<Vec<Value>> = (0..1000)
        .map(|i| if i % 100 == 7 { params![i, None::<String>, "x"] } else { params![i, "bulk", "x"] })
        .collect();
    let outcome = store.write_many(INSERT, rows).wait().expect("write_many");
    assert_eq!(outcome.committed, 990);
    let rejected: Vec<usize> = outcome.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(rejected, (0..10).map(|k| k * 100 + 7).collect::<Vec<_>>());
    assert!(outcome.rejected.iter().all(|(_, e)| e.kind() == Some(ErrorKind::Constraint)));
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 990);
}

#[test]
fn bad_writes_get_their_own_typed_errors() {
    let db = temp_db();
    let store = open(&db, Options::default());
    let good = store.write(INSERT, params![1, "ok", "x"]);
    let nan = store.write(INSERT, params![f64::NAN, "nan", "x"]).wait().unwrap_err();
    assert_eq!(nan.code(), "InvalidInput");
    assert!(nan.to_string().contains("NaN"), "{nan}");
    let count_err = store.write(INSERT, params![1, "too few"]).wait().unwrap_err();
    assert_eq!(count_err.code(), "InvalidInput");
    assert!(count_err.to_string().contains("3 parameters but 2"), "{count_err}");
    let sql_err = store.write("INSERT INTO nowhere VALUES (?1)", params![1]).wait().unwrap_err();
    assert_eq!(sql_err.code(), "Sql");
    assert!(sql_err.to_string().contains("no such table: nowhere"), "{sql_err}");
    let read = store.write("SELECT * FROM events", params![]).wait().unwrap_err();
    assert_eq!(read.code(), "InvalidInput");
    let commit = store.write("COMMIT", params![]).wait().unwrap_err();
    assert_eq!(commit.code(), "InvalidInput", "transaction control cannot break a batch");
    let multi =
        store.write("INSERT INTO events(source) VALUES ('a'); DROP TABLE events", params![]).wait().unwrap_err();
    assert_eq!(multi.code(), "InvalidInput");
    let inf = store.write(INSERT, params![f64::INFINITY, "inf", "x"]).wait();
    assert!(inf.is_ok(), "infinity is stored as it is");
    good.wait().expect("the good write is unaffected");
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 2);
}

#[test]
fn full_queue_fails_fast_when_asked_and_hands_nothing_to_the_writer() {
    let db = temp_db();
    let store = open(
        &db,
        Options::default()
            .queue_capacity(10)
            .backpressure(Backpressure::Fail)
            .linger(Duration::from_secs(30))
            .batch_rows(1000),
    );
    // The writer lingers (batch not full), so the queue fills.
    let tickets: Vec<_> = (0..10).map(|i| store.write(INSERT, params![i, "q", "x"])).collect();
    let refused = store.write(INSERT, params![99, "q", "x"]).wait().unwrap_err();
    assert_eq!(refused, WriteError::QueueFull { capacity: 10 });
    assert!(refused.is_transient());
    store.flush().wait().expect("flush");
    for t in tickets {
        t.wait().expect("accepted writes commit");
    }
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 10);
}

#[test]
fn full_queue_waits_by_default_and_loses_nothing() {
    let db = temp_db();
    let store = open(&db, Options::default().queue_capacity(8));
    let store2 = store.clone();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let store = store2.clone();
            std::thread::spawn(move || {
                let tickets: Vec<_> = (0..500).map(|i| store.write(INSERT, params![i, format!("w{p}"), "x"])).collect();
                tickets.into_iter().flat_map(sqlweir::Ticket::wait).count()
            })
        })
        .collect();
    let ok: usize = producers.into_iter().map(|t| t.join().expect("producer")).sum();
    assert_eq!(ok, 2000);
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 2000);
    let async_tickets: Vec<_> = (0..100).map(|i| store.write(INSERT, params![i, "async", "x"])).collect();
    assert!(block_on(futures::future::join_all(async_tickets)).iter().all(Result::is_ok));
    assert_eq!(count(&store, "SELECT count(*) FROM events WHERE source = 'async'"), 100);
}

#[test]
fn flush_waits_for_everything_accepted_before_it() {
    let db = temp_db();
    let store = open(&db, Options::default());
    let tickets: Vec<_> = (0..300).map(|i| store.write(INSERT, params![i, "f", "x"])).collect();
    store.flush().wait().expect("flush");
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 300, "flush resolved after all 300");
    drop(tickets);
}

#[test]
fn close_flushes_then_refuses_writes_and_queries() {
    let db = temp_db();
    let store = open(&db, Options::default());
    let pending: Vec<_> = (0..200).map(|i| store.write(INSERT, params![i, "c", "x"])).collect();
    store.close().expect("close");
    assert!(pending.into_iter().all(|t| t.wait().is_ok()), "close commits what was accepted");
    assert_eq!(store.write(INSERT, params![1, "late", "x"]).wait().unwrap_err(), WriteError::Closed);
    assert!(matches!(store.query("SELECT 1", &[]), Err(sqlweir::QueryError::Closed)));
    store.close().expect("closing twice is fine");
    let reopened = open(&db, Options::default());
    assert_eq!(count(&reopened, "SELECT count(*) FROM events"), 200);
    let wal = db.path.with_extension("db-wal");
    assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0, "close checkpointed");
}

#[test]
fn dropping_the_last_handle_flushes() {
    let db = temp_db();
    {
        let store = open(&db, Options::default());
        let clone = store.clone();
        for i in 0..100 {
            drop(clone.write(INSERT, params![i, "d", "x"]));
        }
    }
    let store = open(&db, Options::default());
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 100);
}

#[test]
fn in_memory_store_reads_its_own_writes() {
    let store = Store::open_in_memory(Options::default().migrations(&[common::EVENTS])).expect("open");
    let tickets: Vec<_> = (0..50).map(|i| store.write(INSERT, params![i, "m", "x"])).collect();
    for t in tickets {
        t.wait().expect("write");
    }
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 50);
    let other = Store::open_in_memory(Options::default().migrations(&[common::EVENTS])).expect("open");
    assert_eq!(count(&other, "SELECT count(*) FROM events"), 0, "each in-memory store is private");
    let shared = Arc::new(store);
    assert_eq!(shared.metrics().committed, 50);
}

#[test]
fn write_many_survives_a_row_that_rolls_back_the_transaction() {
    let db = temp_db();
    let store = Store::open(
        &db.path,
        Options::default().migrations(&[
            "CREATE TABLE r(v INTEGER)",
            "CREATE TRIGGER no_13 BEFORE INSERT ON r WHEN NEW.v = 13 BEGIN SELECT RAISE(ROLLBACK, 'thirteen refused'); END",
        ]),
    )
    .expect("open");
    let outcome =
        store.write_many("INSERT INTO r(v) VALUES (?1)", (0..20).map(|i| params![i]).collect()).wait().expect("many");
    assert_eq!(outcome.committed, 19);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].0, 13);
    let values: Vec<i64> = store.query_as("SELECT v FROM r ORDER BY v", &[]).expect("query");
    assert_eq!(values, (0..20).filter(|v| *v != 13).collect::<Vec<i64>>());
    let bad = store.write_many("INSERT INTO nowhere VALUES (?1)", vec![params![1], params![2]]).wait().expect("many");
    assert_eq!(bad.committed, 0);
    assert_eq!(bad.rejected.iter().map(|(i, e)| (*i, e.code())).collect::<Vec<_>>(), vec![(0, "Sql"), (1, "Sql")]);
}

/// Regression: under `Backpressure::Wait`, a ticket dropped while it waited for room used to
/// drop its write silently (it was never accepted, and nobody was told). Now the write is
/// queued past the capacity instead.
#[test]
fn a_dropped_ticket_waiting_for_room_still_writes() {
    let db = temp_db();
    let store = open(&db, Options::default().queue_capacity(2).linger(Duration::from_secs(30)).batch_rows(1000));
    let held: Vec<_> = (0..2).map(|i| store.write(INSERT, params![i, "held", "x"])).collect();
    for i in 0..50 {
        drop(store.write(INSERT, params![i, "dropped", "x"]));
    }
    store.flush().wait().expect("flush");
    for t in held {
        t.wait().expect("held write");
    }
    assert_eq!(count(&store, "SELECT count(*) FROM events WHERE source = 'dropped'"), 50);
    assert_eq!(store.metrics().accepted, 52);
}
