//! `sqlweir ingest` end to end: the built binary on generated files, checked by counting what
//! landed in the database and what was reported.

// The helpers below panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rusqlite::Connection;

fn sqlweir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sqlweir")).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn count(db: &Path, table: &str) -> i64 {
    Connection::open(db).unwrap().query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0)).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A million lines stream through in bounded memory. The bound is the child's own `VmHWM`
/// (the kernel's high-water mark of its resident set, printed by the hidden
/// `--report-peak-rss` flag just before exit, after the store closed). 64 MiB is well below
/// what holding the input would take (the file alone is ~40 MB, its parsed rows several times
/// that) and several times the ~12 MB measured.
#[test]
fn a_million_jsonl_lines_land_in_bounded_memory() {
    const LINES: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    let mut out = BufWriter::new(std::fs::File::create(&input).unwrap());
    let mut line = String::new();
    for i in 0..LINES {
        line.clear();
        writeln!(line, r#"{{"id":{i},"source":"c{}","v":{i}.5}}"#, i % 8).unwrap();
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let db = dir.path().join("app.db");
    let o = sqlweir(&["ingest", path(&input), "--db", path(&db), "--table", "events", "--create", "--report-peak-rss"]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("ingested 1000000 rows into events"), "{stdout}");
    assert!(stdout.contains("0 malformed, 0 rejected"), "{stdout}");
    assert_eq!(count(&db, "events"), LINES as i64);
    let conn = Connection::open(&db).unwrap();
    let (sum, real): (i64, f64) = conn
        .query_row("SELECT sum(id), sum(v) FROM events WHERE source = 'c3'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(sum, (0..LINES as i64).filter(|i| i % 8 == 3).sum::<i64>());
    assert!((real - (sum as f64 + 0.5 * (LINES / 8) as f64)).abs() < 1.0);

    let kb: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak rss: "))
        .and_then(|v| v.trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak rss line in: {stderr}"));
    assert!(kb < 64 * 1024, "peak resident memory {kb} kB, expected under 64 MiB");
}

#[test]
fn malformed_lines_are_reported_with_their_numbers_and_the_good_ones_land() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let lines = [
        r#"{"a": 1, "b": "x"}"#,               // 1
        r#"{"a": 2, "b": [1, 2], "c": true}"#, // 2: nested -> JSON text, bool -> 1
        r#"{"a": 3"#,                          // 3: bad JSON
        r"[1, 2]",                             // 4: not an object
        "",                                    // 5: blank, skipped silently
        r#"{"a": 4, "nope": 1}"#,              // 6: no such column -> rejected
        r#"{"b": "only b"}"#,                  // 7: a is NULL
        r#"{"a": 5, "c": null}"#,              // 8
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let db = dir.path().join("app.db");
    Connection::open(&db).unwrap().execute_batch("CREATE TABLE t(a INTEGER, b TEXT, c)").unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let o = sqlweir(&["ingest", path(&input), "--db", path(&db), "--table", "t", "--rejects", path(&rejects)]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("line 3: malformed"), "{stderr}");
    assert!(stderr.contains("line 4: malformed") && stderr.contains("not a JSON object"), "{stderr}");
    assert_eq!(stderr.matches("malformed").count(), 2, "{stderr}");
    assert!(stdout.contains("ingested 4 rows into t") && stdout.contains("2 malformed, 1 rejected"), "{stdout}");

    let conn = Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT a, b, c FROM t ORDER BY rowid").unwrap();
    let rows: Vec<(Option<i64>, Option<String>, Option<i64>)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let expected: Vec<(Option<i64>, Option<String>, Option<i64>)> = vec![
        (Some(1), Some("x".into()), None),
        (Some(2), Some("[1,2]".into()), Some(1)),
        (None, Some("only b".into()), None),
        (Some(5), None, None),
    ];
    assert_eq!(rows, expected, "lines 1, 2, 7 and 8 land, nothing else");

    let reported: Vec<serde_json::Value> =
        std::fs::read_to_string(&rejects).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lines_reported: Vec<u64> = reported.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines_reported, vec![3, 4, 6]);
    assert_eq!(reported[2]["record"], serde_json::json!({"a": 4, "nope": 1}));
    assert!(reported[2]["error"].as_str().unwrap().contains("nope"));
}

#[test]
fn rows_rejected_by_sqlite_go_to_the_rejects_file_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("r.jsonl");
    let mut body = String::new();
    for i in 1..=10 {
        // Line 7 repeats id 3: a primary key violation.
        writeln!(body, r#"{{"id":{},"name":"n{i}"}}"#, if i == 7 { 3 } else { i }).unwrap();
    }
    std::fs::write(&input, body).unwrap();
    let db = dir.path().join("app.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let o = sqlweir(&[
        "ingest",
        path(&input),
        "--db",
        path(&db),
        "--table",
        "people",
        "--batch",
        "4",
        "--rejects",
        path(&rejects),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("ingested 9 rows") && text(&o.stdout).contains("0 malformed, 1 rejected"));
    assert_eq!(count(&db, "people"), 9);
    let reported: Vec<serde_json::Value> =
        std::fs::read_to_string(&rejects).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0]["line"], 7);
    assert_eq!(reported[0]["record"], serde_json::json!({"id": 3, "name": "n7"}));
    assert!(reported[0]["error"].as_str().unwrap().to_lowercase().contains("constraint"), "{}", reported[0]);
}

#[test]
fn strict_stops_at_the_first_malformed_line_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.jsonl");
    std::fs::write(&input, "{\"a\":1}\n{oops\n{\"a\":3}\n").unwrap();
    let db = dir.path().join("app.db");
    let o = sqlweir(&["ingest", path(&input), "--db", path(&db), "--table", "t", "--create", "--strict"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("line 2: malformed, stopping"), "{}", text(&o.stderr));
    assert_eq!(count(&db, "t"), 1, "the line before the malformed one committed, the one after was not read");
}

#[test]
fn csv_quoted_fields_keep_commas_quotes_and_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("q.csv");
    std::fs::write(&input, "id,note\n1,plain\n2,\"a, b\"\n3,\"two\nlines\"\n4,\"say \"\"hi\"\"\"\n5\n6,last\n")
        .unwrap();
    let db = dir.path().join("app.db");
    let o = sqlweir(&["ingest", path(&input), "--db", path(&db), "--table", "notes", "--create"]);
    assert_eq!(o.status.code(), Some(1), "row 5 has one field: {}", text(&o.stderr));
    assert!(text(&o.stderr).contains("line 7: malformed"), "{}", text(&o.stderr));
    let conn = Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT id, note FROM notes ORDER BY rowid").unwrap();
    let rows: Vec<(i64, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let expected = [(1, "plain"), (2, "a, b"), (3, "two\nlines"), (4, "say \"hi\""), (6, "last")];
    assert_eq!(rows, expected.map(|(a, b)| (a, b.to_owned())), "id is detected INTEGER, note TEXT");
}

#[test]
fn stdin_input_with_a_format() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlweir"))
        .args(["ingest", "-", "--format", "csv", "--db", path(&db), "--table", "weird \"name\"", "--create"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let body: String =
        std::iter::once("k,v\n".to_owned()).chain((0..2500).map(|i| format!("{i},\"v{i}\"\n"))).collect();
    stdin.write_all(body.as_bytes()).unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("ingested 2500 rows"), "{}", text(&o.stdout));
    assert_eq!(count(&db, "weird \"\"name\"\""), 2500);
}

#[test]
fn a_missing_table_without_create_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.jsonl");
    std::fs::write(&input, "{\"a\":1}\n").unwrap();
    let db = dir.path().join("app.db");
    let o = sqlweir(&["ingest", path(&input), "--db", path(&db), "--table", "absent"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no table named absent"), "{}", text(&o.stderr));
}
