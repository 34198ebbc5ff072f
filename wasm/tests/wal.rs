//! WAL on the OPFS pool VFS, in a real dedicated worker of headless Chromium (run by
//! `scripts/test-browser`; a fresh profile each run, one pool configuration per file).
//!
//! Regression (issue 18): a database left in WAL mode, closed cleanly or not, failed to open
//! again with "unable to open database file" (`SQLITE_CANTOPEN`, 14). The pool VFS has no shared
//! memory, so SQLite opens a WAL only in exclusive locking mode, and the open path ran
//! `PRAGMA synchronous`, which reads the schema, before `PRAGMA locking_mode=EXCLUSIVE`. The first
//! test pins that cause down; the others prove the fix and what each mode flushes at a commit.
#![cfg(target_arch = "wasm32")]
// clippy's allow-unwrap-in-tests does not see #[wasm_bindgen_test] functions as tests.
#![allow(clippy::unwrap_used)]

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use sqlite_wasm_rs::WasmOsCallback;
use sqlite_wasm_rs::vfs::VfsFilesManager;
use sqlite_wasm_rs::vfs::transfer::DbTransfer;
use sqlite_wasm_vfs::sahpool::{OpfsSAHPoolCfgBuilder, OpfsSAHPoolUtil, install};
use sqlweir_core::{Value, params};
use sqlweir_wasm::{Journal, Options, Store, Synchronous};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// The VFS name and pool directory a store installs by default (`opfs::VFS_NAME`,
/// `Options::directory`), and the name of the pool's own VFS under it (`opfs::POOL_VFS_NAME`;
/// `VFS` writes each WAL frame in one call, wasm/src/frames.rs).
const VFS: &str = "sqlweir-opfs";
const POOL_VFS: &str = "sqlweir-opfs-pool";
const DIRECTORY: &str = ".sqlweir";

#[wasm_bindgen(inline_js = r"
export function countFlushes() {
  const proto = FileSystemSyncAccessHandle.prototype;
  if (proto.sqlweirCountedFlush) return;
  const flush = proto.flush;
  globalThis.sqlweirFlushes = 0;
  proto.flush = function () { globalThis.sqlweirFlushes += 1; return flush.call(this); };
  proto.sqlweirCountedFlush = true;
}
export function flushes() { return globalThis.sqlweirFlushes ?? 0; }
export function countWrites() {
  const proto = FileSystemSyncAccessHandle.prototype;
  if (proto.sqlweirCountedWrite) return;
  const write = proto.write;
  globalThis.sqlweirWrites = new Map();
  proto.write = function (buffer, options) {
    const n = buffer.byteLength;
    globalThis.sqlweirWrites.set(n, (globalThis.sqlweirWrites.get(n) ?? 0) + 1);
    return write.call(this, buffer, options);
  };
  proto.sqlweirCountedWrite = true;
}
export function writesOf(bytes) { return globalThis.sqlweirWrites?.get(bytes) ?? 0; }
")]
extern "C" {
    /// From now on, counts the calls of `FileSystemSyncAccessHandle.flush()` in this worker.
    #[wasm_bindgen(js_name = countFlushes)]
    fn count_flushes();
    /// The flushes counted so far.
    fn flushes() -> f64;
    /// From now on, counts the calls of `FileSystemSyncAccessHandle.write()` in this worker by
    /// their size in bytes.
    #[wasm_bindgen(js_name = countWrites)]
    fn count_writes();
    /// The writes of exactly `bytes` bytes counted so far.
    #[wasm_bindgen(js_name = writesOf)]
    fn writes_of(bytes: f64) -> f64;
}

fn options(journal: Journal, synchronous: Synchronous) -> Options {
    Options {
        journal,
        synchronous,
        ..Options::default().migrations(&["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)"])
    }
}

/// The pool the stores of this worker installed (installing it again with the same
/// configuration hands back the same pool).
async fn pool() -> OpfsSAHPoolUtil {
    let cfg = OpfsSAHPoolCfgBuilder::new().vfs_name(POOL_VFS).directory(DIRECTORY).build();
    install::<WasmOsCallback>(&cfg, false).await.unwrap()
}

fn int(store: &Store, sql: &str) -> i64 {
    match store.query(sql, &[]).unwrap().rows[0][0] {
        Value::Integer(n) => n,
        ref other => panic!("{sql} gives an integer, got {other:?}"),
    }
}

fn text(store: &Store, sql: &str) -> String {
    match store.query(sql, &[]).unwrap().rows[0][0] {
        Value::Text(ref s) => s.clone(),
        ref other => panic!("{sql} gives text, got {other:?}"),
    }
}

async fn write_rows(store: &Store, from: i64, to: i64) {
    for id in from..to {
        let r = store.write("INSERT INTO t(id, v) VALUES (?1, ?2)", params![id, format!("row {id}")]).await.unwrap();
        assert_eq!(r.changes, 1);
    }
}

#[wasm_bindgen_test]
async fn the_cause_normal_locking_cannot_read_a_wal_database_on_this_vfs() {
    let store = Store::open("cause.db", options(Journal::Wal, Synchronous::Normal)).await.unwrap();
    write_rows(&store, 0, 10).await;
    let util = pool().await;
    assert!(util.contains("cause.db-wal").unwrap(), "an open WAL database has its -wal file in the pool");

    // Beside a live -wal file: SQLite must open the WAL before it reads anything.
    let raw = Connection::open_with_flags_and_vfs("cause.db", OpenFlags::SQLITE_OPEN_READ_ONLY, VFS).unwrap();
    raw.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).unwrap();
    raw.pragma_update(None, "locking_mode", "NORMAL").unwrap();
    let e = raw.pragma_update(None, "synchronous", "NORMAL").unwrap_err();
    assert_eq!(e.sqlite_error_code(), Some(ErrorCode::CannotOpen), "{e}");
    drop(raw);
    store.close().await.unwrap();

    // A clean close checkpoints the WAL into the database and removes the -wal file, but the
    // header still says WAL (file format versions, bytes 18 and 19, are 2).
    assert!(!util.contains("cause.db-wal").unwrap(), "close removed the -wal file");
    let bytes = util.export_db("cause.db").unwrap();
    assert_eq!(&bytes[18..20], &[2, 2]);

    // So a pragma that reads the schema, in normal locking mode, fails the same way: the old
    // open path's order.
    let raw = Connection::open_with_flags_and_vfs("cause.db", OpenFlags::default(), VFS).unwrap();
    raw.pragma_update(None, "locking_mode", "NORMAL").unwrap();
    let e = raw.pragma_update(None, "synchronous", "NORMAL").unwrap_err();
    assert_eq!(e.sqlite_error_code(), Some(ErrorCode::CannotOpen), "{e}");
    drop(raw);

    // Exclusive locking first, then the same pragma: the file reads, rows and all.
    let raw = Connection::open_with_flags_and_vfs("cause.db", OpenFlags::default(), VFS).unwrap();
    raw.pragma_update(None, "locking_mode", "EXCLUSIVE").unwrap();
    raw.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let n: i64 = raw.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 10);
    raw.close().unwrap();
}

#[wasm_bindgen_test]
async fn this_build_opens_every_connection_in_exclusive_locking_mode() {
    // SQLITE_DEFAULT_LOCKING_MODE=1 (.cargo/config.toml): no connection of this build starts in
    // the normal locking mode that cannot read a WAL file on this VFS.
    Store::open("default-locking.db", options(Journal::Wal, Synchronous::Normal)).await.unwrap().close().await.unwrap();
    let raw = Connection::open_with_flags_and_vfs("default-locking.db", OpenFlags::default(), VFS).unwrap();
    let mode: String = raw.query_row("PRAGMA locking_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "exclusive");
    let n: i64 = raw.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
    raw.close().unwrap();
}

#[wasm_bindgen_test]
async fn a_wal_database_reopens_after_close_and_converts_both_ways() {
    let store = Store::open("reopen-wal.db", options(Journal::Wal, Synchronous::Normal)).await.unwrap();
    assert_eq!(store.metrics().journal_mode, "wal");
    write_rows(&store, 0, 100).await;
    store.close().await.unwrap();

    // Reopened in WAL: every row, once.
    let store = Store::open("reopen-wal.db", options(Journal::Wal, Synchronous::Normal)).await.unwrap();
    assert_eq!(store.metrics().journal_mode, "wal");
    assert_eq!(int(&store, "SELECT count(*) FROM t"), 100);
    assert_eq!(int(&store, "SELECT count(DISTINCT v) FROM t"), 100);
    write_rows(&store, 100, 150).await;
    store.close().await.unwrap();

    // Opened as DELETE: converted, the WAL checkpointed into the file and removed.
    let store = Store::open("reopen-wal.db", options(Journal::Delete, Synchronous::Normal)).await.unwrap();
    assert_eq!(store.metrics().journal_mode, "delete");
    assert_eq!(int(&store, "SELECT count(*) FROM t"), 150);
    assert!(!pool().await.contains("reopen-wal.db-wal").unwrap());
    write_rows(&store, 150, 160).await;
    store.close().await.unwrap();
    assert_eq!(&pool().await.export_db("reopen-wal.db").unwrap()[18..20], &[1, 1], "the header says rollback journal");

    // And back to WAL.
    let store = Store::open("reopen-wal.db", options(Journal::Wal, Synchronous::Full)).await.unwrap();
    assert_eq!(store.metrics().journal_mode, "wal");
    assert_eq!(int(&store, "SELECT count(*) FROM t"), 160);
    assert_eq!(int(&store, "SELECT sum(id) FROM t"), (0..160).sum::<i64>());
    assert_eq!(text(&store, "PRAGMA integrity_check"), "ok");
    store.close().await.unwrap();
}

/// Flushes of the OPFS access handles per commit, over 20 commits of one write each.
async fn flushes_per_commit(name: &str, journal: Journal, synchronous: Synchronous) -> f64 {
    count_flushes();
    let store = Store::open(name, options(journal, synchronous)).await.unwrap();
    let expected = match synchronous {
        Synchronous::Normal => 1,
        Synchronous::Full => 2,
    };
    assert_eq!(int(&store, "PRAGMA synchronous"), expected);
    let before = flushes();
    write_rows(&store, 0, 20).await;
    let after = flushes();
    assert_eq!(store.metrics().batches, 20, "each awaited write committed alone");
    store.close().await.unwrap();
    (after - before) / 20.0
}

#[wasm_bindgen_test]
async fn full_flushes_every_commit_and_wal_normal_flushes_none() {
    let wal_full = flushes_per_commit("flush-wal-full.db", Journal::Wal, Synchronous::Full).await;
    let wal_normal = flushes_per_commit("flush-wal-normal.db", Journal::Wal, Synchronous::Normal).await;
    let delete_normal = flushes_per_commit("flush-delete-normal.db", Journal::Delete, Synchronous::Normal).await;
    let delete_full = flushes_per_commit("flush-delete-full.db", Journal::Delete, Synchronous::Full).await;
    let measured = format!(
        "flushes per commit: wal+full {wal_full}, wal+normal {wal_normal}, delete+normal {delete_normal}, delete+full {delete_full}"
    );
    web_sys_log(&measured);
    // WAL + FULL: the WAL, once, before the commit returns. WAL + NORMAL: nothing until a
    // checkpoint (20 small commits are far from the 1000-page autocheckpoint).
    assert!((wal_full - 1.0).abs() < f64::EPSILON, "{measured}");
    assert!(wal_normal.abs() < f64::EPSILON, "{measured}");
    // DELETE: the journal and the database at every commit, plus the pool's slot header as the
    // journal is created and removed; FULL adds the journal header's own flush.
    assert!(delete_normal >= 2.0, "{measured}");
    assert!(delete_full > delete_normal, "{measured}");
}

fn web_sys_log(message: &str) {
    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = console, js_name = log)]
        fn console_log(message: &str);
    }
    console_log(message);
}

/// Issue 18: SQLite appends each WAL frame as two writes (its 24-byte header, then the page),
/// and on OPFS a write of 24 bytes costs about what a page costs. The VFS layer
/// (wasm/src/frames.rs) sends each header with its page, as one write of 24 + page size bytes.
/// This test fails if a header goes alone, and checks that what the layer wrote reads back: the
/// close checkpoints (reads every frame back into the database), then a reopen and an integrity
/// check.
#[wasm_bindgen_test]
async fn each_wal_frame_is_one_write_and_reads_back() {
    count_writes();
    let store = Store::open("frames.db", options(Journal::Wal, Synchronous::Normal)).await.unwrap();
    let page = int(&store, "PRAGMA page_size");
    let (headers, frames) = (writes_of(24.0), writes_of((page + 24) as f64));
    // 3,000 rows of ~1 KB in 30 commits: ~400 frames.
    let pad = "x".repeat(1000);
    for commit in 0..30 {
        let ids: Vec<i64> = (commit * 100..(commit + 1) * 100).collect();
        let rows = ids.iter().map(|&id| vec![Value::Integer(id), Value::Text(format!("{id} {pad}"))]).collect();
        let outcome = store.write_many("INSERT INTO t(id, v) VALUES (?1, ?2)", rows).await.unwrap();
        assert_eq!(outcome.committed, 100);
    }
    let (alone, joined) = (writes_of(24.0) - headers, writes_of((page + 24) as f64) - frames);
    assert!(alone.abs() < f64::EPSILON, "{alone} frame headers were written alone ({joined} with their page)");
    assert!(joined >= 300.0, "each frame as one write: {joined}");
    store.close().await.unwrap();

    let store = Store::open("frames.db", options(Journal::Wal, Synchronous::Normal)).await.unwrap();
    assert_eq!(int(&store, "SELECT count(*) FROM t"), 3000);
    assert_eq!(int(&store, "SELECT sum(id) FROM t"), (0..3000).sum::<i64>());
    assert_eq!(int(&store, "SELECT count(*) FROM t WHERE v = id || ' ' || printf('%.*c', 1000, 'x')"), 3000);
    assert_eq!(text(&store, "PRAGMA integrity_check"), "ok");
    store.close().await.unwrap();
}
