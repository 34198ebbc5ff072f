//! Issue 16, item 5: `params![]` with a `u64`, `usize`, `u32`, `Uuid`, `DateTime<Utc>` or
//! `serde_json::Value` did not compile, and a date bound with `params!` (rusqlite's
//! `2024-05-01 12:30:00+00:00`) was not the text the typed layer wrote for the same field
//! (serde's `2024-05-01T12:30:00Z`), so `WHERE ts = ?` missed rows. Now each type converts, an
//! unsigned integer past `i64::MAX` is refused with `InvalidInput` instead of wrapping, and both
//! paths store one text per type, on real database files.

use serde::{Deserialize, Serialize};
use sqlweir::{Options, Store, Value, params};

const SCHEMA: &str = "CREATE TABLE things(id INTEGER PRIMARY KEY, n INTEGER, at TEXT, uid TEXT, meta TEXT)";
const INSERT: &str = "INSERT INTO things(n, at, uid, meta) VALUES (?1, ?2, ?3, ?4)";

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("things.db"), Options::default().migrations(&[SCHEMA])).expect("open store")
}

fn all_rows(store: &Store) -> Vec<Vec<Value>> {
    store.query("SELECT n, at, uid, meta FROM things ORDER BY id", &[]).expect("select").rows
}

fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).expect("a valid timestamp")
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Thing {
    n: u64,
    at: chrono::DateTime<chrono::Utc>,
    uid: uuid::Uuid,
    #[serde(with = "sqlweir::json")]
    meta: serde_json::Value,
}

#[test]
fn unsigned_integers_land_exactly_and_past_i64_max_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    let ok = store
        .write_many(
            "INSERT INTO things(n) VALUES (?1)",
            vec![
                params![u8::MAX],
                params![u16::MAX],
                params![u32::MAX],
                params![i64::MAX as u64],
                params![usize::MAX >> 1],
            ],
        )
        .wait()
        .expect("write_many");
    assert_eq!((ok.committed, ok.rejected.len()), (5, 0));
    let small: Vec<i64> = store.query_as("SELECT n FROM things ORDER BY id", &[]).expect("select");
    assert_eq!(small, [255, 65_535, 4_294_967_295, i64::MAX, (usize::MAX >> 1) as i64]);

    for too_big in [params![1, u64::MAX], params![1, i64::MAX as u64 + 1], params![1, usize::MAX]] {
        let e = store.write("INSERT INTO things(id, n) VALUES (?1, ?2)", too_big).wait().expect_err("refused");
        assert_eq!(e.code(), "InvalidInput", "{e}");
        assert_eq!(
            e.to_string(),
            "invalid input: parameter 2: an unsigned integer above 9223372036854775807 does not fit in SQLite's \
             64-bit signed integer; convert it with i64::try_from, or store it as text"
        );
    }
    // One bad row of many is refused alone, and named.
    let mixed = store
        .write_many("INSERT INTO things(n) VALUES (?1)", vec![params![1u64], params![u64::MAX], params![3u64]])
        .wait()
        .expect_err("a row refused at acceptance fails the whole call");
    assert!(mixed.to_string().contains("row 1, parameter 1: an unsigned integer above"), "{mixed}");
    let n: Vec<i64> = store.query_as("SELECT count(*) FROM things", &[]).expect("count");
    assert_eq!(n, [5], "nothing refused was written, and nothing wrapped to a negative number");
    let negative: Vec<i64> = store.query_as("SELECT count(*) FROM things WHERE n < 0", &[]).expect("count");
    assert_eq!(negative, [0]);
    store.close().expect("close");
}

#[test]
fn params_and_the_typed_layer_store_the_same_text_and_read_it_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    let a = Thing {
        n: 7,
        at: at(1_714_566_600_250),
        uid: uuid::Uuid::from_u128(0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c8),
        meta: serde_json::json!({"retries": 2, "tags": ["x", "y"]}),
    };
    // The same value once through params! and once as a serde row. (Keys in sorted order: a
    // workspace build unifies serde_json with the CLI's `preserve_order`, which keeps them as
    // written.)
    store.write(INSERT, params![a.n, a.at, a.uid, &a.meta]).wait().expect("params write");
    store.insert("things", &a).wait().expect("typed insert");

    let rows = all_rows(&store);
    assert_eq!(rows.len(), 2);
    let expected = vec![
        Value::Integer(7),
        Value::Text("2024-05-01T12:30:00.250Z".into()),
        Value::Text("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
        Value::Text(r#"{"retries":2,"tags":["x","y"]}"#.into()),
    ];
    assert_eq!(rows[0], expected, "params! stores RFC 3339 with Z, hyphenated UUID text, JSON text");
    assert_eq!(rows[1], expected, "the typed layer stores exactly the same");

    // Equality matches both rows, whichever path wrote them.
    let by_date: Vec<i64> =
        store.query_as("SELECT count(*) FROM things WHERE at = ?1", &params![a.at]).expect("by date");
    assert_eq!(by_date, [2]);
    let by_uid: Vec<i64> =
        store.query_as("SELECT count(*) FROM things WHERE uid = ?1", &params![a.uid]).expect("by uuid");
    assert_eq!(by_uid, [2]);
    let by_json: Vec<i64> = store
        .query_as("SELECT count(*) FROM things WHERE json_extract(meta, '$.retries') = ?1", &params![2u32])
        .expect("by json");
    assert_eq!(by_json, [2], "the text is JSON SQLite reads");
    // SQLite's date functions read the text.
    let day: Vec<String> = store.query_as("SELECT date(at) FROM things WHERE id = 1", &[]).expect("date()");
    assert_eq!(day, ["2024-05-01"]);

    // And the typed layer reads back what either path wrote.
    let back: Vec<Thing> = store.query_as("SELECT n, at, uid, meta FROM things ORDER BY id", &[]).expect("decode");
    assert_eq!(back, [a.clone(), a]);
    store.close().expect("close");
}

#[test]
fn whole_seconds_other_offsets_and_nulls_round_trip_on_a_reopened_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = at(1_714_566_600_000);
    let east = whole.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"));
    {
        let store = open(&dir);
        store.write(INSERT, params![0u32, whole, None::<uuid::Uuid>, serde_json::Value::Null]).wait().expect("write");
        store
            .write(INSERT, params![1usize, east, None::<uuid::Uuid>, serde_json::json!("text")])
            .wait()
            .expect("write");
        store.close().expect("close");
    }
    let store = open(&dir);
    let rows = all_rows(&store);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        [Value::Integer(0), Value::Text("2024-05-01T12:30:00Z".into()), Value::Null, Value::Text("null".into())]
    );
    assert_eq!(
        rows[1],
        [
            Value::Integer(1),
            Value::Text("2024-05-01T14:30:00+02:00".into()),
            Value::Null,
            Value::Text(r#""text""#.into())
        ]
    );
    #[derive(Deserialize, Debug, PartialEq)]
    struct Back {
        at: chrono::DateTime<chrono::Utc>,
        uid: Option<uuid::Uuid>,
        #[serde(with = "sqlweir::json")]
        meta: serde_json::Value,
    }
    let back: Vec<Back> = store.query_as("SELECT at, uid, meta FROM things ORDER BY id", &[]).expect("decode");
    assert_eq!(
        back,
        [
            Back { at: whole, uid: None, meta: serde_json::Value::Null },
            Back { at: whole, uid: None, meta: serde_json::json!("text") },
        ],
        "+02:00 reads back as the same instant"
    );
    // A date SQLite itself wrote (a space, no zone) reads into DateTime<Utc> too.
    let from_sqlite: Vec<(chrono::DateTime<chrono::Utc>,)> =
        store.query_as("SELECT '2024-05-01 12:30:00Z'", &[]).expect("sqlite's form");
    assert_eq!(from_sqlite, [(whole,)]);
}

#[test]
fn time_dates_match_the_rfc3339_adapter() {
    use time::{Date, Month, OffsetDateTime, Time};
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Stamp {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("t.db"), Options::default().migrations(&["CREATE TABLE s(at TEXT)"]))
        .expect("open");
    let day = Date::from_calendar_date(2024, Month::May, 1).expect("date");
    let stamp = Stamp { at: day.with_time(Time::from_hms_milli(12, 30, 0, 250).expect("time")).assume_utc() };
    store.write("INSERT INTO s(at) VALUES (?1)", params![stamp.at]).wait().expect("params");
    store.insert("s", &stamp).wait().expect("typed");
    let texts: Vec<String> = store.query_as("SELECT at FROM s", &[]).expect("texts");
    assert_eq!(texts, ["2024-05-01T12:30:00.25Z", "2024-05-01T12:30:00.25Z"]);
    let back: Vec<Stamp> = store.query_as("SELECT at FROM s WHERE at = ?1", &params![stamp.at]).expect("decode");
    assert_eq!(back.len(), 2);
    assert_eq!(back[0], stamp);
}
