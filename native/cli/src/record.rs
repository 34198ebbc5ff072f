//! Records from JSONL, a JSON array or CSV input, one at a time, with their line numbers;
//! malformed ones are reported as such instead of ending the stream.

use std::io::{self, BufRead, BufReader, Read};

use serde_json::{Map, Value as Json};
use sqlweir::Value;

/// The input's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, or a JSON array of objects (the input's first character is
    /// `[`), read one element at a time.
    #[value(alias = "json")]
    Jsonl,
    /// Comma-separated values with a header row; quoted fields may hold commas and newlines.
    Csv,
}

/// One item of the input.
pub enum Item {
    /// A well-formed record starting on `line`.
    Record { line: u64, record: Record },
    /// A line (or array element) that is not a record: bad JSON, not an object, wrong field
    /// count, bad UTF-8.
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

/// Maps a JSON value to a SQLite value: integers that fit `i64` stay integers, larger ones up to
/// `u64::MAX` are stored as their digits (TEXT: a REAL would lose digits), other numbers become
/// reals (JSON readers read integers past 64 bits as doubles, and so does this one), `true`/`false` become 1/0, arrays and objects are stored as their JSON text.
pub fn to_value(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None if n.is_u64() => Value::Text(n.to_string()),
            // Always `Some` without serde_json's arbitrary_precision feature.
            None => n.as_f64().map_or(Value::Null, Value::Real),
        },
        Json::String(s) => Value::Text(s),
        nested @ (Json::Array(_) | Json::Object(_)) => Value::Text(nested.to_string()),
    }
}

/// The UTF-8 byte order mark some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads records one at a time, never holding more than one line, array element or CSV record.
pub enum Records<R: Read> {
    /// JSON Lines.
    Lines { reader: BufReader<R>, line: u64, buf: Vec<u8> },
    /// A JSON array of objects, its `[` read.
    Array(Array<R>),
    /// CSV with its header.
    Csv { reader: csv::Reader<R>, header: Vec<String>, record: csv::StringRecord },
}

impl<R: Read> Records<R> {
    /// Starts reading `input`: for CSV, reads the header row; for JSON, skips a byte order mark
    /// and tells JSON Lines from an array by the first character.
    pub fn new(input: R, format: Format) -> Result<Self, crate::Fatal> {
        match format {
            Format::Jsonl => {
                let mut reader = BufReader::with_capacity(1 << 16, input);
                if reader.fill_buf()?.starts_with(BOM) {
                    reader.consume(BOM.len());
                }
                let mut newlines = 0;
                let first = skip_space(&mut reader, &mut newlines)?;
                if first == Some(b'[') {
                    reader.consume(1);
                    let state = ArrayState::Elements;
                    Ok(Records::Array(Array { reader, line: newlines + 1, buf: Vec::new(), state }))
                } else {
                    Ok(Records::Lines { reader, line: newlines, buf: Vec::new() })
                }
            }
            Format::Csv => {
                // `flexible`: a row with the wrong field count comes back as a row, so it can be
                // reported as malformed with its line number and skipped. The csv crate skips a
                // byte order mark itself.
                let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
                let header = reader
                    .headers()
                    .map_err(|e| format!("cannot read the CSV header: {e}"))?
                    .iter()
                    .map(str::to_owned)
                    .collect();
                Ok(Records::Csv { reader, header, record: csv::StringRecord::new() })
            }
        }
    }

    /// The CSV header's column names; empty for JSON.
    pub fn header(&self) -> &[String] {
        match self {
            Records::Lines { .. } | Records::Array(_) => &[],
            Records::Csv { header, .. } => header,
        }
    }

    /// Whether the input is a JSON array.
    pub fn is_array(&self) -> bool {
        matches!(self, Records::Array(_))
    }

    /// The next item, `None` at the end; an `Err` is an I/O error reading the input.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        match self {
            Records::Lines { reader, line, buf } => loop {
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
            Records::Array(array) => array.next_item(),
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

/// Consumes ASCII whitespace, counting newlines, and peeks at the byte after it (`None` at the
/// end of the input).
fn skip_space<R: Read>(reader: &mut BufReader<R>, newlines: &mut u64) -> io::Result<Option<u8>> {
    loop {
        let chunk = reader.fill_buf()?;
        let Some(&first) = chunk.first() else { return Ok(None) };
        let spaces = chunk.iter().take_while(|b| b.is_ascii_whitespace()).count();
        // Whitespace runs are short; no byte-counting crate for them.
        #[allow(clippy::naive_bytecount)]
        let lines = chunk[..spaces].iter().filter(|&&b| b == b'\n').count() as u64;
        *newlines += lines;
        let more = spaces == chunk.len();
        reader.consume(spaces);
        if !more {
            return Ok(Some(if spaces == 0 { first } else { reader.fill_buf()?[0] }));
        }
    }
}

/// Where an [`Array`] is between its elements.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ArrayState {
    /// After `[` or `,`: an element or `]` comes next.
    Elements,
    /// After an element: `,` or `]` comes next.
    Delimiter,
    /// After `]`: only whitespace may follow.
    Closed,
    /// Nothing more is read.
    Done,
}

/// A JSON array read one element at a time: each element's bytes are cut out at the commas
/// between elements (outside strings and nested values) and parsed on their own, so memory
/// holds one element, each has the line it starts on, and a bad element is reported and
/// skipped like a bad JSON line.
pub struct Array<R: Read> {
    reader: BufReader<R>,
    /// The line the reader is on, from 1.
    line: u64,
    buf: Vec<u8>,
    state: ArrayState,
}

impl<R: Read> Array<R> {
    fn next_item(&mut self) -> io::Result<Option<Item>> {
        loop {
            let mut newlines = 0;
            let next = skip_space(&mut self.reader, &mut newlines)?;
            self.line += newlines;
            let line = self.line;
            let malformed = |error: &str, raw: Json| Ok(Some(Item::Malformed { line, error: error.to_owned(), raw }));
            match (self.state, next) {
                (ArrayState::Done, _) | (ArrayState::Closed, None) => return Ok(None),
                (ArrayState::Elements | ArrayState::Delimiter, None) => {
                    self.state = ArrayState::Done;
                    return malformed("the input ends before the JSON array's closing `]`", Json::Null);
                }
                (ArrayState::Closed, Some(_)) => {
                    self.state = ArrayState::Done;
                    return malformed("more text after the JSON array's closing `]`", Json::Null);
                }
                (ArrayState::Elements | ArrayState::Delimiter, Some(b']')) => {
                    self.reader.consume(1);
                    self.state = ArrayState::Closed;
                }
                (ArrayState::Delimiter, Some(b',')) => {
                    self.reader.consume(1);
                    self.state = ArrayState::Elements;
                }
                // An element cut ends at `,`, `]` or the end, so this is a stray `,`: `[,` or `,,`.
                (ArrayState::Elements, Some(b',')) => {
                    self.reader.consume(1);
                    return malformed("an empty element (two commas, or a comma after `[`)", Json::Null);
                }
                (ArrayState::Elements, Some(_)) => {
                    self.cut_element()?;
                    self.state = ArrayState::Delimiter;
                    return Ok(Some(json_item(line, &self.buf)));
                }
                (ArrayState::Delimiter, Some(_)) => unreachable!("an element's cut stops only at `,`, `]` or the end"),
            }
        }
    }

    /// Reads one element's bytes into `buf`, up to (not including) the `,` or `]` that ends it
    /// at depth 0, or to the end of the input.
    fn cut_element(&mut self) -> io::Result<()> {
        self.buf.clear();
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            let mut used = 0;
            let mut end = false;
            for &b in chunk {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' if depth > 0 => depth -= 1,
                        b',' | b']' if depth == 0 => {
                            end = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if b == b'\n' {
                    self.line += 1;
                }
                used += 1;
            }
            self.buf.extend_from_slice(&chunk[..used]);
            self.reader.consume(used);
            if end {
                return Ok(());
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
                // Past i64: its digits, not a REAL that would round them.
                Value::Text("18446744073709551615".into()),
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

    /// A JSON array is cut into elements at depth 0 only (not at commas or brackets inside
    /// strings and nested values), each with the line it starts on; an unclosed array and text
    /// after `]` are reported once each.
    #[test]
    fn json_arrays_are_cut_at_their_own_commas_with_line_numbers() {
        let summary = |input: &str| -> Vec<(u64, String)> {
            items(input, Format::Jsonl)
                .into_iter()
                .map(|i| match i {
                    Item::Record { line, record: Record::Json { object, .. } } => {
                        (line, Json::Object(object).to_string())
                    }
                    Item::Record { line, .. } => (line, "csv?".into()),
                    Item::Malformed { line, error, .. } => (line, format!("malformed: {error}")),
                })
                .collect()
        };
        let got = summary("\n [ {\"a\": \"x,]}\\\"\",\n \"b\": [1, {\"c\": 2}]},\n\n{\"a\": 2} ]\n");
        assert_eq!(got, [(2, r#"{"a":"x,]}\"","b":[1,{"c":2}]}"#.to_owned()), (5, r#"{"a":2}"#.to_owned())]);
        let got = summary("[{\"a\":1},\n{\"a\":2}\n");
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], (3, "malformed: the input ends before the JSON array's closing `]`".to_owned()));
        let got = summary("[{\"a\":1}]\n{\"a\":2}\n");
        assert_eq!(got[1], (2, "malformed: more text after the JSON array's closing `]`".to_owned()));
        assert_eq!(got.len(), 2);
        assert!(summary("[]").is_empty() && summary("").is_empty());
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
