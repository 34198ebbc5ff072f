//! Helpers shared by the integration tests: a temp database with the events table.
#![allow(dead_code)]

use std::path::PathBuf;

use sqlweir::{Options, Store};

pub const EVENTS: &str = "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT NOT NULL, payload TEXT)";
pub const INSERT: &str = "INSERT INTO events(ts, source, payload) VALUES (?1, ?2, ?3)";

pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn temp_db() -> TempDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("test.db");
    TempDb { dir, path }
}

pub fn open(db: &TempDb, options: Options) -> Store {
    Store::open(&db.path, options.migrations(&[EVENTS])).expect("open store")
}

pub fn count(store: &Store, sql: &str) -> i64 {
    store.query_as::<i64>(sql, &[]).expect("count query")[0]
}
