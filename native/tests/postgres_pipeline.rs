//! The pipelined PostgreSQL writer against a real server (feature `postgres`;
//! `scripts/test-postgres` starts a throwaway cluster and sets `SQLWEIR_PG`): a batch's writes
//! are sent before any reply is read, and runs of a plain INSERT go as multi-row statements.
//! These tests put a rejected write in the middle of such a pipeline, kill the writer's session
//! in the middle of one and during COMMIT (before and after the commit record), and check that
//! every acked row is in the table exactly once.
//!
//! The kills are placed without timing: a trigger makes the writer wait on an advisory lock the
//! test holds (or the server waits for a synchronous standby that does not exist), the test
//! sees the writer waiting there in `pg_stat_activity`, and terminates it.
#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlweir::{Options, Store, Ticket, params};

fn server() -> String {
    std::env::var("SQLWEIR_PG").expect("SQLWEIR_PG must name a PostgreSQL server: run scripts/test-postgres")
}

static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The sync-rep test changes a server setting that makes every commit on the server wait; the
/// other tests of this file wait for it to finish instead of running under it.
static SERVER_SETTING: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    SERVER_SETTING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh database on the test server; returns its connection string.
fn fresh_db() -> String {
    let name = format!("pipeline_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
    let mut admin = postgres::Client::connect(&server(), postgres::NoTls).expect("admin connection");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
    format!("{} dbname={name}", server().replace("dbname=postgres", ""))
}

/// `plain` takes multi-row INSERTs; `triggered` has a row trigger, so its rows go one statement
/// each. Both refuse a duplicate `k`.
const SCHEMA: &[&str] = &[
    "CREATE TABLE plain(k bigint PRIMARY KEY, v text NOT NULL)",
    "CREATE TABLE triggered(k bigint PRIMARY KEY, v text NOT NULL)",
    "CREATE FUNCTION wait_if_told() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
       IF NEW.v = 'block' THEN PERFORM pg_advisory_lock_shared(7); PERFORM pg_advisory_unlock_shared(7); END IF; \
       RETURN NEW; END $$",
    "CREATE TRIGGER wait_if_told BEFORE INSERT ON triggered FOR EACH ROW EXECUTE FUNCTION wait_if_told()",
    // Runs at COMMIT: the constraint trigger is deferred to the end of the transaction.
    "CREATE TABLE at_commit(k bigint PRIMARY KEY, v text NOT NULL)",
    "CREATE CONSTRAINT TRIGGER wait_if_told AFTER INSERT ON at_commit DEFERRABLE INITIALLY DEFERRED \
       FOR EACH ROW EXECUTE FUNCTION wait_if_told()",
];

/// Options that put every write of a test into one batch: a long linger and a flush to end it.
/// The long `busy_timeout` (the writer's `lock_timeout`) lets the writer wait on the test's lock.
fn one_batch() -> Options {
    Options::default()
        .migrations(SCHEMA)
        .linger(Duration::from_secs(30))
        .batch_rows(10_000)
        .busy_timeout(Duration::from_secs(60))
        .jitter_seed(5)
}

/// Each value of `v` in `table` with how often it is there.
fn copies(store: &Store, table: &str) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> =
        store.query_as(&format!("SELECT v, count(*) FROM {table} GROUP BY v"), &[]).expect("query");
    rows.into_iter().collect()
}

fn rejected_in_the_middle(table: &str) -> sqlweir::MetricsSnapshot {
    let store = Store::open_postgres(&fresh_db(), one_batch()).expect("open");
    let insert = format!("INSERT INTO {table}(k, v) VALUES (?1, ?2)");
    let seeded = store.write(&insert, params![250, "seed"]);
    store.flush().wait().expect("flush");
    seeded.wait().expect("seed");
    let tickets: Vec<Ticket<sqlweir::Receipt>> =
        (0..500).map(|k| store.write(&insert, params![k, format!("w{k}")])).collect();
    store.flush().wait().expect("flush");
    let results: Vec<_> = tickets.into_iter().map(Ticket::wait).collect();
    let errors: Vec<(usize, &'static str)> =
        results.iter().enumerate().filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e.code()))).collect();
    assert_eq!(errors, vec![(250, "Constraint")], "only the duplicate is rejected");
    let batches: std::collections::BTreeSet<u64> =
        results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.batch).collect();
    assert_eq!(batches.len(), 1, "the 499 good writes committed together");
    assert!(results.iter().filter_map(|r| r.as_ref().ok()).all(|r| r.changes == 1));
    let landed = copies(&store, table);
    assert_eq!(landed.len(), 500, "the seed and the 499 good writes");
    assert!(landed.values().all(|n| *n == 1), "nothing applied twice");
    assert!(landed.contains_key("seed") && !landed.contains_key("w250"));
    let m = store.metrics();
    assert_eq!((m.committed, m.rejected, m.failed), (500, 1, 0), "{m:?}");
    store.close().expect("close");
    m
}

#[test]
fn a_rejected_write_in_the_middle_of_a_pipeline_of_single_row_statements_is_rejected_alone() {
    let _serial = exclusive();
    let m = rejected_in_the_middle("triggered");
    assert_eq!(m.replays, 1, "the optimistic pipeline was aborted once and replayed with savepoints");
}

#[test]
fn a_rejected_row_in_a_multi_row_insert_is_rejected_alone_without_a_replay() {
    let _serial = exclusive();
    let m = rejected_in_the_middle("plain");
    assert_eq!(m.replays, 0, "the chunk's own savepoint undid it; its rows went again one by one");
}

#[test]
fn write_many_through_multi_row_statements_reports_each_bad_row() {
    let _serial = exclusive();
    let store = Store::open_postgres(&fresh_db(), one_batch()).expect("open");
    let insert = "INSERT INTO plain(k, v) VALUES (?1, ?2)";
    let mut rows: Vec<Vec<sqlweir::Value>> = (0..1000).map(|k| params![k, format!("r{k}")]).collect();
    rows[10] = params![3, "duplicate of 3"];
    rows[600] = params![601, None::<String>];
    rows[999] = params!["not a number", "x"];
    let outcome = store.write_many(insert, rows);
    store.flush().wait().expect("flush");
    let outcome = outcome.wait().expect("committed");
    let rejected: Vec<(usize, &str)> = outcome.rejected.iter().map(|(i, e)| (*i, e.code())).collect();
    assert_eq!(rejected, vec![(10, "Constraint"), (600, "Constraint"), (999, "InvalidInput")]);
    assert_eq!(outcome.committed, 997);
    let landed = copies(&store, "plain");
    assert_eq!(landed.len(), 997);
    assert!(landed.values().all(|n| *n == 1));
    assert!(!landed.contains_key("duplicate of 3") && !landed.contains_key("r600") && landed.contains_key("r601"));
    assert_eq!(store.metrics().replays, 0);
    store.close().expect("close");
}

/// The writer's backend in `db` once it waits where `waiting` (a `pg_stat_activity` condition)
/// says; then terminates it. Returns whether a backend was terminated.
fn terminate_writer_when(admin: &mut postgres::Client, waiting: &str) -> bool {
    let sql = format!(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'sqlweir-writer' \
         AND datname = current_database() AND {waiting}"
    );
    loop {
        if let Some(row) = admin.query(&sql, &[]).expect("activity").first() {
            let pid: i32 = row.get(0);
            return admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).expect("terminate").get(0);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes 300 rows into `table` in one batch, the 150th marked `block`, and kills the writer's
/// session once it waits there; every write must still be acked and land once.
fn killed_while_blocked(table: &str, waiting: &str) -> sqlweir::MetricsSnapshot {
    let db = fresh_db();
    let store = Store::open_postgres(&db, one_batch()).expect("open");
    let mut admin = postgres::Client::connect(&db, postgres::NoTls).expect("admin");
    admin.batch_execute("SELECT pg_advisory_lock(7)").expect("hold the lock the trigger waits on");
    let insert = format!("INSERT INTO {table}(k, v) VALUES (?1, ?2)");
    let tickets: Vec<_> = (0..300)
        .map(|k| store.write(&insert, params![k, if k == 150 { "block".to_owned() } else { format!("w{k}") }]))
        .collect();
    let flushed = store.flush();
    assert!(terminate_writer_when(&mut admin, waiting), "the writer's session was terminated");
    admin.batch_execute("SELECT pg_advisory_unlock(7)").expect("release");
    flushed.wait().expect("flush");
    for (k, t) in tickets.into_iter().enumerate() {
        t.wait().unwrap_or_else(|e| panic!("write {k} failed: {e}"));
    }
    let landed = copies(&store, table);
    assert_eq!(landed.len(), 300, "every acked write is there");
    assert!(landed.values().all(|n| *n == 1), "none twice");
    let m = store.metrics();
    assert_eq!((m.committed, m.failed, m.rejected), (300, 0, 0), "{m:?}");
    store.close().expect("close");
    m
}

#[test]
fn a_session_killed_in_the_middle_of_a_pipeline_loses_and_doubles_nothing() {
    let _serial = exclusive();
    // Waiting inside the 150th INSERT: the 149 before it ran, the 150 after it were sent.
    let m = killed_while_blocked("triggered", "wait_event_type = 'Lock' AND query NOT ILIKE 'COMMIT%'");
    assert!(m.retries >= 1, "the batch was retried on a new connection: {m:?}");
}

#[test]
fn a_session_killed_during_commit_before_it_committed_is_retried_once() {
    let _serial = exclusive();
    // The deferred trigger runs inside COMMIT, before the commit record: nothing committed, the
    // token is absent, the batch is retried.
    let m = killed_while_blocked("at_commit", "wait_event_type = 'Lock' AND query ILIKE 'COMMIT%'");
    assert!(m.retries >= 1, "{m:?}");
}

/// Names a synchronous standby that never connects, until dropped (also when the test fails:
/// every commit on the server would wait otherwise).
struct MissingStandby(String);

impl MissingStandby {
    fn named(db: &str) -> Self {
        let guard = MissingStandby(db.to_owned());
        guard.set("ALTER SYSTEM SET synchronous_standby_names = 'sqlweir_nobody'");
        guard
    }

    fn set(&self, sql: &str) {
        let mut admin = postgres::Client::connect(&self.0, postgres::NoTls).expect("admin");
        admin.batch_execute(sql).expect("alter system");
        admin.batch_execute("SELECT pg_reload_conf()").expect("reload");
    }
}

impl Drop for MissingStandby {
    fn drop(&mut self) {
        self.set("ALTER SYSTEM RESET synchronous_standby_names");
    }
}

#[test]
fn a_session_killed_during_commit_after_it_committed_is_acked_once() {
    let _serial = exclusive();
    let db = fresh_db();
    let store = Store::open_postgres(&db, one_batch()).expect("open");
    let warmup = store.write("INSERT INTO plain(k, v) VALUES (?1, ?2)", params![-1, "warmup"]);
    store.flush().wait().expect("flush");
    warmup.wait().expect("warmup");
    let mut admin = postgres::Client::connect(&db, postgres::NoTls).expect("admin");
    // With a synchronous standby named that never connects, COMMIT writes its commit record
    // and then waits for the standby: the batch is committed when the session is killed there.
    let standby = MissingStandby::named(&db);
    let tickets: Vec<_> =
        (0..300).map(|k| store.write("INSERT INTO plain(k, v) VALUES (?1, ?2)", params![k, format!("w{k}")])).collect();
    let flushed = store.flush();
    let killed = terminate_writer_when(&mut admin, "wait_event = 'SyncRep'");
    drop(standby);
    assert!(killed, "the writer's session was terminated while waiting for the standby");
    flushed.wait().expect("flush");
    for (k, t) in tickets.into_iter().enumerate() {
        t.wait().unwrap_or_else(|e| panic!("write {k} failed: {e}"));
    }
    let landed = copies(&store, "plain");
    assert_eq!(landed.len(), 301, "the warmup and every acked write");
    assert!(landed.values().all(|n| *n == 1), "the token said committed: not applied again");
    let m = store.metrics();
    assert_eq!((m.committed, m.failed), (301, 0), "{m:?}");
    store.close().expect("close");
}
