//! The commit feed (`Store::subscribe`): one event per committed batch that changed rows, with
//! the tables it changed (triggers' and cascades' included, from SQLite's authorizer, not from
//! the SQL text), never for a batch or transaction that changed nothing or was rolled back; any
//! number of subscribers on any threads, blocking or async; a slow one is told it lagged.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use common::temp_db;
use futures::StreamExt;
use futures::executor::block_on;
use sqlweir::{Commit, FeedItem, Options, Store, TxError, params};

const SCHEMA: &[&str] = &[
    "CREATE TABLE events(id INTEGER PRIMARY KEY, source TEXT NOT NULL UNIQUE)",
    "CREATE TABLE jobs(name TEXT PRIMARY KEY, runs INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE audit(id INTEGER PRIMARY KEY, what TEXT)",
    "CREATE TRIGGER events_audit AFTER INSERT ON events BEGIN INSERT INTO audit(what) VALUES (new.source); END",
    "CREATE TABLE parent(id INTEGER PRIMARY KEY)",
    "CREATE TABLE child(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id) ON DELETE CASCADE)",
];

fn open(options: Options) -> (common::TempDb, Store) {
    let db = temp_db();
    let store = Store::open(&db.path, options.migrations(SCHEMA)).expect("open");
    (db, store)
}

fn commit(item: Option<FeedItem>) -> Arc<Commit> {
    match item {
        Some(FeedItem::Commit(c)) => c,
        other => panic!("expected a commit, got {other:?}"),
    }
}

fn tables(c: &Commit) -> Vec<&str> {
    c.tables.iter().map(String::as_str).collect()
}

#[test]
fn each_committed_batch_is_published_once_with_the_tables_it_changed() {
    let (_db, store) = open(Options::default());
    let mut feed = store.subscribe();
    assert_eq!(feed.try_next(), None, "nothing committed since subscribing");

    // A plain insert fires its trigger: the feed names both tables.
    let r = store.write("INSERT INTO events(source) VALUES (?1)", params!["a"]).wait().expect("insert");
    let c = commit(feed.wait_next());
    assert_eq!((c.batch, tables(&c)), (r.batch, vec!["audit", "events"]));

    // A WITHOUT ROWID table (SQLite's update hook would never see it).
    let r = store.write("INSERT INTO jobs(name, runs) VALUES (?1, 0)", params!["nightly"]).wait().expect("job");
    let c = commit(feed.wait_next());
    assert_eq!((c.batch, tables(&c)), (r.batch, vec!["jobs"]));

    // Changing nothing publishes nothing: an UPDATE that matches no row, a rejected write
    // (duplicate source), a transaction that gives up after writing.
    store.write("UPDATE jobs SET runs = runs + 1 WHERE name = ?1", params!["nobody"]).wait().expect("no-op update");
    assert!(store.write("INSERT INTO events(source) VALUES (?1)", params!["a"]).wait().is_err(), "duplicate");
    let gave_up = store
        .transaction(|tx| {
            tx.execute("INSERT INTO parent(id) VALUES (1)", params![])?;
            Err::<(), _>(TxError::abort("changed my mind"))
        })
        .wait();
    assert!(gave_up.is_err());
    assert_eq!(feed.try_next(), None, "no commit changed anything");

    // A committed transaction, then a delete that cascades to the child table.
    store
        .transaction(|tx| {
            tx.execute("INSERT INTO parent(id) VALUES (2)", params![])?;
            tx.execute("INSERT INTO child(id, parent) VALUES (1, 2)", params![])?;
            Ok(())
        })
        .wait()
        .expect("transaction");
    assert_eq!(tables(&commit(feed.wait_next())), vec!["child", "parent"]);
    store.write("DELETE FROM parent WHERE id = ?1", params![2]).wait().expect("delete");
    assert_eq!(tables(&commit(feed.wait_next())), vec!["child", "parent"], "the cascade's table too");
    assert_eq!(store.query_as::<i64>("SELECT count(*) FROM child", &[]).expect("count"), vec![0]);

    // Many writes in one batch: one event for all of them, each table once.
    let rows: Vec<_> = (0..500).map(|i| params![format!("s{i}")]).collect();
    let out = store.write_many("INSERT INTO events(source) VALUES (?1)", rows).wait().expect("many");
    let c = commit(feed.wait_next());
    assert_eq!((c.batch, tables(&c)), (out.batch, vec!["audit", "events"]));
    assert_eq!(feed.try_next(), None, "one event per batch, not per row");
}

#[test]
fn a_batch_with_a_rejected_write_names_only_what_the_kept_writes_changed() {
    // One batch: a rejected insert into events (duplicate) and a good insert into jobs.
    let (_db, store) =
        open(Options::default().batch_rows(2).linger(std::time::Duration::from_secs(30)).queue_capacity(100));
    let seed = store.write("INSERT INTO events(source) VALUES ('taken')", params![]);
    store.flush().wait().expect("flush ends the linger");
    seed.wait().expect("seed");
    let mut feed = store.subscribe();
    let bad = store.write("INSERT INTO events(source) VALUES ('taken')", params![]);
    let good = store.write("INSERT INTO jobs(name, runs) VALUES ('j', 1)", params![]);
    store.flush().wait().expect("flush");
    let good = good.wait().expect("the good write commits");
    assert!(bad.wait().is_err(), "the duplicate is rejected alone");
    let c = commit(feed.wait_next());
    assert_eq!((c.batch, tables(&c)), (good.batch, vec!["jobs"]));
}

#[test]
fn subscribers_on_many_threads_see_the_same_commits_in_commit_order_and_end_on_close() {
    let (_db, store) = open(Options::default());
    let store = Arc::new(store);
    let subscribers = 4;
    let ready = Arc::new(Barrier::new(subscribers + 1));
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let feed = store.subscribe();
            let ready = ready.clone();
            std::thread::spawn(move || {
                ready.wait();
                feed.into_iter()
                    .map(|item| match item {
                        FeedItem::Commit(c) => c.batch,
                        FeedItem::Lagged { missed } => panic!("lagged by {missed} with the default capacity"),
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    ready.wait();
    let mut batches = BTreeSet::new();
    for i in 0..100 {
        let r =
            store.write("INSERT INTO jobs(name, runs) VALUES (?1, 0)", params![format!("j{i}")]).wait().expect("write");
        batches.insert(r.batch);
    }
    store.close().expect("close");
    let expected: Vec<u64> = batches.into_iter().collect();
    for reader in readers {
        assert_eq!(reader.join().expect("reader"), expected, "every commit, once, in order; the feed ends on close");
    }
}

#[test]
fn a_slow_subscriber_is_told_it_lagged_and_the_writer_never_waits_for_it() {
    let (_db, store) = open(Options::default().feed_capacity(4));
    let mut slow = store.subscribe();
    let mut batches = Vec::new();
    for i in 0..10 {
        batches.push(
            store
                .write("INSERT INTO jobs(name, runs) VALUES (?1, 0)", params![format!("j{i}")])
                .wait()
                .expect("write")
                .batch,
        );
    }
    assert_eq!(slow.wait_next(), Some(FeedItem::Lagged { missed: 6 }));
    let rest: Vec<u64> = std::iter::from_fn(|| slow.try_next()).map(|i| commit(Some(i)).batch).collect();
    assert_eq!(rest, batches[6..], "it goes on from the oldest commit kept");
}

#[test]
fn the_feed_reads_as_an_async_stream() {
    let (_db, store) = open(Options::default());
    let mut feed = store.subscribe();
    let writer = {
        let r = store.write("INSERT INTO events(source) VALUES ('async')", params![]);
        std::thread::spawn(move || r.wait().expect("write").batch)
    };
    let c = commit(block_on(StreamExt::next(&mut feed)));
    assert_eq!(c.batch, writer.join().expect("writer"));
    assert_eq!(tables(&c), vec!["audit", "events"]);
    store.close().expect("close");
    assert_eq!(block_on(StreamExt::next(&mut feed)), None, "the stream ends when the store closes");
}

// Live queries (`Store::watch`) over the feed. The feed is published before a batch's writes are
// acked, so right after `wait()` a zero timeout tells "a run is due" from "nothing to do"
// without timing anything. `random()` makes every run of a query a new result, so delivered
// results count its runs.

fn count(rows: &sqlweir::Rows) -> i64 {
    match rows.rows[0][0] {
        sqlweir::Value::Integer(n) => n,
        ref other => panic!("expected a count, got {other:?}"),
    }
}

#[test]
fn a_watch_runs_once_per_batch_that_touched_its_tables_and_never_for_others() {
    let (_db, store) = open(Options::default());
    let mut runs = store.watch("SELECT count(*), random() FROM events", &[]).expect("watch");
    assert_eq!(runs.tables(), ["events"]);
    assert_eq!(count(&runs.wait_next().expect("first").expect("first run")), 0);
    let none = std::time::Duration::ZERO;

    store.write("INSERT INTO jobs(name, runs) VALUES (?1, 0)", params!["other"]).wait().expect("other table");
    assert!(runs.next_timeout(none).is_none(), "a batch of another table runs nothing");

    store.write("INSERT INTO events(source) VALUES (?1)", params!["a"]).wait().expect("insert");
    assert_eq!(count(&runs.next_timeout(none).expect("due").expect("run")), 1);
    assert!(runs.next_timeout(none).is_none(), "one run per batch");

    // One batch of many rows: one run, never a half-applied batch.
    let rows: Vec<_> = (0..50).map(|i| params![format!("m{i}")]).collect();
    store.write_many("INSERT INTO events(source) VALUES (?1)", rows).wait().expect("many");
    assert_eq!(count(&runs.next_timeout(none).expect("due").expect("run")), 51);
    assert!(runs.next_timeout(none).is_none());

    // Commits that arrived while the caller was busy: one run for all of them.
    for i in 0..5 {
        store.write("INSERT INTO events(source) VALUES (?1)", params![format!("late{i}")]).wait().expect("late");
    }
    assert_eq!(count(&runs.next_timeout(none).expect("due").expect("run")), 56);
    assert!(runs.next_timeout(none).is_none(), "coalesced into one run");

    // A view and a subquery: their tables are the ones beneath; a result that did not change is
    // not delivered.
    let mut tagged = store
        .watch("SELECT count(*) FROM audit WHERE what IN (SELECT source FROM events WHERE id > ?1)", &params![1000])
        .expect("watch");
    assert_eq!(tagged.tables(), ["audit", "events"]);
    assert_eq!(count(&tagged.wait_next().expect("first").expect("run")), 0);
    store.write("INSERT INTO events(source) VALUES (?1)", params!["z"]).wait().expect("insert");
    assert!(tagged.next_timeout(none).is_none(), "it ran, and its result did not change");
    assert_eq!(count(&runs.next_timeout(none).expect("due").expect("run")), 57);

    // Bad input fails at once, with the error that says why.
    let err = store.watch("SELECT * FROM nowhere", &[]).err().expect("no such table");
    assert!(matches!(&err, sqlweir::QueryError::Database(e) if e.kind == sqlweir::ErrorKind::Sql), "{err}");

    // Closing the store ends every watch.
    store.close().expect("close");
    assert!(runs.wait_next().is_none());
    assert!(tagged.next().is_none());
}

#[test]
fn a_watch_on_another_thread_sees_each_result_a_writer_commits() {
    let (_db, store) = open(Options::default());
    let mut watch = store.watch("SELECT count(*) FROM events", &[]).expect("watch");
    assert_eq!(count(&watch.wait_next().expect("first").expect("run")), 0);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                store.write("INSERT INTO events(source) VALUES (?1)", params![format!("t{i}")]).wait().expect("write");
            }
        })
    };
    let mut seen = Vec::new();
    for result in watch.by_ref() {
        seen.push(count(&result.expect("run")));
        if seen.last() == Some(&200) {
            break;
        }
    }
    writer.join().expect("writer");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "only changed results, in commit order: {seen:?}");
    assert_eq!(seen.last(), Some(&200), "the last commit reaches the watch: {seen:?}");
    store.close().expect("close");
    assert!(watch.next().is_none(), "a closed store ends the watch");
}
