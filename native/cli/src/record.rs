//! Records from JSONL or CSV input, one at a time, with their line numbers; malformed ones are
//! reported as such instead of ending the stream.

use std::io::{self, BufRead, Read};

use serde_json::{Map, Value as Json};
use sqlweir::Value;

/// The input's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row; quoted fields may hold commas and newlines.
    Csv,
}

/// One item of the input.
pub enum Item {
    /// A well-formed record starting on `line`.
    Record { line: u64, record: Record },
    /// A line that is not a record: bad JSON, not an object, wrong field count, bad UTF-8.
    Malformed { line: u64, error: String, raw: Json },
}

/// A record's fields, kept as read so a rejected record can be written out as it came.
pub enum Record {
    /// A JSON object and its line's text.
    Json { object: Map<String, Json>, text: Box<str> },
    /// A CSV row, fields in the header's order.
    Csv(csv::StringRecord),
}

impl Record {
    /// The record as JSON, for the rejects file: the object itself, or header name to field.
    pub fn to_json(&self, header: &[String]) -> Json {
        match self {
            Record::Json { text, .. } => serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_string())),
            Record::Csv(fields) => {
                Json::Object(header.iter().cloned().zip(fields.iter().map(|f| Json::String(f.to_owned()))).collect())
            }
        }
    }
}

/// Maps a JSON value to a SQLite value: integers that fit `i64` stay integers, other numbers
/// become reals, `true`/`false` become 1/0, arrays and objects are stored as their JSON text.
pub fn to_value(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            // Always `Some` without serde_json's arbitrary_precision feature.
            None => n.as_f64().map_or(Value::Null, Value::Real),
        },
        Json::String(s) => Value::Text(s),
        nested @ (Json::Array(_) | Json::Object(_)) => Value::Text(nested.to_string()),
    }
}

/// Reads records one at a time, never holding more than one line (or one CSV record).
pub enum Records<R: Read> {
    /// JSON Lines.
    Json { reader: io::BufReader<R>, line: u64, buf: Vec<u8> },
    /// CSV with its header.
    Csv { reader: csv::Reader<R>, header: Vec<String>, record: csv::StringRecord },
}

impl<R: Read> Records<R> {
    /// Starts reading `input`; for CSV, reads the header row.
    pub fn new(input: R, format: Format) -> Result<Self, csv::Error> {
        match format {
            Format::Jsonl => {
                Ok(Records::Json { reader: io::BufReader::with_capacity(1 << 16, input), line: 0, buf: Vec::new() })
            }
            Format::Csv => {
                // `flexible`: a row with the wrong field count comes back as a row, so it can be
                // reported as malformed with its line number and skipped.
                let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
                let header = reader.headers()?.iter().map(str::to_owned).collect();
                Ok(Records::Csv { reader, header, record: csv::StringRecord::new() })
            }
        }
    }

    /// The CSV header's column names; empty for JSONL.
    pub fn header(&self) -> &[String] {
        match self {
            Records::Json { .. } => &[],
            Records::Csv { header, .. } => header,
        }
    }

    /// The next item, `None` at the end; an `Err` is an I/O error reading the input.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        match self {
            Records::Json { reader, line, buf } => loop {
                buf.clear();
                if reader.read_until(b'\n', buf)? == 0 {
                    return Ok(None);
                }
                *line += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue; // blank lines (a trailing newline, a spacer) are not records
                }
                return Ok(Some(json_item(*line, buf)));
            },
            Records::Csv { reader, header, record } => {
                let line = reader.position().line();
                match reader.read_record(record) {
                    Ok(false) => Ok(None),
                    Ok(true) => {
                        let line = record.position().map_or(line, csv::Position::line);
                        if record.len() == header.len() {
                            Ok(Some(Item::Record { line, record: Record::Csv(record.clone()) }))
                        } else {
                            let error =
                                format!("expected {} fields as in the header, found {}", header.len(), record.len());
                            let raw = Json::Array(record.iter().map(|f| Json::String(f.to_owned())).collect());
                            Ok(Some(Item::Malformed { line, error, raw }))
                        }
                    }
                    Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => Err(io::Error::other(e)),
                    Err(e) => {
                        let line = e.position().map_or(line, csv::Position::line);
                        Ok(Some(Item::Malformed { line, error: e.to_string(), raw: Json::Null }))
                    }
                }
            }
        }
    }
}

fn json_item(line: u64, bytes: &[u8]) -> Item {
    let raw = || Json::String(String::from_utf8_lossy(bytes).trim_end().to_owned());
    match serde_json::from_slice::<Json>(bytes) {
        Ok(Json::Object(object)) => {
            // serde_json checked the UTF-8 of the whole line.
            let text = String::from_utf8_lossy(bytes).trim_end().into();
            Item::Record { line, record: Record::Json { object, text } }
        }
        Ok(other) => Item::Malformed { line, error: format!("not a JSON object but {}", kind(&other)), raw: raw() },
        Err(e) => Item::Malformed { line, error: format!("bad JSON: {e}"), raw: raw() },
    }
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(input: &str, format: Format) -> Vec<Item> {
        let mut records = Records::new(input.as_bytes(), format).unwrap();
        std::iter::from_fn(|| records.next_item().unwrap()).collect()
    }

    #[test]
    fn json_values_map_to_sqlite_values() {
        let v: Json =
            serde_json::from_str(r#"[1, -2.5, true, null, "s", [1], {"a": 1}, 18446744073709551615]"#).unwrap();
        let Json::Array(values) = v else { unreachable!() };
        let mapped: Vec<Value> = values.into_iter().map(to_value).collect();
        assert_eq!(
            mapped,
            vec![
                Value::Integer(1),
                Value::Real(-2.5),
                Value::Integer(1),
                Value::Null,
                Value::Text("s".into()),
                Value::Text("[1]".into()),
                Value::Text(r#"{"a":1}"#.into()),
                Value::Real(18_446_744_073_709_551_615.0),
            ]
        );
    }

    #[test]
    fn jsonl_reports_malformed_lines_with_their_numbers_and_skips_blank_ones() {
        let got = items("{\"a\":1}\n\nnot json\n[1]\n{\"a\":2}", Format::Jsonl);
        let summary: Vec<(u64, bool)> = got
            .iter()
            .map(|i| match i {
                Item::Record { line, .. } => (*line, true),
                Item::Malformed { line, .. } => (*line, false),
            })
            .collect();
        assert_eq!(summary, vec![(1, true), (3, false), (4, false), (5, true)]);
    }

    #[test]
    fn csv_quoted_fields_keep_commas_and_newlines_and_lines_count_from_the_file() {
        let got = items("a,b\n\"x, y\",\"two\nlines\"\n1\n3,4\n", Format::Csv);
        assert_eq!(got.len(), 3);
        match &got[0] {
            Item::Record { line: 2, record: Record::Csv(r) } => {
                assert_eq!(r.iter().collect::<Vec<_>>(), ["x, y", "two\nlines"]);
            }
            _ => panic!("first item should be the quoted record on line 2"),
        }
        assert!(matches!(&got[1], Item::Malformed { line: 4, .. }));
        assert!(matches!(&got[2], Item::Record { line: 5, .. }));
    }
}
