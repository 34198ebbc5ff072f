//! `sqlweir ingest --create` on generated CSV, JSON Lines and JSON array files: column types
//! detected as sqlite-utils does (and where it loses values, kept as TEXT), arrays read
//! element by element, byte order marks, empty and bad input, `--strict`, and a side by side
//! run against `sqlite-utils insert` itself.

// The helpers below panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

fn sqlweir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sqlweir")).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes `body` to `name` in `dir` and runs `sqlweir ingest FILE --db DIR/app.db --table
/// TABLE --create EXTRA...`; returns the output and the database's path.
fn ingest(dir: &Path, name: &str, body: &[u8], table: &str, extra: &[&str]) -> (Output, PathBuf) {
    let input = dir.join(name);
    std::fs::write(&input, body).unwrap();
    let db = dir.join("app.db");
    let mut args = vec!["ingest", path(&input), "--db", path(&db), "--table", table, "--create"];
    args.extend_from_slice(extra);
    (sqlweir(&args), db)
}

/// Asserts the exit code, printing both streams when it is not the expected one.
fn expect_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", text(&o.stdout), text(&o.stderr));
}

/// The table's columns as `name TYPE`, in order.
fn columns(db: &Path, table: &str) -> Vec<String> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid").unwrap();
    stmt.query_map([table], |r| Ok(format!("{} {}", r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every row of `sql`, each value as `quote(v)` would print it and its `typeof`, e.g. `'x':text`.
fn rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                    rusqlite::types::Value::Null => "NULL".to_owned(),
                    rusqlite::types::Value::Integer(v) => format!("{v}:integer"),
                    rusqlite::types::Value::Real(v) => format!("{v:?}:real"),
                    rusqlite::types::Value::Text(v) => format!("'{v}':text"),
                    rusqlite::types::Value::Blob(v) => format!("{v:?}:blob"),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn one<T: rusqlite::types::FromSql>(db: &Path, sql: &str) -> T {
    Connection::open(db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Regression: every CSV value was TEXT, so `max(temp_max)` compared strings and gave '9.4'
/// instead of 35.6, and `sum()` had to guess.
#[test]
fn csv_columns_are_typed_integer_real_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("date,temp_max,precipitation,station\n");
    for (i, t) in ["9.4", "35.6", "12", "-3.5", "21.75"].iter().enumerate() {
        writeln!(body, "2024-01-0{},{t},{},S{}", i + 1, i * 3, i % 2).unwrap();
    }
    let (o, db) = ingest(dir.path(), "weather.csv", body.as_bytes(), "weather", &[]);
    expect_code(&o, 0);
    assert!(text(&o.stdout).contains("ingested 5 rows into weather"), "{}", text(&o.stdout));
    assert_eq!(columns(&db, "weather"), ["date TEXT", "temp_max REAL", "precipitation INTEGER", "station TEXT"]);
    assert_eq!(rows(&db, "SELECT max(temp_max) FROM weather"), [["35.6:real"]]);
    assert_eq!(one::<i64>(&db, "SELECT sum(precipitation) FROM weather"), 30);
    assert_eq!(
        rows(&db, "SELECT * FROM weather WHERE rowid IN (1, 3)"),
        [
            ["'2024-01-01':text", "9.4:real", "0:integer", "'S0':text"],
            ["'2024-01-03':text", "12.0:real", "6:integer", "'S0':text"],
        ]
    );
}

/// sqlite-utils types `00501` as INTEGER and stores 501; a column with any such value stays
/// TEXT here, so zip codes and IDs come back as written.
#[test]
fn leading_zeros_keep_their_column_text() {
    let dir = tempfile::tempdir().unwrap();
    let body = "zip,n\n10001,1\n00501,2\n02134,3\n";
    let (o, db) = ingest(dir.path(), "zips.csv", body.as_bytes(), "zips", &[]);
    expect_code(&o, 0);
    assert_eq!(columns(&db, "zips"), ["zip TEXT", "n INTEGER"]);
    assert_eq!(
        rows(&db, "SELECT zip, n FROM zips ORDER BY rowid"),
        [["'10001':text", "1:integer"], ["'00501':text", "2:integer"], ["'02134':text", "3:integer"]]
    );
}

/// Integers past 64 bits became REALs with their last digits rounded away (sqlite-utils
/// stores 123456789012345678901234 as 1.23456789012346e+23); their column is TEXT, exact.
#[test]
fn integers_past_64_bits_stay_exact_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let body = "id,big\n1,123456789012345678901234\n2,9223372036854775808\n3,5\n";
    let (o, db) = ingest(dir.path(), "big.csv", body.as_bytes(), "big", &[]);
    expect_code(&o, 0);
    assert_eq!(columns(&db, "big"), ["id INTEGER", "big TEXT"]);
    assert_eq!(
        rows(&db, "SELECT big FROM big ORDER BY rowid"),
        [["'123456789012345678901234':text"], ["'9223372036854775808':text"], ["'5':text"]]
    );

    // JSON: a u64 past i64::MAX was bound as a REAL; its digits are kept.
    let body = "{\"id\":1,\"big\":18446744073709551615}\n{\"id\":2,\"big\":\"x\"}\n";
    let (o, db) = ingest(dir.path(), "big.jsonl", body.as_bytes(), "bigj", &[]);
    expect_code(&o, 0);
    assert_eq!(columns(&db, "bigj"), ["id INTEGER", "big TEXT"]);
    assert_eq!(rows(&db, "SELECT big FROM bigj ORDER BY rowid"), [["'18446744073709551615':text"], ["'x':text"]]);
}

/// A column of integers and reals is REAL, in CSV and in JSON, as in sqlite-utils; empty CSV
/// fields are NULL in typed columns and stay '' in TEXT ones (sqlite-utils does the same).
#[test]
fn integers_mixed_with_reals_are_real_and_empty_fields_null() {
    let dir = tempfile::tempdir().unwrap();
    let body = "a,b,c\n1,,x\n2.5,7,\n3,8,z\n";
    let (o, db) = ingest(dir.path(), "mix.csv", body.as_bytes(), "mix", &[]);
    expect_code(&o, 0);
    assert_eq!(columns(&db, "mix"), ["a REAL", "b INTEGER", "c TEXT"]);
    assert_eq!(
        rows(&db, "SELECT a, b, c FROM mix ORDER BY rowid"),
        [["1.0:real", "NULL", "'x':text"], ["2.5:real", "7:integer", "'':text"], ["3.0:real", "8:integer", "'z':text"]]
    );

    let body = "{\"a\":1,\"t\":true}\n{\"a\":2.5,\"t\":false,\"n\":null}\n{\"a\":3}\n";
    let (o, db) = ingest(dir.path(), "mix.jsonl", body.as_bytes(), "mixj", &[]);
    expect_code(&o, 0);
    assert_eq!(columns(&db, "mixj"), ["a REAL", "t INTEGER", "n TEXT"]);
    assert_eq!(
        rows(&db, "SELECT a, t, n FROM mixj ORDER BY rowid"),
        [["1.0:real", "1:integer", "NULL"], ["2.5:real", "0:integer", "NULL"], ["3.0:real", "NULL", "NULL"]]
    );
}

/// `--no-detect-types` keeps every CSV field as written, in TEXT columns.
#[test]
fn no_detect_types_keeps_everything_text() {
    let dir = tempfile::tempdir().unwrap();
    let body = "a,b\n1,35.6\n,9.4\n";
    let (o, db) = ingest(dir.path(), "t.csv", body.as_bytes(), "t", &["--no-detect-types"]);
    expect_code(&o, 0);
    assert_eq!(columns(&db, "t"), ["a TEXT", "b TEXT"]);
    assert_eq!(
        rows(&db, "SELECT a, b FROM t ORDER BY rowid"),
        [["'1':text", "'35.6':text"], ["'':text", "'9.4':text"]]
    );
}

/// Types come from the first --detect-rows rows, so memory stays flat. A later value that does
/// not fit is stored as it is when SQLite keeps it (`N/A`), stored as a number when it is one
/// (`2.5`), and rejected with its line when SQLite would change it (`007` would become 7).
#[test]
fn values_past_the_detection_window_are_kept_or_rejected_never_changed() {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let body = "id,v\n1,a\n2,b\n007,c\nN/A,d\n2.5,e\n,f\n4,g\n";
    let (o, db) =
        ingest(dir.path(), "late.csv", body.as_bytes(), "late", &["--detect-rows", "2", "--rejects", path(&rejects)]);
    expect_code(&o, 1);
    assert!(
        text(&o.stdout).contains("ingested 6 rows") && text(&o.stdout).contains("1 rejected"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(columns(&db, "late"), ["id INTEGER", "v TEXT"]);
    assert_eq!(
        rows(&db, "SELECT id, v FROM late ORDER BY rowid"),
        [
            ["1:integer", "'a':text"],
            ["2:integer", "'b':text"],
            ["'N/A':text", "'d':text"],
            ["2.5:real", "'e':text"],
            ["NULL", "'f':text"],
            ["4:integer", "'g':text"],
        ]
    );
    let reported: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&rejects).unwrap().trim()).unwrap();
    assert_eq!(reported["line"], 4);
    assert_eq!(reported["record"], serde_json::json!({"id": "007", "v": "c"}));
    let error = reported["error"].as_str().unwrap();
    assert!(error.contains("\"007\"") && error.contains("--detect-rows"), "{error}");
}

/// Regression: a pretty-printed `[ {...}, ... ]` failed with "no table named cars: create it
/// first, or pass --create" although --create was given. Elements spanning lines, with commas
/// and brackets inside strings and nested values, land one by one.
#[test]
fn a_pretty_printed_json_array_lands_element_by_element() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"[
  {
    "name": "AMC, \"Hornet\" [sw]",
    "mpg": 18,
    "parts": {"wheels": [1, 2, 3, 4], "note": "}],"}
  },
  {
    "name": "Ford Pinto",
    "mpg": 22.5,
    "parts": null
  },
  {"name": "Fiat 128", "mpg": 29}
]
"#;
    let (o, db) = ingest(dir.path(), "cars.json", body.as_bytes(), "cars", &[]);
    expect_code(&o, 0);
    assert!(text(&o.stdout).contains("ingested 3 rows into cars") && text(&o.stdout).contains("0 malformed"));
    assert_eq!(columns(&db, "cars"), ["name TEXT", "mpg REAL", "parts TEXT"]);
    assert_eq!(
        rows(&db, "SELECT name, mpg, parts FROM cars ORDER BY rowid"),
        [
            ["'AMC, \"Hornet\" [sw]':text", "18.0:real", r#"'{"wheels":[1,2,3,4],"note":"}],"}':text"#],
            ["'Ford Pinto':text", "22.5:real", "NULL"],
            ["'Fiat 128':text", "29.0:real", "NULL"],
        ]
    );
}

/// Regression: a one-object-per-line JSON array was read as JSON Lines and loaded 1 row of
/// 44 (every line but the last ended in a comma). A bad element is reported with its line.
#[test]
fn a_one_object_per_line_json_array_loads_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("[\n");
    for i in 1..=44 {
        let sep = if i == 44 { "" } else { "," };
        writeln!(body, r#"{{"id": {i}, "cyl": {}, "model": "m{i}"}}{sep}"#, 4 + i % 3 * 2).unwrap();
    }
    body.push_str("]\n");
    let (o, db) = ingest(dir.path(), "cars.json", body.as_bytes(), "cars", &["--batch", "10"]);
    expect_code(&o, 0);
    assert!(text(&o.stdout).contains("ingested 44 rows into cars"), "{}", text(&o.stdout));
    assert_eq!(columns(&db, "cars"), ["id INTEGER", "cyl INTEGER", "model TEXT"]);
    assert_eq!(one::<i64>(&db, "SELECT sum(id) FROM cars"), (1..=44).sum::<i64>());
    assert_eq!(rows(&db, "SELECT * FROM cars WHERE id = 44"), [["44:integer", "8:integer", "'m44':text"]]);

    // Element 2 (line 3) is a number, not an object: reported and skipped, the rest land.
    let body = "[\n{\"id\": 1},\n7,\n{\"id\": 3}\n]";
    let (o, db) = ingest(dir.path(), "bad.json", body.as_bytes(), "bad", &[]);
    expect_code(&o, 1);
    assert!(
        text(&o.stderr).contains("line 3: malformed, skipped: not a JSON object but a number"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(rows(&db, "SELECT id FROM bad ORDER BY rowid"), [["1:integer"], ["3:integer"]]);
}

/// A UTF-8 byte order mark (as Excel and Notepad write) was reported as a malformed first
/// JSON line; it is skipped, in JSON Lines, JSON arrays and CSV (where it must not end up in
/// the first column's name).
#[test]
fn a_byte_order_mark_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let bom = |s: &str| [b"\xEF\xBB\xBF".as_slice(), s.as_bytes()].concat();

    let (o, db) = ingest(dir.path(), "b.jsonl", &bom("{\"id\":1,\"v\":\"x\"}\n{\"id\":2,\"v\":\"y\"}\n"), "j", &[]);
    expect_code(&o, 0);
    assert!(text(&o.stdout).contains("ingested 2 rows") && text(&o.stdout).contains("0 malformed"));
    assert_eq!(columns(&db, "j"), ["id INTEGER", "v TEXT"]);
    assert_eq!(rows(&db, "SELECT id, v FROM j ORDER BY rowid"), [["1:integer", "'x':text"], ["2:integer", "'y':text"]]);

    let (o, db) = ingest(dir.path(), "b.json", &bom("[{\"id\":1}]"), "a", &[]);
    expect_code(&o, 0);
    assert_eq!(rows(&db, "SELECT id FROM a"), [["1:integer"]]);

    let (o, db) = ingest(dir.path(), "b.csv", &bom("id,v\n1,x\n2,y\n"), "c", &[]);
    expect_code(&o, 0);
    assert_eq!(columns(&db, "c"), ["id INTEGER", "v TEXT"]);
    assert_eq!(rows(&db, "SELECT id, v FROM c ORDER BY rowid"), [["1:integer", "'x':text"], ["2:integer", "'y':text"]]);
}

/// Regression: an empty file with --create failed with "no table named ...: create it first,
/// or pass --create". The error now says the input is empty, and no table is made.
#[test]
fn empty_input_says_it_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body, expected) in [
        ("e.jsonl", "", "e.jsonl is empty"),
        ("blank.jsonl", "\n  \n", "blank.jsonl is empty"),
        ("e.csv", "", "e.csv is empty"),
        ("e.json", " [ ] ", "e.json is an empty JSON array"),
    ] {
        let (o, db) = ingest(dir.path(), name, body.as_bytes(), "t", &[]);
        expect_code(&o, 2);
        let stderr = text(&o.stderr);
        assert!(stderr.contains("cannot create table t") && stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("pass --create"), "{name}: {stderr}");
        assert!(columns(&db, "t").is_empty(), "{name}: no table is created");
    }
}

/// A bad first line is reported as such and skipped: the table takes its columns from the
/// objects after it. When no line is an object, the error names the first bad one instead of
/// claiming the table is missing.
#[test]
fn a_bad_first_line_is_reported_and_the_rest_land() {
    let dir = tempfile::tempdir().unwrap();
    let (o, db) = ingest(dir.path(), "f.jsonl", b"\"just a string\"\n{\"a\":1}\n{\"a\":2}\n", "t", &[]);
    expect_code(&o, 1);
    assert!(
        text(&o.stderr).contains("line 1: malformed, skipped: not a JSON object but a string"),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("ingested 2 rows") && text(&o.stdout).contains("1 malformed"));
    assert_eq!(columns(&db, "t"), ["a INTEGER"]);
    assert_eq!(rows(&db, "SELECT a FROM t ORDER BY rowid"), [["1:integer"], ["2:integer"]]);

    let (o, db) = ingest(dir.path(), "g.jsonl", b"id,name\n1,x\n", "g", &[]);
    expect_code(&o, 2);
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("g.jsonl has no JSON object to take the columns from; line 1 is malformed: bad JSON"),
        "{stderr}"
    );
    assert!(columns(&db, "g").is_empty());

    // A CSV header row with fewer names than the rows have fields: every row is malformed,
    // the table is made from the header, nothing lands.
    let (o, db) = ingest(dir.path(), "h.csv", b"a\n1,2\n3,4\n", "h", &[]);
    expect_code(&o, 1);
    assert!(text(&o.stderr).contains("line 2: malformed, skipped: expected 1 fields as in the header, found 2"));
    assert_eq!(columns(&db, "h"), ["a TEXT"]);
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM h"), 0);
}

/// `--strict` stops at the first malformed line or element with exit code 2; the rows before
/// it stay committed (batches commit as they fill) and none after it is written.
#[test]
fn strict_keeps_the_rows_before_the_bad_line_and_writes_none_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for i in 1..=25 {
        writeln!(body, "{{\"i\":{i}}}").unwrap();
    }
    body.push_str("{broken\n");
    for i in 27..=40 {
        writeln!(body, "{{\"i\":{i}}}").unwrap();
    }
    let (o, db) = ingest(dir.path(), "s.jsonl", body.as_bytes(), "s", &["--strict", "--batch", "10"]);
    expect_code(&o, 2);
    let stderr = text(&o.stderr);
    assert!(stderr.contains("line 26: malformed, stopping"), "{stderr}");
    assert!(stderr.contains("the rows before it are committed, none after it are written"), "{stderr}");
    assert_eq!(one::<i64>(&db, "SELECT count(*) FROM s"), 25);
    assert_eq!(one::<i64>(&db, "SELECT max(i) FROM s"), 25);

    let (o, db) = ingest(dir.path(), "s.json", b"[{\"i\":1},\n{\"i\":2},\n\"no\",\n{\"i\":4}]", "sa", &["--strict"]);
    expect_code(&o, 2);
    assert!(text(&o.stderr).contains("line 3: malformed, stopping"), "{}", text(&o.stderr));
    assert_eq!(rows(&db, "SELECT i FROM sa ORDER BY rowid"), [["1:integer"], ["2:integer"]]);
}

/// Into an existing table, values go as read and the declared types' affinity applies; an
/// empty CSV field is NULL in a numeric column. Ingesting twice into the same file appends.
#[test]
fn an_existing_table_keeps_its_declared_types_and_a_second_ingest_appends() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    Connection::open(&db).unwrap().execute_batch("CREATE TABLE t(n INTEGER, r REAL, s TEXT, u)").unwrap();
    let input = dir.path().join("t.csv");
    std::fs::write(&input, "n,r,s,u\n00501,35.6,007,007\n,,,\n").unwrap();
    for _ in 0..2 {
        let o = sqlweir(&["ingest", path(&input), "--db", path(&db), "--table", "t", "--create"]);
        expect_code(&o, 0);
    }
    assert_eq!(columns(&db, "t"), ["n INTEGER", "r REAL", "s TEXT", "u "]);
    let once = [["501:integer", "35.6:real", "'007':text", "'007':text"], ["NULL", "NULL", "'':text", "'':text"]];
    assert_eq!(rows(&db, "SELECT n, r, s, u FROM t ORDER BY rowid"), [once, once].concat());
}

/// The `sqlite-utils` command: `$SQLITE_UTILS` if set, else `sqlite-utils` on the `PATH`, else
/// `python3 -m sqlite_utils`. Missing, the test fails (scripts/test installs it): a skipped
/// comparison must not count as a pass.
fn sqlite_utils() -> Command {
    let candidates: Vec<(PathBuf, Vec<&str>)> = match std::env::var_os("SQLITE_UTILS") {
        Some(exe) => vec![(exe.into(), vec![])],
        None => vec![("sqlite-utils".into(), vec![]), ("python3".into(), vec!["-m", "sqlite_utils"])],
    };
    for (exe, prefix) in &candidates {
        let runs = Command::new(exe).args(prefix).arg("--version").output().is_ok_and(|o| o.status.success());
        if runs {
            let mut command = Command::new(exe);
            command.args(prefix);
            return command;
        }
    }
    panic!(
        "sqlite-utils not found (tried {candidates:?}): install it with `python3 -m pip install sqlite-utils` \
         (scripts/test does), or set SQLITE_UTILS to its path"
    );
}

/// `sqlweir ingest --create` and `sqlite-utils insert` (its default type detection) agree on
/// row count, column names, column types and contents, for a CSV file and a JSON array, on
/// data where sqlweir does not differ on purpose (no leading zeros, no ragged rows).
#[test]
fn types_match_sqlite_utils() {
    sqlite_utils(); // fails now, before any work, when it is missing
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,name,temp,mixed,count,note\n");
    let mut json = String::from("[\n");
    for i in 0..60 {
        let mixed = if i % 7 == 0 { format!("{i}.5") } else { i.to_string() };
        let count = if i % 5 == 0 { String::new() } else { (i * 11).to_string() };
        let note = if i % 4 == 0 { "" } else { "n, \"q\"" };
        writeln!(csv, "{i},name {i},{}.25,{mixed},{count},\"{}\"", i - 30, note.replace('"', "\"\"")).unwrap();
        let sep = if i == 59 { "" } else { "," };
        let tags = if i % 3 == 0 { "[1, 2]" } else { "null" };
        let extra = if i == 2 { r#", "late": "x""# } else { "" };
        writeln!(
            json,
            r#"  {{"id": {i}, "name": "name {i}", "temp": {}.25, "mixed": {mixed}, "ok": {}, "tags": {tags}, "nothing": null{extra}}}{sep}"#,
            i - 30,
            i % 2 == 0
        )
        .unwrap();
    }
    json.push_str("]\n");

    // Nested values are JSON text in both, sqlweir's compact (`[1,2]`) and Python's spaced
    // (`[1, 2]`): SQLite's json() puts both in one form.
    let json_all = "SELECT id, name, temp, mixed, ok, json(tags), \"nothing\", late FROM t ORDER BY id";
    for (file, body, utils_format, all) in
        [("data.csv", csv, Some("--csv"), "SELECT * FROM t ORDER BY id"), ("data.json", json, None, json_all)]
    {
        let input = dir.path().join(file);
        std::fs::write(&input, body).unwrap();
        let ours = dir.path().join(format!("ours-{file}.db"));
        let theirs = dir.path().join(format!("theirs-{file}.db"));
        let o = sqlweir(&["ingest", path(&input), "--db", path(&ours), "--table", "t", "--create"]);
        expect_code(&o, 0);
        let mut args = vec!["insert", path(&theirs), "t", path(&input)];
        args.extend(utils_format);
        let o = sqlite_utils().args(&args).output().unwrap();
        assert!(o.status.success(), "sqlite-utils {args:?}: {}", text(&o.stderr));

        assert_eq!(one::<i64>(&ours, "SELECT count(*) FROM t"), 60, "{file}");
        assert_eq!(one::<i64>(&theirs, "SELECT count(*) FROM t"), 60, "{file}");
        assert_eq!(columns(&ours, "t"), columns(&theirs, "t"), "{file}: names and types");
        assert_eq!(rows(&ours, all), rows(&theirs, all), "{file}: contents");
    }
    // The types themselves, so agreeing on something else would not pass.
    let csv_db = dir.path().join("ours-data.csv.db");
    assert_eq!(
        columns(&csv_db, "t"),
        ["id INTEGER", "name TEXT", "temp REAL", "mixed REAL", "count INTEGER", "note TEXT"]
    );
    let json_db = dir.path().join("ours-data.json.db");
    assert_eq!(
        columns(&json_db, "t"),
        ["id INTEGER", "name TEXT", "temp REAL", "mixed REAL", "ok INTEGER", "tags TEXT", "nothing TEXT", "late TEXT"]
    );
}
