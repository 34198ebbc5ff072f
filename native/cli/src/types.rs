//! Column types for `--create`: detected from the first rows (INTEGER, REAL or TEXT, as
//! sqlite-utils does), and the rules that keep a value from losing anything on its way in.
//!
//! A CSV field counts as an integer only when it is one exactly as written (`42`, `-7`; not
//! `007`, `+5`, ` 5` or a number past 64 bits), and as a real only when its decimal digits
//! survive the trip through a 64-bit float (`35.6`, `1e3`, `.5`; not `0.12345678901234567890`).
//! Anything else makes its column TEXT, so `00501` stays `00501`.

use rusqlite::Connection;
use serde_json::Value as Json;

/// A created column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Integer,
    Real,
    Text,
}

impl ColumnType {
    /// The declared type in `CREATE TABLE`.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Integer => "INTEGER",
            ColumnType::Real => "REAL",
            ColumnType::Text => "TEXT",
        }
    }
}

/// A CSV field, read for its type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field {
    /// An empty field: NULL in an INTEGER or REAL column.
    Empty,
    Integer(i64),
    Real(f64),
    /// Anything else, kept as written.
    Text,
}

/// The largest magnitude up to which every integer is exactly a 64-bit float (2^53).
const EXACT_IN_F64: u64 = 1 << 53;

/// Reads a CSV field for its type (see the module's rules).
pub fn field(s: &str) -> Field {
    if s.is_empty() {
        return Field::Empty;
    }
    if let Ok(i) = s.parse::<i64>() {
        // Canonical only: `007`, `+5` and `-0` would not come back as written.
        return if i.to_string() == s { Field::Integer(i) } else { Field::Text };
    }
    if is_decimal(s)
        && let Ok(f) = s.parse::<f64>()
        && f.is_finite()
        && digits(s) == digits(&format!("{f:e}"))
    {
        return Field::Real(f);
    }
    Field::Text
}

/// `-?(0|[1-9][0-9]*)?(\.[0-9]+)?([eE][+-]?[0-9]+)?` with a fraction or an exponent, and at
/// least one digit before the exponent. Integers without either are integers or TEXT.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let int_ok = all_digits(int) && !(int.len() > 1 && int.starts_with('0'));
    let frac_ok = frac.is_none_or(|f| !f.is_empty() && all_digits(f));
    let exp_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    let has_digit = !int.is_empty() || frac.is_some_and(|f| !f.is_empty());
    int_ok && frac_ok && exp_ok && has_digit && (frac.is_some() || exponent.is_some())
}

/// A decimal number's sign, significant digits and exponent (value = 0.DIGITS × 10^exponent),
/// so `35.60`, `3.56e1` and `356e-1` all read the same. Zero is `(sign, "", 0)`.
fn digits(s: &str) -> (bool, String, i64) {
    let negative = s.starts_with('-');
    let s = s.trim_start_matches('-');
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], s[at + 1..].parse::<i64>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = int.chars().chain(frac.chars()).collect();
    let trimmed = all.trim_start_matches('0');
    let point = int.len() as i64 - (all.len() - trimmed.len()) as i64;
    let significant = trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return (negative, String::new(), 0);
    }
    (negative, significant.to_owned(), point + exponent)
}

/// What the values seen so far say a column could be.
// Each bool records one kind of value seen; they are independent, not states.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Guess {
    integers: bool,
    /// An integer too large for a REAL column to hold exactly.
    wide_integers: bool,
    reals: bool,
    texts: bool,
}

impl Guess {
    /// Takes one CSV field into account (empty fields say nothing).
    pub fn csv(&mut self, s: &str) {
        match field(s) {
            Field::Empty => {}
            Field::Integer(i) => self.integer(i),
            Field::Real(_) => self.reals = true,
            Field::Text => self.texts = true,
        }
    }

    /// Takes one JSON value into account (`null` says nothing; booleans are integers, as they
    /// are stored as 1 and 0; arrays and objects are stored as their JSON text).
    pub fn json(&mut self, json: &Json) {
        match json {
            Json::Null => {}
            Json::Bool(_) => self.integers = true,
            Json::Number(n) => match n.as_i64() {
                Some(i) => self.integer(i),
                // Past i64 but within u64: stored as its digits, TEXT.
                None if n.is_u64() => self.texts = true,
                None => self.reals = true,
            },
            Json::String(_) | Json::Array(_) | Json::Object(_) => self.texts = true,
        }
    }

    fn integer(&mut self, i: i64) {
        self.integers = true;
        self.wide_integers |= i.unsigned_abs() > EXACT_IN_F64;
    }

    /// The column's type: INTEGER if every value was an integer, REAL if they were integers
    /// and reals (and the integers fit a REAL exactly), TEXT otherwise, and TEXT when nothing
    /// but empty values was seen.
    pub fn column_type(self) -> ColumnType {
        if self.texts || (self.reals && self.wide_integers) {
            ColumnType::Text
        } else if self.reals {
            ColumnType::Real
        } else if self.integers {
            ColumnType::Integer
        } else {
            ColumnType::Text
        }
    }
}

/// Whether an integer goes into a REAL column without losing digits.
pub fn exact_in_f64(i: i64) -> bool {
    i.unsigned_abs() <= EXACT_IN_F64
}

/// SQLite's column affinity for a declared type (the rules of "Determination Of Column
/// Affinity"), reduced to what binding needs: whether the column turns number-like text into
/// numbers.
pub fn numeric_affinity(declared: &str) -> bool {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        return true;
    }
    if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") || t.contains("BLOB") || t.is_empty() {
        return false;
    }
    // REAL, FLOA, DOUB, and everything else (NUMERIC, DECIMAL, BOOLEAN, DATE...).
    true
}

/// Asks SQLite itself whether a text value would be stored unchanged in an INTEGER or REAL
/// column: affinity turns `00501` into 501 and `99999999999999999999` into a REAL, but leaves
/// `N/A` alone. Used only for values that do not fit their detected column.
pub struct Probe(Connection);

impl Probe {
    pub fn new() -> rusqlite::Result<Self> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE p(i INTEGER, r REAL)")?;
        Ok(Probe(conn))
    }

    /// Whether `text` stays the same TEXT in a column of type `column`.
    pub fn keeps(&self, column: ColumnType, text: &str) -> bool {
        let c = match column {
            ColumnType::Integer => "i",
            ColumnType::Real => "r",
            ColumnType::Text => return true,
        };
        // One row, replaced each time: the probe's memory stays flat.
        let sql = format!("INSERT OR REPLACE INTO p(rowid, {c}) VALUES (1, ?1) RETURNING typeof({c}) = 'text'");
        self.0
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row([text], |r| r.get::<_, bool>(0)))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_numbers_only_when_nothing_is_lost() {
        assert_eq!(field(""), Field::Empty);
        assert_eq!(field("42"), Field::Integer(42));
        assert_eq!(field("-7"), Field::Integer(-7));
        assert_eq!(field("0"), Field::Integer(0));
        assert_eq!(field("35.6"), Field::Real(35.6));
        assert_eq!(field("35.60"), Field::Real(35.6));
        assert_eq!(field("1e3"), Field::Real(1000.0));
        assert_eq!(field(".5"), Field::Real(0.5));
        assert_eq!(field("-0.25E-2"), Field::Real(-0.0025));
        for text in [
            "00501",
            "+5",
            "-0",
            " 5",
            "5 ",
            "1_000",
            "0x10",
            "123456789012345678901234",
            "9223372036854775808",
            "0.12345678901234567890",
            "1e400",
            "inf",
            "NaN",
            "01.5",
            "1.",
            "1e",
            "e5",
            "-",
            ".",
            "abc",
        ] {
            assert_eq!(field(text), Field::Text, "{text:?}");
        }
    }

    #[test]
    fn guesses_follow_sqlite_utils_integer_then_real_then_text() {
        let guess = |values: &[&str]| {
            let mut g = Guess::default();
            for v in values {
                g.csv(v);
            }
            g.column_type()
        };
        assert_eq!(guess(&["1", "", "3"]), ColumnType::Integer);
        assert_eq!(guess(&["1", "2.5"]), ColumnType::Real);
        assert_eq!(guess(&["1", "2.5", "x"]), ColumnType::Text);
        assert_eq!(guess(&["00501", "02134"]), ColumnType::Text);
        assert_eq!(guess(&["9007199254740993", "0.5"]), ColumnType::Text, "that integer is not exact as a REAL");
        assert_eq!(guess(&["", ""]), ColumnType::Text);
    }

    #[test]
    fn declared_types_map_to_affinity() {
        for numeric in ["INTEGER", "int", "BIGINT", "REAL", "DOUBLE", "FLOAT", "NUMERIC", "DECIMAL(10,2)", "DATE"] {
            assert!(numeric_affinity(numeric), "{numeric}");
        }
        for text in ["", "TEXT", "VARCHAR(20)", "CLOB", "BLOB"] {
            assert!(!numeric_affinity(text), "{text}");
        }
    }

    #[test]
    fn the_probe_knows_what_sqlite_would_convert() {
        let probe = Probe::new().unwrap();
        assert!(!probe.keeps(ColumnType::Integer, "00501"));
        assert!(!probe.keeps(ColumnType::Integer, "99999999999999999999"));
        assert!(!probe.keeps(ColumnType::Real, " 5"));
        assert!(probe.keeps(ColumnType::Integer, "N/A"));
        assert!(probe.keeps(ColumnType::Real, "1_000"));
        assert!(probe.keeps(ColumnType::Text, "007"));
    }
}
