//! Rows into serde types: a row is a map from column name to [`Value`], or a tuple.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use crate::value::Value;

/// Why a row did not fit the requested type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError(String);

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowError {}

impl de::Error for RowError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RowError(msg.to_string())
    }
}

/// Deserializes one row: structs and maps by column name, tuples and sequences by position.
///
/// ```
/// use sqlweir_core::{from_row, Value};
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Event { id: i64, source: String, note: Option<String> }
/// let columns = ["id".to_string(), "source".to_string(), "note".to_string()];
/// let values = [Value::Integer(1), Value::Text("c1".into()), Value::Null];
/// let e: Event = from_row(&columns, &values).unwrap();
/// assert_eq!(e, Event { id: 1, source: "c1".into(), note: None });
/// let t: (i64, String) = from_row(&columns[..2], &values[..2]).unwrap();
/// assert_eq!(t, (1, "c1".to_string()));
/// ```
pub fn from_row<T: DeserializeOwned>(columns: &[String], values: &[Value]) -> Result<T, RowError> {
    T::deserialize(RowDeserializer { columns, values })
}

struct RowDeserializer<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'de> Deserializer<'de> for RowDeserializer<'_> {
    type Error = RowError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        visitor.visit_map(Columns { names: self.columns.iter(), values: self.values.iter(), current: None })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        visitor.visit_seq(Positions(self.values.iter()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, RowError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, RowError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, RowError> {
        visitor.visit_newtype_struct(self)
    }

    scalar_from_single_column! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_u8
        deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf deserialize_option
        deserialize_unit
    }

    serde::forward_to_deserialize_any! {
        i128 u128 unit_struct map struct enum identifier ignored_any
    }
}

/// A row of one column deserializes into a scalar (`query_as::<i64>("SELECT count(*) ...")`).
macro_rules! scalar_from_single_column {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
            match self.values {
                [only] => ValueDeserializer(only).$method(visitor),
                _ => Err(de::Error::custom(format!(
                    "a row of {} columns cannot become a single value; select one column or use a struct or tuple",
                    self.values.len()
                ))),
            }
        }
    )*};
}
use scalar_from_single_column;

struct Columns<'a, I, J> {
    names: I,
    values: J,
    current: Option<&'a Value>,
}

impl<'de, 'a, I: Iterator<Item = &'a String>, J: Iterator<Item = &'a Value>> MapAccess<'de> for Columns<'a, I, J> {
    type Error = RowError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, RowError> {
        match (self.names.next(), self.values.next()) {
            (Some(name), Some(value)) => {
                self.current = Some(value);
                seed.deserialize(name.as_str().into_deserializer()).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, RowError> {
        let value = self.current.take().expect("serde asks for a value after its key");
        seed.deserialize(ValueDeserializer(value))
    }
}

struct Positions<'a, I: Iterator<Item = &'a Value>>(I);

impl<'de, 'a, I: Iterator<Item = &'a Value>> SeqAccess<'de> for Positions<'a, I> {
    type Error = RowError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, RowError> {
        self.0.next().map(|v| seed.deserialize(ValueDeserializer(v))).transpose()
    }
}

/// Deserializes one column value.
struct ValueDeserializer<'a>(&'a Value);

impl<'de> Deserializer<'de> for ValueDeserializer<'_> {
    type Error = RowError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::Real(f) => visitor.visit_f64(*f),
            Value::Text(s) => visitor.visit_str(s),
            Value::Blob(b) => visitor.visit_bytes(b),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.0 {
            Value::Integer(i) => visitor.visit_bool(*i != 0),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RowError> {
        match self.0 {
            // `Vec<u8>` asks for a sequence: hand it the blob's bytes.
            Value::Blob(b) => visitor.visit_seq(de::value::SeqDeserializer::new(b.iter().copied())),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, RowError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, RowError> {
        match self.0 {
            Value::Text(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::custom(format!("expected text for an enum, found {}", other.type_name()))),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[derive(Deserialize, Debug, PartialEq)]
    enum Level {
        Low,
        High,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct All {
        i: i64,
        u: u32,
        f: f64,
        b: bool,
        t: String,
        blob: Vec<u8>,
        opt: Option<i64>,
        level: Level,
    }

    #[test]
    fn every_storage_class_reaches_its_field() {
        let row = vec![
            Value::Integer(i64::MIN),
            Value::Integer(7),
            Value::Real(1.5),
            Value::Integer(1),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 255]),
            Value::Null,
            Value::Text("High".into()),
        ];
        let all: All = from_row(&cols(&["i", "u", "f", "b", "t", "blob", "opt", "level"]), &row).unwrap();
        assert_eq!(
            all,
            All {
                i: i64::MIN,
                u: 7,
                f: 1.5,
                b: true,
                t: "héllo".into(),
                blob: vec![0, 255],
                opt: None,
                level: Level::High
            }
        );
        let _ = Level::Low;
    }

    #[test]
    fn mismatches_are_errors_not_panics() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Needs {
            n: i64,
        }
        let err = from_row::<Needs>(&cols(&["n"]), &[Value::Text("x".into())]).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let err = from_row::<Needs>(&cols(&["m"]), &[Value::Integer(1)]).unwrap_err();
        assert!(err.to_string().contains("missing field `n`"), "{err}");
        let err = from_row::<u8>(&cols(&["x"]), &[Value::Integer(300)]).unwrap_err();
        assert!(err.to_string().contains("300"), "{err}");
        let err = from_row::<i64>(&cols(&["x", "y"]), &[Value::Integer(1), Value::Integer(2)]).unwrap_err();
        assert!(err.to_string().contains("2 columns"), "{err}");
    }

    #[test]
    fn single_column_rows_become_scalars() {
        assert_eq!(from_row::<i64>(&cols(&["n"]), &[Value::Integer(42)]).unwrap(), 42);
        assert_eq!(from_row::<Option<String>>(&cols(&["s"]), &[Value::Null]).unwrap(), None);
        assert_eq!(from_row::<String>(&cols(&["s"]), &[Value::Text("x".into())]).unwrap(), "x");
    }
}
