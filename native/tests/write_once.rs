//! Writes with a request id (`Store::write_once`) on a real SQLite file: a write sent again
//! under the same id is answered from its marker and applied once, before and after a reopen,
//! while the first copy is still queued, through salvage and replay; a rejected write leaves no
//! marker; `forget_requests` keeps the marker table as small as the writes still unanswered.

use std::sync::Arc;

use sqlweir::{Options, RequestId, Store, Value, params};

const SCHEMA: &str = "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)";
const INSERT: &str = "INSERT INTO t(k, v) VALUES (?1, ?2)";
/// No key: a write applied twice shows as a second row.
const LOG: &str = "CREATE TABLE log(who TEXT NOT NULL, n INTEGER NOT NULL)";
const APPEND: &str = "INSERT INTO log(who, n) VALUES (?1, ?2)";

fn open(path: &std::path::Path) -> Store {
    Store::open(path, Options::default().migrations(&[SCHEMA, LOG])).expect("open")
}

fn count(store: &Store, sql: &str) -> i64 {
    store.query_as::<i64>(sql, &[]).expect("count")[0]
}

/// The numbers of the writes with a marker (a row holds one batch's markers of one sender).
fn recorded(store: &Store) -> Vec<u64> {
    let rows = store.query("SELECT receipts FROM _sqlweir_requests", &[]).expect("markers").rows;
    let mut seqs: Vec<u64> = rows
        .iter()
        .flat_map(|row| match &row[0] {
            Value::Blob(receipts) => sqlweir::Recorded::seqs(receipts).expect("a marker row reads back"),
            other => panic!("a marker row holds {other:?}, not a blob"),
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

fn markers(store: &Store) -> i64 {
    recorded(store).len() as i64
}

#[test]
fn a_write_sent_again_is_answered_with_its_first_receipt_even_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("once.db");
    let store = open(&path);
    let id = || RequestId::new("client-1", 1);
    let first = store.write_once(id(), APPEND, params!["a", 1]).wait().expect("first");
    let again = store.write_once(id(), APPEND, params!["a", 1]).wait().expect("again");
    assert_eq!(again, first);
    store.close().expect("close");
    let store = open(&path);
    let after_reopen = store.write_once(id(), APPEND, params!["a", 1]).wait().expect("after reopen");
    assert_eq!(after_reopen, first, "the marker is in the file");
    assert_eq!(count(&store, "SELECT count(*) FROM log"), 1, "applied once");
    assert_eq!(markers(&store), 1);
    // Another id of the same client is a different write.
    store.write_once(RequestId::new("client-1", 2), APPEND, params!["a", 1]).wait().expect("second write");
    assert_eq!(count(&store, "SELECT count(*) FROM log"), 2);
    store.close().expect("close");
}

#[test]
fn copies_sent_from_many_threads_at_once_apply_once_and_all_get_the_same_receipt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&dir.path().join("race.db")));
    // 8 threads each send the same 200 writes (ids 0..200), so most copies meet their first
    // one in the queue or in the same batch, not only in the table.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let tickets: Vec<_> = (0..200u64)
                    .map(|n| store.write_once(RequestId::new("c", n), APPEND, params!["c", n as i64]))
                    .collect();
                tickets.into_iter().map(|t| t.wait().expect("every copy is acked")).collect::<Vec<_>>()
            })
        })
        .collect();
    let receipts: Vec<Vec<_>> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    for r in &receipts[1..] {
        assert_eq!(r, &receipts[0], "every copy is answered as the one that ran");
    }
    assert_eq!(count(&store, "SELECT count(*) FROM log"), 200);
    assert_eq!(count(&store, "SELECT count(DISTINCT n) FROM log"), 200);
    assert_eq!(markers(&store), 200);
    let m = store.metrics();
    assert_eq!((m.accepted, m.committed, m.rejected, m.failed), (1600, 1600, 0, 0), "{m:?}");
}

#[test]
fn a_rejected_write_leaves_no_marker_and_a_replayed_batch_one_per_committed_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path().join("salvage.db"),
        Options::default().migrations(&[SCHEMA]).linger(std::time::Duration::from_secs(30)).batch_rows(10_000),
    )
    .expect("open");
    let seed = store.write(INSERT, params![2, "seed"]);
    store.flush().wait().expect("flush");
    seed.wait().expect("seed");
    // One batch: good writes, a plain duplicate (salvaged alone), an OR ROLLBACK duplicate
    // (the database rolls the whole transaction back: replayed without it).
    let id = |n| RequestId::new("s", n);
    let good: Vec<_> = [1, 3, 4].iter().map(|&k| store.write_once(id(k as u64), INSERT, params![k, "good"])).collect();
    let dup = store.write_once(id(10), INSERT, params![2, "duplicate"]);
    let rolling = store.write_once(id(11), "INSERT OR ROLLBACK INTO t(k, v) VALUES (?1, ?2)", params![2, "again"]);
    let after = store.write_once(id(5), INSERT, params![5, "after"]);
    store.flush().wait().expect("flush");
    for t in good {
        t.wait().expect("good");
    }
    after.wait().expect("after");
    assert_eq!(dup.wait().expect_err("duplicate").code(), "Constraint");
    assert_eq!(rolling.wait().expect_err("duplicate").code(), "Constraint");
    assert!(store.metrics().replays >= 1, "the batch was replayed: {:?}", store.metrics());
    assert_eq!(recorded(&store), vec![1, 3, 4, 5], "exactly the committed writes");
    // Sent again, the rejected one runs again (and is rejected again); the others are answered.
    let rejected_again = store.write_once(id(10), INSERT, params![2, "duplicate"]);
    let answered = store.write_once(id(3), INSERT, params![3, "good"]);
    store.flush().wait().expect("flush");
    assert_eq!(rejected_again.wait().expect_err("again").code(), "Constraint");
    answered.wait().expect("answered from the marker");
    let keys: Vec<i64> = store.query_as("SELECT k FROM t ORDER BY k", &[]).expect("keys");
    assert_eq!(keys, vec![1, 2, 3, 4, 5]);
    store.close().expect("close");
}

#[test]
fn write_many_once_is_answered_with_its_first_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("many.db"));
    store.write(INSERT, params![2, "seed"]).wait().expect("seed");
    let rows = || vec![params![1, "a"], params![2, "dup"], params![3, "c"]];
    let id = || RequestId::new("m", 7);
    let first = store.write_many_once(id(), INSERT, rows()).wait().expect("first");
    assert_eq!(first.committed, 2);
    let again = store.write_many_once(id(), INSERT, rows()).wait().expect("again");
    assert_eq!(again.committed, first.committed);
    assert_eq!(again.batch, first.batch);
    let shape =
        |o: &sqlweir::ManyOutcome| o.rejected.iter().map(|(i, e)| (*i, e.code(), e.sqlite_code())).collect::<Vec<_>>();
    assert_eq!(shape(&again), shape(&first));
    assert_eq!(shape(&again), vec![(1, "Constraint", Some(1555))]);
    assert_eq!(count(&store, "SELECT count(*) FROM t"), 3);
    // The same id for a single write is a mistake, and says so.
    let reused = store.write_once(id(), INSERT, params![9, "x"]).wait().expect_err("reused id");
    assert_eq!(reused.code(), "InvalidInput");
    assert!(reused.to_string().contains("already used for a write_many"), "{reused}");
    store.close().expect("close");
}

#[test]
fn forgetting_answered_requests_keeps_the_table_small_in_a_long_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir.path().join("prune.db"));
    const WINDOW: u64 = 64;
    const ROWS: i64 = 10_048; // 157 windows
    let mut most = 0;
    for start in (0..ROWS as u64).step_by(WINDOW as usize) {
        let tickets: Vec<_> = (start..start + WINDOW)
            .map(|n| store.write_once(RequestId::new("stream", n), APPEND, params!["s", n as i64]))
            .collect();
        for t in tickets {
            t.wait().expect("acked");
        }
        // Everything below `start + WINDOW` has been answered: no resend of it can come.
        store.forget_requests("stream", start + WINDOW).expect("forget");
        most = most.max(markers(&store));
    }
    assert_eq!(count(&store, "SELECT count(*) FROM log"), ROWS);
    assert!(most <= 2 * WINDOW as i64, "at most two windows of markers at any time, saw {most}");
    store.write(APPEND, params!["last", 0]).wait().expect("one more batch carries the last forget");
    assert_eq!(markers(&store), 0);
    assert_eq!(
        store.write_once(RequestId::new("big", u64::MAX), APPEND, params!["x", 1]).wait().expect_err("too big").code(),
        "InvalidInput"
    );
    store.close().expect("close");
}
