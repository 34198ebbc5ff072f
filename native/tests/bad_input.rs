//! Bad input: each bad write gets its own typed error while the rest of its batch commits;
//! a store that cannot be written (closed, full, read-only, not a database) says so in a type.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{count, temp_db};
use futures::executor::block_on;
use sqlweir::{BackendError, LockError, OpenError, Options, Receipt, Store, Ticket, Value, Wait, WriteError, params};

const PARENT: &str = "CREATE TABLE parent(id INTEGER PRIMARY KEY)";
const ITEM: &str = "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, \
                    qty INTEGER CHECK (qty >= 0), parent INTEGER REFERENCES parent(id), r REAL, b BLOB)";
const ONE_PARENT: &str = "INSERT INTO parent(id) VALUES (1)";
const INSERT_ITEM: &str = "INSERT INTO item(name, qty, parent, r, b) VALUES (?1, ?2, ?3, ?4, ?5)";

/// SQLite's default `SQLITE_MAX_LENGTH`: the largest string or blob it stores.
const SQLITE_MAX_LENGTH: usize = 1_000_000_000;

fn item(name: Option<&str>, qty: i64, parent: i64, r: f64) -> Vec<Value> {
    params![name, qty, parent, r, None::<Vec<u8>>]
}

fn expect_err(result: &Result<Receipt, WriteError>, what: &str) -> WriteError {
    match result {
        Err(e) => e.clone(),
        Ok(r) => panic!("{what}: expected an error, got {r:?}"),
    }
}

#[test]
fn every_bad_input_is_rejected_alone_while_the_rest_of_its_batch_commits() {
    let db = temp_db();
    // 12 single writes + one write_many of 4 rows = 16 rows: with batch_rows(16) and a long
    // linger they form exactly one batch.
    let store = Store::open(
        &db.path,
        Options::default().migrations(&[PARENT, ITEM, ONE_PARENT]).batch_rows(16).linger(Duration::from_secs(2)),
    )
    .expect("open");

    // NaN never reaches the queue: it is refused at acceptance, alone and at once.
    let nan = store.write(INSERT_ITEM, item(Some("nan"), 1, 1, f64::NAN)).wait().unwrap_err();
    assert_eq!(nan.code(), "InvalidInput");
    assert_eq!(nan.sqlite_code(), None);
    assert_eq!(
        nan.to_string(),
        "invalid input: parameter 4: NaN cannot be stored: SQLite would silently turn it into NULL"
    );
    let nan_many =
        store.write_many(INSERT_ITEM, vec![item(Some("n0"), 1, 1, 0.0), item(Some("n1"), 1, 1, f64::NAN)]).wait();
    assert_eq!(
        nan_many.unwrap_err().to_string(),
        "invalid input: row 1, parameter 4: NaN cannot be stored: SQLite would silently turn it into NULL",
        "a write_many with a NaN is refused whole, before acceptance"
    );
    assert_eq!(store.metrics().accepted, 0, "refused writes were never accepted");

    // A zeroed allocation this large is mapped lazily: SQLite refuses it by length before reading it.
    let too_big = vec![0u8; SQLITE_MAX_LENGTH + 1];
    let tickets: Vec<(&str, Ticket<Receipt>)> = vec![
        ("good a", store.write(INSERT_ITEM, item(Some("a"), 1, 1, 1.5))),
        ("invalid sql", store.write("INSRT INTO item(name) VALUES (?1)", params!["x"])),
        ("good b", store.write(INSERT_ITEM, item(Some("b"), 2, 1, 2.5))),
        ("wrong parameter count", store.write(INSERT_ITEM, params!["short", 1])),
        ("blob over the limit", store.write(INSERT_ITEM, params!["big", 1, 1, 0.0, too_big])),
        ("not null", store.write(INSERT_ITEM, item(None, 1, 1, 0.0))),
        ("unique", store.write(INSERT_ITEM, item(Some("a"), 1, 1, 0.0))),
        ("check", store.write(INSERT_ITEM, item(Some("negative"), -1, 1, 0.0))),
        ("foreign key", store.write(INSERT_ITEM, item(Some("orphan"), 1, 99, 0.0))),
        ("+infinity", store.write(INSERT_ITEM, item(Some("inf+"), 1, 1, f64::INFINITY))),
        ("-infinity", store.write(INSERT_ITEM, item(Some("inf-"), 1, 1, f64::NEG_INFINITY))),
        ("good c", store.write(INSERT_ITEM, item(Some("c"), 3, 1, 3.5))),
    ];
    let many = store.write_many(
        INSERT_ITEM,
        vec![
            item(Some("m1"), 1, 1, 0.0),
            item(None, 1, 1, 0.0),
            item(Some("m2"), 1, 1, 0.0),
            item(Some("m1"), 1, 1, 0.0),
        ],
    );
    let results: Vec<(&str, Result<Receipt, WriteError>)> = tickets.into_iter().map(|(w, t)| (w, t.wait())).collect();
    let many = many.wait().expect("write_many resolves with an outcome");

    // Every Ok receipt (and the write_many) committed in one and the same batch.
    let batches: BTreeSet<u64> =
        results.iter().filter_map(|(_, r)| r.as_ref().ok().map(|r| r.batch)).chain([many.batch]).collect();
    assert_eq!(batches.len(), 1, "all good writes share one batch: {batches:?}");
    let oks: Vec<&str> = results.iter().filter(|(_, r)| r.is_ok()).map(|(w, _)| *w).collect();
    assert_eq!(oks, ["good a", "good b", "+infinity", "-infinity", "good c"]);

    let err = |what: &str| expect_err(&results.iter().find(|(w, _)| *w == what).expect("known write").1, what);
    // (write, code(), sqlite_code(), text the message contains)
    let expected: [(&str, &str, Option<i32>, &str); 7] = [
        ("invalid sql", "Sql", Some(1), "sql error: near \"INSRT\": syntax error"),
        ("wrong parameter count", "InvalidInput", None, "statement takes 5 parameters but 2 were given"),
        ("blob over the limit", "InvalidInput", Some(18), "string or blob too big"),
        ("not null", "Constraint", Some(1299), "NOT NULL constraint failed: item.name"),
        ("unique", "Constraint", Some(2067), "UNIQUE constraint failed: item.name"),
        ("check", "Constraint", Some(275), "CHECK constraint failed: qty >= 0"),
        ("foreign key", "Constraint", Some(787), "FOREIGN KEY constraint failed"),
    ];
    for (what, code, sqlite_code, text) in expected {
        let e = err(what);
        assert_eq!(e.code(), code, "{what}: {e}");
        assert_eq!(e.sqlite_code(), sqlite_code, "{what}: {e}");
        assert!(e.to_string().contains(text), "{what}: {e}");
        assert!(!e.is_transient(), "{what}: retrying it unchanged cannot help");
        assert!(
            matches!(&e, WriteError::Backend(b) if b.code == sqlite_code),
            "{what}: the BackendError is in the variant"
        );
        assert!(std::error::Error::source(&e).is_none(), "{what}: SQLite's message is in Display, not repeated");
    }
    assert!(err("check").to_string().ends_with("this write alone was rejected; fix its values"));

    assert_eq!(many.committed, 2);
    let many_rejected: Vec<(usize, Option<i32>)> = many.rejected.iter().map(|(i, e)| (*i, e.sqlite_code())).collect();
    assert_eq!(many_rejected, [(1, Some(1299)), (3, Some(2067))]);

    // Exactly the good rows are there, with their contents; infinities read back as they were.
    let rows: Vec<(String, Option<f64>)> =
        store.query_as("SELECT name, r FROM item ORDER BY id", &[]).expect("read back");
    let expected_rows: Vec<(String, Option<f64>)> = [
        ("a", 1.5),
        ("b", 2.5),
        ("inf+", f64::INFINITY),
        ("inf-", f64::NEG_INFINITY),
        ("c", 3.5),
        ("m1", 0.0),
        ("m2", 0.0),
    ]
    .into_iter()
    .map(|(n, r)| (n.to_owned(), Some(r)))
    .collect();
    assert_eq!(rows, expected_rows);
    let m = store.metrics();
    assert_eq!((m.accepted, m.committed, m.rejected, m.failed), (16, 7, 9, 0));
    assert_eq!((m.batches, m.replays), (1, 0));
    store.close().expect("close");
}

#[test]
fn disk_full_rejects_the_write_that_does_not_fit_and_keeps_the_smaller_ones() {
    let db = temp_db();
    // max_page_count is a setting of the connection, not of the file: as a migration step it
    // runs on the writer's own connection, so it caps this session's writes at 8 pages of 4 KiB.
    let store = Store::open(
        &db.path,
        Options::default()
            .migrations(&["CREATE TABLE d(id INTEGER PRIMARY KEY, note TEXT, b BLOB)", "PRAGMA max_page_count = 8"])
            .batch_rows(9)
            .linger(Duration::from_secs(2)),
    )
    .expect("open");
    let insert = "INSERT INTO d(note, b) VALUES (?1, ?2)";
    let small: Vec<Ticket<Receipt>> =
        (0..5).map(|i| store.write(insert, params![format!("small {i}"), vec![1u8; 100]])).collect();
    let big = store.write(insert, params!["big", vec![2u8; 100_000]]);
    let after: Vec<Ticket<Receipt>> =
        (5..8).map(|i| store.write(insert, params![format!("small {i}"), vec![1u8; 100]])).collect();
    let small: Vec<Receipt> = small.into_iter().chain(after).map(|t| t.wait().expect("a small write fits")).collect();
    let big = big.wait().unwrap_err();
    assert_eq!(big.code(), "DiskFull");
    assert_eq!(big.sqlite_code(), Some(13), "SQLITE_FULL");
    assert_eq!(
        big.to_string(),
        "database or disk is full: database or disk is full (code 13); free disk space or raise the page limit"
    );
    let batches: BTreeSet<u64> = small.iter().map(|r| r.batch).collect();
    assert_eq!(batches.len(), 1, "the full write was rejected alone inside one batch");
    assert_eq!(count(&store, "SELECT count(*) FROM d"), 8);
    assert_eq!(count(&store, "SELECT count(*) FROM d WHERE note = 'big'"), 0);
    // The store goes on: small writes still fit.
    store.write(insert, params!["later", vec![3u8; 100]]).wait().expect("the store keeps writing");
    assert_eq!(count(&store, "SELECT count(*) FROM d"), 9);
    let m = store.metrics();
    assert_eq!((m.accepted, m.committed, m.rejected, m.failed), (10, 9, 1, 0));
    store.close().expect("close");
}

#[test]
fn writes_after_close_fail_with_closed_in_every_form() {
    let db = temp_db();
    let store = common::open(&db, Options::default());
    store.write(common::INSERT, params![1, "before", "x"]).wait().expect("write before close");
    let clone = store.clone();
    store.close().expect("close");
    let one = clone.write(common::INSERT, params![2, "after", "x"]).wait().unwrap_err();
    assert_eq!(one, WriteError::Closed);
    assert_eq!((one.code(), one.sqlite_code(), one.is_transient()), ("Closed", None, false));
    assert_eq!(one.to_string(), "store is closed: open it again to write");
    let many = clone.write_many(common::INSERT, vec![params![3, "after", "x"]]).wait().unwrap_err();
    assert_eq!(many, WriteError::Closed);
    let awaited = block_on(clone.write(common::INSERT, params![4, "after", "x"])).unwrap_err();
    assert_eq!(awaited, WriteError::Closed);
    clone.flush().wait().expect("a flush after close has nothing to wait for");
    assert!(matches!(clone.lock("job", Wait::FailFast), Err(LockError::Closed)));
    drop((store, clone));
    let reopened = common::open(&db, Options::default());
    assert_eq!(count(&reopened, "SELECT count(*) FROM events"), 1, "nothing after close was written");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
    // Extends reads_and_jobs.rs (a text file): a binary file, its SQLite code, and no damage.
    let db = temp_db();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&db.path, &garbage).expect("write garbage");
    match Store::open(&db.path, Options::default().migrations(&[common::EVENTS])) {
        Err(e @ OpenError::NotADatabase { .. }) => {
            assert_eq!(
                e.to_string(),
                format!(
                    "{} is not an SQLite database; point the store at a database file or a new path",
                    db.path.display()
                )
            );
            let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<BackendError>());
            assert_eq!(source.and_then(|s| s.code), Some(26), "SQLITE_NOTADB");
        }
        other => panic!("expected NotADatabase, got {:?}", other.err()),
    }
    assert_eq!(std::fs::read(&db.path).expect("read back"), garbage, "the file is not modified");
    let mut names: Vec<String> = std::fs::read_dir(db.dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["test.db"], "no -wal or -shm file left beside it");
}

/// Removes the immutable attribute again, even when an assertion fails.
struct Immutable<'a>(&'a Path);

impl Immutable<'_> {
    fn set(path: &Path) -> Option<Immutable<'_>> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Immutable(path))
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(self.0).status();
    }
}

#[test]
fn a_read_only_database_is_refused_at_open_with_read_only() {
    let db = temp_db();
    let store = common::open(&db, Options::default());
    store.write(common::INSERT, params![1, "kept", "x"]).wait().expect("write");
    store.close().expect("close");
    drop(store);
    let before = std::fs::read(&db.path).expect("read");

    // As root, file permissions do not stop writes, so read-only is asked for honestly: the
    // open flags say read-only (a `mode=ro` URI; the store opens with SQLITE_OPEN_URI) ...
    let uri = format!("file:{}?mode=ro", db.path.display());
    match Store::open(&uri, Options::default().migrations(&[common::EVENTS])) {
        Err(e @ OpenError::ReadOnly { .. }) => assert_eq!(
            e.to_string(),
            format!("{uri} is read-only; the store needs write access to the file and its directory")
        ),
        other => panic!("expected ReadOnly for a mode=ro URI, got {:?}", other.err()),
    }
    // ... and the file itself cannot be written (the immutable attribute stops root too).
    match Immutable::set(&db.path) {
        Some(guard) => {
            match Store::open(&db.path, Options::default().migrations(&[common::EVENTS])) {
                Err(e @ OpenError::ReadOnly { .. }) => assert!(e.to_string().contains("is read-only"), "{e}"),
                other => panic!("expected ReadOnly for an immutable file, got {:?}", other.err()),
            }
            drop(guard);
        }
        None => eprintln!("chattr +i is not available here: only the mode=ro case ran"),
    }
    assert_eq!(std::fs::read(&db.path).expect("read"), before, "a refused open writes nothing");
    let reopened = common::open(&db, Options::default());
    assert_eq!(count(&reopened, "SELECT count(*) FROM events WHERE source = 'kept'"), 1);
}

/// Regression test for a bug found while writing this suite: SQLite runs some PRAGMAs (the flag
/// pragmas such as `query_only` and `ignore_check_constraints`, and `synchronous`,
/// `cache_size`) while *preparing* them. The writer prepares every write before it checks
/// `readonly()`, so a refused PRAGMA write still changed the write connection: after a refused
/// `PRAGMA query_only = 1` every later write failed with `ReadOnly` until the store was
/// reopened, and after `PRAGMA ignore_check_constraints = 1` CHECK constraints were silently
/// off. (`PRAGMA synchronous = OFF` would silently weaken what an ack means.)
#[test]
fn a_refused_pragma_write_leaves_the_write_connection_unchanged() {
    let db = temp_db();
    let store = Store::open(&db.path, Options::default().migrations(&[PARENT, ITEM, ONE_PARENT])).expect("open");
    let refused = |pragma: &str| {
        let e = store.write(pragma, params![]).wait().unwrap_err();
        assert_eq!(e.code(), "InvalidInput", "{pragma}: {e}");
    };
    refused("PRAGMA ignore_check_constraints = 1");
    let check = store.write(INSERT_ITEM, item(Some("negative"), -1, 1, 0.0)).wait();
    assert_eq!(check.map_err(|e| e.sqlite_code()), Err(Some(275)), "CHECK constraints still hold");
    refused("PRAGMA query_only = 1");
    store.write(INSERT_ITEM, item(Some("good"), 1, 1, 0.0)).wait().expect("the connection is still writable");
    assert_eq!(count(&store, "SELECT count(*) FROM item"), 1);
}
