//! Write groups: a thread blocked in `Ticket::wait` may run the batch itself (it leads the
//! group) instead of handing it to the writer thread. Blocking and async callers mixed, with
//! writes that must be rejected alone, against a model of what each ticket must say and what
//! the table must hold, for every way of waiting.

mod common;

use std::collections::BTreeMap;

use common::temp_db;
use futures::executor::block_on;
use futures::future::join_all;
use sqlweir::{GroupWait, Options, Store, params};

const SCHEMA: &str = "CREATE TABLE t(k INTEGER PRIMARY KEY, writer INTEGER NOT NULL)";
const INSERT: &str = "INSERT INTO t(k, writer) VALUES (?1, ?2)";
const WRITES: i64 = 300;

/// Writer `w`'s `i`-th key. Every 37th write repeats the writer's previous key: the model says
/// it is rejected with `Constraint`, alone.
fn key(w: i64, i: i64) -> (i64, bool) {
    if i > 0 && i % 37 == 0 { (w * 10_000 + i - 1, true) } else { (w * 10_000 + i, false) }
}

fn mixed_callers_match_the_model(wait: GroupWait) {
    let db = temp_db();
    let store = Store::open(&db.path, Options::default().migrations(&[SCHEMA]).group_wait(wait)).expect("open");
    // Six blocking writers (one write in flight each: they lead or follow), three async ones
    // (windows of 16, served by the writer thread), and one transaction writer.
    let blocking: Vec<_> = (0..6)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..WRITES)
                    .map(|i| {
                        let (k, dup) = key(w, i);
                        (k, dup, store.write(INSERT, params![k, w]).wait().map_err(|e| e.code()))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let awaiting: Vec<_> = (6..9)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for chunk in (0..WRITES).collect::<Vec<_>>().chunks(16) {
                    let tickets = chunk.iter().map(|&i| {
                        let (k, _) = key(w, i);
                        store.write(INSERT, params![k, w])
                    });
                    let results = block_on(join_all(tickets));
                    for (&i, r) in chunk.iter().zip(results) {
                        let (k, dup) = key(w, i);
                        out.push((k, dup, r.map_err(|e| e.code())));
                    }
                }
                out
            })
        })
        .collect();
    let transactions = {
        let store = store.clone();
        std::thread::spawn(move || {
            (0..50)
                .map(|i| {
                    let k = 90_000 + i;
                    store
                        .transaction(move |tx| {
                            tx.execute(INSERT, params![k, 9])?;
                            Ok(())
                        })
                        .wait()
                        .is_ok()
                })
                .filter(|ok| *ok)
                .count()
        })
    };
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    let mut rejected = 0;
    for (w, handle) in blocking.into_iter().chain(awaiting).enumerate() {
        for (k, dup, result) in handle.join().expect("writer thread") {
            if dup {
                assert_eq!(result.map(|r| r.changes), Err("Constraint"), "key {k} repeats: rejected alone");
                rejected += 1;
            } else {
                assert_eq!(result.map(|r| r.changes), Ok(1), "key {k}");
                assert!(expected.insert(k, w as i64).is_none());
            }
        }
    }
    assert_eq!(transactions.join().expect("transaction thread"), 50, "every transaction committed");
    for i in 0..50 {
        expected.insert(90_000 + i, 9);
    }
    let rows: Vec<(i64, i64)> = store.query_as("SELECT k, writer FROM t ORDER BY k", &[]).expect("rows");
    assert_eq!(rows, expected.into_iter().collect::<Vec<_>>(), "the table holds exactly the acked writes");
    let m = store.metrics();
    assert_eq!((m.committed, m.rejected, m.failed), (rows.len() as u64, rejected, 0));
    assert_eq!(m.accepted, m.committed + m.rejected);
    store.close().expect("close");
}

#[test]
fn blocking_and_async_callers_with_writers_that_yield() {
    mixed_callers_match_the_model(GroupWait::Yield(50));
}

#[test]
fn blocking_and_async_callers_with_writers_that_park() {
    mixed_callers_match_the_model(GroupWait::Park);
}

#[test]
fn blocking_and_async_callers_with_writers_that_spin() {
    mixed_callers_match_the_model(GroupWait::Spin(50));
}

#[test]
fn blocking_and_async_callers_without_write_groups() {
    mixed_callers_match_the_model(GroupWait::Handoff);
}
