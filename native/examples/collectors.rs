//! The field reports' scenario in one run: many collectors write events into one SQLite file
//! at once. First the way the reports did it (a connection per collector, one autocommit
//! INSERT per event, a long busy timeout), then through sqlweir. Prints both, and the ratio.
//!
//! `cargo run --release -p sqlweir --example collectors -- [--collectors N] [--rows-per-collector N]`

use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::future::join_all;
use rusqlite::Connection;
use sqlweir::{Options, Store, params};

const SCHEMA: &str = "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT NOT NULL, payload TEXT)";
const INSERT: &str = "INSERT INTO events(ts, source, payload) VALUES (?1, ?2, ?3)";
/// Every this many events a collector produces a malformed one (no source): sqlweir rejects it
/// alone and commits the rest.
const BAD_EVERY: usize = 1000;
/// Writes each collector keeps in flight, as an async collector would.
const WINDOW: usize = 64;

struct Args {
    collectors: usize,
    rows: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { collectors: 8, rows: 5_000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            it.next().and_then(|v| v.parse().ok()).filter(|v| *v > 0).ok_or(format!("{name} needs a positive number"))
        };
        match flag.as_str() {
            "--collectors" => args.collectors = value("--collectors")?,
            "--rows-per-collector" => args.rows = value("--rows-per-collector")?,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn payload(c: usize, i: usize) -> String {
    format!("{{\"collector\":{c},\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(60))
}

/// The field reports' way: each collector has its own connection and commits every event.
fn naive(path: &std::path::Path, args: &Args) -> Result<(Duration, usize), Box<dyn std::error::Error>> {
    let conn = Connection::open(path)?;
    conn.execute_batch(&format!("PRAGMA journal_mode=WAL; {SCHEMA};"))?;
    let started = Instant::now();
    let threads: Vec<_> = (0..args.collectors)
        .map(|c| {
            let path = path.to_path_buf();
            let rows = args.rows;
            std::thread::spawn(move || -> rusqlite::Result<usize> {
                let conn = Connection::open(path)?;
                conn.busy_timeout(Duration::from_secs(30))?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                let mut ok = 0;
                for i in 0..rows {
                    let source = if i % BAD_EVERY == BAD_EVERY - 1 { None } else { Some(format!("collector-{c}")) };
                    if conn.execute(INSERT, rusqlite::params![i as i64, source, payload(c, i)]).is_ok() {
                        ok += 1;
                    }
                }
                Ok(ok)
            })
        })
        .collect();
    let mut committed = 0;
    for t in threads {
        committed += t.join().map_err(|_| "collector thread panicked")??;
    }
    Ok((started.elapsed(), committed))
}

/// Through sqlweir: the same collectors share one store.
fn weir(path: &std::path::Path, args: &Args) -> Result<(Duration, Store), Box<dyn std::error::Error>> {
    let store = Store::open(path, Options::default().migrations(&[SCHEMA]))?;
    let started = Instant::now();
    let threads: Vec<_> = (0..args.collectors)
        .map(|c| {
            let store = store.clone();
            let rows = args.rows;
            std::thread::spawn(move || {
                let mut i = 0;
                while i < rows {
                    let end = (i + WINDOW).min(rows);
                    let window = (i..end).map(|i| {
                        let source = if i % BAD_EVERY == BAD_EVERY - 1 { None } else { Some(format!("collector-{c}")) };
                        store.write(INSERT, params![i as i64, source, payload(c, i)])
                    });
                    // Each result is this event's own: a rejected event does not fail the others.
                    drop(block_on(join_all(window)));
                    i = end;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "collector thread panicked")?;
    }
    Ok((started.elapsed(), store))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: collectors [--collectors N] [--rows-per-collector N]");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let dir = tempfile::tempdir()?;
    let total = args.collectors * args.rows;
    println!(
        "{} collectors x {} events = {total} events, ~100-byte payloads, WAL, synchronous=NORMAL",
        args.collectors, args.rows
    );

    let (naive_time, naive_rows) = naive(&dir.path().join("naive.db"), &args)?;
    let naive_rate = naive_rows as f64 / naive_time.as_secs_f64();
    println!("\none connection per collector, one commit per event (the field reports' way)");
    println!("  rows committed  {naive_rows}");
    println!("  time            {:.2} s", naive_time.as_secs_f64());
    println!("  rows/s          {naive_rate:.0}");

    let (weir_time, store) = weir(&dir.path().join("weir.db"), &args)?;
    let m = store.metrics();
    let rows: Vec<i64> = store.query_as("SELECT count(*) FROM events", &[])?;
    let weir_rate = m.committed as f64 / weir_time.as_secs_f64();
    println!("\nsqlweir: one store, one writer, batched commits");
    println!("  rows committed  {} (query count: {})", m.committed, rows[0]);
    println!(
        "  rejected        {} (malformed events, each with its own error; the rest of their batch committed)",
        m.rejected
    );
    println!("  time            {:.2} s", weir_time.as_secs_f64());
    println!("  rows/s          {weir_rate:.0}");
    println!("  batches         {} (mean {:.1} rows)", m.batches, m.mean_batch_size);
    println!("  retries         {}", m.retries);
    println!("  ack latency     p50 {:?}  p99 {:?}", m.ack_p50, m.ack_p99);
    println!("  health          {:?}", store.health().status);
    println!("\nsqlweir wrote {:.1}x as fast as the per-event commits, and lost nothing.", weir_rate / naive_rate);
    store.close()?;
    if rows[0] as u64 != m.committed || m.committed + m.rejected != total as u64 {
        return Err("the counts do not reconcile".into());
    }
    Ok(())
}
