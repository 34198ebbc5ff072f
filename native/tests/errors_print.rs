//! Issue 16, item 6: errors printed their SQLite message twice through anyhow's `{:#}`
//! ("migration step 0 failed: no such table: x (code 1); ...: no such table: x (code 1)"),
//! because `Display` repeated the text that `source()` returned, and a job lock's error showed
//! `SystemTime { tv_sec: .., tv_nsec: .. }`. Now no `Display` repeats its source, each is a
//! lowercase phrase without a trailing period, and SQLite's message shows exactly once in the
//! whole chain, on real database files.

use std::error::Error;

use sqlweir::{OpenError, Options, Store, Wait, WriteError, params};

/// The error of a call that must fail (`Store` and `JobGuard` have no `Debug` for `expect_err`).
fn refused<T, E>(r: Result<T, E>, what: &str) -> E {
    match r {
        Ok(_) => panic!("expected an error: {what}"),
        Err(e) => e,
    }
}

/// Display of the error, then of each source: what a chain printer shows.
fn chain(e: &(dyn Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut next = e.source();
    while let Some(s) = next {
        out.push(s.to_string());
        next = s.source();
    }
    out
}

/// The checks every error gets: its chain, anyhow's two chain formats, and its phrase.
fn prints_once<E: Error + Send + Sync + 'static>(e: E, sqlite_says: &str) -> Vec<String> {
    let links = chain(&e);
    for link in &links {
        let first = link.chars().next().expect("a message");
        assert!(!first.is_uppercase(), "a lowercase phrase: {link:?}");
        assert!(!link.ends_with('.'), "no trailing period: {link:?}");
    }
    assert_eq!(links.iter().map(|l| l.matches(sqlite_says).count()).sum::<usize>(), 1, "{links:?}");
    let any = anyhow::Error::from(e);
    let alternate = format!("{any:#}");
    assert_eq!(alternate.matches(sqlite_says).count(), 1, "{alternate}");
    assert_eq!(alternate, links.join(": "));
    let debug = format!("{any:?}");
    assert_eq!(debug.matches(sqlite_says).count(), 1, "{debug}");
    links
}

#[test]
fn opening_a_file_that_is_not_sqlite_names_the_path_then_sqlite_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.db");
    std::fs::write(&path, b"plain text, long enough to look like a header to SQLite, but not one").expect("write");
    let e = refused(Store::open(&path, Options::default()), "not a database");
    assert!(matches!(e, OpenError::NotADatabase { .. }), "{e:?}");
    let links = prints_once(e, "file is not a database");
    assert_eq!(
        links,
        [
            format!("{} is not an SQLite database; point the store at a database file or a new path", path.display()),
            "file is not a database (code 26)".to_owned(),
        ]
    );
}

#[test]
fn a_failed_migration_step_names_the_step_then_sqlite_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let steps = ["CREATE TABLE a(x)", "INSERT INTO nowhere VALUES (1)"];
    let e = refused(Store::open(dir.path().join("m.db"), Options::default().migrations(&steps)), "step 1 fails");
    assert!(matches!(e, OpenError::Migration { step: 1, .. }), "{e:?}");
    let links = prints_once(e, "no such table: nowhere");
    assert_eq!(
        links,
        ["migration step 1 failed; fix the step (earlier steps stay applied)", "no such table: nowhere (code 1)"]
    );
    // Debug stays derived: the fields, for `fn main() -> Result<(), Box<dyn Error>>`.
    let v2 = dir.path().join("v2.db");
    Store::open(&v2, Options::default().migrations(&["CREATE TABLE a(x)", "CREATE TABLE b(x)"]))
        .expect("two steps")
        .close()
        .expect("close");
    let too_new = refused(Store::open(&v2, Options::default().migrations(&["CREATE TABLE a(x)"])), "v2 is too new");
    assert_eq!(format!("{too_new:?}"), "SchemaTooNew { found: 2, known: 1 }");
    let links = chain(&too_new);
    assert_eq!(
        links,
        ["database schema version 2 is newer than the 1 migrations this program knows; upgrade the program"]
    );
}

#[test]
fn a_constraint_write_error_carries_sqlite_message_once_and_no_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("w.db"), Options::default().migrations(&["CREATE TABLE u(k UNIQUE)"]))
        .expect("open");
    store.write("INSERT INTO u(k) VALUES (?1)", params![1]).wait().expect("first");
    let e: WriteError = store.write("INSERT INTO u(k) VALUES (?1)", params![1]).wait().expect_err("duplicate");
    assert_eq!(e.code(), "Constraint");
    let links = prints_once(e, "UNIQUE constraint failed: u.k");
    assert_eq!(
        links,
        ["constraint failed: UNIQUE constraint failed: u.k (code 2067); this write alone was rejected; fix its values"]
    );

    let q = store.query("SELECT * FROM missing", &[]).expect_err("no table");
    let links = prints_once(q, "no such table: missing");
    assert_eq!(links, ["query failed: no such table: missing (code 1)"]);
    let rows: Vec<i64> = store.query_as("SELECT count(*) FROM u", &[]).expect("count");
    assert_eq!(rows, [1]);
    store.close().expect("close");
}

#[test]
fn a_held_job_lock_says_how_long_not_a_system_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("j.db"), Options::default()).expect("open");
    let guard = store.lock_as("sync", "worker-1", Wait::FailFast).expect("first lock");
    let e = refused(store.lock_as("sync", "worker-2", Wait::FailFast), "held");
    let text = e.to_string();
    assert!(text.starts_with("job \"sync\" is already in progress: held by worker-1 for 0."), "{text}");
    assert!(text.ends_with("s; wait for it or try later"), "{text}");
    assert!(!text.contains("SystemTime"), "{text}");
    assert_eq!(chain(&e).len(), 1);
    guard.succeed();
}
