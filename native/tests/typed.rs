//! The typed layer: serde rows in and out, upserts, keyset pages, transactions on the writer.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::temp_db;
use serde::{Deserialize, Serialize};
use sqlweir::{Options, Store, TxError, Value, params};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Everything {
    id: i64,
    big: i64,
    small: i64,
    ratio: f64,
    tiny: f32,
    text: String,
    blob: Vec<u8>,
    flag: bool,
    maybe: Option<String>,
    absent: Option<i64>,
}

const EVERYTHING: &str = "CREATE TABLE everything(id INTEGER PRIMARY KEY, big INTEGER, small INTEGER, ratio REAL, \
     tiny REAL, text TEXT, blob BLOB, flag INTEGER, maybe TEXT, absent INTEGER)";

#[test]
fn every_supported_value_type_round_trips() {
    let db = temp_db();
    let store = Store::open(&db.path, Options::default().migrations(&[EVERYTHING])).expect("open");
    let rows = vec![
        Everything {
            id: 1,
            big: i64::MAX,
            small: i64::MIN,
            ratio: -1.0e-300,
            tiny: 0.5,
            text: "héllo, 世界 🌊 \"quoted\" 'single'".into(),
            blob: vec![0, 1, 2, 254, 255],
            flag: true,
            maybe: Some(String::new()),
            absent: None,
        },
        Everything {
            id: 2,
            big: 0,
            small: -1,
            ratio: f64::MAX,
            tiny: -0.25,
            text: String::new(),
            blob: vec![],
            flag: false,
            maybe: None,
            absent: Some(42),
        },
    ];
    store.insert("everything", &rows[0]).wait().expect("insert");
    let outcome = store.insert_many("everything", &rows[1..]).wait().expect("insert_many");
    assert_eq!(outcome.committed, 1);
    let back: Vec<Everything> = store.query_as("SELECT * FROM everything ORDER BY id", &[]).expect("query");
    assert_eq!(back, rows);
}

#[test]
fn upsert_updates_instead_of_duplicating() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Price {
        sku: String,
        amount: f64,
        seen: i64,
    }
    let store = Store::open_in_memory(
        Options::default().migrations(&["CREATE TABLE prices(sku TEXT PRIMARY KEY, amount REAL, seen INTEGER)"]),
    )
    .expect("open");
    for seen in 0..5 {
        let p = Price { sku: "sku-42".into(), amount: 10.0 + f64::from(seen as i32), seen };
        store.upsert("prices", &p, &["sku"]).wait().expect("upsert");
    }
    store.upsert("prices", &Price { sku: "sku-7".into(), amount: 1.0, seen: 0 }, &["sku"]).wait().expect("upsert");
    let all: Vec<Price> = store.query_as("SELECT * FROM prices ORDER BY sku", &[]).expect("query");
    assert_eq!(
        all,
        vec![
            Price { sku: "sku-42".into(), amount: 14.0, seen: 4 },
            Price { sku: "sku-7".into(), amount: 1.0, seen: 0 }
        ]
    );
    let e = store.upsert("prices", &Price { sku: "x".into(), amount: 1.0, seen: 0 }, &["nope"]).wait().unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    assert!(e.to_string().contains("\"nope\""), "{e}");
}

#[test]
fn a_field_that_is_not_a_column_is_a_clear_error() {
    #[derive(Serialize)]
    struct Wrong {
        ts: i64,
        colour: String,
    }
    #[derive(Serialize)]
    struct Nested {
        ts: i64,
        inner: Vec<i64>,
    }
    let store =
        Store::open_in_memory(Options::default().migrations(&["CREATE TABLE events(ts INTEGER)"])).expect("open");
    let e = store.insert("events", &Wrong { ts: 1, colour: "red".into() }).wait().unwrap_err();
    assert_eq!(e.code(), "Sql");
    assert!(e.to_string().contains("has no column named colour"), "{e}");
    let e = store.insert("no\"such", &Wrong { ts: 1, colour: "red".into() }).wait().unwrap_err();
    assert!(e.to_string().contains("no such table: no\"such"), "quoted identifiers reach SQLite intact: {e}");
    let e = store.insert("events", &Nested { ts: 1, inner: vec![300] }).wait().unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    assert!(e.to_string().contains("field \"inner\""), "{e}");
}

#[test]
fn pages_visit_every_row_once_while_writes_continue() {
    #[derive(Deserialize, Debug)]
    struct Row {
        id: i64,
    }
    let db = temp_db();
    let store = Store::open(&db.path, Options::default().migrations(&[common::EVENTS])).expect("open");
    let first =
        store.write_many(common::INSERT, (0..1000).map(|i| params![i, "seed", "x"]).collect()).wait().expect("seed");
    assert_eq!(first.committed, 1000);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..500 {
                store.write(common::INSERT, params![i, "during", "x"]).wait().expect("write during paging");
            }
        })
    };
    let mut seen = Vec::new();
    let mut after: Option<Value> = None;
    loop {
        let page = store.page::<Row>("events", "id", after.as_ref(), 37).expect("page");
        assert!(page.rows.len() <= 37);
        seen.extend(page.rows.iter().map(|r| r.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    writer.join().expect("writer");
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no row visited twice");
    assert!((1..=1000).all(|id| unique.contains(&id)), "every row present at the start was visited");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "pages come in key order");
    let e = store.page::<Row>("events", "rowid", None, 10).unwrap_err();
    assert!(e.to_string().contains("\"rowid\" is not a column"), "{e}");
}

#[test]
fn transactions_keep_a_counter_exact_under_concurrent_writers() {
    let db = temp_db();
    let store = Store::open(
        &db.path,
        Options::default().migrations(&[
            common::EVENTS,
            "CREATE TABLE counter(n INTEGER)",
            "INSERT INTO counter VALUES (0)",
        ]),
    )
    .expect("open");
    let (tasks, increments) = (8, 50);
    let threads: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..increments {
                    // Plain writes interleave with the transactions.
                    drop(store.write(common::INSERT, params![i, format!("t{t}"), "x"]));
                    store
                        .transaction(|tx| {
                            let n: i64 = tx.query_as("SELECT n FROM counter", &[])?[0];
                            tx.execute("UPDATE counter SET n = ?1", params![n + 1])?;
                            Ok(n + 1)
                        })
                        .wait()
                        .expect("increment");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    store.flush().wait().expect("flush");
    assert_eq!(common::count(&store, "SELECT n FROM counter"), tasks * increments);
    assert_eq!(common::count(&store, "SELECT count(*) FROM events"), tasks * increments);
}

#[test]
fn a_failing_or_panicking_closure_leaves_nothing() {
    let store =
        Store::open_in_memory(Options::default().migrations(&["CREATE TABLE t(v INTEGER UNIQUE)"])).expect("open");
    let aborted = store
        .transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (1)", params![])?;
            tx.execute("INSERT INTO t VALUES (2)", params![])?;
            Err::<(), _>(TxError::abort("changed my mind"))
        })
        .wait()
        .unwrap_err();
    assert!(matches!(&aborted, TxError::Aborted(why) if why == "changed my mind"), "{aborted}");
    let constraint = store
        .transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (3)", params![])?;
            tx.execute("INSERT INTO t VALUES (3)", params![])?;
            Ok(())
        })
        .wait()
        .unwrap_err();
    assert!(matches!(&constraint, TxError::Write(e) if e.code() == "Constraint"), "{constraint}");
    #[allow(unreachable_code)]
    let panicked = store
        .transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (4)", params![])?;
            panic!("boom");
            Ok(())
        })
        .wait()
        .unwrap_err();
    assert!(matches!(&panicked, TxError::Panicked(why) if why == "boom"), "{panicked}");
    assert_eq!(common::count(&store, "SELECT count(*) FROM t"), 0, "every attempt rolled back");
    let committed = store.transaction(|tx| tx.insert("t", &std::collections::BTreeMap::from([("v", 5)]))).wait();
    assert!(committed.is_ok(), "the writer survived the panic");
    assert_eq!(common::count(&store, "SELECT v FROM t"), 5);
    let pragma = store.transaction(|tx| tx.execute("PRAGMA query_only = 1", params![])).wait().unwrap_err();
    assert!(matches!(&pragma, TxError::Write(e) if e.code() == "InvalidInput"), "{pragma}");
}

#[test]
fn a_transaction_is_retried_whole_through_an_outside_lock() {
    let db = temp_db();
    let store = Store::open(
        &db.path,
        Options::default().migrations(&["CREATE TABLE counter(n INTEGER)", "INSERT INTO counter VALUES (0)"]),
    )
    .expect("open");
    let outside = rusqlite::Connection::open(&db.path).expect("outside");
    outside.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let ticket = store.transaction(|tx| {
        let n: i64 = tx.query_as("SELECT n FROM counter", &[])?[0];
        tx.execute("UPDATE counter SET n = ?1", params![n + 10])?;
        Ok(n + 10)
    });
    while store.metrics().retries == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    outside.execute_batch("COMMIT").expect("unlock");
    assert_eq!(ticket.wait().expect("commits after the lock"), 10);
    assert_eq!(common::count(&store, "SELECT n FROM counter"), 10, "applied exactly once");
}
