//! The conformance suite: one set of cases, written once, that every engine runs (SQLite here;
//! PostgreSQL with the feature `postgres` under `scripts/test-postgres`). Each case states a
//! promise of the write path that must hold whatever the database: salvage, replay after a full
//! rollback, retry under contention, the breaker, flush and close, receipts, typed errors and
//! transactions. The browser's `wasm/js/test/conformance.test.js` has the same case names.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use sqlweir::{HealthStatus, Options, RetryPolicy, Store, TxError, WriteError, params};

const SCHEMA: &str = "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)";
const INSERT: &str = "INSERT INTO t(k, v) VALUES (?1, ?2)";

/// What differs between engines: opening a fresh database, holding its write lock from
/// outside, and the statement that makes the database roll the whole transaction back.
trait Engine {
    /// Opens a store on a fresh, empty database with `SCHEMA`.
    fn open(options: Options) -> (Store, Outside);
    /// An insert that, on a duplicate key, makes the database roll back the whole transaction.
    const ROLLING_BACK_INSERT: &'static str;
    /// Whether receipts carry the inserted rowid.
    const HAS_ROWID: bool;
    /// Whether writes with a request id (`write_once`) are supported; without, they fail with
    /// `Unsupported`.
    const RECORDS_REQUESTS: bool;
}

/// A way into the store's database from outside the store.
enum Outside {
    /// The file, and its directory, removed when the test ends.
    Sqlite { path: std::path::PathBuf, _dir: tempfile::TempDir },
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl Outside {
    /// Takes the database's write lock from another connection until the sender is used.
    fn hold_write_lock(&self) -> (mpsc::Sender<()>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<()>();
        let (held_tx, held_rx) = mpsc::channel::<()>();
        let holder = match self {
            Outside::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("outside connection");
                std::thread::spawn(move || {
                    conn.execute_batch("BEGIN EXCLUSIVE").expect("exclusive lock");
                    held_tx.send(()).expect("tell");
                    let _ = rx.recv();
                    conn.execute_batch("COMMIT").expect("release");
                })
            }
            #[cfg(feature = "postgres")]
            Outside::Postgres(url) => {
                let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).expect("outside connection");
                std::thread::spawn(move || {
                    client.batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE").expect("table lock");
                    held_tx.send(()).expect("tell");
                    let _ = rx.recv();
                    client.batch_execute("COMMIT").expect("release");
                })
            }
        };
        held_rx.recv().expect("the lock is held");
        (tx, holder)
    }
}

struct Sqlite;

impl Engine for Sqlite {
    fn open(options: Options) -> (Store, Outside) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("conformance.db");
        let store = Store::open(&path, options.migrations(&[SCHEMA])).expect("open");
        (store, Outside::Sqlite { path, _dir: dir })
    }
    const ROLLING_BACK_INSERT: &'static str = "INSERT OR ROLLBACK INTO t(k, v) VALUES (?1, ?2)";
    const HAS_ROWID: bool = true;
    const RECORDS_REQUESTS: bool = true;
}

#[cfg(feature = "postgres")]
struct Postgres;

#[cfg(feature = "postgres")]
impl Engine for Postgres {
    fn open(options: Options) -> (Store, Outside) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static DATABASES: AtomicU64 = AtomicU64::new(0);
        let server = std::env::var("SQLWEIR_PG").expect("SQLWEIR_PG must name a server: run scripts/test-postgres");
        let name = format!("conformance_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        let mut admin = ::postgres::Client::connect(&server, ::postgres::NoTls).expect("admin connection");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        let url = format!("{} dbname={name}", server.replace("dbname=postgres", ""));
        let store = Store::open_postgres(&url, options.migrations(&[SCHEMA])).expect("open");
        (store, Outside::Postgres(url))
    }
    // PostgreSQL aborts the transaction on any error.
    const ROLLING_BACK_INSERT: &'static str = INSERT;
    const HAS_ROWID: bool = false;
    const RECORDS_REQUESTS: bool = false;
}

fn keys(store: &Store) -> Vec<i64> {
    store.query_as("SELECT k FROM t ORDER BY k", &[]).expect("keys")
}

/// Commits the row `k` before the test's own writes (a flush ends the lingering batch).
fn seed(store: &Store, k: i64) {
    let seeded = store.write(INSERT, params![k, "seed"]);
    store.flush().wait().expect("flush");
    seeded.wait().expect("seed row");
}

/// Options that put every write of a test into one batch: a long linger and a flush to end it.
fn one_batch() -> Options {
    Options::default().linger(Duration::from_secs(30)).batch_rows(10_000).jitter_seed(7)
}

fn salvage_rejects_a_bad_write_alone_and_commits_the_rest<E: Engine>() {
    let (store, _outside) = E::open(one_batch());
    seed(&store, 3);
    let tickets: Vec<_> = (1..=5).map(|k| store.write(INSERT, params![k, format!("v{k}")])).collect();
    let null = store.write(INSERT, params![6, None::<String>]);
    store.flush().wait().expect("flush");
    let results: Vec<_> = tickets.into_iter().map(sqlweir::Ticket::wait).collect();
    let batches: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok().map(|r| r.batch)).collect();
    assert_eq!(batches.len(), 4, "{results:?}");
    assert!(batches.windows(2).all(|w| w[0] == w[1]), "the good writes committed together: {batches:?}");
    assert_eq!(results[2].as_ref().expect_err("must be refused").code(), "Constraint", "the duplicate key");
    assert_eq!(null.wait().expect_err("must be refused").code(), "Constraint", "the NOT NULL violation");
    assert_eq!(keys(&store), vec![1, 2, 3, 4, 5]);
    let m = store.metrics();
    assert_eq!((m.committed, m.rejected, m.failed), (5, 2, 0), "{m:?}");
    store.close().expect("close");
}

fn replay_after_a_full_rollback_applies_each_good_write_once<E: Engine>() {
    let (store, _outside) = E::open(one_batch());
    seed(&store, 2);
    let good: Vec<_> = [1, 3, 4].iter().map(|k| store.write(INSERT, params![*k, "good"])).collect();
    let bad = store.write(E::ROLLING_BACK_INSERT, params![2, "duplicate"]);
    let after = store.write(INSERT, params![5, "after"]);
    store.flush().wait().expect("flush");
    assert_eq!(bad.wait().expect_err("must be refused").code(), "Constraint");
    for t in good {
        t.wait().expect("good write");
    }
    after.wait().expect("the write after the bad one");
    assert_eq!(keys(&store), vec![1, 2, 3, 4, 5], "nothing lost, nothing applied twice");
    assert!(store.metrics().replays >= 1, "the batch was replayed: {:?}", store.metrics());
    store.close().expect("close");
}

fn retry_under_contention_loses_no_write<E: Engine>() {
    let (store, outside) = E::open(Options::default().jitter_seed(1));
    store.write(INSERT, params![0, "warmup"]).wait().expect("warmup");
    let (release, holder) = outside.hold_write_lock();
    let tickets: Vec<_> = (1..=50).map(|k| store.write(INSERT, params![k, "during"])).collect();
    while store.metrics().retries < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_ne!(store.health().status, HealthStatus::Ok, "contention shows in health");
    release.send(()).expect("release");
    holder.join().expect("holder");
    for t in tickets {
        t.wait().expect("no write lost to the lock");
    }
    assert_eq!(keys(&store).len(), 51);
    let m = store.metrics();
    assert!(m.retries >= 2, "{m:?}");
    assert_eq!((m.failed, m.rejected), (0, 0));
    store.close().expect("close");
}

fn contention_past_the_budget_fails_each_write_with_busy<E: Engine>() {
    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        max_attempts: 4,
        budget: Duration::from_secs(10),
    };
    let (store, outside) = E::open(Options::default().retry(policy).breaker(1000, Duration::ZERO));
    let (release, holder) = outside.hold_write_lock();
    let errors: Vec<WriteError> =
        (0..3).map(|k| store.write(INSERT, params![k, "x"]).wait().expect_err("must be refused")).collect();
    release.send(()).expect("release");
    holder.join().expect("holder");
    for e in &errors {
        assert!(matches!(e, WriteError::Busy { attempts: 4, .. }), "{e:?}");
        assert!(e.is_transient());
    }
    assert_eq!(store.metrics().failed, 3);
    store.write(INSERT, params![9, "after"]).wait().expect("the store works after the lock clears");
    assert_eq!(keys(&store), vec![9]);
    store.close().expect("close");
}

fn breaker_opens_under_a_held_lock_and_closes_after_it<E: Engine>() {
    let (store, outside) = E::open(Options::default().jitter_seed(2).breaker(3, Duration::from_millis(100)));
    store.write(INSERT, params![0, "warmup"]).wait().expect("warmup");
    let (release, holder) = outside.hold_write_lock();
    let during = store.write(INSERT, params![1, "during"]);
    while store.metrics().breaker_opened == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_ne!(store.health().status, HealthStatus::Ok);
    let queued = store.write(INSERT, params![2, "queued while open"]);
    release.send(()).expect("release");
    holder.join().expect("holder");
    during.wait().expect("the write during the lock commits after it");
    queued.wait().expect("the queued write commits");
    let m = store.metrics();
    assert_eq!(m.breaker, "closed");
    assert!(m.breaker_opened >= 1);
    assert_eq!(keys(&store), vec![0, 1, 2]);
    store.close().expect("close");
}

fn flush_waits_for_every_earlier_write_and_close_refuses_later_ones<E: Engine>() {
    let (store, _outside) = E::open(Options::default().linger(Duration::from_secs(30)).batch_rows(10_000));
    let tickets: Vec<_> = (1..=20).map(|k| store.write(INSERT, params![k, "x"])).collect();
    store.flush().wait().expect("flush");
    assert_eq!(store.metrics().queue_depth, 0, "nothing waits after a flush");
    assert_eq!(keys(&store).len(), 20, "a flush returns after the commit");
    store.close().expect("close");
    store.close().expect("closing twice is fine");
    assert!(matches!(store.write(INSERT, params![99, "late"]).wait(), Err(WriteError::Closed)));
    for t in tickets {
        t.wait().expect("accepted before close");
    }
}

fn receipts_report_changes_rowid_and_batch<E: Engine>() {
    let (store, _outside) = E::open(Options::default());
    let first = store.write(INSERT, params![10, "a"]).wait().expect("insert");
    assert_eq!(first.changes, 1);
    assert!(first.batch >= 1);
    if E::HAS_ROWID {
        assert_eq!(first.last_rowid, 10);
    }
    store.write(INSERT, params![11, "b"]).wait().expect("insert");
    let update = store.write("UPDATE t SET v = ?1 WHERE k >= ?2", params!["c", 10]).wait().expect("update");
    assert_eq!(update.changes, 2);
    assert!(update.batch > first.batch);
    let many =
        store.write_many(INSERT, vec![params![20, "x"], params![21, "y"], params![20, "dup"]]).wait().expect("many");
    assert_eq!(many.committed, 2);
    assert_eq!(many.rejected.iter().map(|(i, e)| (*i, e.code())).collect::<Vec<_>>(), vec![(2, "Constraint")]);
    store.close().expect("close");
}

fn errors_are_typed_and_name_what_to_fix<E: Engine>() {
    let (store, _outside) = E::open(Options::default());
    let cases: [(&str, Vec<sqlweir::Value>, &str); 4] = [
        ("INSERT INTO missing(k) VALUES (?1)", params![1], "Sql"),
        ("INSERT INTO t(k, v) VALUES (?1, ?2)", params![1, None::<String>], "Constraint"),
        ("INSERT INTO t(k, v) VALUES (?1, ?2)", params![1, f64::NAN], "InvalidInput"),
        ("", params![], "InvalidInput"),
    ];
    for (sql, values, code) in cases {
        let e = store.write(sql, values).wait().expect_err("must be refused");
        assert_eq!(e.code(), code, "{sql:?}: {e}");
        assert!(!e.is_transient(), "{e}");
        assert!(!e.to_string().is_empty());
    }
    assert!(keys(&store).is_empty());
    store.write(INSERT, params![1, "ok"]).wait().expect("the store goes on");
    store.close().expect("close");
}

fn transactions_commit_whole_or_leave_nothing<E: Engine>() {
    let (store, _outside) = E::open(Options::default());
    let seen = store
        .transaction(|tx| {
            tx.execute(INSERT, params![1, "a"])?;
            tx.execute(INSERT, params![2, "b"])?;
            let n: Vec<i64> = tx.query_as("SELECT count(*) FROM t", &[])?;
            Ok(n[0])
        })
        .wait()
        .expect("commit");
    assert_eq!(seen, 2, "reads inside see the transaction's own writes");
    let aborted = store
        .transaction(|tx| {
            tx.execute(INSERT, params![3, "c"])?;
            Err::<(), _>(TxError::abort("changed my mind"))
        })
        .wait();
    assert!(matches!(aborted, Err(TxError::Aborted(_))), "{aborted:?}");
    let failed = store
        .transaction(|tx| {
            tx.execute(INSERT, params![4, "d"])?;
            tx.execute(INSERT, params![1, "duplicate"])?;
            Ok(())
        })
        .wait();
    assert!(matches!(&failed, Err(TxError::Write(e)) if e.code() == "Constraint"), "{failed:?}");
    assert_eq!(keys(&store), vec![1, 2], "an aborted or failed transaction leaves nothing");
    let m = store.metrics();
    assert_eq!((m.committed, m.rejected), (1, 2), "a transaction counts as one entry");
    store.close().expect("close");
}

fn a_write_sent_again_with_its_request_id_applies_once<E: Engine>() {
    let (store, _outside) = E::open(Options::default());
    let id = || sqlweir::RequestId::new("client", 1);
    let first = store.write_once(id(), INSERT, params![1, "once"]).wait();
    if !E::RECORDS_REQUESTS {
        let e = first.expect_err("no request markers on this engine");
        assert_eq!(e.code(), "Unsupported", "{e}");
        assert!(e.to_string().contains("not supported"), "{e}");
        assert_eq!(store.forget_requests("client", 2).expect_err("forget").code(), "Unsupported");
        assert_eq!(keys(&store), Vec::<i64>::new(), "nothing written");
        store.close().expect("close");
        return;
    }
    let first = first.expect("first");
    let again = store.write_once(id(), INSERT, params![1, "once"]).wait().expect("answered, not a duplicate key");
    assert_eq!(again, first);
    assert_eq!(keys(&store), vec![1]);
    store.close().expect("close");
}

macro_rules! conformance {
    ($engine:ty) => {
        #[test]
        fn salvage_rejects_a_bad_write_alone_and_commits_the_rest() {
            super::salvage_rejects_a_bad_write_alone_and_commits_the_rest::<$engine>();
        }
        #[test]
        fn replay_after_a_full_rollback_applies_each_good_write_once() {
            super::replay_after_a_full_rollback_applies_each_good_write_once::<$engine>();
        }
        #[test]
        fn retry_under_contention_loses_no_write() {
            super::retry_under_contention_loses_no_write::<$engine>();
        }
        #[test]
        fn contention_past_the_budget_fails_each_write_with_busy() {
            super::contention_past_the_budget_fails_each_write_with_busy::<$engine>();
        }
        #[test]
        fn breaker_opens_under_a_held_lock_and_closes_after_it() {
            super::breaker_opens_under_a_held_lock_and_closes_after_it::<$engine>();
        }
        #[test]
        fn flush_waits_for_every_earlier_write_and_close_refuses_later_ones() {
            super::flush_waits_for_every_earlier_write_and_close_refuses_later_ones::<$engine>();
        }
        #[test]
        fn receipts_report_changes_rowid_and_batch() {
            super::receipts_report_changes_rowid_and_batch::<$engine>();
        }
        #[test]
        fn errors_are_typed_and_name_what_to_fix() {
            super::errors_are_typed_and_name_what_to_fix::<$engine>();
        }
        #[test]
        fn a_write_sent_again_with_its_request_id_applies_once() {
            super::a_write_sent_again_with_its_request_id_applies_once::<$engine>();
        }
        #[test]
        fn transactions_commit_whole_or_leave_nothing() {
            super::transactions_commit_whole_or_leave_nothing::<$engine>();
        }
    };
}

mod sqlite {
    conformance!(super::Sqlite);
}

#[cfg(feature = "postgres")]
mod postgres {
    conformance!(super::Postgres);
}
