//! Ten inputs that broke "rejected alone" and "acked means committed" when the store was tried
//! adversarially (issue: ten inputs), each a regression test opening with its story. Every test
//! runs on a real SQLite file and counts what is really in it afterwards.

mod common;

use std::time::Duration;

use common::{count, temp_db};
use sqlweir::{OpenError, Options, Store, TxError, Value, params};

const T: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, x INTEGER UNIQUE, qty INTEGER CHECK (qty >= 0))";
const LOG: &str = "CREATE TABLE log(x INTEGER)";

fn store(db: &common::TempDb) -> Store {
    Store::open(&db.path, Options::default().migrations(&[T, LOG])).expect("open")
}

/// One batch for everything queued within the linger.
fn batched(db: &common::TempDb, extra: &[&str]) -> Store {
    let mut steps = vec![T, LOG];
    steps.extend_from_slice(extra);
    Store::open(&db.path, Options::default().migrations(&steps).batch_rows(64).linger(Duration::from_millis(300)))
        .expect("open")
}

fn ins(x: i64) -> (&'static str, Vec<Value>) {
    ("INSERT INTO t(x, qty) VALUES (?1, 1)", params![x])
}

#[test]
fn a_pragma_after_a_leading_semicolon_or_in_the_tail_changes_nothing() {
    //! `write("; PRAGMA query_only = 1")` was refused, yet every later write failed `ReadOnly`:
    //! the keyword check saw "" after the `;`, and SQLite applied the pragma while preparing.
    //! `write("INSERT ...; PRAGMA ignore_check_constraints = 1")` was refused, then a CHECK
    //! violation committed: rusqlite prepared the tail to find a second statement.
    let db = temp_db();
    let s = store(&db);
    for sql in [
        "; PRAGMA query_only = 1",
        ";;/* c */; pragma query_only=1",
        "INSERT INTO t(x, qty) VALUES (1, 1); PRAGMA ignore_check_constraints = 1",
        "INSERT INTO t(x, qty) VALUES (2, 1); PRAGMA query_only = 1",
    ] {
        let e = s.write(sql, vec![]).wait().unwrap_err();
        assert_eq!(e.code(), "InvalidInput", "{sql}: {e}");
    }
    let (sql, p) = ins(10);
    s.write(sql, p).wait().expect("the writer connection is not read-only");
    let e = s.write("INSERT INTO t(x, qty) VALUES (11, -1)", vec![]).wait().unwrap_err();
    assert_eq!(e.code(), "Constraint", "CHECK constraints still hold: {e}");
    // The same rule for queries inside a transaction, which run on the writer connection.
    let refused = s
        .transaction(|tx| {
            let e = tx.query("PRAGMA query_only = 1", &[]).unwrap_err();
            assert!(e.to_string().contains("PRAGMA query_only refused"), "{e}");
            let e = tx.query("PRAGMA ignore_check_constraints = ON", &[]).unwrap_err();
            assert!(e.to_string().contains("refused"), "{e}");
            let info = tx.query("PRAGMA table_info(t)", &[])?;
            Ok(info.rows.len())
        })
        .wait()
        .expect("reporting pragmas run");
    assert_eq!(refused, 3, "table_info lists t's three columns");
    let e = s.write("INSERT INTO t(x, qty) VALUES (12, -1)", vec![]).wait().unwrap_err();
    assert_eq!(e.code(), "Constraint", "still enforced after the transaction");
    assert_eq!(count(&s, "SELECT count(*) FROM t"), 1);
    s.close().unwrap();
}

#[test]
fn empty_statements_are_rejected_alone_and_their_batch_commits() {
    //! `write("")` (or blanks, a comment, a `;`, a leading NUL, `write_many("", rows)`) got
    //! `Io`, and every good write of its batch failed with it: rusqlite's "empty query" was
    //! not classified as the write's own fault.
    let db = temp_db();
    let s = batched(&db, &[]);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, sql) in ["", "   ", "-- only a comment", "/* c */", ";", " ; ; ", "\0INSERT INTO t(x) VALUES (99)"]
        .into_iter()
        .enumerate()
    {
        let (ok, p) = ins(i as i64);
        good.push(s.write(ok, p));
        bad.push(s.write(sql, vec![]));
    }
    let many = s.write_many("", vec![params![1], params![2]]);
    for t in bad {
        assert_eq!(t.wait().unwrap_err().code(), "InvalidInput");
    }
    assert_eq!(many.wait().unwrap_err().code(), "InvalidInput");
    for t in good {
        assert_eq!(t.wait().expect("good writes commit").changes, 1);
    }
    assert_eq!(count(&s, "SELECT count(*) FROM t"), 7);
    s.close().unwrap();
}

#[test]
fn a_write_with_returning_is_applied_once_and_its_receipt_carries_the_rows() {
    //! `write("INSERT ... RETURNING id")` was rejected with `InvalidInput`, and the row was
    //! committed all the same: rejected but applied.
    let db = temp_db();
    let s = batched(&db, &[]);
    let (sql, p) = ins(1);
    let before = s.write(sql, p);
    let r = s.write("INSERT INTO t(x, qty) VALUES (?1, 5) RETURNING id, x, qty * 2 AS double", params![2]);
    let many = s.write_many("INSERT INTO t(x, qty) VALUES (?1, 1) RETURNING id", vec![params![3], params![4]]);
    let up = s.write("UPDATE t SET qty = qty + 1 WHERE x <= 2 RETURNING x", vec![]);
    before.wait().unwrap();
    let r = r.wait().expect("RETURNING commits");
    assert_eq!(r.changes, 1);
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Back {
        id: i64,
        x: i64,
        double: i64,
    }
    assert_eq!(r.rows::<Back>().unwrap(), vec![Back { id: 2, x: 2, double: 10 }]);
    let returned = r.returned.as_ref().expect("raw rows");
    assert_eq!(returned.columns, vec!["id", "x", "double"]);
    assert_eq!(many.wait().unwrap().committed, 2);
    let up = up.wait().unwrap();
    assert_eq!(up.changes, 2);
    let mut xs: Vec<i64> = up.rows().unwrap();
    xs.sort_unstable();
    assert_eq!(xs, vec![1, 2]);
    assert_eq!(count(&s, "SELECT count(*) FROM t"), 4, "each applied exactly once");
    assert_eq!(count(&s, "SELECT sum(qty) FROM t"), 2 + 6 + 2, "the UPDATE ran once");
    let plain = s.write("INSERT INTO t(x, qty) VALUES (9, 1)", vec![]).wait().unwrap();
    assert!(plain.returned.is_none() && plain.rows::<i64>().unwrap().is_empty());
    s.close().unwrap();
}

#[test]
fn a_failed_statement_under_fail_conflict_resolution_leaves_nothing_behind() {
    //! `INSERT OR FAIL` of two rows whose second conflicts, `UPDATE OR FAIL`, and a trigger's
    //! `RAISE(FAIL)` on the third row were rejected with `Constraint` while their earlier rows
    //! stayed committed: SQLite's statement atomicity does not hold for FAIL.
    let db = temp_db();
    let trigger = "CREATE TRIGGER no_13 BEFORE INSERT ON t WHEN NEW.x = 13 \
                   BEGIN INSERT INTO log VALUES (NEW.x); SELECT RAISE(FAIL, 'no 13'); END";
    let logging = "CREATE TRIGGER logged AFTER INSERT ON t BEGIN INSERT INTO log VALUES (NEW.x); END";
    let s = batched(&db, &[trigger, logging, "INSERT INTO t(x, qty) VALUES (100, 1)"]);
    let (sql, p) = ins(1);
    let first = s.write(sql, p);
    let or_fail = s.write("INSERT OR FAIL INTO t(x, qty) VALUES (2, 1), (100, 1)", vec![]);
    let update = s.write("UPDATE OR FAIL t SET x = 100 WHERE x IN (1, 2) OR x = 100", vec![]);
    let raise = s.write("INSERT INTO t(x, qty) VALUES (11, 1), (12, 1), (13, 1)", vec![]);
    let (sql, p) = ins(3);
    let last = s.write(sql, p);
    for (t, what) in [(or_fail, "OR FAIL"), (update, "UPDATE OR FAIL"), (raise, "RAISE(FAIL)")] {
        let e = t.wait().unwrap_err();
        assert_eq!(e.code(), "Constraint", "{what}: {e}");
    }
    first.wait().unwrap();
    last.wait().unwrap();
    let xs: Vec<i64> = s.query_as("SELECT x FROM t ORDER BY x", &[]).unwrap();
    assert_eq!(xs, vec![1, 3, 100], "no row of a rejected statement stayed");
    let logged: Vec<i64> = s.query_as("SELECT x FROM log ORDER BY x", &[]).unwrap();
    assert_eq!(logged, vec![1, 3, 100], "nor any row its triggers wrote");
    let m = s.metrics();
    assert!(m.replays >= 1, "the batch was replayed without them: {m:?}");
    s.close().unwrap();
}

#[test]
fn a_query_cannot_leave_a_read_connection_inside_a_transaction() {
    //! `query("BEGIN")` was accepted and left a pooled reader inside a transaction: later reads
    //! on it saw an old snapshot (10 of 10 acked writes invisible), and `close()` failed with a
    //! checkpoint error.
    let db = temp_db();
    let s = Store::open(&db.path, Options::default().migrations(&[T]).read_connections(1)).unwrap();
    for sql in ["BEGIN", "BEGIN IMMEDIATE", "SAVEPOINT s", "ATTACH ':memory:' AS other", "PRAGMA query_only = 0"] {
        let e = s.query(sql, &[]).unwrap_err();
        assert!(e.to_string().contains("refused"), "{sql}: {e}");
    }
    for x in 0..10 {
        let (sql, p) = ins(x);
        s.write(sql, p).wait().unwrap();
    }
    assert_eq!(count(&s, "SELECT count(*) FROM t"), 10, "the one reader sees every acked write");
    assert_eq!(s.query_as::<i64>("PRAGMA user_version", &[]).unwrap(), vec![1], "reporting pragmas run");
    s.close().expect("the checkpoint is not blocked by a reader");
}

#[test]
fn a_transaction_closure_cannot_commit_itself() {
    //! `tx.query("COMMIT")` inside `transaction(...)`, then the closure returned `Err`: its rows
    //! stayed committed.
    let db = temp_db();
    let s = store(&db);
    let result = s
        .transaction(|tx| {
            tx.execute("INSERT INTO t(x, qty) VALUES (1, 1)", vec![])?;
            for sql in ["COMMIT", "END", "ROLLBACK", "RELEASE s", "BEGIN"] {
                let e = tx.query(sql, &[]).unwrap_err();
                assert!(e.to_string().contains("transaction control"), "{sql}: {e}");
                let e = tx.execute(sql, vec![]).unwrap_err();
                assert!(matches!(e, TxError::Write(ref w) if w.code() == "InvalidInput"), "{sql}: {e}");
            }
            Err::<(), _>(TxError::abort("changed my mind"))
        })
        .wait();
    assert!(matches!(result, Err(TxError::Aborted(_))));
    assert_eq!(count(&s, "SELECT count(*) FROM t"), 0, "the closure's row was rolled back");
    s.close().unwrap();
}

#[test]
fn the_last_handle_dropped_inside_a_transaction_closure_flushes_the_rest() {
    //! A transaction closure held the only `Store` clone: dropping it on the writer thread made
    //! the writer panic ("failed to join thread: Resource deadlock avoided"), and the writes
    //! queued behind it failed `Closed` instead of being flushed.
    let db = temp_db();
    let s = store(&db);
    let held = s.clone();
    let tx = s.transaction(move |tx| {
        let _keep = &held;
        tx.execute("INSERT INTO t(x, qty) VALUES (1, 1)", vec![])?;
        Ok(())
    });
    let queued: Vec<_> = (2..=20).map(|x| s.write("INSERT INTO t(x, qty) VALUES (?1, 1)", params![x])).collect();
    drop(s); // the closure's clone is now the last one: it is dropped on the writer thread
    tx.wait().expect("the transaction commits");
    for t in queued {
        t.wait().expect("writes queued behind it are flushed, not failed");
    }
    // The writer gives the file back once it has stopped; then it opens again.
    let reopened = (0..200).find_map(|_| match Store::open(&db.path, Options::default()) {
        Ok(s) => Some(s),
        Err(OpenError::AlreadyOpen { .. }) => {
            std::thread::sleep(Duration::from_millis(10));
            None
        }
        Err(e) => panic!("reopen: {e}"),
    });
    let reopened = reopened.expect("the writer stopped and released the file");
    assert_eq!(count(&reopened, "SELECT count(*) FROM t"), 20);
    reopened.close().unwrap();
}

#[test]
fn a_write_waited_on_inside_a_transaction_closure_is_refused_instead_of_deadlocking() {
    //! A transaction closure that waited on its own store's write deadlocked: the write waited
    //! for the writer, which was running the closure.
    let db = temp_db();
    let s = store(&db);
    let inner = s.clone();
    let codes = s
        .transaction(move |_tx| {
            let w = inner.write("INSERT INTO t(x, qty) VALUES (1, 1)", vec![]).wait().unwrap_err();
            let f = inner.flush().wait().unwrap_err();
            let t = inner.transaction(|_| Ok(())).wait().unwrap_err();
            assert!(w.to_string().contains("deadlock"), "{w}");
            Ok((w.code(), f.code(), t.to_string().contains("deadlock")))
        })
        .wait()
        .unwrap();
    assert_eq!(codes, ("InvalidInput", "InvalidInput", true));
    assert_eq!(count(&s, "SELECT count(*) FROM t"), 0, "the refused write was never queued");
    s.close().unwrap();
}

#[test]
fn counters_reconcile_with_transactions() {
    //! After one committed transaction and a flush the metrics read `accepted=1 committed=0
    //! rejected=0 failed=0`, against "after a flush, accepted == committed + rejected + failed".
    let db = temp_db();
    let s = store(&db);
    s.transaction(|tx| tx.execute("INSERT INTO t(x, qty) VALUES (1, 1)", vec![])).wait().unwrap();
    let _ = s.transaction(|_| Err::<(), _>(TxError::abort("no"))).wait().unwrap_err();
    let _ = s.transaction(|tx| tx.execute("INSERT INTO t(x, qty) VALUES (1, 1)", vec![])).wait().unwrap_err();
    let (sql, p) = ins(2);
    s.write(sql, p).wait().unwrap();
    let _ = s.write("INSERT INTO t(x, qty) VALUES (2, 1)", vec![]).wait().unwrap_err();
    s.flush().wait().unwrap();
    let m = s.metrics();
    assert_eq!((m.accepted, m.committed, m.rejected, m.failed), (5, 2, 3, 0), "{m:?}");
    s.close().unwrap();
}

#[test]
fn a_nul_inside_the_sql_text_is_refused() {
    //! `"INSERT ...\0; DROP TABLE t"` was acked: SQLite stopped reading at the NUL and the tail
    //! was silently ignored, where a second statement is refused.
    let db = temp_db();
    let s = store(&db);
    let e = s.write("INSERT INTO t(x, qty) VALUES (1, 1)\0; DROP TABLE t", vec![]).wait().unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    assert!(e.to_string().contains("NUL"), "{e}");
    let e = s.transaction(|tx| tx.execute("INSERT INTO t(x, qty) VALUES (1, 1)\0 junk", vec![])).wait().unwrap_err();
    assert!(e.to_string().contains("NUL"), "{e}");
    assert!(s.query("SELECT 1\0; SELECT 2", &[]).unwrap_err().to_string().contains("NUL"));
    // Query parameters are checked as write parameters are: a NaN would bind as NULL.
    let nan = s.query("SELECT count(*) FROM t WHERE qty = ?1", &params![f64::NAN]).unwrap_err();
    assert!(nan.to_string().contains("NaN"), "{nan}");
    assert_eq!(count(&s, "SELECT count(*) FROM t"), 0);
    s.close().unwrap();
}

#[cfg(unix)]
#[test]
fn a_link_to_an_open_file_is_the_same_file() {
    //! A symlink or a hard link to an open database opened a second store (a second writer) on
    //! it, while the plain and `./` spellings were refused with `AlreadyOpen`.
    let db = temp_db();
    let s = store(&db);
    let soft = db.dir.path().join("soft.db");
    let hard = db.dir.path().join("hard.db");
    std::os::unix::fs::symlink(&db.path, &soft).unwrap();
    std::fs::hard_link(&db.path, &hard).unwrap();
    for other in [&soft, &hard] {
        match Store::open(other, Options::default()) {
            Err(OpenError::AlreadyOpen { .. }) => {}
            Err(e) => panic!("{}: expected AlreadyOpen, got {e}", other.display()),
            Ok(_) => panic!("{}: a second store opened on an open file", other.display()),
        }
    }
    s.close().unwrap();
    let again = Store::open(&soft, Options::default()).expect("free again once closed");
    assert_eq!(count(&again, "SELECT count(*) FROM t"), 0);
    again.close().unwrap();
}

#[test]
fn named_parameters_bind_by_name_and_refuse_a_missing_or_extra_name() {
    //! Every peer takes named parameters (`:name`, `@name`, `$name`); sqlweir took positions
    //! only. A missing or extra name must reject that write alone, never bind NULL silently.
    let db = temp_db();
    let s = batched(&db, &[]);
    let sql = "INSERT INTO t(x, qty) VALUES (:x, @qty)";
    let ok = s.write_named(sql, sqlweir::named_params! { "qty" => 3, ":x" => 1 });
    let bare = s.write_named("INSERT INTO t(x, qty) VALUES ($x, $x)", sqlweir::named_params! { "x" => 2 });
    let missing = s.write_named(sql, sqlweir::named_params! { "x" => 3 });
    let extra = s.write_named(sql, sqlweir::named_params! { "x" => 4, "qty" => 1, "nope" => 5 });
    let twice = s.write_named(sql, sqlweir::named_params! { "x" => 5, "x" => 6, "qty" => 1 });
    let positional = s.write("INSERT INTO t(x, qty) VALUES (?1, ?2)", params![7, 1]);
    assert_eq!(ok.wait().unwrap().changes, 1);
    assert_eq!(bare.wait().unwrap().changes, 1);
    for (t, what) in [(missing, "@qty has no value"), (extra, "no parameter named nope"), (twice, "given twice")] {
        let e = t.wait().unwrap_err();
        assert_eq!(e.code(), "InvalidInput", "{what}: {e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    positional.wait().unwrap();
    let rows: Vec<(i64, i64)> = s.query_as("SELECT x, qty FROM t WHERE x < 100 ORDER BY x", &[]).unwrap();
    assert_eq!(rows, vec![(1, 3), (2, 2), (7, 1)]);
    let n = s
        .transaction(|tx| {
            tx.execute_named("UPDATE t SET qty = :q WHERE x = :x", sqlweir::named_params! { "q" => 9, "x" => 1 })
        })
        .wait()
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(count(&s, "SELECT qty FROM t WHERE x = 1"), 9);
    s.close().unwrap();
}

#[test]
fn a_statement_that_failed_after_changing_rows_inside_a_transaction_leaves_nothing() {
    //! Inside `transaction(...)`, an `INSERT OR FAIL` whose second row conflicted kept its first
    //! row; a closure that went on after the error committed that half statement.
    let db = temp_db();
    let s = batched(&db, &["INSERT INTO t(x, qty) VALUES (100, 1)"]);
    let result = s
        .transaction(|tx| {
            let e = tx.execute("INSERT OR FAIL INTO t(x, qty) VALUES (1, 1), (100, 1)", vec![]).unwrap_err();
            assert!(e.to_string().contains("UNIQUE"), "{e}");
            tx.execute("INSERT INTO t(x, qty) VALUES (2, 1)", vec![])?;
            Ok(())
        })
        .wait();
    let e = result.unwrap_err();
    assert!(matches!(&e, TxError::Write(w) if w.code() == "Constraint"), "{e}");
    // A plain ABORT failure is undone by SQLite alone: the closure may go on and commit.
    s.transaction(|tx| {
        assert!(tx.execute("INSERT INTO t(x, qty) VALUES (100, 1)", vec![]).is_err());
        tx.execute("INSERT INTO t(x, qty) VALUES (3, 1)", vec![])
    })
    .wait()
    .expect("commits");
    let xs: Vec<i64> = s.query_as("SELECT x FROM t ORDER BY x", &[]).unwrap();
    assert_eq!(xs, vec![3, 100], "nothing of the spoiled transaction stayed");
    s.close().unwrap();
}
