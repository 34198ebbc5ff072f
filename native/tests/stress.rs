//! Concurrency stress: 32 producers write at once, some writes bad, while another connection
//! grabs the write lock now and then; every count must reconcile exactly. CI-sized by default;
//! `scripts/stress` runs the long version (32 x 100,000 writes).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{EVENTS, INSERT, count, temp_db};
use sqlweir::{Options, Store, params};

const PRODUCERS: usize = 32;

fn writes_per_producer() -> usize {
    std::env::var("SQLWEIR_STRESS_WRITES").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}

#[test]
fn thirty_two_producers_with_faults_reconcile_exactly() {
    let per = writes_per_producer();
    let db = temp_db();
    let store = Store::open(&db.path, Options::default().migrations(&[EVENTS]).queue_capacity(2_000)).expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    // Another connection takes the write lock for 50 ms every 250 ms.
    let locker = {
        let (path, stop) = (db.path.clone(), stop.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(path).expect("locker connection");
            conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
            let mut held = 0;
            while !stop.load(Ordering::Relaxed) {
                conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
                std::thread::sleep(Duration::from_millis(50));
                conn.execute_batch("COMMIT").expect("unlock");
                held += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            held
        })
    };
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut outcome: BTreeMap<&'static str, usize> = BTreeMap::new();
                let mut window = Vec::new();
                for i in 0..per {
                    // Every 97th write breaks NOT NULL; every 389th is bad SQL; the rest are good.
                    let ticket = if i % 389 == 388 {
                        store.write("INSERT INTO nowhere(x) VALUES (?1)", params![i as i64])
                    } else if i % 97 == 96 {
                        store.write(INSERT, params![i as i64, None::<String>, "bad"])
                    } else {
                        store.write(INSERT, params![i as i64, format!("p{p}"), format!("{p}:{i}")])
                    };
                    window.push(ticket);
                    if window.len() == 32 {
                        for t in window.drain(..) {
                            *outcome
                                .entry(match t.wait() {
                                    Ok(_) => "ok",
                                    Err(e) => e.code(),
                                })
                                .or_default() += 1;
                        }
                    }
                }
                for t in window {
                    *outcome
                        .entry(match t.wait() {
                            Ok(_) => "ok",
                            Err(e) => e.code(),
                        })
                        .or_default() += 1;
                }
                outcome
            })
        })
        .collect();
    let mut total: BTreeMap<&'static str, usize> = BTreeMap::new();
    for p in producers {
        for (k, v) in p.join().expect("producer") {
            *total.entry(k).or_default() += v;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let held = locker.join().expect("locker");
    let bad_sql = (0..per).filter(|i| i % 389 == 388).count() * PRODUCERS;
    let not_null = (0..per).filter(|i| i % 389 != 388 && i % 97 == 96).count() * PRODUCERS;
    let good = per * PRODUCERS - bad_sql - not_null;
    assert_eq!(total.get("ok").copied().unwrap_or(0), good, "{total:?}");
    assert_eq!(total.get("Constraint").copied().unwrap_or(0), not_null, "{total:?}");
    assert_eq!(total.get("Sql").copied().unwrap_or(0), bad_sql, "{total:?}");
    assert_eq!(total.values().sum::<usize>(), per * PRODUCERS, "every ticket resolved once: {total:?}");
    assert_eq!(count(&store, "SELECT count(*) FROM events") as usize, good);
    assert_eq!(count(&store, "SELECT count(DISTINCT payload) FROM events") as usize, good, "no duplicates");
    let m = store.metrics();
    assert_eq!(m.accepted as usize, per * PRODUCERS);
    assert_eq!((m.committed as usize, m.rejected as usize, m.failed), (good, bad_sql + not_null, 0));
    assert!(held >= 1, "the outside lock was taken at least once");
    store.close().expect("close");
    let check: String = rusqlite::Connection::open(&db.path)
        .expect("reopen")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(check, "ok");
}
