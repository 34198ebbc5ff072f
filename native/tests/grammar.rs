//! Property test from a grammar of good and bad statements, mixed in batches on a real file:
//! conflict clauses (`OR FAIL`, `OR ABORT`, `OR ROLLBACK`, `OR IGNORE`, `OR REPLACE`) on
//! multi-row inserts, `RETURNING`, triggers that `RAISE` each kind (after writing a row of their
//! own), pragmas hidden behind `;` or in a tail, empty and comment-only text, several statements
//! in one text, a NUL in the text. Checked against a model: every acked write applied exactly
//! once (rows and the rows its triggers wrote), every rejected write applied not at all, the
//! connection's settings unchanged (a CHECK still holds, the writer is not read-only), and the
//! counters reconcile.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use sqlweir::{Options, Store, Value, params};

const SCHEMA: [&str; 6] = [
    "CREATE TABLE g(id INTEGER PRIMARY KEY, k INTEGER NOT NULL UNIQUE, v TEXT NOT NULL CHECK (v <> 'check'))",
    "CREATE TABLE log(k INTEGER NOT NULL)",
    // Each RAISE kind, fired by the value, after the trigger wrote a row of its own.
    "CREATE TRIGGER g_raise BEFORE INSERT ON g WHEN NEW.v IN ('abort', 'fail', 'rollback') BEGIN \
     INSERT INTO log VALUES (-NEW.k); \
     SELECT CASE NEW.v WHEN 'abort' THEN RAISE(ABORT, 'abort') WHEN 'fail' THEN RAISE(FAIL, 'fail') \
     ELSE RAISE(ROLLBACK, 'rollback') END; END",
    "CREATE TRIGGER g_ignore BEFORE INSERT ON g WHEN NEW.v = 'ignore' BEGIN SELECT RAISE(IGNORE); END",
    "CREATE TRIGGER g_log AFTER INSERT ON g BEGIN INSERT INTO log VALUES (NEW.k); END",
    "CREATE TABLE marker(x)",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Conflict {
    Plain,
    Fail,
    Abort,
    Rollback,
    Ignore,
    Replace,
}

#[derive(Clone, Debug)]
enum Stmt {
    /// `INSERT [OR x] INTO g(k, v) VALUES (..), (..)`, one or more rows.
    Insert(Conflict, Vec<(i64, &'static str)>),
    /// A single-row insert with `RETURNING k`.
    Returning(i64, &'static str),
    /// Text that must be refused whole, applying nothing.
    Refused(&'static str),
}

const REFUSED: [&str; 12] = [
    "",
    "   ",
    "-- only a comment",
    "/* c */ ;",
    ";",
    "; PRAGMA query_only = 1",
    "INSERT INTO marker VALUES (1); PRAGMA ignore_check_constraints = 1",
    "INSERT INTO marker VALUES (2); PRAGMA query_only = 1",
    "INSERT INTO marker VALUES (3); INSERT INTO marker VALUES (4)",
    "INSERT INTO marker VALUES (5)\0; DROP TABLE g",
    "COMMIT",
    "SAVEPOINT s",
];

fn value() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "a", "a", "b", "abort", "fail", "rollback", "ignore", "check"])
}

fn conflict() -> impl Strategy<Value = Conflict> {
    prop::sample::select(vec![
        Conflict::Plain,
        Conflict::Fail,
        Conflict::Abort,
        Conflict::Rollback,
        Conflict::Ignore,
        Conflict::Replace,
    ])
}

fn stmt() -> impl Strategy<Value = Stmt> {
    prop_oneof![
        6 => (conflict(), prop::collection::vec((0i64..6, value()), 1..4)).prop_map(|(c, rows)| Stmt::Insert(c, rows)),
        2 => (0i64..6, value()).prop_map(|(k, v)| Stmt::Returning(k, v)),
        2 => prop::sample::select(REFUSED.to_vec()).prop_map(Stmt::Refused),
    ]
}

/// What must be in the database.
#[derive(Clone, Default)]
struct Model {
    g: BTreeMap<i64, &'static str>,
    log: Vec<i64>,
}

/// What a statement does to the model: `Some(changes)` when applied (the model updated), `None`
/// when it is rejected (the model untouched).
fn apply(model: &mut Model, conflict: Conflict, rows: &[(i64, &'static str)]) -> Option<u64> {
    let mut next = model.clone();
    let mut changes = 0;
    for &(k, v) in rows {
        match v {
            // OR IGNORE skips a row that breaks a CHECK; every other clause (REPLACE too)
            // rejects the statement.
            "check" if conflict == Conflict::Ignore => continue,
            "abort" | "fail" | "rollback" | "check" => return None,
            "ignore" => continue,
            _ => {}
        }
        if next.g.contains_key(&k) {
            match conflict {
                Conflict::Ignore => continue,
                // REPLACE deletes the old row (no delete trigger here) and inserts the new one.
                Conflict::Replace => {}
                _ => return None,
            }
        }
        next.g.insert(k, v);
        next.log.push(k);
        changes += 1;
    }
    *model = next;
    Some(changes)
}

fn sql_of(conflict: Conflict, n: usize) -> String {
    let or = match conflict {
        Conflict::Plain => "",
        Conflict::Fail => " OR FAIL",
        Conflict::Abort => " OR ABORT",
        Conflict::Rollback => " OR ROLLBACK",
        Conflict::Ignore => " OR IGNORE",
        Conflict::Replace => " OR REPLACE",
    };
    let values: Vec<String> = (0..n).map(|i| format!("(?{}, ?{})", 2 * i + 1, 2 * i + 2)).collect();
    format!("INSERT{or} INTO g(k, v) VALUES {}", values.join(", "))
}

fn run(batches: &[Vec<Stmt>]) -> Result<(), TestCaseError> {
    let db = common::temp_db();
    let store =
        Store::open(&db.path, Options::default().migrations(&SCHEMA).batch_rows(64).linger(Duration::from_millis(20)))
            .expect("open");
    let mut model = Model::default();
    for batch in batches {
        // Queued together, so they share batches; predicted in acceptance order.
        let mut pending = Vec::new();
        for s in batch {
            match s {
                Stmt::Insert(c, rows) => {
                    let params: Vec<Value> = rows.iter().flat_map(|&(k, v)| params![k, v]).collect();
                    let expect = apply(&mut model, *c, rows);
                    pending.push((store.write(&sql_of(*c, rows.len()), params), expect, None, format!("{s:?}")));
                }
                Stmt::Returning(k, v) => {
                    let expect = apply(&mut model, Conflict::Plain, &[(*k, *v)]);
                    let sql = "INSERT INTO g(k, v) VALUES (?1, ?2) RETURNING k";
                    let returned = expect.filter(|&n| n == 1).map(|_| *k);
                    pending.push((store.write(sql, params![*k, *v]), expect, returned, format!("{s:?}")));
                }
                Stmt::Refused(sql) => pending.push((store.write(sql, vec![]), None, None, format!("{s:?}"))),
            }
        }
        for (ticket, expect, returned, what) in pending {
            match (ticket.wait(), expect) {
                (Ok(r), Some(changes)) => {
                    prop_assert_eq!(r.changes, changes, "{}", what);
                    if let Some(k) = returned {
                        prop_assert_eq!(r.rows::<i64>().expect("ok"), vec![k], "{}", what);
                    }
                }
                (Err(e), None) => prop_assert!(
                    matches!(e.code(), "Constraint" | "InvalidInput"),
                    "{what}: rejected with an unexpected kind: {e}"
                ),
                (Ok(r), None) => return Err(TestCaseError::fail(format!("{what}: acked ({r:?}), expected rejected"))),
                (Err(e), Some(_)) => {
                    return Err(TestCaseError::fail(format!("{what}: rejected ({e}), expected acked")));
                }
            }
        }
    }
    store.flush().wait().expect("ok");
    let rows: Vec<(i64, String)> = store.query_as("SELECT k, v FROM g ORDER BY k", &[]).expect("ok");
    let want: Vec<(i64, String)> = model.g.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
    prop_assert_eq!(rows, want, "table g");
    let mut log: Vec<i64> = store.query_as("SELECT k FROM log", &[]).expect("ok");
    log.sort_unstable();
    let mut want_log = model.log.clone();
    want_log.sort_unstable();
    prop_assert_eq!(log, want_log, "rows written by triggers");
    prop_assert_eq!(store.query_as::<i64>("SELECT count(*) FROM marker", &[]).expect("ok"), vec![0], "refused texts");
    // The connection's settings are as they were: CHECK holds, the writer can write.
    let check = store.write("INSERT INTO g(k, v) VALUES (100, 'check')", vec![]).wait();
    prop_assert_eq!(check.err().map(|e| e.code()), Some("Constraint"), "CHECK constraints still enforced");
    store.write("INSERT INTO marker VALUES (0)", vec![]).wait().expect("the writer is not read-only");
    store.flush().wait().expect("ok");
    let m = store.metrics();
    prop_assert_eq!(m.accepted, m.committed + m.rejected + m.failed, "counters reconcile: {:?}", m);
    prop_assert_eq!(m.failed, 0);
    store.close().expect("ok");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_acked_write_applied_once_and_every_rejected_one_not_at_all(
        batches in prop::collection::vec(prop::collection::vec(stmt(), 1..12), 1..4)
    ) {
        run(&batches)?;
    }
}
