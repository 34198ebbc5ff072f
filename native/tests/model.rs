//! Model-based property test of the native store on a real file: random sequences of good and
//! bad writes (constraint violations, a trigger that rolls the whole transaction back, bad SQL,
//! wrong parameter counts), `write_many`, flushes, outside locks, close + reopen and drop +
//! reopen, checked against a `BTreeMap` of what must be in the table. Every ticket resolves
//! exactly once with the outcome the model predicts; acked writes are present, rejected ones
//! absent; the counters reconcile.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use sqlweir::{ManyOutcome, Options, Receipt, Store, Ticket, Value, params};

const SCHEMA: [&str; 2] = [
    "CREATE TABLE kv(id INTEGER PRIMARY KEY, k INTEGER NOT NULL UNIQUE, v TEXT NOT NULL)",
    // RAISE(ROLLBACK) undoes the whole transaction: the batch must be replayed without it.
    "CREATE TRIGGER kv_veto BEFORE INSERT ON kv WHEN NEW.v = 'veto' BEGIN SELECT RAISE(ROLLBACK, 'vetoed'); END",
];
const INSERT: &str = "INSERT INTO kv(k, v) VALUES (?1, ?2)";
const UPSERT: &str = "INSERT INTO kv(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v";
const DELETE: &str = "DELETE FROM kv WHERE k = ?1";

#[derive(Clone, Debug)]
enum Row {
    Insert(i64, char),
    /// NULL in the NOT NULL column.
    Null(i64),
    /// Fires the trigger that rolls the transaction back.
    Veto(i64),
}

#[derive(Clone, Debug)]
enum Op {
    One(Row),
    Upsert(i64, char),
    Delete(i64),
    BadSql,
    WrongParams,
    Many(Vec<Row>),
    Flush,
    /// Another connection holds the write lock for a few ms while writes are queued.
    OutsideLock,
    CloseReopen,
    DropReopen,
}

fn key() -> impl Strategy<Value = i64> {
    0i64..8
}

fn letter() -> impl Strategy<Value = char> {
    prop::sample::select(vec!['a', 'b', 'c'])
}

fn row() -> impl Strategy<Value = Row> {
    prop_oneof![
        6 => (key(), letter()).prop_map(|(k, v)| Row::Insert(k, v)),
        1 => key().prop_map(Row::Null),
        1 => key().prop_map(Row::Veto),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => row().prop_map(Op::One),
        3 => (key(), letter()).prop_map(|(k, v)| Op::Upsert(k, v)),
        2 => key().prop_map(Op::Delete),
        1 => Just(Op::BadSql),
        1 => Just(Op::WrongParams),
        2 => prop::collection::vec(row(), 1..6).prop_map(Op::Many),
        2 => Just(Op::Flush),
        1 => Just(Op::OutsideLock),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::DropReopen),
    ]
}

/// What the model says a single write resolves with: `Ok(changes)` or `Err(code, sqlite_code)`.
type Expect = Result<u64, (&'static str, Option<i32>)>;

enum Pending {
    One(Ticket<Receipt>, Expect, String),
    Many(Ticket<ManyOutcome>, u64, Vec<(usize, Option<i32>)>, String),
}

struct Harness {
    db: common::TempDb,
    store: Option<Store>,
    model: BTreeMap<i64, String>,
    pending: Vec<Pending>,
}

impl Harness {
    fn open(&mut self) {
        let options = Options::default().migrations(&SCHEMA).batch_rows(4).jitter_seed(3);
        self.store = Some(Store::open(&self.db.path, options).expect("open"));
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    /// Applies one row to the model in acceptance order and says how it resolves.
    fn predict(&mut self, row: &Row) -> (Vec<Value>, Expect) {
        match row {
            Row::Insert(k, v) => {
                let expect = if self.model.contains_key(k) {
                    Err(("Constraint", Some(2067)))
                } else {
                    self.model.insert(*k, v.to_string());
                    Ok(1)
                };
                (params![*k, v.to_string()], expect)
            }
            Row::Null(k) => (params![*k, None::<String>], Err(("Constraint", Some(1299)))),
            Row::Veto(k) => (params![*k, "veto"], Err(("Constraint", Some(1811)))),
        }
    }

    fn one(&mut self, sql: &str, params: Vec<Value>, expect: Expect, what: String) {
        let ticket = self.store().write(sql, params);
        self.pending.push(Pending::One(ticket, expect, what));
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::One(row) => {
                let (params, expect) = self.predict(&row);
                self.one(INSERT, params, expect, format!("{row:?}"));
            }
            Op::Upsert(k, v) => {
                self.model.insert(k, v.to_string());
                self.one(UPSERT, params![k, v.to_string()], Ok(1), format!("upsert {k} {v}"));
            }
            Op::Delete(k) => {
                let changes = u64::from(self.model.remove(&k).is_some());
                self.one(DELETE, params![k], Ok(changes), format!("delete {k}"));
            }
            Op::BadSql => {
                self.one("INSERT INTO nowhere(k) VALUES (?1)", params![1], Err(("Sql", Some(1))), "bad sql".into());
            }
            Op::WrongParams => self.one(INSERT, params![1], Err(("InvalidInput", None)), "wrong params".into()),
            Op::Many(rows) => {
                let mut params = Vec::new();
                let (mut committed, mut rejected) = (0, Vec::new());
                for (i, row) in rows.iter().enumerate() {
                    let (p, expect) = self.predict(row);
                    params.push(p);
                    match expect {
                        Ok(_) => committed += 1,
                        Err((_, code)) => rejected.push((i, code)),
                    }
                }
                let ticket = self.store().write_many(INSERT, params);
                self.pending.push(Pending::Many(ticket, committed, rejected, format!("{rows:?}")));
            }
            Op::Flush => {
                self.store().flush().wait().expect("flush");
                // Everything accepted before the flush has resolved: the table is the model.
                self.check_table();
                self.settle();
            }
            Op::OutsideLock => {
                let conn = rusqlite::Connection::open(&self.db.path).expect("outside connection");
                conn.execute_batch("BEGIN EXCLUSIVE").expect("outside lock");
                std::thread::sleep(Duration::from_millis(20));
                conn.execute_batch("COMMIT").expect("release");
            }
            Op::CloseReopen => {
                self.store().flush().wait().expect("flush");
                self.check_counters();
                self.store().close().expect("close");
                self.store = None;
                self.settle();
                self.open();
                self.check_table();
            }
            Op::DropReopen => {
                // Dropping the last handle flushes every accepted write, like close.
                self.store = None;
                self.settle();
                self.open();
                self.check_table();
            }
        }
    }

    /// Waits for every outstanding ticket and checks it against the model's prediction.
    fn settle(&mut self) {
        for pending in self.pending.drain(..) {
            match pending {
                Pending::One(ticket, expect, what) => {
                    let got = ticket.wait().map(|r| r.changes).map_err(|e| (e.code(), e.sqlite_code()));
                    assert_eq!(got, expect, "{what}");
                }
                Pending::Many(ticket, committed, rejected, what) => {
                    let outcome = ticket.wait().expect("write_many resolves with an outcome");
                    let got: Vec<(usize, Option<i32>)> =
                        outcome.rejected.iter().map(|(i, e)| (*i, e.sqlite_code())).collect();
                    assert_eq!((outcome.committed, got), (committed, rejected), "{what}");
                }
            }
        }
    }

    fn check_table(&self) {
        let rows: Vec<(i64, String)> = self.store().query_as("SELECT k, v FROM kv ORDER BY k", &[]).expect("read");
        let expected: Vec<(i64, String)> = self.model.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(rows, expected, "the table is the model");
    }

    /// After a flush: each accepted row committed or rejected alone, none failed.
    fn check_counters(&self) {
        let m = self.store().metrics();
        assert_eq!(m.failed, 0);
        assert_eq!(m.committed + m.rejected, m.accepted, "{m:?}");
        assert_eq!(m.queue_depth, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_store_matches_a_map_through_bad_writes_locks_and_reopens(ops in prop::collection::vec(op(), 1..60)) {
        let mut h = Harness { db: common::temp_db(), store: None, model: BTreeMap::new(), pending: Vec::new() };
        h.open();
        for op in ops {
            h.apply(op);
        }
        h.store().flush().wait().expect("flush");
        h.check_counters();
        h.settle();
        h.check_table();
        h.store().close().expect("close");
        h.store = None;
        h.open();
        h.check_table();
        let check = h.store().query_as::<String>("PRAGMA integrity_check", &[]).expect("integrity")[0].clone();
        prop_assert_eq!(check, "ok");
    }
}
