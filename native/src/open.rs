//! Opening SQLite connections: the writer's (pragmas, migrations) and the read pool's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sqlweir_sqlite::{MigrationError, ReadConnection};

use crate::error::OpenError;
use crate::options::{Options, Synchronous};
use crate::sqlite::classify;

pub(crate) enum Target {
    File(PathBuf),
    Memory(String),
}

impl Target {
    pub(crate) fn describe(&self) -> PathBuf {
        match self {
            Target::File(p) => p.clone(),
            Target::Memory(uri) => PathBuf::from(uri),
        }
    }
}

pub(crate) fn open_writer(target: &Target, options: &Options) -> Result<Connection, OpenError> {
    let path = target.describe();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match target {
        Target::File(p) => Connection::open_with_flags(p, flags),
        Target::Memory(uri) => Connection::open_with_flags(uri, flags),
    }
    .map_err(|e| open_failure(&path, classify(e)))?;
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(OpenError::ReadOnly { path, source: None });
    }
    let setup = |e| open_failure(&path, classify(e));
    conn.busy_timeout(options.busy_timeout).map_err(setup)?;
    conn.set_prepared_statement_cache_capacity(256);
    // Reading the journal mode is the first access to the file: a non-database fails here.
    if let Target::File(_) = target {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(setup)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "the database refused WAL; reads may wait for commits");
        }
    } else {
        conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0)).map_err(setup)?;
    }
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(setup)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(setup)?;
    migrate(&conn, &options.migrations)?;
    Ok(conn)
}

pub(crate) fn open_reader(target: &Target) -> Result<ReadConnection, OpenError> {
    let path = target.describe();
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match target {
        Target::File(p) => Connection::open_with_flags(p, flags),
        Target::Memory(uri) => Connection::open_with_flags(uri, flags),
    }
    .map_err(|e| open_failure(&path, classify(e)))?;
    // Readers wait on the rare locks a WAL reader can meet (recovery, a memdb commit).
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| OpenError::Setup(classify(e)))?;
    conn.set_prepared_statement_cache_capacity(64);
    ReadConnection::new(conn).map_err(OpenError::Setup)
}

fn open_failure(path: &Path, e: sqlweir_core::BackendError) -> OpenError {
    let path = path.to_path_buf();
    match e.code.map(|c| c & 0xff) {
        Some(rusqlite::ffi::SQLITE_NOTADB) => OpenError::NotADatabase { path, source: e },
        Some(rusqlite::ffi::SQLITE_READONLY) => OpenError::ReadOnly { path, source: Some(e) },
        Some(rusqlite::ffi::SQLITE_CANTOPEN | rusqlite::ffi::SQLITE_PERM) => OpenError::CannotOpen { path, source: e },
        _ => OpenError::Setup(e),
    }
}

fn migrate(conn: &Connection, steps: &[String]) -> Result<(), OpenError> {
    sqlweir_sqlite::migrate(conn, steps).map_err(|e| match e {
        MigrationError::TooNew { found, known } => OpenError::SchemaTooNew { found, known },
        MigrationError::Step { step, source } => OpenError::Migration { step, source },
        MigrationError::Setup(source) => OpenError::Setup(source),
    })
}
