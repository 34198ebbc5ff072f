//! Rows from serde types: a struct (or map) becomes column names and values, and the INSERT or
//! upsert statement for its shape, with identifiers quoted.

use std::fmt;

use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeSeq, SerializeStruct, Serializer};

use crate::value::Value;

/// Why a value could not become a row, or an identifier is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeError(String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

impl ShapeError {
    /// An error with this message.
    pub fn custom_message(message: impl Into<String>) -> Self {
        ShapeError(message.into())
    }
}

impl ser::Error for ShapeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ShapeError(msg.to_string())
    }
}

/// Quotes an identifier (table or column name) for SQL: `events` becomes `"events"`, inner
/// quotes are doubled. Empty names and NUL bytes are refused.
pub fn quote_identifier(name: &str) -> Result<String, ShapeError> {
    if name.is_empty() {
        return Err(ShapeError("an identifier cannot be empty".into()));
    }
    if name.contains('\0') {
        return Err(ShapeError(format!("identifier {name:?} contains a NUL byte")));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Column names and values of one row, in field order.
#[derive(Clone, Debug, PartialEq)]
pub struct RowData {
    /// Column names (unquoted).
    pub columns: Vec<String>,
    /// One value per column.
    pub values: Vec<Value>,
}

/// Turns a struct or map into a row: field names become columns.
///
/// Integers, floats, booleans (0/1), strings, bytes (`Vec<u8>`, `serde_bytes`), `Option` (None
/// is NULL) and unit enum variants (their name, as text) are supported. Nested structs, maps
/// and sequences are refused with the field's name: store them as text (e.g. JSON) yourself.
///
/// ```
/// use sqlweir_core::{to_row, Value};
/// #[derive(serde::Serialize)]
/// struct Event { ts: i64, source: String, note: Option<String> }
/// let row = to_row(&Event { ts: 1, source: "c1".into(), note: None }).unwrap();
/// assert_eq!(row.columns, ["ts", "source", "note"]);
/// assert_eq!(row.values, [Value::Integer(1), Value::Text("c1".into()), Value::Null]);
/// ```
pub fn to_row<T: Serialize + ?Sized>(row: &T) -> Result<RowData, ShapeError> {
    row.serialize(RowSerializer)
}

/// `INSERT INTO "table"("a","b") VALUES (?1,?2)` for a row's shape.
pub fn insert_sql(table: &str, columns: &[String]) -> Result<String, ShapeError> {
    let (names, holes) = column_lists(columns)?;
    Ok(format!("INSERT INTO {}({names}) VALUES ({holes})", quote_identifier(table)?))
}

/// An upsert: insert, or on a conflict on `conflict` update every other column.
///
/// ```
/// use sqlweir_core::upsert_sql;
/// let cols = ["id".to_string(), "name".to_string()];
/// assert_eq!(
///     upsert_sql("users", &cols, &["id"]).unwrap(),
///     r#"INSERT INTO "users"("id","name") VALUES (?1,?2) ON CONFLICT("id") DO UPDATE SET "name"=excluded."name""#
/// );
/// ```
pub fn upsert_sql(table: &str, columns: &[String], conflict: &[&str]) -> Result<String, ShapeError> {
    if conflict.is_empty() {
        return Err(ShapeError("an upsert needs at least one conflict column".into()));
    }
    for c in conflict {
        if !columns.iter().any(|col| col == c) {
            return Err(ShapeError(format!("conflict column {c:?} is not a field of the row")));
        }
    }
    let (names, holes) = column_lists(columns)?;
    let target = conflict.iter().map(|c| quote_identifier(c)).collect::<Result<Vec<_>, _>>()?.join(",");
    let updates = columns
        .iter()
        .filter(|c| !conflict.contains(&c.as_str()))
        .map(|c| quote_identifier(c).map(|q| format!("{q}=excluded.{q}")))
        .collect::<Result<Vec<_>, _>>()?;
    let action = if updates.is_empty() { "NOTHING".to_owned() } else { format!("UPDATE SET {}", updates.join(",")) };
    Ok(format!("INSERT INTO {}({names}) VALUES ({holes}) ON CONFLICT({target}) DO {action}", quote_identifier(table)?))
}

fn column_lists(columns: &[String]) -> Result<(String, String), ShapeError> {
    if columns.is_empty() {
        return Err(ShapeError("a row needs at least one field".into()));
    }
    let names = columns.iter().map(|c| quote_identifier(c)).collect::<Result<Vec<_>, _>>()?.join(",");
    let holes = (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(",");
    Ok((names, holes))
}

struct RowSerializer;

fn only_rows<T>(what: &str) -> Result<T, ShapeError> {
    Err(ShapeError(format!("a row must be a struct or a map of fields, not {what}")))
}

impl Serializer for RowSerializer {
    type Ok = RowData;
    type Error = ShapeError;
    type SerializeSeq = Impossible<RowData, ShapeError>;
    type SerializeTuple = Impossible<RowData, ShapeError>;
    type SerializeTupleStruct = Impossible<RowData, ShapeError>;
    type SerializeTupleVariant = Impossible<RowData, ShapeError>;
    type SerializeMap = Fields;
    type SerializeStruct = Fields;
    type SerializeStructVariant = Impossible<RowData, ShapeError>;

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Fields, ShapeError> {
        Ok(Fields::with_capacity(len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Fields, ShapeError> {
        Ok(Fields::with_capacity(len.unwrap_or(0)))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        v: &T,
    ) -> Result<RowData, ShapeError> {
        v.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<RowData, ShapeError> {
        only_rows("a boolean")
    }
    fn serialize_i8(self, _: i8) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_i16(self, _: i16) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_i32(self, _: i32) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_i64(self, _: i64) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_u8(self, _: u8) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_u16(self, _: u16) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_u32(self, _: u32) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_u64(self, _: u64) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_f32(self, _: f32) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_f64(self, _: f64) -> Result<RowData, ShapeError> {
        only_rows("a number")
    }
    fn serialize_char(self, _: char) -> Result<RowData, ShapeError> {
        only_rows("a character")
    }
    fn serialize_str(self, _: &str) -> Result<RowData, ShapeError> {
        only_rows("a string")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<RowData, ShapeError> {
        only_rows("bytes")
    }
    fn serialize_none(self) -> Result<RowData, ShapeError> {
        only_rows("None")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<RowData, ShapeError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<RowData, ShapeError> {
        only_rows("()")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<RowData, ShapeError> {
        only_rows("a unit struct")
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<RowData, ShapeError> {
        only_rows("an enum variant")
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<RowData, ShapeError> {
        only_rows("an enum variant")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, ShapeError> {
        only_rows("a sequence")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, ShapeError> {
        only_rows("a tuple")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, ShapeError> {
        only_rows("a tuple struct")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, ShapeError> {
        only_rows("an enum variant")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, ShapeError> {
        only_rows("an enum variant")
    }
}

/// Collects fields into a row.
struct Fields {
    row: RowData,
    key: Option<String>,
}

impl Fields {
    fn with_capacity(n: usize) -> Self {
        Fields { row: RowData { columns: Vec::with_capacity(n), values: Vec::with_capacity(n) }, key: None }
    }

    fn push(&mut self, name: String, value: Value) -> Result<(), ShapeError> {
        if let Err(why) = value.check() {
            return Err(ShapeError(format!("field {name:?}: {why}")));
        }
        self.row.columns.push(name);
        self.row.values.push(value);
        Ok(())
    }
}

impl SerializeStruct for Fields {
    type Ok = RowData;
    type Error = ShapeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), ShapeError> {
        let v = value.serialize(ValueSerializer).map_err(|e| ShapeError(format!("field {key:?}: {e}")))?;
        self.push(key.to_owned(), v)
    }
    fn end(self) -> Result<RowData, ShapeError> {
        Ok(self.row)
    }
}

impl SerializeMap for Fields {
    type Ok = RowData;
    type Error = ShapeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ShapeError> {
        match key.serialize(ValueSerializer)? {
            Value::Text(k) => {
                self.key = Some(k);
                Ok(())
            }
            other => Err(ShapeError(format!("map keys must be strings (column names), not {}", other.type_name()))),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ShapeError> {
        let key = self.key.take().ok_or_else(|| ShapeError("a map value came without its key".into()))?;
        let v = value.serialize(ValueSerializer).map_err(|e| ShapeError(format!("field {key:?}: {e}")))?;
        self.push(key, v)
    }
    fn end(self) -> Result<RowData, ShapeError> {
        Ok(self.row)
    }
}

/// One field's value.
struct ValueSerializer;

fn nested<T>() -> Result<T, ShapeError> {
    Err(ShapeError(
        "nested values (structs, maps, sequences) cannot be stored in one column; store them as text".into(),
    ))
}

impl Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ShapeError;
    type SerializeSeq = Bytes;
    type SerializeTuple = Impossible<Value, ShapeError>;
    type SerializeTupleStruct = Impossible<Value, ShapeError>;
    type SerializeTupleVariant = Impossible<Value, ShapeError>;
    type SerializeMap = Impossible<Value, ShapeError>;
    type SerializeStruct = Impossible<Value, ShapeError>;
    type SerializeStructVariant = Impossible<Value, ShapeError>;

    fn serialize_bool(self, v: bool) -> Result<Value, ShapeError> {
        Ok(Value::Integer(i64::from(v)))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, ShapeError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, ShapeError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, ShapeError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, ShapeError> {
        Ok(Value::Integer(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, ShapeError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, ShapeError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, ShapeError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, ShapeError> {
        i64::try_from(v)
            .map(Value::Integer)
            .map_err(|_| ShapeError(format!("{v} does not fit SQLite's 64-bit signed integer")))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, ShapeError> {
        Ok(Value::Real(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, ShapeError> {
        Ok(Value::Real(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, ShapeError> {
        Ok(Value::Text(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, ShapeError> {
        Ok(Value::Text(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ShapeError> {
        Ok(Value::Blob(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, ShapeError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, ShapeError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ShapeError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, ShapeError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<Value, ShapeError> {
        Ok(Value::Text(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<Value, ShapeError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Value, ShapeError> {
        nested()
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Bytes, ShapeError> {
        // `Vec<u8>` arrives as a sequence of u8: it becomes a BLOB, matching `from_row`.
        Ok(Bytes(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, ShapeError> {
        nested()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, ShapeError> {
        nested()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, ShapeError> {
        nested()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, ShapeError> {
        nested()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, ShapeError> {
        nested()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, ShapeError> {
        nested()
    }
}

/// A sequence field: accepted only as bytes.
struct Bytes(Vec<u8>);

impl SerializeSeq for Bytes {
    type Ok = Value;
    type Error = ShapeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ShapeError> {
        self.0.push(value.serialize(ByteSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ShapeError> {
        Ok(Value::Blob(self.0))
    }
}

/// Accepts exactly one `u8`.
struct ByteSerializer;

macro_rules! not_a_byte {
    ($($method:ident($($t:ty),*)),*) => {$(
        fn $method(self, $(_: $t),*) -> Result<u8, ShapeError> {
            nested()
        }
    )*};
}

impl Serializer for ByteSerializer {
    type Ok = u8;
    type Error = ShapeError;
    type SerializeSeq = Impossible<u8, ShapeError>;
    type SerializeTuple = Impossible<u8, ShapeError>;
    type SerializeTupleStruct = Impossible<u8, ShapeError>;
    type SerializeTupleVariant = Impossible<u8, ShapeError>;
    type SerializeMap = Impossible<u8, ShapeError>;
    type SerializeStruct = Impossible<u8, ShapeError>;
    type SerializeStructVariant = Impossible<u8, ShapeError>;

    fn serialize_u8(self, v: u8) -> Result<u8, ShapeError> {
        Ok(v)
    }
    not_a_byte!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str)
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, ShapeError> {
        nested()
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result<u8, ShapeError> {
        nested()
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, ShapeError> {
        nested()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, ShapeError> {
        nested()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, ShapeError> {
        nested()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, ShapeError> {
        nested()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, ShapeError> {
        nested()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, ShapeError> {
        nested()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, ShapeError> {
        nested()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, ShapeError> {
        nested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::from_row;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Level {
        Low,
        High,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct All {
        i: i64,
        small: u8,
        f: f64,
        b: bool,
        t: String,
        blob: Vec<u8>,
        opt: Option<i64>,
        some: Option<String>,
        level: Level,
    }

    #[test]
    fn every_supported_type_round_trips_through_a_row() {
        let all = All {
            i: i64::MIN,
            small: 255,
            f: -0.5,
            b: true,
            t: "ünïcode ✓".into(),
            blob: vec![0, 1, 255],
            opt: None,
            some: Some("x".into()),
            level: Level::High,
        };
        let row = to_row(&all).unwrap();
        assert_eq!(row.columns, ["i", "small", "f", "b", "t", "blob", "opt", "some", "level"]);
        assert_eq!(row.values[5], Value::Blob(vec![0, 1, 255]));
        assert_eq!(row.values[8], Value::Text("High".into()));
        let back: All = from_row(&row.columns, &row.values).unwrap();
        assert_eq!(back, all);
        let _ = Level::Low;
    }

    #[test]
    fn maps_work_and_bad_shapes_name_the_field() {
        let mut m = BTreeMap::new();
        m.insert("a", 1);
        m.insert("b", 2);
        assert_eq!(to_row(&m).unwrap().columns, ["a", "b"]);
        #[derive(Serialize)]
        struct Nested {
            inner: BTreeMap<String, i64>,
        }
        let e = to_row(&Nested { inner: BTreeMap::new() }).unwrap_err();
        assert!(e.to_string().contains("field \"inner\"") && e.to_string().contains("nested"), "{e}");
        #[derive(Serialize)]
        struct Big {
            n: u64,
        }
        let e = to_row(&Big { n: u64::MAX }).unwrap_err();
        assert!(e.to_string().contains("field \"n\"") && e.to_string().contains("does not fit"), "{e}");
        #[derive(Serialize)]
        struct Nan {
            x: f64,
        }
        assert!(to_row(&Nan { x: f64::NAN }).unwrap_err().to_string().contains("NaN"));
        assert!(to_row(&5).unwrap_err().to_string().contains("struct or a map"));
    }

    #[test]
    fn identifiers_are_quoted_and_checked() {
        assert_eq!(quote_identifier("we\"ird").unwrap(), "\"we\"\"ird\"");
        assert!(quote_identifier("").is_err());
        assert!(quote_identifier("a\0b").is_err());
        let cols = vec!["a".to_string(), "b".to_string()];
        assert_eq!(insert_sql("t", &cols).unwrap(), r#"INSERT INTO "t"("a","b") VALUES (?1,?2)"#);
        assert!(upsert_sql("t", &cols, &["c"]).unwrap_err().to_string().contains("\"c\""));
        assert!(upsert_sql("t", &cols, &[]).is_err());
        assert_eq!(
            upsert_sql("t", &cols[..1], &["a"]).unwrap(),
            r#"INSERT INTO "t"("a") VALUES (?1) ON CONFLICT("a") DO NOTHING"#
        );
    }
}
