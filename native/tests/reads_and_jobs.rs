//! Queries beside the writer, job locks, migrations and open errors.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{EVENTS, INSERT, count, open, temp_db};
use sqlweir::{JobOutcome, LockError, OpenError, Options, Store, Wait, params};

#[test]
fn queries_run_while_a_long_batch_is_committing() {
    let db = temp_db();
    let store = open(&db, Options::default());
    store.write(INSERT, params![0, "seed", "x"]).wait().expect("seed");
    // One write that inserts two million rows keeps the writer busy for a while.
    let long = store.write(
        "INSERT INTO events(ts, source, payload) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000) \
         SELECT i, 'bulk', 'payload' FROM n",
        params![],
    );
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let waiter = std::thread::spawn(move || {
        let r = long.wait();
        flag.store(true, Ordering::SeqCst);
        r
    });
    let mut answered_during = 0;
    while !done.load(Ordering::SeqCst) {
        let n = count(&store, "SELECT count(*) FROM events");
        // Before the commit a reader sees only the seed row; between COMMIT and the ack it may
        // already see all of it; never a part.
        assert!(n == 1 || n == 2_000_001, "a reader saw a batch half applied: {n} rows");
        if n == 1 {
            answered_during += 1;
        }
    }
    // Inserting two million rows takes far longer than dozens of count queries on one row.
    assert!(answered_during >= 20, "only {answered_during} queries answered while the batch committed");
    let receipt = waiter.join().expect("waiter").expect("long write");
    assert_eq!(receipt.changes, 2_000_000);
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 2_000_001, "a read after the ack sees it");
}

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct Wrong {
    nope: i64,
}

#[test]
fn query_errors_are_typed() {
    let db = temp_db();
    let store = open(&db, Options::default());
    let e = store.query("SELECT * FROM missing", &[]).unwrap_err();
    assert!(e.to_string().contains("no such table: missing"), "{e}");
    assert_eq!(e.sqlite_code(), Some(1));
    let e = store.query("INSERT INTO events(source) VALUES ('x')", &[]).unwrap_err();
    assert_eq!(e.sqlite_code().map(|c| c & 0xff), Some(8), "SQLITE_READONLY: queries cannot write");
    store.write(INSERT, params![1, "a", "b"]).wait().expect("write");
    let e = store.query_as::<Wrong>("SELECT id FROM events", &[]).unwrap_err();
    assert!(e.to_string().contains("row 0") && e.to_string().contains("nope"), "{e}");
}

#[test]
fn job_lock_fail_fast_timeout_and_history() {
    let store = Store::open_in_memory(Options::default()).expect("open");
    let guard = store.lock_as("nightly-sync", "cron", Wait::FailFast).expect("first lock");
    assert_eq!(guard.name(), "nightly-sync");
    let status = store.job_status("nightly-sync").expect("held");
    assert_eq!(status.holder, "cron");
    match store.lock_as("nightly-sync", "admin", Wait::FailFast) {
        Err(LockError::InProgress { holder, name, .. }) => {
            assert_eq!((holder.as_str(), name.as_str()), ("cron", "nightly-sync"));
        }
        other => panic!("expected InProgress, got {:?}", other.map(|g| g.name().to_owned())),
    }
    assert!(matches!(
        store.lock_as("nightly-sync", "admin", Wait::Timeout(Duration::from_millis(50))),
        Err(LockError::InProgress { .. })
    ));
    // A waiter gets the lock once the holder finishes.
    let store2 = store.clone();
    let waiter = std::thread::spawn(move || {
        store2.lock_as("nightly-sync", "admin", Wait::Timeout(Duration::from_secs(30))).map(|g| g.fail("upstream 500"))
    });
    std::thread::sleep(Duration::from_millis(50));
    guard.succeed();
    waiter.join().expect("waiter").expect("waiter got the lock");
    assert_eq!(store.job_status("nightly-sync"), None);
    let history = store.job_history("nightly-sync");
    assert_eq!(history.len(), 2);
    assert_eq!((history[0].holder.as_str(), &history[0].outcome), ("cron", &JobOutcome::Succeeded));
    assert_eq!(history[1].outcome, JobOutcome::Failed("upstream 500".into()));
    for _ in 0..25 {
        drop(store.lock("other", Wait::FailFast).expect("free"));
    }
    assert_eq!(store.job_history("other").len(), 20, "history keeps the last 20 runs");
    assert!(store.job_history("other")[0].holder.starts_with("pid "));
}

#[test]
fn migrations_run_once_and_track_user_version() {
    let db = temp_db();
    let steps = [EVENTS, "CREATE INDEX events_source ON events(source)"];
    let store = Store::open(&db.path, Options::default().migrations(&steps[..1])).expect("v1");
    store.write(INSERT, params![1, "a", "b"]).wait().expect("write");
    store.close().expect("close");
    let store = Store::open(&db.path, Options::default().migrations(&steps)).expect("v2");
    assert_eq!(count(&store, "PRAGMA user_version"), 2);
    assert_eq!(count(&store, "SELECT count(*) FROM events"), 1, "step 1 did not run again");
    assert_eq!(count(&store, "SELECT count(*) FROM sqlite_master WHERE name = 'events_source'"), 1);
    store.close().expect("close");
    match Store::open(&db.path, Options::default().migrations(&steps[..1])) {
        Err(OpenError::SchemaTooNew { found: 2, known: 1 }) => {}
        other => panic!("expected SchemaTooNew, got {:?}", other.err()),
    }
    match Store::open(&db.path, Options::default().migrations(&[steps[0], steps[1], "CREATE TABLE broken("])) {
        Err(e @ OpenError::Migration { step: 2, .. }) => assert!(e.to_string().contains("migration step 2")),
        other => panic!("expected Migration error, got {:?}", other.err()),
    }
    let store = Store::open(&db.path, Options::default().migrations(&steps)).expect("still at v2");
    assert_eq!(count(&store, "PRAGMA user_version"), 2);
    assert_eq!(store.metrics().journal_mode, "wal");
}

#[test]
fn opening_a_file_that_is_not_sqlite_says_so() {
    let db = temp_db();
    std::fs::write(&db.path, b"this is a text file, not a database, and it is long enough to have a header")
        .expect("write");
    match Store::open(&db.path, Options::default()) {
        Err(e @ OpenError::NotADatabase { .. }) => assert!(e.to_string().contains("is not an SQLite database"), "{e}"),
        other => panic!("expected NotADatabase, got {:?}", other.err()),
    }
    match Store::open(db.dir.path().join("no/such/dir/x.db"), Options::default()) {
        Err(OpenError::CannotOpen { .. }) => {}
        other => panic!("expected CannotOpen, got {:?}", other.err()),
    }
}

#[test]
fn a_second_store_on_an_open_file_is_refused_until_the_first_closes() {
    let db = temp_db();
    let first = open(&db, Options::default());
    let same_file_other_spelling = db.dir.path().join(".").join("test.db");
    match Store::open(&same_file_other_spelling, Options::default()) {
        Err(e @ OpenError::AlreadyOpen { .. }) => assert!(e.to_string().contains("clone the Store handle"), "{e}"),
        other => panic!("expected AlreadyOpen, got {:?}", other.err()),
    }
    first.write(INSERT, params![1, "first", "x"]).wait().expect("the first store still writes");
    first.close().expect("close");
    let second = open(&db, Options::default());
    assert_eq!(count(&second, "SELECT count(*) FROM events"), 1);
    drop(second);
    let third = open(&db, Options::default());
    assert_eq!(count(&third, "SELECT count(*) FROM events"), 1, "dropping the last handle gives the file back too");
}

#[test]
fn a_store_without_migrations_opens_any_existing_schema() {
    //! `Store::open(path, Options::default())` refused every file whose `user_version` was
    //! above 0 with `SchemaTooNew`, so the CLI refused databases the library itself had
    //! created, and so did any app database that uses `user_version` for its own purposes.
    let db = temp_db();
    let store = Store::open(&db.path, Options::default().migrations(&[EVENTS, "SELECT 1"])).expect("v2");
    store.write(INSERT, params![1, "a", "b"]).wait().expect("write");
    store.close().expect("close");
    let plain = Store::open(&db.path, Options::default()).expect("no migrations: the schema is taken as it is");
    assert_eq!(count(&plain, "PRAGMA user_version"), 2, "the version is left alone");
    plain.write(INSERT, params![2, "c", "d"]).wait().expect("writes go to the existing table");
    assert_eq!(count(&plain, "SELECT count(*) FROM events"), 2);
    plain.close().expect("close");
}

#[test]
fn async_queries_run_on_reader_threads_and_see_every_acked_write() {
    //! Async callers had only blocking reads: `query`/`query_as` blocked the executor's
    //! thread. `query_async` and `query_as_async` run on reader threads behind a future.
    let db = temp_db();
    let store = open(&db, Options::default().read_connections(2));
    for i in 0..100 {
        store.write(INSERT, params![i, "s", "p"]).wait().expect("write");
    }
    let queries: Vec<_> = (0..50)
        .map(|i| store.query_as_async::<i64>("SELECT count(*) FROM events WHERE ts >= ?1", &params![i]))
        .collect();
    let counts: Vec<i64> =
        futures::executor::block_on(futures::future::join_all(queries)).into_iter().map(|r| r.unwrap()[0]).collect();
    assert_eq!(counts, (0..50).map(|i| 100 - i).collect::<Vec<_>>());
    let rows =
        futures::executor::block_on(store.query_async("SELECT ts, source FROM events WHERE ts = 7", &[])).unwrap();
    assert_eq!(rows.columns, vec!["ts", "source"]);
    assert_eq!(rows.rows, vec![params![7, "s"]]);
    let bad = futures::executor::block_on(store.query_async("SELECT ?1", &params![f64::NAN])).unwrap_err();
    assert!(bad.to_string().contains("NaN"), "{bad}");
    let wrong = futures::executor::block_on(store.query_async("SELECT nope FROM events", &[])).unwrap_err();
    assert!(wrong.to_string().contains("nope"), "{wrong}");
    store.close().expect("close");
    let after = futures::executor::block_on(store.query_async("SELECT 1", &[]));
    assert!(matches!(after, Err(sqlweir::QueryError::Closed)), "{after:?}");
}
