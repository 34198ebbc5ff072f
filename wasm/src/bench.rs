//! Raw SQLite baselines for the browser benchmark (cargo feature `bench`; the npm package is
//! built without it): the same OPFS pool, pragmas and journal mode as a [`Store`](crate::Store),
//! but no weir in front, so the benchmark can put sqlweir next to what SQLite alone does in the
//! same worker.

use rusqlite::params;
use wasm_bindgen::prelude::*;

use crate::error::OpenError;
use crate::host;
use crate::opfs;
use crate::options::{Journal, Options, Synchronous};
use crate::sqlite::SqliteBackend;

/// Runs `rows` inserts of the benchmark's workload into a fresh table `events` of the database
/// `name`, without sqlweir: `mode` `"limit"` is one transaction with one prepared statement (the
/// ceiling), `"naive"` one autocommit INSERT per row (one commit each). `journal` is `"delete"`
/// or `"wal"`, `synchronous` `"normal"` or `"full"`. Resolves with `[ms, count]`: the time of the inserts alone (open and schema not
/// included) and the rows found afterwards.
#[wasm_bindgen(js_name = benchRaw)]
pub async fn bench_raw(
    name: String,
    rows: u32,
    mode: String,
    journal: String,
    synchronous: String,
) -> Result<js_sys::Array, JsValue> {
    let err = |e: &dyn std::fmt::Display| JsValue::from_str(&format!("benchRaw {name}: {e}"));
    let journal = match journal.as_str() {
        "delete" => Journal::Delete,
        "wal" => Journal::Wal,
        other => return Err(err(&format!("unknown journal {other:?}"))),
    };
    let synchronous = match synchronous.as_str() {
        "normal" => Synchronous::Normal,
        "full" => Synchronous::Full,
        other => return Err(err(&format!("unknown synchronous {other:?}"))),
    };
    let options = Options::default()
        .migrations(&["CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT, payload TEXT)"])
        .journal(journal);
    let options = Options { synchronous, ..options };
    opfs::pool(&options.directory).await.map_err(|e| err(&e))?;
    opfs::claim(&name).map_err(|e| err(&e))?;
    let result = run(&name, rows, &mode, &options);
    opfs::release(&name);
    let (ms, count) = result.map_err(|e| err(&e))?;
    Ok(js_sys::Array::of2(&JsValue::from_f64(ms), &JsValue::from_f64(count as f64)))
}

fn run(name: &str, rows: u32, mode: &str, options: &Options) -> Result<(f64, i64), Box<dyn std::error::Error>> {
    let mut backend = SqliteBackend::open(name, opfs::VFS_NAME, options).map_err(|e: OpenError| e.to_string())?;
    let conn = backend.connection_mut();
    let payload =
        format!("{{\"kind\":\"price\",\"item\":\"sku-000042\",\"value\":1234.5,\"pad\":\"{}\"}}", "p".repeat(48));
    let insert = "INSERT INTO events(ts, source, payload) VALUES (?1, ?2, ?3)";
    let started = host::now();
    match mode {
        "limit" => {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare(insert)?;
                for i in 0..rows {
                    stmt.execute(params![i64::from(i), "collector", payload.as_str()])?;
                }
            }
            tx.commit()?;
        }
        "naive" => {
            let mut stmt = conn.prepare(insert)?;
            for i in 0..rows {
                stmt.execute(params![i64::from(i), "collector", payload.as_str()])?;
            }
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    let ms = host::now().saturating_sub(started).as_secs_f64() * 1000.0;
    let count: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    backend.close().map_err(|e| e.to_string())?;
    Ok((ms, count))
}
