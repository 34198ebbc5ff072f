//! The native benchmark: sqlweir against the physical limit and the field reports' way, all in
//! one run, reported as ratios (absolute numbers on a shared machine are noise).
//!
//! `scripts/bench` runs it in release with the default row counts; `--smoke` runs every
//! scenario with tiny counts and only checks that all rows landed (part of `scripts/test`).
//! Results go to stdout as a table and to `target/bench/native.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::future::join_all;
use rusqlite::Connection;
use serde_json::json;
use sqlweir::{GroupWait, MetricsSnapshot, Options, RequestId, Store, Synchronous, Value, params};

const SCHEMA: &str = "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER, source TEXT, payload TEXT)";
const INSERT: &str = "INSERT INTO events(ts, source, payload) VALUES (?1, ?2, ?3)";
const PRODUCERS: usize = 8;
const WINDOW: usize = 64;

fn payload() -> String {
    // ~100 bytes, like a small JSON event.
    format!("{{\"kind\":\"price\",\"item\":\"sku-000042\",\"value\":1234.5,\"pad\":\"{}\"}}", "p".repeat(48))
}

struct Args {
    rows: usize,
    full_rows: usize,
    memory_rows: usize,
    smoke: bool,
    /// Rows of the PostgreSQL naive and lock-step rows (the pipelined ones write four times as many).
    pg_rows: usize,
    /// Only the PostgreSQL rows (feature `postgres`).
    postgres_only: bool,
    /// `--only k1,k2`: these scenarios (by JSON key) and the baselines, no memory run.
    only: Option<Vec<String>>,
    out: PathBuf,
}

/// What every ratio is measured against: always run.
const BASELINES: [&str; 3] = ["limit", "naive", "naive_full"];

impl Args {
    fn wants(&self, key: &str) -> bool {
        // (3c) is paced at half of (3a)'s measured rate.
        let needed = |k: &String| k == key || (key == "weir_pipelined" && k == "weir_half_rate");
        BASELINES.contains(&key) || self.only.as_ref().is_none_or(|only| only.iter().any(needed))
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rows: 200_000,
        full_rows: 20_000,
        memory_rows: 1_000_000,
        smoke: false,
        pg_rows: 20_000,
        postgres_only: false,
        only: None,
        out: "target/bench/native.json".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| it.next().and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a number"));
        match flag.as_str() {
            "--rows" => a.rows = num("--rows")?,
            "--full-rows" => a.full_rows = num("--full-rows")?,
            "--memory-rows" => a.memory_rows = num("--memory-rows")?,
            "--smoke" => a.smoke = true,
            "--pg-rows" => a.pg_rows = num("--pg-rows")?,
            "--postgres-only" => a.postgres_only = true,
            "--only" => {
                let keys = it.next().ok_or("--only needs scenario keys, comma-separated")?;
                a.only = Some(keys.split(',').map(str::to_owned).collect());
            }
            "--out" => a.out = it.next().ok_or("--out needs a path")?.into(),
            "--bench" => {} // passed by `cargo bench`-style runners
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.smoke {
        a.rows = 2_000;
        a.full_rows = 400;
        a.memory_rows = 20_000;
        a.pg_rows = 400;
    }
    Ok(a)
}

/// (3b) with one way of waiting for the write group, `rows` rows in mode `sync`.
fn lockstep_waiting<'a>(
    d: &'a Path,
    name: &'static str,
    rows: usize,
    sync: Synchronous,
    wait: GroupWait,
) -> Scenario<'a> {
    Box::new(move |key| measure_store_waiting(d, key, name.into(), rows, sync, wait, |s, _| lockstep(s, rows)))
}

/// A scenario to measure, when `--only` wants its key.
type Scenario<'a> = Box<dyn FnOnce(&'static str) -> Result<Run, Box<dyn std::error::Error>> + 'a>;

/// One measured scenario.
struct Run {
    key: &'static str,
    name: String,
    rows: usize,
    elapsed: Duration,
    metrics: Option<MetricsSnapshot>,
    peak_rss_kb: u64,
    /// Context switches of the whole process during the scenario (voluntary, involuntary).
    switches: (u64, u64),
}

impl Run {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Voluntary and involuntary context switches in a `/proc/.../status` text.
fn switches_in(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("voluntary_ctxt_switches:"), field("nonvoluntary_ctxt_switches:"))
}

/// Switches of the threads that ended since the scenario started (each adds its own on exit:
/// /proc shows a thread's counts only while it lives).
static ENDED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Called by each scenario thread as its last act.
fn thread_ends() {
    let (v, n) = std::fs::read_to_string("/proc/thread-self/status").map_or((0, 0), |s| switches_in(&s));
    ENDED[0].fetch_add(v, Ordering::Relaxed);
    ENDED[1].fetch_add(n, Ordering::Relaxed);
}

/// The process's context switches so far, from /proc: the live threads' counts (every
/// `/proc/self/task/*/status`), plus what ended threads reported.
fn switches() -> (u64, u64) {
    let mut total = (ENDED[0].load(Ordering::Relaxed), ENDED[1].load(Ordering::Relaxed));
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
                let (v, n) = switches_in(&status);
                total = (total.0 + v, total.1 + n);
            }
        }
    }
    total
}

fn switches_since(start: (u64, u64)) -> (u64, u64) {
    let now = switches();
    (now.0.saturating_sub(start.0), now.1.saturating_sub(start.1))
}

/// Resets the kernel's peak-RSS mark so each scenario reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.db"))
}

fn sync_name(s: Synchronous) -> &'static str {
    match s {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    }
}

fn raw_conn(path: &Path, sync: Synchronous) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", sync_name(sync))?;
    Ok(conn)
}

fn count(path: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let n: i64 = Connection::open(path)?.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    Ok(n as usize)
}

/// (1) The ceiling: one connection, one transaction, one prepared statement.
fn limit(path: &Path, rows: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut conn = raw_conn(path, Synchronous::Normal)?;
    conn.execute_batch(SCHEMA)?;
    let p = payload();
    let started = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(INSERT)?;
        for i in 0..rows {
            stmt.execute(rusqlite::params![i as i64, "collector", p.as_str()])?;
        }
    }
    tx.commit()?;
    Ok(started.elapsed())
}

/// (2) The field reports' way: a connection per thread, one autocommit INSERT per row.
fn naive(path: &Path, rows: usize, sync: Synchronous) -> Result<Duration, Box<dyn std::error::Error>> {
    raw_conn(path, sync)?.execute_batch(SCHEMA)?;
    let started = Instant::now();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let path = path.to_path_buf();
            let n = rows / PRODUCERS + usize::from(t < rows % PRODUCERS);
            std::thread::spawn(move || -> rusqlite::Result<()> {
                let conn = raw_conn(&path, sync)?;
                let p = payload();
                let mut stmt = conn.prepare(INSERT)?;
                for i in 0..n {
                    stmt.execute(rusqlite::params![i as i64, "collector", p.as_str()])?;
                }
                thread_ends();
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "naive thread panicked")??;
    }
    Ok(started.elapsed())
}

fn open_store(path: &Path, sync: Synchronous) -> Result<Store, Box<dyn std::error::Error>> {
    open_store_waiting(path, sync, GroupWait::default())
}

fn open_store_waiting(path: &Path, sync: Synchronous, wait: GroupWait) -> Result<Store, Box<dyn std::error::Error>> {
    Ok(Store::open(path, Options::default().migrations(&[SCHEMA]).synchronous(sync).group_wait(wait))?)
}

/// (3a) 8 producers, each keeping up to 64 writes in flight, every ack awaited.
fn pipelined(store: &Store, rows: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    pipelined_into(store, rows, INSERT)
}

/// (3a) with a statement of the caller's.
fn pipelined_into(store: &Store, rows: usize, insert: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    pipelined_with(store, rows, insert, false)
}

/// (3a) where each write carries a request id (`write_once`: producer `t`, the write's number),
/// and each producer drops its answered markers after every window, as a resending client does.
fn pipelined_once(store: &Store, rows: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    pipelined_with(store, rows, INSERT, true)
}

fn pipelined_with(
    store: &Store,
    rows: usize,
    insert: &str,
    once: bool,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let insert: Arc<str> = Arc::from(insert);
    let started = Instant::now();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let (store, insert) = (store.clone(), insert.clone());
            let n = rows / PRODUCERS + usize::from(t < rows % PRODUCERS);
            std::thread::spawn(move || -> Result<(), sqlweir::WriteError> {
                let p = payload();
                let origin: Arc<str> = Arc::from(format!("producer-{t}"));
                let mut i = 0;
                while i < n {
                    let end = (i + WINDOW).min(n);
                    let window = (i..end).map(|i| {
                        let row = params![i as i64, "collector", p.as_str()];
                        if once {
                            store.write_once(RequestId::new(origin.clone(), i as u64 + 1), &insert, row)
                        } else {
                            store.write(&insert, row)
                        }
                    });
                    for r in block_on(join_all(window)) {
                        r?;
                    }
                    if once {
                        store.forget_requests(&origin, end as u64 + 1)?;
                    }
                    i = end;
                }
                thread_ends();
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "producer panicked")??;
    }
    Ok(started.elapsed())
}

/// Runs `work` with `subscribers` threads reading the store's commit feed as it goes; checks
/// that they saw commits.
fn with_subscribers(
    store: &Store,
    subscribers: usize,
    work: impl FnOnce() -> Result<Duration, Box<dyn std::error::Error>>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut feed = store.subscribe();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if feed.next_timeout(Duration::from_millis(20)).is_some() {
                        seen += 1;
                    }
                }
                seen
            })
        })
        .collect();
    let took = work();
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let seen = reader.join().map_err(|_| "a feed subscriber panicked")?;
        if seen == 0 {
            return Err("a feed subscriber saw no commit".into());
        }
    }
    took
}

/// (3a) at a fixed offered rate (rows/s in all): each producer paces its writes, keeping up to
/// 64 in flight. Measures ack latency when the store is not saturated.
fn paced(store: &Store, rows: usize, rate: f64) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let per_producer = rate / PRODUCERS as f64;
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let store = store.clone();
            let n = rows / PRODUCERS + usize::from(t < rows % PRODUCERS);
            std::thread::spawn(move || -> Result<(), sqlweir::WriteError> {
                let p = payload();
                let mut in_flight = std::collections::VecDeque::new();
                for i in 0..n {
                    let due = started + Duration::from_secs_f64(i as f64 / per_producer);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    in_flight.push_back(store.write(INSERT, params![i as i64, "collector", p.as_str()]));
                    if in_flight.len() >= WINDOW {
                        in_flight.pop_front().expect("window is full").wait()?;
                    }
                }
                let done = in_flight.into_iter().try_for_each(|t| t.wait().map(drop));
                thread_ends();
                done
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "producer panicked")??;
    }
    Ok(started.elapsed())
}

/// (3b) 8 threads, blocking API, each waits for its ack before the next write.
fn lockstep(store: &Store, rows: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let store = store.clone();
            let n = rows / PRODUCERS + usize::from(t < rows % PRODUCERS);
            std::thread::spawn(move || -> Result<(), sqlweir::WriteError> {
                let p = payload();
                for i in 0..n {
                    store.write(INSERT, params![i as i64, "collector", p.as_str()]).wait()?;
                }
                thread_ends();
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "producer panicked")??;
    }
    Ok(started.elapsed())
}

/// (4) One producer, `write_many` in chunks of 10,000 rows, two chunks in flight.
fn many(store: &Store, rows: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    let p = payload();
    let started = Instant::now();
    let chunk = 10_000;
    let mut pending = std::collections::VecDeque::new();
    let mut i = 0;
    while i < rows {
        let end = (i + chunk).min(rows);
        let batch: Vec<Vec<Value>> = (i..end).map(|i| params![i as i64, "collector", p.as_str()]).collect();
        pending.push_back(store.write_many(INSERT, batch));
        if pending.len() > 2 {
            let out = pending.pop_front().ok_or("queue")?.wait()?;
            if !out.rejected.is_empty() {
                return Err(format!("{} rows rejected", out.rejected.len()).into());
            }
        }
        i = end;
    }
    for t in pending {
        t.wait()?;
    }
    Ok(started.elapsed())
}

/// Grabs `BEGIN EXCLUSIVE` for 200 ms every second, `cycles` times, then raises `stop`.
fn lock_holder(path: PathBuf, cycles: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<rusqlite::Result<u32>> {
    std::thread::spawn(move || {
        let held = (|| {
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            for _ in 0..cycles {
                conn.execute_batch("BEGIN EXCLUSIVE")?;
                std::thread::sleep(Duration::from_millis(200));
                conn.execute_batch("COMMIT")?;
                std::thread::sleep(Duration::from_millis(800));
            }
            Ok(cycles)
        })();
        stop.store(true, Ordering::Relaxed);
        held
    })
}

/// (6) Like (3a), but writing until `stop` is raised; returns the rows written.
fn pipelined_until(store: &Store, stop: &Arc<AtomicBool>) -> Result<usize, Box<dyn std::error::Error>> {
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || -> Result<usize, sqlweir::WriteError> {
                let p = payload();
                let mut written = 0;
                while !stop.load(Ordering::Relaxed) {
                    let window = (0..WINDOW).map(|i| store.write(INSERT, params![i as i64, "collector", p.as_str()]));
                    for r in block_on(join_all(window)) {
                        r?;
                    }
                    written += WINDOW;
                }
                Ok(written)
            })
        })
        .collect();
    let mut rows = 0;
    for t in threads {
        rows += t.join().map_err(|_| "producer panicked")??;
    }
    Ok(rows)
}

fn measure_store(
    dir: &Path,
    key: &'static str,
    name: String,
    rows: usize,
    sync: Synchronous,
    work: impl FnOnce(&Store, &Path) -> Result<Duration, Box<dyn std::error::Error>>,
) -> Result<Run, Box<dyn std::error::Error>> {
    measure_store_waiting(dir, key, name, rows, sync, GroupWait::default(), work)
}

fn measure_store_waiting(
    dir: &Path,
    key: &'static str,
    name: String,
    rows: usize,
    sync: Synchronous,
    wait: GroupWait,
    work: impl FnOnce(&Store, &Path) -> Result<Duration, Box<dyn std::error::Error>>,
) -> Result<Run, Box<dyn std::error::Error>> {
    let path = fresh(dir, key);
    let store = open_store_waiting(&path, sync, wait)?;
    reset_peak_rss();
    let start = switches();
    let elapsed = work(&store, &path)?;
    let switches = switches_since(start);
    let metrics = store.metrics();
    store.close()?;
    let landed = count(&path)?;
    if landed != rows {
        return Err(format!("{key}: {landed} rows landed, {rows} expected").into());
    }
    Ok(Run { key, name, rows, elapsed, metrics: Some(metrics), peak_rss_kb: status_kb("VmHWM:"), switches })
}

fn measure_raw(
    dir: &Path,
    key: &'static str,
    name: String,
    rows: usize,
    work: impl FnOnce(&Path) -> Result<Duration, Box<dyn std::error::Error>>,
) -> Result<Run, Box<dyn std::error::Error>> {
    let path = fresh(dir, key);
    reset_peak_rss();
    let start = switches();
    let elapsed = work(&path)?;
    let switches = switches_since(start);
    let landed = count(&path)?;
    if landed != rows {
        return Err(format!("{key}: {landed} rows landed, {rows} expected").into());
    }
    Ok(Run { key, name, rows, elapsed, metrics: None, peak_rss_kb: status_kb("VmHWM:"), switches })
}

/// (6) sqlweir while another connection takes the write lock for 200 ms every second.
fn under_lock(dir: &Path, cycles: u32) -> Result<Run, Box<dyn std::error::Error>> {
    let path = fresh(dir, "weir_under_lock");
    let store = open_store(&path, Synchronous::Normal)?;
    reset_peak_rss();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let holder = lock_holder(path.clone(), cycles, stop.clone());
    let rows = pipelined_until(&store, &stop)?;
    let elapsed = started.elapsed();
    let held = holder.join().map_err(|_| "lock holder panicked")??;
    let metrics = store.metrics();
    store.close()?;
    if count(&path)? != rows || metrics.failed != 0 {
        return Err("under_lock: rows lost or failed".into());
    }
    let name = format!("(6) sqlweir (3a), {held} x 200 ms outside lock, 1/s");
    Ok(Run {
        key: "weir_under_lock",
        name,
        rows,
        elapsed,
        metrics: Some(metrics),
        peak_rss_kb: status_kb("VmHWM:"),
        switches: (0, 0),
    })
}

/// Ingests `rows` rows from one pipelining producer and samples RSS at checkpoints.
fn memory(dir: &Path, rows: usize) -> Result<Vec<(usize, u64)>, Box<dyn std::error::Error>> {
    let path = fresh(dir, "memory");
    let store = open_store(&path, Synchronous::Normal)?;
    let p = payload();
    let checkpoints: Vec<usize> = [100_000, 1_000_000, 5_000_000, rows].into_iter().filter(|c| *c <= rows).collect();
    let mut samples = Vec::new();
    let mut i = 0;
    let mut in_flight = std::collections::VecDeque::new();
    while i < rows {
        in_flight.push_back(store.write(INSERT, params![i as i64, "ingest", p.as_str()]));
        if in_flight.len() >= 4096 {
            in_flight.pop_front().ok_or("queue")?.wait()?;
        }
        i += 1;
        if checkpoints.contains(&i) {
            samples.push((i, status_kb("VmRSS:")));
        }
    }
    for t in in_flight {
        t.wait()?;
    }
    store.close()?;
    if count(&path)? != rows {
        return Err("memory: not every row landed".into());
    }
    samples.dedup_by_key(|s| s.0);
    Ok(samples)
}

/// The targets of the benchmark issue, with this run's ratios.
fn print_targets(runs: &[Run], limit: f64, naive: f64, naive_full: f64) {
    let rate = |key: &str| runs.iter().find(|r| r.key == key).map_or(f64::NAN, Run::rate);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let checks = [
        ("(3a) >= 0.70x limit", rate("weir_pipelined") / limit, 0.7),
        ("(3a) + 4 subscribers >= 0.9x (3a)", rate("weir_pipelined_feed") / rate("weir_pipelined"), 0.9),
        ("(4)  >= 0.90x limit", rate("weir_many") / limit, 0.9),
        ("(3a) FULL >= 50x naive FULL", rate("weir_pipelined_full") / naive_full, 50.0),
        ("(3b) >= 1.2x naive (NORMAL)", rate("weir_lockstep") / naive, 1.2),
        ("(3b) FULL >= 5x naive FULL", rate("weir_lockstep_full") / naive_full, 5.0),
    ];
    let p99_half = runs.iter().find(|r| r.key == "weir_half_rate").and_then(|r| r.metrics.as_ref()).map(|m| m.ack_p99);
    println!("\ntargets (from the benchmark issue; ratios measured in this run):");
    // A NaN ratio is a scenario `--only` left out.
    for (what, ratio, goal) in checks.into_iter().filter(|c| !c.1.is_nan()) {
        println!("  {what:<32} {ratio:>7.2}x  {}", verdict(ratio >= goal));
    }
    let once = rate("weir_pipelined_once") / rate("weir_pipelined");
    if !once.is_nan() {
        println!("  {:<32} {:>7.2}x  (the cost of request ids; no target)", "(3a) write_once / (3a)", once);
    }
    if let Some(p99) = p99_half {
        let ok = p99 < Duration::from_millis(20);
        println!("  {:<32} {:>8}  {}", "(3c) ack p99 < 20 ms at half rate", format!("{p99:?}"), verdict(ok));
    }
}

/// A measured PostgreSQL scenario.
#[cfg(feature = "postgres")]
struct PgRun {
    key: &'static str,
    name: String,
    rows: usize,
    rate: f64,
    metrics: Option<MetricsSnapshot>,
}

/// A fresh database on the bench server, with `events` and a copy `events_trigger` carrying a
/// no-op trigger (which keeps sqlweir from combining rows into multi-row INSERTs there).
#[cfg(feature = "postgres")]
fn pg_database(server: &str, name: &str) -> Result<String, Box<dyn std::error::Error>> {
    postgres::Client::connect(server, postgres::NoTls)?.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let db = format!("{} dbname={name}", server.replace("dbname=postgres", ""));
    postgres::Client::connect(&db, postgres::NoTls)?.batch_execute(
        "CREATE TABLE events(id bigserial PRIMARY KEY, ts bigint, source text, payload text); \
         CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$; \
         CREATE TABLE events_trigger (LIKE events INCLUDING ALL); \
         CREATE TRIGGER noop BEFORE INSERT ON events_trigger FOR EACH ROW EXECUTE FUNCTION noop()",
    )?;
    Ok(db)
}

/// (8) naive on PostgreSQL: 8 connections, one autocommit INSERT per row, each waiting for its
/// reply (the lock-step shape by nature).
#[cfg(feature = "postgres")]
fn pg_naive(db: &str, rows: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let db = db.to_owned();
            let n = rows / PRODUCERS + usize::from(t < rows % PRODUCERS);
            std::thread::spawn(move || -> Result<(), postgres::Error> {
                let mut client = postgres::Client::connect(&db, postgres::NoTls)?;
                let stmt = client.prepare("INSERT INTO events(ts, source, payload) VALUES ($1, $2, $3)")?;
                let p = payload();
                for i in 0..n {
                    client.execute(&stmt, &[&(i as i64), &"collector", &p])?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "postgres producer panicked")??;
    }
    Ok(started.elapsed())
}

/// Runs `work` against a store on a fresh database and checks that every row landed in `table`.
#[cfg(feature = "postgres")]
fn pg_store_run(
    server: &str,
    key: &'static str,
    name: String,
    rows: usize,
    work: impl FnOnce(&Store) -> Result<Duration, Box<dyn std::error::Error>>,
) -> Result<PgRun, Box<dyn std::error::Error>> {
    let db = pg_database(server, &format!("sqlweir_bench_{}_{key}", std::process::id()))?;
    let store = Store::open_postgres(&db, Options::default())?;
    let elapsed = work(&store)?;
    let m = store.metrics();
    let landed =
        store.query_as::<i64>("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM events_trigger)", &[])?[0];
    store.close()?;
    if landed as usize != rows || m.failed != 0 || m.rejected != 0 {
        return Err(format!("{key}: {landed} rows landed, {rows} expected").into());
    }
    Ok(PgRun { key, name, rows, rate: rows as f64 / elapsed.as_secs_f64(), metrics: Some(m) })
}

/// (8) The PostgreSQL rows, all in this run: naive, sqlweir pipelined (3a), the same with
/// multi-row INSERTs ruled out (pipelining alone), lock-step (3b), and (3a) paced at half its
/// rate for ack latency (3c).
#[cfg(feature = "postgres")]
fn postgres_runs(rows: usize, smoke: bool) -> Result<Vec<PgRun>, Box<dyn std::error::Error>> {
    let Ok(server) = std::env::var("SQLWEIR_PG") else {
        println!("\n(PostgreSQL rows skipped: SQLWEIR_PG is not set; scripts/bench starts a server for them)");
        return Ok(Vec::new());
    };
    let db = pg_database(&server, &format!("sqlweir_bench_{}_naive", std::process::id()))?;
    let naive = pg_naive(&db, rows)?;
    let mut runs = vec![PgRun {
        key: "pg_naive",
        name: "(8) naive: 8 connections, autocommit INSERT per row".into(),
        rows,
        rate: rows as f64 / naive.as_secs_f64(),
        metrics: None,
    }];
    let weir_rows = rows * 4;
    runs.push(pg_store_run(
        &server,
        "pg_weir",
        "(8) sqlweir (3a) 8 producers, 64 in flight each".into(),
        weir_rows,
        |s| pipelined(s, weir_rows),
    )?);
    let trigger_insert = INSERT.replace("events", "events_trigger");
    runs.push(pg_store_run(
        &server,
        "pg_weir_rows",
        "(8) sqlweir (3a), one statement per row (trigger on table)".into(),
        weir_rows,
        |s| pipelined_into(s, weir_rows, &trigger_insert),
    )?);
    runs.push(pg_store_run(
        &server,
        "pg_weir_lockstep",
        "(8) sqlweir (3b) 8 threads, 1 in flight each".into(),
        rows,
        |s| lockstep(s, rows),
    )?);
    let half = runs[1].rate / 2.0;
    let half_rows = if smoke { rows } else { ((half * 2.0) as usize).clamp(rows, 2_000_000) };
    runs.push(pg_store_run(
        &server,
        "pg_weir_half_rate",
        format!("(8) sqlweir (3a) paced at half its rate ({half:.0}/s)"),
        half_rows,
        |s| paced(s, half_rows, half),
    )?);
    Ok(runs)
}

/// Measures and prints the PostgreSQL rows with their targets, adding them to the JSON results.
#[cfg(feature = "postgres")]
fn print_postgres(
    rows: usize,
    smoke: bool,
    json_runs: &mut Vec<serde_json::Value>,
) -> Result<(), Box<dyn std::error::Error>> {
    let runs = postgres_runs(rows, smoke)?;
    let Some(naive) = runs.iter().find(|r| r.key == "pg_naive").map(|r| r.rate) else { return Ok(()) };
    println!("\nPostgreSQL (same run; naive {rows} rows):");
    println!(
        "{:<60} {:>10} {:>9} {:>8} {:>10} {:>10} {:>8}",
        "scenario", "rows/s", "x naive", "batch", "ack p50", "ack p99", "retries"
    );
    for r in &runs {
        let m = r.metrics.as_ref();
        println!(
            "{:<60} {:>10.0} {:>9.2} {:>8} {:>10} {:>10} {:>8}",
            r.name,
            r.rate,
            r.rate / naive,
            m.map_or("-".into(), |m| format!("{:.0}", m.mean_batch_size)),
            m.map_or("-".into(), |m| format!("{:?}", m.ack_p50)),
            m.map_or("-".into(), |m| format!("{:?}", m.ack_p99)),
            m.map_or("-".into(), |m| m.retries.to_string()),
        );
        json_runs.push(json!({
            "key": r.key, "name": r.name, "rows": r.rows, "rows_per_s": r.rate, "ratio_to_naive": r.rate / naive,
            "mean_batch_size": m.map(|m| m.mean_batch_size), "ack_p50_us": m.map(|m| m.ack_p50.as_micros() as u64),
            "ack_p99_us": m.map(|m| m.ack_p99.as_micros() as u64), "retries": m.map(|m| m.retries),
        }));
    }
    if smoke {
        return Ok(());
    }
    let find = |key: &str| runs.iter().find(|r| r.key == key);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\nPostgreSQL targets (issue #23; ratios measured in this run):");
    if let Some(weir) = find("pg_weir") {
        let ratio = weir.rate / naive;
        println!("  {:<40} {:>8.2}x  {}", "(3a) >= 5x naive (8 connections)", ratio, verdict(ratio >= 5.0));
        let batch = weir.metrics.as_ref().map_or(0.0, |m| m.mean_batch_size);
        println!("  {:<40} {:>9.0}  {}", "(3a) mean batch >= 100", batch, verdict(batch >= 100.0));
    }
    if let Some(p99) = find("pg_weir_half_rate").and_then(|r| r.metrics.as_ref()).map(|m| m.ack_p99) {
        let shown = format!("{p99:?}");
        println!(
            "  {:<40} {shown:>9}  {}",
            "(3c) ack p99 < 50 ms at half rate",
            verdict(p99 < Duration::from_millis(50))
        );
    }
    if let Some(lockstep) = find("pg_weir_lockstep") {
        println!("  {:<40} {:>8.2}x  (shape only: no target)", "(3b) lock-step vs naive", lockstep.rate / naive);
    }
    Ok(())
}

fn usage(error: &str) -> ! {
    eprintln!(
        "{error}\nusage: bench [--rows N] [--full-rows N] [--memory-rows N] [--pg-rows N] [--postgres-only] [--smoke] [--only KEY,...] [--out PATH]"
    );
    std::process::exit(2);
}

/// `--postgres-only`: the PostgreSQL rows alone.
#[cfg(feature = "postgres")]
fn postgres_only(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut json_runs = Vec::new();
    print_postgres(args.pg_rows, args.smoke, &mut json_runs)?;
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&json!({ "runs": json_runs }))?)?;
    println!("results written to {}", args.out.display());
    Ok(())
}

#[allow(clippy::too_many_lines)] // one list of scenarios, read top to bottom
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().unwrap_or_else(|e| usage(&e));
    #[cfg(feature = "postgres")]
    if args.postgres_only {
        return postgres_only(&args);
    }
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let (n, f) = (args.rows, args.full_rows);
    let normal = Synchronous::Normal;
    let full = Synchronous::Full;
    println!(
        "sqlweir native benchmark: {n} rows (FULL scenarios {f}), ~100-byte payloads, WAL, file-backed, {PRODUCERS} producers"
    );
    let scenarios: Vec<(&'static str, Scenario<'_>)> = vec![
        (
            "limit",
            Box::new(|key| {
                measure_raw(d, key, format!("(1) limit: 1 connection, 1 transaction, {n} rows"), n, |p| limit(p, n))
            }),
        ),
        (
            "naive",
            Box::new(|key| {
                measure_raw(d, key, "(2) naive: 8 threads, autocommit per row".into(), n, |p| naive(p, n, normal))
            }),
        ),
        (
            "weir_pipelined",
            Box::new(|key| {
                measure_store(d, key, "(3a) sqlweir 8 producers, 64 in flight each".into(), n, normal, |s, _| {
                    pipelined(s, n)
                })
            }),
        ),
        (
            "weir_pipelined_once",
            Box::new(|key| {
                measure_store(d, key, "(3a) with request ids (write_once)".into(), n, normal, |s, _| {
                    pipelined_once(s, n)
                })
            }),
        ),
        (
            "weir_pipelined_feed",
            Box::new(|key| {
                measure_store(d, key, "(3a) with 4 commit-feed subscribers".into(), n, normal, |s, _| {
                    with_subscribers(s, 4, || pipelined(s, n))
                })
            }),
        ),
        (
            "weir_lockstep",
            Box::new(|key| {
                measure_store(d, key, "(3b) sqlweir 8 threads, 1 in flight each".into(), n, normal, |s, _| {
                    lockstep(s, n)
                })
            }),
        ),
        // How a blocked writer waits for its write group, measured against each other: the
        // default (write groups, yield 50 times) is the row above.
        (
            "weir_lockstep_handoff",
            lockstep_waiting(d, "(3b) wait: hand-off to the writer thread", n, normal, GroupWait::Handoff),
        ),
        (
            "weir_lockstep_park",
            lockstep_waiting(d, "(3b) wait: write groups, park at once", n, normal, GroupWait::Park),
        ),
        (
            "weir_lockstep_spin",
            lockstep_waiting(d, "(3b) wait: write groups, spin 50 x 64", n, normal, GroupWait::Spin(50)),
        ),
        (
            "weir_many",
            Box::new(|key| {
                measure_store(d, key, "(4) sqlweir write_many, 1 producer".into(), n, normal, |s, _| many(s, n))
            }),
        ),
        (
            "naive_full",
            Box::new(|key| {
                measure_raw(d, key, format!("(7) naive, synchronous=FULL, {f} rows"), f, |p| naive(p, f, full))
            }),
        ),
        (
            "weir_pipelined_full",
            Box::new(|key| {
                measure_store(d, key, "(7) sqlweir (3a), synchronous=FULL".into(), f, full, |s, _| pipelined(s, f))
            }),
        ),
        (
            "weir_lockstep_full",
            Box::new(|key| {
                measure_store(d, key, "(7) sqlweir (3b), synchronous=FULL".into(), f, full, |s, _| lockstep(s, f))
            }),
        ),
        (
            "weir_lockstep_handoff_full",
            lockstep_waiting(d, "(7) (3b) FULL, hand-off to the writer thread", f, full, GroupWait::Handoff),
        ),
    ];
    let mut runs = Vec::new();
    for (key, run) in scenarios {
        if args.wants(key) {
            runs.push(run(key)?);
        }
    }
    if args.wants("weir_under_lock") {
        runs.push(under_lock(d, if args.smoke { 1 } else { 5 })?);
    }
    // (3c) half of (3a)'s peak rate, for ack latency when not saturated (about two seconds).
    if args.wants("weir_half_rate") {
        let half = runs.iter().find(|r| r.key == "weir_pipelined").map_or(1000.0, Run::rate) / 2.0;
        let half_rows = if args.smoke { n } else { ((half * 2.0) as usize).clamp(n, 2_000_000) };
        runs.push(measure_store(
            d,
            "weir_half_rate",
            format!("(3c) sqlweir (3a) paced at half its rate ({half:.0}/s)"),
            half_rows,
            normal,
            |s, _| paced(s, half_rows, half),
        )?);
    }
    let rate = |key: &str, runs: &[Run]| runs.iter().find(|r| r.key == key).map_or(f64::NAN, Run::rate);
    let (limit_rate, naive_rate, naive_full_rate) =
        (rate("limit", &runs), rate("naive", &runs), rate("naive_full", &runs));

    println!(
        "\n{:<52} {:>10} {:>9} {:>9} {:>8} {:>10} {:>10} {:>8} {:>9} {:>9}",
        "scenario", "rows/s", "x limit", "x naive", "batch", "ack p50", "ack p99", "retries", "peak MB", "cs/write"
    );
    let mut json_runs = Vec::new();
    for r in &mut runs {
        let versus_naive = if r.key.ends_with("_full") { r.rate() / naive_full_rate } else { r.rate() / naive_rate };
        let m = r.metrics.as_ref();
        let per_write = (r.switches.0 + r.switches.1) as f64 / r.rows as f64;
        println!(
            "{:<52} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>10} {:>10} {:>8} {:>9.1} {:>9}",
            r.name,
            r.rate(),
            r.rate() / limit_rate,
            versus_naive,
            m.map_or("-".into(), |m| format!("{:.0}", m.mean_batch_size)),
            m.map_or("-".into(), |m| format!("{:?}", m.ack_p50)),
            m.map_or("-".into(), |m| format!("{:?}", m.ack_p99)),
            m.map_or("-".into(), |m| m.retries.to_string()),
            r.peak_rss_kb as f64 / 1024.0,
            if r.switches == (0, 0) { "-".to_string() } else { format!("{per_write:.2}") },
        );
        json_runs.push(json!({
            "key": r.key, "name": r.name, "rows": r.rows, "seconds": r.elapsed.as_secs_f64(), "rows_per_s": r.rate(),
            "ratio_to_limit": r.rate() / limit_rate, "ratio_to_naive": versus_naive,
            "mean_batch_size": m.map(|m| m.mean_batch_size), "ack_p50_us": m.map(|m| m.ack_p50.as_micros() as u64),
            "ack_p99_us": m.map(|m| m.ack_p99.as_micros() as u64), "retries": m.map(|m| m.retries),
            "breaker_opened": m.map(|m| m.breaker_opened), "peak_rss_kb": r.peak_rss_kb,
            "voluntary_switches": r.switches.0, "involuntary_switches": r.switches.1,
        }));
    }

    #[cfg(feature = "postgres")]
    print_postgres(args.pg_rows, args.smoke, &mut json_runs)?;
    let samples = if args.only.is_some() { Vec::new() } else { memory(d, args.memory_rows)? };
    if !samples.is_empty() {
        println!("\nmemory: one producer ingests {} rows through the bounded queue (4096 in flight)", args.memory_rows);
    }
    for (at, kb) in &samples {
        println!("  RSS after {at:>9} rows: {:.1} MB", *kb as f64 / 1024.0);
    }

    if args.smoke {
        println!("\n(smoke run: tiny row counts; only the row counts were checked, ratios mean nothing here)");
    } else {
        print_targets(&runs, limit_rate, naive_rate, naive_full_rate);
    }

    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let doc = json!({
        "machine": { "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get), "sqlite": rusqlite::version() },
        "rows": n, "full_rows": f, "smoke": args.smoke, "runs": json_runs,
        "memory_rss_kb": samples.iter().map(|(at, kb)| json!({"rows": at, "rss_kb": kb})).collect::<Vec<_>>(),
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)?)?;
    println!("results written to {}", args.out.display());
    Ok(())
}
