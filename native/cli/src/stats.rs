//! `sqlweir stats`: what is in a database file, read without changing it.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::Fatal;
use crate::ingest::quote_ident;

/// Prints tables with row counts, journal mode, page size and count, the SQLite version, and
/// the integrity check when asked.
pub fn run(db: &Path, integrity: bool) -> Result<(), Fatal> {
    // Read-only and no create: stats on a mistyped path is an error, not a new empty file.
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let pragma = |name: &str| -> rusqlite::Result<String> {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0)).map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
    };
    let journal_mode = pragma("journal_mode").map_err(|e| format!("cannot read {}: {e}", db.display()))?;
    let page_size = pragma("page_size")?;
    let page_count = pragma("page_count")?;
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let tables = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<String>>>()?;

    println!("database      {}", db.display());
    println!("sqlite        {}", rusqlite::version());
    println!("journal mode  {journal_mode}");
    println!("page size     {page_size} bytes");
    println!("page count    {page_count}");
    println!("tables        {}", tables.len());
    let width = tables.iter().map(String::len).max().unwrap_or(0);
    for table in &tables {
        let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", quote_ident(table)), [], |r| r.get(0))?;
        println!("  {table:<width$}  {rows} rows");
    }
    if integrity {
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        println!("integrity     {}", lines.join("\n              "));
        if lines != ["ok"] {
            return Err("integrity check failed".into());
        }
    }
    Ok(())
}
