//! Parameter and column values: the five SQLite storage classes, without depending on a driver.

use std::fmt;

/// One SQLite value: what a parameter binds and what a column reads back.
///
/// Built with `From` (`Value::from(42)`, `"text".into()`) or the [`params!`](crate::params)
/// macro. Backends convert at their edge, so the core needs no SQLite binding.
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
    pub fn check(&self) -> Result<(), &'static str> {
        match self {
            Value::Real(f) if f.is_nan() => Err("NaN cannot be stored: SQLite would silently turn it into NULL"),
            _ => Ok(()),
        }
    }

    /// Approximate heap bytes this value holds, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
            _ => 0,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r}"),
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

/// Builds a `Vec<Value>` of parameters: `params![ts, "collector-1", payload]`.
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
    fn nan_is_refused_and_infinity_is_kept() {
        assert!(Value::Real(f64::NAN).check().is_err());
        assert!(Value::Real(f64::INFINITY).check().is_ok());
        assert!(Value::Integer(1).check().is_ok());
    }
}
