//! `sqlweir demo`: the field reports' scenario for a few seconds. N collectors write events into
//! one SQLite file through one store, then the same collectors each on their own connection with
//! one commit per event (a long busy timeout, as the reports had it); both are reported side by
//! side, each for a fixed time.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rusqlite::Connection;
use sqlweir::{Options, Store, Ticket, params};

use crate::Fatal;

const SCHEMA: &str = "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT NOT NULL, payload TEXT)";
const INSERT: &str = "INSERT INTO events(ts, source, payload) VALUES (?1, ?2, ?3)";
/// Every this many events a collector produces a malformed one (no source): it is rejected
/// alone, the rest of its batch commits.
const BAD_EVERY: u64 = 1000;
/// Writes each collector keeps in flight, as an async collector would.
const WINDOW: usize = 64;

/// Arguments of `sqlweir demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Concurrent collectors.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    collectors: u16,
    /// Seconds each of the two runs lasts.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// A short run (half a second each), for tests and a first look.
    #[arg(long)]
    quick: bool,
}

/// One run's tally.
struct Tally {
    attempted: u64,
    committed: u64,
    rejected: u64,
    elapsed: Duration,
}

fn payload(c: u16, i: u64) -> String {
    format!("{{\"collector\":{c},\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(60))
}

fn source(c: u16, i: u64) -> Option<String> {
    (i % BAD_EVERY != BAD_EVERY - 1).then(|| format!("collector-{c}"))
}

/// Runs both workloads and prints the report; an error if the counts do not reconcile.
pub fn run(args: &DemoArgs) -> Result<(), Fatal> {
    let seconds = if args.quick { 0.5 } else { args.seconds };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err("--seconds must be a positive number".into());
    }
    let duration = Duration::from_secs_f64(seconds);
    let dir = tempfile::tempdir()?;
    println!(
        "{} collectors, {seconds} s each way, ~100-byte events, WAL, synchronous=NORMAL, one event in {BAD_EVERY} malformed",
        args.collectors
    );

    let store = Store::open(dir.path().join("weir.db"), Options::default().migrations(&[SCHEMA]))?;
    let weir = through_store(&store, args.collectors, duration);
    let m = store.metrics();
    let count: Vec<i64> = store.query_as("SELECT count(*) FROM events", &[])?;
    store.close()?;
    let weir_rate = weir.committed as f64 / weir.elapsed.as_secs_f64();
    println!("\nsqlweir: one store, one writer, batched commits");
    println!("  rows committed  {} (count(*) {})", weir.committed, count[0]);
    println!("  rejected        {} (malformed events, each with its own error)", weir.rejected);
    println!("  rows/s          {weir_rate:.0}");
    println!("  batches         {} (mean {:.1} rows)", m.batches, m.mean_batch_size);
    println!("  retries         {}", m.retries);
    println!("  ack latency     p99 {:?}", m.ack_p99);

    let (naive, naive_p99) = per_event(&dir.path().join("naive.db"), args.collectors, duration)?;
    let naive_rate = naive.committed as f64 / naive.elapsed.as_secs_f64();
    println!("\none connection per collector, one commit per event");
    println!("  rows committed  {}", naive.committed);
    println!("  rejected        {}", naive.rejected);
    println!("  rows/s          {naive_rate:.0}");
    println!("  latency         p99 {naive_p99:?}");

    println!(
        "\nsqlweir wrote {:.1}x as many rows per second as the per-event commits.",
        weir_rate / naive_rate.max(1e-9)
    );
    let reconciled = count[0] as u64 == weir.committed
        && weir.committed == m.committed
        && weir.committed + weir.rejected == weir.attempted
        && naive.committed + naive.rejected == naive.attempted;
    if !reconciled {
        return Err("the counts do not reconcile".into());
    }
    println!("counts reconcile: committed + rejected = attempted for both runs, count(*) = committed");
    Ok(())
}

fn live_line(label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {prefix} {msg}") {
        pb.set_style(style);
    }
    pb.set_prefix(label.to_owned());
    pb
}

/// The collectors share one store; each keeps `WINDOW` writes in flight.
fn through_store(store: &Store, collectors: u16, duration: Duration) -> Tally {
    let pb = live_line("sqlweir");
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..collectors)
        .map(|c| {
            let store = store.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let (mut i, mut committed, mut rejected) = (0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let window: Vec<Ticket<_>> = (0..WINDOW as u64)
                        .map(|k| store.write(INSERT, params![(i + k) as i64, source(c, i + k), payload(c, i + k)]))
                        .collect();
                    i += WINDOW as u64;
                    for ticket in window {
                        // Each result is this event's own: a rejected event does not fail the others.
                        if ticket.wait().is_ok() {
                            committed += 1;
                        } else {
                            rejected += 1;
                        }
                    }
                }
                (i, committed, rejected)
            })
        })
        .collect();
    while started.elapsed() < duration {
        thread::sleep(Duration::from_millis(100).min(duration));
        let m = store.metrics();
        let rate = m.committed as f64 / started.elapsed().as_secs_f64();
        pb.set_message(format!(
            "{} rows, {rate:.0} rows/s, {} batches, {} retries, {} rejected",
            m.committed, m.batches, m.retries, m.rejected
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally { attempted: 0, committed: 0, rejected: 0, elapsed: Duration::ZERO };
    for t in threads {
        // A collector thread only panics on a bug in this file; its counts are then missing and
        // the reconciliation fails loudly.
        if let Ok((a, c, r)) = t.join() {
            tally.attempted += a;
            tally.committed += c;
            tally.rejected += r;
        }
    }
    tally.elapsed = started.elapsed();
    pb.finish_and_clear();
    tally
}

/// Each collector on its own connection, one autocommit INSERT per event.
fn per_event(path: &Path, collectors: u16, duration: Duration) -> Result<(Tally, Duration), Fatal> {
    let conn = Connection::open(path)?;
    conn.execute_batch(&format!("PRAGMA journal_mode=WAL; {SCHEMA};"))?;
    let pb = live_line("per-event");
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..collectors)
        .map(|c| {
            let path = path.to_path_buf();
            let stop = stop.clone();
            thread::spawn(move || -> rusqlite::Result<(u64, u64, Vec<Duration>)> {
                let conn = Connection::open(path)?;
                conn.busy_timeout(Duration::from_secs(30))?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                let (mut i, mut committed, mut latencies) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if conn.execute(INSERT, rusqlite::params![i as i64, source(c, i), payload(c, i)]).is_ok() {
                        committed += 1;
                    }
                    latencies.push(t.elapsed());
                    i += 1;
                }
                Ok((i, committed, latencies))
            })
        })
        .collect();
    while started.elapsed() < duration {
        thread::sleep(Duration::from_millis(100).min(duration));
        pb.set_message(format!("{:.1} s", started.elapsed().as_secs_f64()));
    }
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally { attempted: 0, committed: 0, rejected: 0, elapsed: Duration::ZERO };
    let mut latencies = Vec::new();
    for t in threads {
        let (a, c, l) = t.join().map_err(|_| "a per-event collector thread panicked")??;
        tally.attempted += a;
        tally.committed += c;
        tally.rejected += a - c;
        latencies.extend(l);
    }
    tally.elapsed = started.elapsed();
    pb.finish_and_clear();
    latencies.sort_unstable();
    let p99 = latencies.get(latencies.len().saturating_sub(1) * 99 / 100).copied().unwrap_or_default();
    Ok((tally, p99))
}
