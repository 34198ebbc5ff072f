//! The browser store in a real dedicated worker on OPFS: open, write, reopen; salvage; retry;
//! job locks. Run with `scripts/test-browser` (wasm-bindgen-test-runner in headless Chromium).
//! Every run gets a fresh browser profile, so OPFS starts empty; all tests share one worker and
//! therefore one pool configuration, and each test uses its own database name.
#![cfg(target_arch = "wasm32")]
// clippy's allow-unwrap-in-tests does not see #[wasm_bindgen_test] functions as tests.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sqlweir_core::{HealthStatus, Value, params};
use sqlweir_wasm::{Coded, LockError, OpenError, Options, Store};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

fn options() -> Options {
    Options::default().migrations(&["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)"])
}

fn count(store: &Store) -> i64 {
    match store.query("SELECT count(*) AS n FROM t", &[]).unwrap().rows[0][0] {
        Value::Integer(n) => n,
        ref other => panic!("count is an integer, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn writes_survive_close_and_reopen() {
    let store = Store::open("reopen.db", options()).await.unwrap();
    let writes: Vec<_> =
        (0..500).map(|i| store.write("INSERT INTO t(v) VALUES (?1)", params![format!("row {i}")])).collect();
    let receipts = futures_join(writes).await;
    assert_eq!(receipts.iter().filter(|r| matches!(r, Ok(r) if r.changes == 1)).count(), 500);
    let m = store.metrics();
    assert_eq!((m.accepted, m.committed, m.rejected), (500, 500, 0));
    assert!(m.batches < 500, "writes were batched: {} batches", m.batches);
    store.close().await.unwrap();

    let err = store.write("INSERT INTO t(v) VALUES ('late')", vec![]).await.unwrap_err();
    assert_eq!(err.code(), "Closed");

    let again = Store::open("reopen.db", options()).await.unwrap();
    assert_eq!(count(&again), 500);
    let found = again.query("SELECT v FROM t WHERE id = ?1", &[Value::Integer(42)]).unwrap();
    assert_eq!(found.columns, vec!["v".to_string()]);
    assert_eq!(found.rows, vec![vec![Value::Text("row 41".into())]]);
    again.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn one_unique_violation_is_rejected_alone_and_the_rest_commit() {
    let store = Store::open("salvage.db", options()).await.unwrap();
    store.write("INSERT INTO t(v) VALUES ('taken')", vec![]).await.unwrap();
    // Submitted in one tick, so they share a batch: 9 new values and one duplicate.
    let values: Vec<String> = (0..10).map(|i| if i == 4 { "taken".into() } else { format!("v{i}") }).collect();
    let writes: Vec<_> = values.iter().map(|v| store.write("INSERT INTO t(v) VALUES (?1)", params![v])).collect();
    let results = futures_join(writes).await;
    let rejected: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
    assert_eq!(rejected, vec![4]);
    let e = results[4].as_ref().unwrap_err();
    assert_eq!(e.code(), "Constraint");
    assert_eq!(e.sqlite_code(), Some(2067), "SQLITE_CONSTRAINT_UNIQUE");
    let batches: std::collections::BTreeSet<u64> =
        results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.batch).collect();
    assert_eq!(batches.len(), 1, "the nine good writes committed together");
    assert_eq!(count(&store), 10);

    let many = store
        .write_many("INSERT INTO t(v) VALUES (?1)", vec![params!["m1"], params!["taken"], params!["m2"], params![1, 2]])
        .await
        .unwrap();
    assert_eq!(many.committed, 2);
    let codes: Vec<(usize, &str)> = many.rejected.iter().map(|(i, e)| (*i, e.code())).collect();
    assert_eq!(codes, vec![(1, "Constraint"), (3, "InvalidInput")]);
    assert_eq!(count(&store), 12);
    let m = store.metrics();
    assert_eq!((m.committed, m.rejected), (12, 3));
    store.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn busy_batches_are_retried_and_commit() {
    let fast_retry = sqlweir_wasm::RetryOptions { base_ms: 1.0, cap_ms: 4.0, max_attempts: 10, budget_ms: 1000.0 };
    let store =
        Store::open("retry.db", Options { retry: fast_retry, breaker_cooldown_ms: 5.0, ..options() }).await.unwrap();
    store.inject_busy(3);
    let receipt = store.write("INSERT INTO t(v) VALUES ('after busy')", vec![]).await.unwrap();
    assert_eq!(receipt.changes, 1);
    let m = store.metrics();
    assert_eq!((m.retries, m.committed, m.failed), (3, 1, 0));
    assert_eq!(m.last_error.as_deref().map(|e| e.contains("(code 5)")), Some(true));
    assert_eq!(count(&store), 1);

    // Past the attempt budget every write of the batch fails with Busy, and nothing commits.
    store.inject_busy(100);
    let err = store.write("INSERT INTO t(v) VALUES ('never')", vec![]).await.unwrap_err();
    assert_eq!(err.code(), "Busy");
    assert_eq!(err.sqlite_code(), Some(5));
    assert_eq!(count(&store), 1);
    assert_ne!(store.health().status, HealthStatus::Ok);
    store.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn bad_sql_and_bad_values_are_typed_errors() {
    let store = Store::open("errors.db", options()).await.unwrap();
    let e = store.write("INSERT INTO nowhere VALUES (1)", vec![]).await.unwrap_err();
    assert_eq!((e.code(), e.sqlite_code()), ("Sql", Some(1)));
    let e = store.write("INSERT INTO t(v) VALUES (?1)", vec![]).await.unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    let e = store.write("INSERT INTO t(v) VALUES (?1)", params![f64::NAN]).await.unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    let e = store.query("DELETE FROM t", &[]).unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    assert_eq!(count(&store), 0);
    store.close().await.unwrap();
    assert_eq!(store.query("SELECT 1", &[]).unwrap_err().code(), "Closed");
}

#[wasm_bindgen_test]
async fn a_database_cannot_be_open_twice_in_one_worker() {
    let store = Store::open("twice.db", options()).await.unwrap();
    let Err(e) = Store::open("twice.db", options()).await else { panic!("second open must fail") };
    assert!(matches!(e, OpenError::InUse { .. }), "{e}");
    store.close().await.unwrap();
    Store::open("twice.db", options()).await.unwrap().close().await.unwrap();
}

#[wasm_bindgen_test]
async fn a_failed_migration_leaves_the_previous_version() {
    let steps = ["CREATE TABLE a(x)", "CREATE TABLE b(", "CREATE TABLE c(x)"];
    let Err(e) = Store::open("migrate.db", Options::default().migrations(&steps)).await else {
        panic!("migration 1 is malformed")
    };
    assert!(matches!(e, OpenError::Migration { step: 1, .. }), "{e}");
    assert_eq!(e.code(), "Migration");
    let fixed = ["CREATE TABLE a(x)", "CREATE TABLE b(x)", "CREATE TABLE c(x)"];
    let store = Store::open("migrate.db", Options::default().migrations(&fixed)).await.unwrap();
    let version = store.query("PRAGMA user_version", &[]).unwrap();
    assert_eq!(version.rows[0][0], Value::Integer(3));
    store.close().await.unwrap();
    let Err(e) = Store::open("migrate.db", Options::default().migrations(&fixed[..2])).await else {
        panic!("fewer migrations than applied must fail")
    };
    assert!(matches!(e, OpenError::SchemaTooNew { found: 3, known: 2 }), "{e}");
}

#[wasm_bindgen_test]
async fn job_lock_is_exclusive_and_keeps_history() {
    let store = Store::open("jobs.db", options()).await.unwrap();
    let token = store.lock("sync", "tab-1", None).await.unwrap();
    let err = store.lock("sync", "tab-2", None).await.unwrap_err();
    assert!(matches!(err, LockError::InProgress { ref holder, .. } if holder == "tab-1"), "{err}");
    let err = store.lock("sync", "tab-2", Some(Duration::from_millis(30))).await.unwrap_err();
    assert_eq!(err.code(), "InProgress");
    assert!(store.unlock(token, None));
    assert!(!store.unlock(token, None), "a token releases once");
    let token = store.lock("sync", "tab-2", None).await.unwrap();
    assert!(store.unlock(token, Some("remote down".into())));
    let (held, runs) = store.job_status("sync");
    assert_eq!(held, None);
    assert_eq!(runs.iter().map(|r| r.holder.as_str()).collect::<Vec<_>>(), vec!["tab-1", "tab-2"]);
    store.close().await.unwrap();
}

/// Awaits futures in order; they were all submitted before the first await, so they share
/// batches the way parallel JavaScript promises do.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    // Poll each once so every write is submitted before any result is awaited.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut ready: Vec<Option<F::Output>> = pinned
        .iter_mut()
        .map(|f| match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
        .collect();
    let mut out = Vec::with_capacity(pinned.len());
    for (f, r) in pinned.into_iter().zip(ready.iter_mut()) {
        out.push(match r.take() {
            Some(v) => v,
            None => f.await,
        });
    }
    out
}
