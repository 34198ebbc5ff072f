//! Conversions at the JavaScript edge: parameters in (never coerced), rows, receipts and errors
//! out.

use js_sys::{Array, BigInt, Object, Reflect, Uint8Array};
use sqlweir_core::{RowData, Value, Write, WriteError};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::Coded;
use crate::sqlite::QueryRows;
use crate::store::{Acked, TxOutcome};
use sqlweir_core::{ManyOutcome, Receipt};

/// Largest integer a JavaScript number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// One parameter. Numbers with no fraction within +-(2^53 - 1) bind as INTEGER, others as REAL;
/// bigint as INTEGER (within i64); booleans as 0/1; `Uint8Array` as BLOB. Anything else
/// (undefined, objects, arrays, other typed arrays, symbols) is refused, not coerced.
pub(crate) fn value_from_js(v: &JsValue) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if let Some(n) = v.as_f64() {
        #[allow(clippy::float_cmp)] // an exact test: is the number integral?
        let integral = n.trunc() == n && n.abs() <= MAX_SAFE_INTEGER as f64;
        return Ok(if integral { Value::Integer(n as i64) } else { Value::Real(n) });
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::Text(s));
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Integer(i64::from(b)));
    }
    if v.is_bigint() {
        return i64::try_from(v.clone()).map(Value::Integer).map_err(|_| {
            let shown = v.dyn_ref::<BigInt>().and_then(|b| b.to_string(10).ok()).map(String::from).unwrap_or_default();
            format!("bigint {shown} does not fit in a 64-bit signed integer")
        });
    }
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(Value::Blob(bytes.to_vec()));
    }
    Err(format!("{} is not a parameter type; use number, bigint, string, boolean, null or Uint8Array", describe(v)))
}

fn describe(v: &JsValue) -> String {
    let kind = v.js_typeof().as_string().unwrap_or_default();
    if kind != "object" {
        return kind;
    }
    let name = Reflect::get(v, &JsValue::from_str("constructor"))
        .ok()
        .filter(|c| !c.is_undefined())
        .and_then(|c| Reflect::get(&c, &JsValue::from_str("name")).ok())
        .and_then(|n| n.as_string());
    match name {
        Some(name) => format!("object {name}"),
        None => "object".into(),
    }
}

/// A parameter row: an array of values, or `undefined`/`null` for none.
pub(crate) fn params_from_js(params: &JsValue) -> Result<Vec<Value>, WriteError> {
    if params.is_undefined() || params.is_null() {
        return Ok(Vec::new());
    }
    let Some(array) = params.dyn_ref::<Array>() else {
        return Err(invalid(format!("parameters must be an array, got {}", describe(params))));
    };
    array
        .iter()
        .enumerate()
        .map(|(i, v)| value_from_js(&v).map_err(|why| invalid(format!("parameter {}: {why}", i + 1))))
        .collect()
}

/// The rows of a `writeMany`: an array of parameter arrays.
pub(crate) fn rows_from_js(rows: &JsValue) -> Result<Vec<Vec<Value>>, WriteError> {
    let Some(array) = rows.dyn_ref::<Array>() else {
        return Err(invalid(format!("rows must be an array of parameter arrays, got {}", describe(rows))));
    };
    array
        .iter()
        .enumerate()
        .map(|(r, row)| {
            params_from_js(&row).map_err(|e| match e {
                WriteError::InvalidInput { message } => invalid(format!("row {r}, {message}")),
                other => other,
            })
        })
        .collect()
}

/// A row object: its own enumerable fields become columns, in the object's key order. A field
/// whose value is `undefined` is left out (the column keeps its default, an upsert leaves it
/// unchanged); every other value follows [`value_from_js`], and a refused one names its field.
/// Arrays, `Map`, `Set`, `Date` and typed arrays are not rows.
pub(crate) fn row_from_js(row: &JsValue) -> Result<RowData, WriteError> {
    if !row.is_object()
        || Array::is_array(row)
        || js_sys::ArrayBuffer::is_view(row)
        || row.is_instance_of::<js_sys::Map>()
        || row.is_instance_of::<js_sys::Set>()
        || row.is_instance_of::<js_sys::Date>()
    {
        return Err(invalid(format!("a row must be an object of fields, got {}", describe(row))));
    }
    let entries = Object::entries(row.unchecked_ref());
    let mut data = RowData { columns: Vec::with_capacity(entries.length() as usize), values: Vec::new() };
    data.values.reserve(entries.length() as usize);
    for entry in entries.iter() {
        let entry: Array = entry.unchecked_into();
        let value = entry.get(1);
        if value.is_undefined() {
            continue;
        }
        let name = entry.get(0).as_string().unwrap_or_default();
        match value_from_js(&value) {
            Ok(v) => {
                data.columns.push(name);
                data.values.push(v);
            }
            Err(why) => return Err(invalid(format!("field {name:?}: {why}"))),
        }
    }
    Ok(data)
}

/// Columns, and each row's values in their order.
type ManyRows = (Vec<String>, Vec<Vec<Value>>);

/// The rows of an `insertMany`: every row must have the first row's fields (in any order).
/// Returns the first row's columns and each row's values in that order; `None` for no rows.
pub(crate) fn many_rows_from_js(rows: &JsValue) -> Result<Option<ManyRows>, WriteError> {
    let Some(array) = rows.dyn_ref::<Array>() else {
        return Err(invalid(format!("rows must be an array of row objects, got {}", describe(rows))));
    };
    let mut columns: Option<Vec<String>> = None;
    let mut values = Vec::with_capacity(array.length() as usize);
    for (i, row) in array.iter().enumerate() {
        let data = row_from_js(&row).map_err(|e| match e {
            WriteError::InvalidInput { message } => invalid(format!("row {i}, {message}")),
            other => other,
        })?;
        match &columns {
            None => {
                columns = Some(data.columns);
                values.push(data.values);
            }
            Some(first) if *first == data.columns => values.push(data.values),
            Some(first) => values.push(reorder(first, data, i)?),
        }
    }
    Ok(columns.map(|c| (c, values)))
}

/// A row's values in the order of `first`, or which field differs.
fn reorder(first: &[String], data: RowData, row: usize) -> Result<Vec<Value>, WriteError> {
    if let Some(extra) = data.columns.iter().find(|c| !first.contains(c)) {
        return Err(invalid(format!(
            "row {row} has field {extra:?} that row 0 has not; insertMany needs every row to have the same fields"
        )));
    }
    let mut slots: Vec<Option<Value>> = data.values.into_iter().map(Some).collect();
    first
        .iter()
        .map(|name| {
            data.columns.iter().position(|c| c == name).and_then(|at| slots[at].take()).ok_or_else(|| {
                invalid(format!(
                    "row {row} lacks field {name:?} of row 0; insertMany needs every row to have the same fields"
                ))
            })
        })
        .collect()
}

/// Conflict columns of an upsert: a string or an array of strings.
pub(crate) fn names_from_js(names: &JsValue) -> Result<Vec<String>, WriteError> {
    if let Some(one) = names.as_string() {
        return Ok(vec![one]);
    }
    let refused =
        || invalid(format!("conflict columns must be a string or an array of strings, got {}", describe(names)));
    let array = names.dyn_ref::<Array>().ok_or_else(refused)?;
    array.iter().map(|n| n.as_string().ok_or_else(refused)).collect()
}

/// A transaction's statements: an array of `{ sql, params }`.
pub(crate) fn statements_from_js(statements: &JsValue) -> Result<Vec<Write>, WriteError> {
    let Some(array) = statements.dyn_ref::<Array>() else {
        return Err(invalid(format!(
            "a transaction takes an array of {{ sql, params }} statements, got {}; a function cannot run inside the \
             worker's transaction",
            describe(statements)
        )));
    };
    array
        .iter()
        .enumerate()
        .map(|(i, statement)| {
            let field = |name: &str| Reflect::get(&statement, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
            let sql = statement.is_object().then(|| field("sql").as_string()).flatten().ok_or_else(|| {
                invalid(format!("statement {i} must be an object {{ sql, params }} with sql a string"))
            })?;
            let params = params_from_js(&field("params")).map_err(|e| match e {
                WriteError::InvalidInput { message } => invalid(format!("statement {i}, {message}")),
                other => other,
            })?;
            Ok(Write::one(sql, params))
        })
        .collect()
}

fn invalid(message: String) -> WriteError {
    WriteError::InvalidInput { message }
}

/// One value out: integers beyond 2^53 as bigint, BLOBs as `Uint8Array`.
pub(crate) fn value_to_js(v: &Value) -> JsValue {
    match v {
        Value::Null => JsValue::NULL,
        // `unsigned_abs`: `abs` of i64::MIN overflows (and wraps in release, which made it a number).
        Value::Integer(i) if i.unsigned_abs() <= MAX_SAFE_INTEGER.unsigned_abs() => JsValue::from_f64(*i as f64),
        Value::Integer(i) => JsValue::from(*i),
        Value::Real(f) => JsValue::from_f64(*f),
        Value::Text(s) => JsValue::from_str(s),
        Value::Blob(b) => Uint8Array::from(b.as_slice()).into(),
    }
}

/// Rows as plain objects keyed by column name (a later column of the same name wins).
pub(crate) fn rows_to_js(found: &QueryRows) -> Result<Array, JsValue> {
    objects_to_js(&found.columns, &found.rows)
}

/// Rows as plain objects keyed by column name.
fn objects_to_js(columns: &[String], rows: &[Vec<Value>]) -> Result<Array, JsValue> {
    let keys: Vec<JsValue> = columns.iter().map(|c| JsValue::from_str(c)).collect();
    let out = Array::new_with_length(rows.len() as u32);
    for (i, row) in rows.iter().enumerate() {
        let obj = Object::new();
        for (key, v) in keys.iter().zip(row) {
            Reflect::set(&obj, key, &value_to_js(v))?;
        }
        out.set(i as u32, obj.into());
    }
    Ok(out)
}

/// An error as JavaScript sees it: `message`, `name` (`"SqlweirError"`), a stable `code` and
/// `sqliteCode` (a number or null). `plain` gives a plain object that survives `postMessage`
/// (structured clone drops an `Error`'s own properties); otherwise a real `Error`.
pub(crate) fn error_to_js(e: &dyn Coded, plain: bool) -> JsValue {
    let target: Object = if plain { Object::new() } else { js_sys::Error::new(&e.to_string()).into() };
    let sqlite = e.sqlite_code().map_or(JsValue::NULL, |c| JsValue::from_f64(f64::from(c)));
    // Setting data properties on a fresh object cannot fail.
    let _ = Reflect::set(&target, &"name".into(), &"SqlweirError".into());
    let _ = Reflect::set(&target, &"message".into(), &e.to_string().into());
    let _ = Reflect::set(&target, &"code".into(), &e.code().into());
    let _ = Reflect::set(&target, &"sqliteCode".into(), &sqlite);
    if let Some(index) = e.statement() {
        let _ = Reflect::set(&target, &"statement".into(), &JsValue::from_f64(index as f64));
    }
    target.into()
}

pub(crate) fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (k, v) in fields {
        // Setting data properties on a fresh object cannot fail.
        let _ = Reflect::set(&obj, &JsValue::from_str(k), v);
    }
    obj.into()
}

/// `{ changes, lastRowid, batch }`, and `rows` (plain objects) for a write with `RETURNING`.
pub(crate) fn receipt_to_js(r: &Receipt) -> JsValue {
    let mut fields = vec![
        ("changes", JsValue::from_f64(r.changes as f64)),
        ("lastRowid", value_to_js(&Value::Integer(r.last_rowid))),
        ("batch", JsValue::from_f64(r.batch as f64)),
    ];
    if let Some(returned) = &r.returned {
        // Setting properties of fresh objects cannot fail.
        let rows = objects_to_js(&returned.columns, &returned.rows).unwrap_or_else(|_| Array::new());
        fields.push(("rows", rows.into()));
    }
    object(&fields)
}

/// `{ committed, rejected: [{ index, error }], batch }`.
pub(crate) fn many_to_js(m: &ManyOutcome) -> JsValue {
    let rejected: Array = m
        .rejected
        .iter()
        .map(|(index, e)| object(&[("index", JsValue::from_f64(*index as f64)), ("error", error_to_js(e, true))]))
        .collect();
    object(&[
        ("committed", JsValue::from_f64(m.committed as f64)),
        ("rejected", rejected.into()),
        ("batch", JsValue::from_f64(m.batch as f64)),
    ])
}

/// An acked write as JavaScript sees it, in plain objects that survive `postMessage`.
pub(crate) fn acked_to_js(a: &Acked) -> JsValue {
    match a {
        Acked::One(r) => receipt_to_js(r),
        Acked::Many(m) => many_to_js(m),
        Acked::Transaction(t) => transaction_to_js(t),
    }
}

/// `{ results: [{ changes, lastRowid }], batch }`.
pub(crate) fn transaction_to_js(t: &TxOutcome) -> JsValue {
    let results: Array = t
        .results
        .iter()
        .map(|(changes, rowid)| {
            object(&[
                ("changes", JsValue::from_f64(*changes as f64)),
                ("lastRowid", value_to_js(&Value::Integer(*rowid))),
            ])
        })
        .collect();
    object(&[("results", results.into()), ("batch", JsValue::from_f64(t.batch as f64))])
}
