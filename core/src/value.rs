//! Parameter and column values: the five SQLite storage classes, without depending on a driver.

use std::fmt;

/// One SQLite value: what a parameter binds and what a column reads back.
///
/// Built with `From` (`Value::from(42)`, `"text".into()`) or the [`params!`](crate::params)
/// macro. Backends convert at their edge, so the core needs no SQLite binding.
///
/// # Conversions
///
/// | Rust | stored as |
/// | --- | --- |
/// | `i8` `i16` `i32` `i64` `isize` `u8` `u16` `u32`, `bool` (0/1) | `Integer`, losslessly |
/// | `u64` `usize` up to `i64::MAX` | `Integer` |
/// | `u64` `usize` above `i64::MAX` | refused when the write is accepted (see below) |
/// | `f32` `f64` | `Real` (NaN is refused) |
/// | `&str` `String` | `Text` |
/// | `&[u8]` `Vec<u8>` | `Blob` |
/// | `Option<T>` | `None` is `Null` |
/// | `chrono::DateTime<Utc>` / `<FixedOffset>` (feature `chrono`) | RFC 3339 `Text`: `2024-05-01T12:30:00.250Z` |
/// | `chrono::NaiveDateTime` / `NaiveDate` (feature `chrono`) | `2024-05-01T12:30:00.250` / `2024-05-01` |
/// | `time::OffsetDateTime` (feature `time`) | RFC 3339 `Text`, as `time::serde::rfc3339` writes it |
/// | `uuid::Uuid` (feature `uuid`) | hyphenated lowercase `Text`: `67e55044-10b1-426f-9247-bb680e5fe0c8` |
/// | `serde_json::Value` (feature `serde_json`) | its compact JSON `Text`, always (`null` too) |
///
/// **One format per type, shared with the typed layer.** Each text is exactly what the type's
/// serde `Serialize` gives the typed layer ([`to_row`](crate::to_row)), so a value bound with
/// `params![x]` and the same value written as a field of `store.insert(&row)` are the same text,
/// and `WHERE col = ?1` finds either. Reading back, the types' serde `Deserialize` parses it
/// (dates also accept SQLite's `YYYY-MM-DD HH:MM:SS` with a space). This differs from rusqlite's
/// own `ToSql` in three places, on purpose: rusqlite writes dates with a space and `+00:00`
/// (`2024-05-01 12:30:00.250+00:00`), a `Uuid` as a 16-byte blob, and JSON numbers and null as
/// SQL values; here both paths agree instead. For a JSON field of a serde row, use
/// [`json`](crate::value::json) (`#[serde(with = "sqlweir::json")]`); for a `time` field,
/// `#[serde(with = "time::serde::rfc3339")]`.
///
/// **Values SQLite cannot hold are refused, never wrapped.** `From` cannot fail, so a `u64`
/// above `i64::MAX` (or a `time` date outside years 0000 to 9999, which RFC 3339 cannot write)
/// converts to a marker: a `Real` NaN with a reserved payload. Like every NaN it is refused by
/// [`Value::check`], which every write runs when it is accepted, so the write fails with
/// `InvalidInput` ("parameter 2: an unsigned integer above 9223372036854775807 does not fit in
/// SQLite's 64-bit signed integer") and nothing reaches the database. The enum keeps its five
/// storage classes; to handle a too-big number yourself, convert with `i64::try_from` first.
///
/// ```
/// use sqlweir_core::{Value, params};
/// assert_eq!(params![7u64, 3usize], vec![Value::Integer(7), Value::Integer(3)]);
/// let refused = Value::from(u64::MAX);
/// assert!(refused.check().unwrap_err().contains("does not fit in SQLite's 64-bit signed integer"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float. NaN is rejected at acceptance: SQLite would silently store it as NULL.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// Name of the storage class, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }

    /// Checks that SQLite can store this value faithfully.
    ///
    /// NaN is refused because SQLite turns it into NULL without a word; infinities are stored
    /// and read back as they are.
    ///
    /// The markers of values that have no SQLite form (see [Conversions](Value#conversions))
    /// are NaNs too, and are refused with their own reason.
    pub fn check(&self) -> Result<(), &'static str> {
        match self {
            Value::Real(f) if f.is_nan() => Err(Unstorable::of(*f)
                .map_or("NaN cannot be stored: SQLite would silently turn it into NULL", Unstorable::reason)),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) => match Unstorable::of(*r) {
                Some(u) => write!(f, "<{}>", u.what()),
                None => write!(f, "{r}"),
            },
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Blob(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Integer(i64::from(v))
            }
        }
    )*};
}
from_integer!(i8, i16, i32, i64, u8, u16, u32, bool);

impl From<isize> for Value {
    fn from(v: isize) -> Self {
        // Lossless: `isize` is at most 64 bits on every target Rust supports for this crate.
        Value::Integer(v as i64)
    }
}

/// Up to `i64::MAX` an `Integer`; above, the marker that [`Value::check`] refuses.
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        i64::try_from(v).map_or(Unstorable::UnsignedTooBig.marker(), Value::Integer)
    }
}

/// As `u64`.
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::from(v as u64)
    }
}

/// A value with no faithful SQLite form. `From` cannot fail, so it converts to a `Real` NaN
/// with a payload of its own; [`Value::check`] refuses NaN whatever its payload, and tells these
/// apart to say why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unstorable {
    UnsignedTooBig,
    #[cfg_attr(not(feature = "time"), allow(dead_code))]
    DateOutsideRfc3339,
}

impl Unstorable {
    /// Quiet NaN bits with a payload that arithmetic does not produce (it yields the canonical
    /// NaN `0x7ff8_0000_0000_0000`); copies and moves keep the bits.
    const fn bits(self) -> u64 {
        match self {
            Unstorable::UnsignedTooBig => 0x7ff8_5157_0000_0001,
            Unstorable::DateOutsideRfc3339 => 0x7ff8_5157_0000_0002,
        }
    }

    fn marker(self) -> Value {
        Value::Real(f64::from_bits(self.bits()))
    }

    fn of(f: f64) -> Option<Unstorable> {
        [Unstorable::UnsignedTooBig, Unstorable::DateOutsideRfc3339].into_iter().find(|u| u.bits() == f.to_bits())
    }

    fn reason(self) -> &'static str {
        match self {
            Unstorable::UnsignedTooBig => {
                "an unsigned integer above 9223372036854775807 does not fit in SQLite's 64-bit signed integer; \
                 convert it with i64::try_from, or store it as text"
            }
            Unstorable::DateOutsideRfc3339 => {
                "a date outside years 0000 to 9999 (or with an offset in seconds) has no RFC 3339 form"
            }
        }
    }

    fn what(self) -> &'static str {
        match self {
            Unstorable::UnsignedTooBig => "unsigned integer above i64::MAX",
            Unstorable::DateOutsideRfc3339 => "date without an RFC 3339 form",
        }
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Real(f64::from(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
impl From<&Value> for Value {
    fn from(v: &Value) -> Self {
        v.clone()
    }
}

#[cfg(feature = "chrono")]
mod chrono_impls {
    use super::Value;
    use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

    /// RFC 3339 with `T`, and `Z` for UTC: exactly chrono's serde form, so the typed layer stores
    /// the same text. Fractional seconds take 0, 3, 6 or 9 digits, as many as needed.
    impl From<DateTime<Utc>> for Value {
        fn from(v: DateTime<Utc>) -> Self {
            Value::Text(v.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }
    }

    /// RFC 3339 with its offset (`+02:00`), as chrono's serde writes it.
    impl From<DateTime<FixedOffset>> for Value {
        fn from(v: DateTime<FixedOffset>) -> Self {
            Value::Text(v.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }
    }

    /// `2024-05-01T12:30:00.250`, as chrono's serde writes it.
    impl From<NaiveDateTime> for Value {
        fn from(v: NaiveDateTime) -> Self {
            Value::Text(format!("{v:?}"))
        }
    }

    /// `2024-05-01`, as chrono's serde writes it.
    impl From<NaiveDate> for Value {
        fn from(v: NaiveDate) -> Self {
            Value::Text(format!("{v:?}"))
        }
    }
}

#[cfg(feature = "time")]
mod time_impls {
    use super::{Unstorable, Value};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    /// RFC 3339, as `time::serde::rfc3339` writes it (`Z` for UTC). A date RFC 3339 cannot write
    /// (a year outside 0000 to 9999, an offset with seconds) is refused when the write is
    /// accepted.
    impl From<OffsetDateTime> for Value {
        fn from(v: OffsetDateTime) -> Self {
            v.format(&Rfc3339).map_or(Unstorable::DateOutsideRfc3339.marker(), Value::Text)
        }
    }
}

#[cfg(feature = "uuid")]
impl From<uuid::Uuid> for Value {
    /// Hyphenated lowercase text, as the uuid crate's serde writes it.
    fn from(v: uuid::Uuid) -> Self {
        Value::Text(v.hyphenated().to_string())
    }
}

#[cfg(feature = "serde_json")]
impl From<serde_json::Value> for Value {
    /// Its compact JSON text, whatever it holds: `{"a":1}`, `"text"` (quoted), `5`, `null`.
    fn from(v: serde_json::Value) -> Self {
        Value::Text(v.to_string())
    }
}

#[cfg(feature = "serde_json")]
impl From<&serde_json::Value> for Value {
    /// As the owned value.
    fn from(v: &serde_json::Value) -> Self {
        Value::Text(v.to_string())
    }
}

/// A serde field adapter that stores any serde value as its JSON text in one column, and reads
/// it back: `#[serde(with = "sqlweir::json")] meta: serde_json::Value`.
///
/// The typed layer otherwise refuses nested values (structs, maps, sequences) in a column. The
/// text is the same that `params![json_value]` stores, so both paths match. Reading accepts
/// text (and a blob) holding JSON, and a bare number or NULL as written by other tools.
///
/// ```
/// use sqlweir_core::{from_row, to_row, Value};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Event { id: i64, #[serde(with = "sqlweir_core::value::json")] tags: Vec<String> }
/// let e = Event { id: 1, tags: vec!["a".into(), "b".into()] };
/// let row = to_row(&e).unwrap();
/// assert_eq!(row.values, [Value::Integer(1), Value::Text(r#"["a","b"]"#.into())]);
/// assert_eq!(from_row::<Event>(&row.columns, &row.values).unwrap(), e);
/// ```
#[cfg(feature = "serde_json")]
pub mod json {
    use std::fmt;

    use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
    use serde::ser::{self, Serialize, Serializer};

    /// Writes `value` as its compact JSON text.
    pub fn serialize<T: Serialize + ?Sized, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(ser::Error::custom)?;
        serializer.serialize_str(&text)
    }

    /// Reads a value back from its JSON text.
    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
        let json = deserializer.deserialize_any(JsonVisitor)?;
        serde_json::from_value(json).map_err(de::Error::custom)
    }

    struct JsonVisitor;

    impl Visitor<'_> for JsonVisitor {
        type Value = serde_json::Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON text")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            serde_json::from_str(v).map_err(|e| E::custom(format!("the column does not hold valid JSON: {e}")))
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            serde_json::from_slice(v).map_err(|e| E::custom(format!("the column does not hold valid JSON: {e}")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(serde_json::Value::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(serde_json::Value::Null)
        }
    }
}

/// Builds a `Vec<Value>` of parameters: `params![ts, "collector-1", payload]`.
///
/// Each argument goes through `Value::from`; see [`Value`] for the conversions, and for why a
/// `u64` above `i64::MAX` is refused when the write is accepted rather than wrapped.
///
/// ```
/// use sqlweir_core::{params, Value};
/// let p = params![1, "a", None::<i64>, 2.5];
/// assert_eq!(p, vec![Value::Integer(1), Value::Text("a".into()), Value::Null, Value::Real(2.5)]);
/// ```
#[macro_export]
macro_rules! params {
    () => { ::std::vec::Vec::<$crate::Value>::new() };
    ($($v:expr),+ $(,)?) => { ::std::vec![$($crate::Value::from($v)),+] };
}

/// Builds named parameters, `Vec<(String, Value)>`, for writes with `:name`, `@name` or
/// `$name` parameters: `named_params! { "id" => 1, ":name" => "x" }`. A bare name matches
/// whichever prefix the statement uses.
///
/// ```
/// use sqlweir_core::{named_params, Value};
/// let p = named_params! { "id" => 7, ":name" => "x" };
/// assert_eq!(p, vec![("id".to_string(), Value::Integer(7)), (":name".to_string(), Value::Text("x".into()))]);
/// ```
#[macro_export]
macro_rules! named_params {
    () => { ::std::vec::Vec::<(::std::string::String, $crate::Value)>::new() };
    ($($name:expr => $v:expr),+ $(,)?) => {
        ::std::vec![$((::std::string::String::from($name), $crate::Value::from($v))),+]
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_pick_the_right_storage_class() {
        assert_eq!(Value::from(true), Value::Integer(1));
        assert_eq!(Value::from(u32::MAX), Value::Integer(i64::from(u32::MAX)));
        assert_eq!(Value::from(Some("x")), Value::Text("x".into()));
        assert_eq!(Value::from(None::<String>), Value::Null);
        assert_eq!(Value::from(&b"ab"[..]), Value::Blob(vec![97, 98]));
    }

    #[test]
    fn unsigned_integers_convert_exactly_or_are_refused() {
        assert_eq!(Value::from(i64::MAX as u64), Value::Integer(i64::MAX));
        assert_eq!(Value::from(0usize), Value::Integer(0));
        assert_eq!(Value::from(-3isize), Value::Integer(-3));
        for too_big in [Value::from(i64::MAX as u64 + 1), Value::from(u64::MAX), Value::from(usize::MAX)] {
            let why = too_big.check().unwrap_err();
            assert!(why.starts_with("an unsigned integer above 9223372036854775807 does not fit"), "{why}");
            assert_eq!(too_big.to_string(), "<unsigned integer above i64::MAX>");
            assert_eq!(too_big.clone().check(), Err(why), "a clone keeps the marker");
        }
        assert_eq!(Value::Real(f64::NAN).to_string(), "NaN");
        let zero = std::hint::black_box(0.0_f64);
        assert!(Value::Real(zero / zero).check().unwrap_err().starts_with("NaN"), "arithmetic NaN is plain NaN");
    }

    /// The one value a struct field of type `T` gets from the typed layer.
    fn as_field<T: serde::Serialize>(v: T) -> Value {
        #[derive(serde::Serialize)]
        struct One<T> {
            x: T,
        }
        let mut row = crate::to_row(&One { x: v }).expect("a row");
        assert_eq!(row.values.len(), 1);
        row.values.remove(0)
    }

    #[test]
    fn each_foreign_type_stores_the_text_its_serde_form_stores() {
        use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
        let utc = Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap() + chrono::Duration::milliseconds(250);
        assert_eq!(Value::from(utc), Value::Text("2024-05-01T12:30:00.250Z".into()));
        assert_eq!(Value::from(utc), as_field(utc));
        let whole = Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap();
        assert_eq!(Value::from(whole), Value::Text("2024-05-01T12:30:00Z".into()));
        assert_eq!(Value::from(whole), as_field(whole));
        let east = FixedOffset::east_opt(2 * 3600).unwrap().with_ymd_and_hms(2024, 5, 1, 14, 30, 0).unwrap();
        assert_eq!(Value::from(east), Value::Text("2024-05-01T14:30:00+02:00".into()));
        assert_eq!(Value::from(east), as_field(east));
        let naive = utc.naive_utc();
        assert_eq!(Value::from(naive), Value::Text("2024-05-01T12:30:00.250".into()));
        assert_eq!(Value::from(naive), as_field(naive));
        let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
        assert_eq!(Value::from(day), Value::Text("2024-05-01".into()));
        assert_eq!(Value::from(day), as_field(day));

        let id = uuid::Uuid::from_u128(0x67e5_5044_10b1_426f_9247_bb68_0e5f_e0c8);
        assert_eq!(Value::from(id), Value::Text("67e55044-10b1-426f-9247-bb680e5fe0c8".into()));
        assert_eq!(Value::from(id), as_field(id));

        let json = serde_json::json!({"a": [1, "x"], "b": null});
        assert_eq!(Value::from(&json), Value::Text(r#"{"a":[1,"x"],"b":null}"#.into()));
        assert_eq!(Value::from(serde_json::json!("x")), Value::Text(r#""x""#.into()));
        assert_eq!(Value::from(serde_json::Value::Null), Value::Text("null".into()));
        #[derive(serde::Serialize)]
        struct WithJson {
            #[serde(with = "json")]
            j: serde_json::Value,
        }
        assert_eq!(crate::to_row(&WithJson { j: json.clone() }).unwrap().values, [Value::from(json)]);
    }

    #[test]
    fn time_dates_match_the_rfc3339_serde_adapter_and_refuse_what_it_cannot_write() {
        use time::{Date, Month, OffsetDateTime, Time, UtcOffset};
        #[derive(serde::Serialize)]
        struct At {
            #[serde(with = "time::serde::rfc3339")]
            at: OffsetDateTime,
        }
        let day = Date::from_calendar_date(2024, Month::May, 1).unwrap();
        let at = day.with_time(Time::from_hms_milli(12, 30, 0, 250).unwrap()).assume_utc();
        assert_eq!(Value::from(at), Value::Text("2024-05-01T12:30:00.25Z".into()));
        assert_eq!(crate::to_row(&At { at }).unwrap().values, [Value::from(at)]);
        let odd = at.to_offset(UtcOffset::from_hms(1, 0, 30).unwrap());
        assert!(Value::from(odd).check().unwrap_err().contains("no RFC 3339 form"));
    }

    #[test]
    fn nan_is_refused_and_infinity_is_kept() {
        assert!(Value::Real(f64::NAN).check().is_err());
        assert!(Value::Real(f64::INFINITY).check().is_ok());
        assert!(Value::Integer(1).check().is_ok());
    }
}
