//! Crash test: a child process writes through sqlweir from several threads and prints each id
//! only after its ack; the parent kills it with SIGKILL at seeded random moments, 20 rounds.
//! After each kill: `PRAGMA integrity_check` is ok, every acked id is in the file, no
//! `write_many` group is half applied, and the store reopens and accepts writes.
//!
//! This binary is both parent and child: with `SQLWEIR_CRASH_CHILD` set it is the child.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlweir::{Options, Store, params};

const SCHEMA: &str = "CREATE TABLE events(id INTEGER PRIMARY KEY, grp INTEGER, part INTEGER)";
const ROUNDS: u64 = 20;
const GROUP: i64 = 5;

fn main() {
    if let Ok(path) = std::env::var("SQLWEIR_CRASH_CHILD") {
        child(&path, std::env::var("SQLWEIR_CRASH_ROUND").ok().and_then(|r| r.parse().ok()).unwrap_or(0));
        return;
    }
    let (mut passed, mut failed) = (0, 0);
    for round in 0..ROUNDS {
        match parent_round(round) {
            Ok(acked) => {
                passed += 1;
                println!("crash round {round}: ok ({acked} acked writes verified)");
            }
            Err(e) => {
                failed += 1;
                println!("crash round {round}: FAILED: {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Writes forever from 4 threads; prints `single <id>` or `group <grp>` after each ack.
fn child(path: &str, round: i64) {
    let store = Store::open(path, Options::default().migrations(&[SCHEMA])).expect("child opens the store");
    let threads: Vec<_> = (0..4i64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let base = (round * 4 + t) * 1_000_000_000;
                for i in 0.. {
                    let id = base + i * 10;
                    if i % 7 == 0 {
                        let rows = (0..GROUP).map(|p| params![id + p, id, p]).collect();
                        let out =
                            store.write_many("INSERT INTO events(id, grp, part) VALUES (?1, ?2, ?3)", rows).wait();
                        if out.is_ok_and(|o| o.committed == GROUP as u64) {
                            println!("group {id}");
                        }
                    } else if store
                        .write("INSERT INTO events(id, grp, part) VALUES (?1, NULL, NULL)", params![id])
                        .wait()
                        .is_ok()
                    {
                        println!("single {id}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn parent_round(round: u64) -> Result<usize, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("crash.db");
    // Rounds reuse nothing but their seed: the kill moment is reproducible per round.
    let mut rng = round.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acked_singles = BTreeSet::new();
    let mut acked_groups = BTreeSet::new();
    // Several lives per round: kill, check, and let the next child continue on the same file.
    for life in 0..2 {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env("SQLWEIR_CRASH_CHILD", &path)
            .env("SQLWEIR_CRASH_ROUND", (round * 2 + life).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let (first_ack, acked) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.is_empty() {
                    let _ = first_ack.send(());
                }
                lines.push(line);
            }
            lines
        });
        // Let it write for a while after its first ack (a loaded machine may take long to start
        // it: a kill before its migrations ran would prove nothing), then kill it mid-stream.
        let _ = acked.recv_timeout(Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(50 + next() % 400));
        child.kill().map_err(|e| e.to_string())?; // SIGKILL: no destructor, no flush, no checkpoint
        let _ = child.wait();
        for line in reader.join().map_err(|_| "reader thread panicked")? {
            match line.split_once(' ') {
                Some(("single", id)) => acked_singles.insert(id.parse::<i64>().map_err(|e| e.to_string())?),
                Some(("group", id)) => acked_groups.insert(id.parse::<i64>().map_err(|e| e.to_string())?),
                _ => return Err(format!("unexpected child output {line:?}")),
            };
        }
        verify(&path, &acked_singles, &acked_groups)?;
    }
    if acked_singles.is_empty() || acked_groups.is_empty() {
        return Err("the child acked nothing before the kill; the round proves nothing".into());
    }
    // The store reopens on the crashed file and takes writes.
    let store = Store::open(&path, Options::default().migrations(&[SCHEMA])).map_err(|e| e.to_string())?;
    store.write("INSERT INTO events(id) VALUES (?1)", params![-1]).wait().map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    Ok(acked_singles.len() + acked_groups.len())
}

fn verify(path: &std::path::Path, singles: &BTreeSet<i64>, groups: &BTreeSet<i64>) -> Result<(), String> {
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if check != "ok" {
        return Err(format!("integrity_check: {check}"));
    }
    let mut stmt = conn.prepare("SELECT id FROM events WHERE grp IS NULL").map_err(|e| e.to_string())?;
    let present: BTreeSet<i64> = stmt
        .query_map([], |r| r.get(0))
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if let Some(lost) = singles.difference(&present).next() {
        return Err(format!("acked write {lost} is missing after the crash"));
    }
    let mut stmt = conn
        .prepare("SELECT grp, count(*) FROM events WHERE grp IS NOT NULL GROUP BY grp")
        .map_err(|e| e.to_string())?;
    let counts: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if let Some((grp, n)) = counts.iter().find(|(_, n)| *n != GROUP) {
        return Err(format!("group {grp} is half applied: {n} of {GROUP} rows"));
    }
    let present_groups: BTreeSet<i64> = counts.iter().map(|(g, _)| *g).collect();
    if let Some(lost) = groups.difference(&present_groups).next() {
        return Err(format!("acked group {lost} is missing after the crash"));
    }
    Ok(())
}
