//! `--help`, `stats` and `demo --quick`, run as the built binary.

// The helpers below panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use rusqlite::Connection;

fn sqlweir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sqlweir")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_lists_the_subcommands() {
    let o = sqlweir(&["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for command in ["ingest", "stats", "demo"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(command)), "{command} missing from:\n{help}");
    }
    let o = sqlweir(&["ingest", "--help"]);
    let help = stdout(&o);
    for flag in [
        "--db",
        "--table",
        "--batch",
        "--create",
        "--detect-rows",
        "--no-detect-types",
        "--rejects",
        "--strict",
        "--format",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(!help.contains("--report-peak-rss"), "the test-only flag stays hidden");
    assert_eq!(sqlweir(&["ingest"]).status.code(), Some(2), "a usage error exits with 2");
}

#[test]
fn stats_lists_tables_with_row_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE a(x); CREATE TABLE b(y);
         INSERT INTO a VALUES (1), (2), (3); INSERT INTO b VALUES (1);",
    )
    .unwrap();
    let o = sqlweir(&["stats", db.to_str().unwrap(), "--integrity"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let line = |key: &str| {
        out.lines().find(|l| l.trim_start().starts_with(key)).map(|l| l.split_whitespace().collect::<Vec<_>>())
    };
    assert_eq!(line("tables"), Some(vec!["tables", "2"]), "{out}");
    assert_eq!(line("a "), Some(vec!["a", "3", "rows"]), "{out}");
    assert_eq!(line("b "), Some(vec!["b", "1", "rows"]), "{out}");
    assert_eq!(line("journal mode"), Some(vec!["journal", "mode", "wal"]), "{out}");
    assert_eq!(line("integrity"), Some(vec!["integrity", "ok"]), "{out}");
    assert!(line("sqlite").is_some() && line("page size").is_some() && line("page count").is_some(), "{out}");
    assert_eq!(sqlweir(&["stats", dir.path().join("missing.db").to_str().unwrap()]).status.code(), Some(2));
}

#[test]
fn demo_quick_prints_a_report_whose_counts_reconcile() {
    let o = sqlweir(&["demo", "--quick", "--collectors", "4"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    let value = |section: &str, key: &str| -> u64 {
        let start = out.find(section).unwrap_or_else(|| panic!("no {section} in {out}"));
        out[start..]
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let committed = value("sqlweir: one store", "rows committed");
    assert!(committed > 0, "{out}");
    assert!(out.contains(&format!("(count(*) {committed})")), "{out}");
    assert!(value("one connection per collector", "rows committed") > 0, "{out}");
    for key in ["batches", "retries", "ack latency", "rows/s"] {
        assert!(out.contains(key), "{key} missing from {out}");
    }
    assert!(out.contains("counts reconcile"), "{out}");
    assert!(out.contains("x as many rows per second"), "{out}");
}
