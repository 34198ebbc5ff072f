//! The typed layer: serde structs in and out, upserts and keyset pages, on the same write queue.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlweir_core::{Value, WriteError, from_row, insert_sql, quote_identifier, to_row, upsert_sql};

use crate::error::QueryError;
use crate::store::Store;
use crate::ticket::Ticket;
use sqlweir_core::{ManyOutcome, Receipt};

/// One page of a keyset pagination: rows, and the cursor for the next page (`None` at the end).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The rows, ordered by the key column.
    pub rows: Vec<T>,
    /// The last row's key: pass it as `after` to get the next page. `None` when this page was
    /// not full, so no row follows.
    pub next: Option<Value>,
}

fn invalid(e: impl std::fmt::Display) -> WriteError {
    WriteError::InvalidInput { message: e.to_string() }
}

impl Store {
    /// Inserts a serde struct (or map) into `table`: field names are the columns, values as
    /// [`to_row`](sqlweir_core::to_row) maps them. The statement is prepared once per shape.
    ///
    /// ```
    /// use sqlweir::{Options, Store};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Event { ts: i64, source: String }
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE events(ts INTEGER, source TEXT)"]))?;
    /// store.insert("events", &Event { ts: 1, source: "c1".into() }).wait()?;
    /// let back: Vec<Event> = store.query_as("SELECT ts, source FROM events", &[])?;
    /// assert_eq!(back[0].source, "c1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert<T: Serialize + ?Sized>(&self, table: &str, row: &T) -> Ticket<Receipt> {
        match to_row(row).map_err(invalid).and_then(|d| Ok((insert_sql(table, &d.columns).map_err(invalid)?, d.values)))
        {
            Ok((sql, values)) => self.write(&sql, values),
            Err(e) => Ticket::ready(Err(e)),
        }
    }

    /// Inserts a row, or updates every other column of the row that conflicts with it on
    /// `conflict` (a UNIQUE or PRIMARY KEY column set): no duplicate, no lost update.
    pub fn upsert<T: Serialize + ?Sized>(&self, table: &str, row: &T, conflict: &[&str]) -> Ticket<Receipt> {
        match to_row(row)
            .map_err(invalid)
            .and_then(|d| Ok((upsert_sql(table, &d.columns, conflict).map_err(invalid)?, d.values)))
        {
            Ok((sql, values)) => self.write(&sql, values),
            Err(e) => Ticket::ready(Err(e)),
        }
    }

    /// Inserts many rows of one shape as one queue entry (see `write_many`). Every row must
    /// have the first row's fields, in the same order.
    pub fn insert_many<T: Serialize>(&self, table: &str, rows: &[T]) -> Ticket<ManyOutcome> {
        let mut columns: Option<Vec<String>> = None;
        let mut values = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let data = match to_row(row) {
                Ok(d) => d,
                Err(e) => return Ticket::ready(Err(invalid(format!("row {i}: {e}")))),
            };
            match &columns {
                None => columns = Some(data.columns),
                Some(c) if *c != data.columns => {
                    return Ticket::ready(Err(invalid(format!(
                        "row {i} has fields {:?} but row 0 has {c:?}; insert_many needs one shape",
                        data.columns
                    ))));
                }
                Some(_) => {}
            }
            values.push(data.values);
        }
        let Some(columns) = columns else {
            return Ticket::ready(Ok(ManyOutcome { committed: 0, rejected: Vec::new(), batch: 0 }));
        };
        match insert_sql(table, &columns) {
            Ok(sql) => self.write_many(&sql, values),
            Err(e) => Ticket::ready(Err(invalid(e))),
        }
    }

    /// One page of `table` in keyset order: up to `limit` rows whose `key` column is greater
    /// than `after` (from the start when `None`), ordered by `key`. Unlike OFFSET pagination,
    /// each page costs the same and rows written meanwhile are neither skipped nor repeated
    /// (given a key that only grows, such as an INTEGER PRIMARY KEY).
    pub fn page<T: DeserializeOwned>(
        &self,
        table: &str,
        key: &str,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<Page<T>, QueryError> {
        let decode = |e: sqlweir_core::ShapeError| {
            QueryError::Database(sqlweir_core::BackendError::new(
                sqlweir_core::ErrorKind::InvalidInput,
                sqlweir_core::ErrorClass::Rejected,
                None,
                e.to_string(),
            ))
        };
        let (t, k) = (quote_identifier(table).map_err(decode)?, quote_identifier(key).map_err(decode)?);
        let limit_value = Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = match after {
            None => self.query(&format!("SELECT * FROM {t} ORDER BY {k} LIMIT ?1"), &[limit_value])?,
            Some(a) => self
                .query(&format!("SELECT * FROM {t} WHERE {k} > ?1 ORDER BY {k} LIMIT ?2"), &[a.clone(), limit_value])?,
        };
        let Some(key_index) = rows.columns.iter().position(|c| c == key) else {
            // Without the key among the columns there is no cursor: refuse rather than stop early.
            return Err(decode(sqlweir_core::ShapeError::custom_message(format!(
                "key column {key:?} is not a column of {table:?} as SELECT * returns it \
                 (a hidden rowid is not); page by a declared column such as an INTEGER PRIMARY KEY"
            ))));
        };
        let next = match rows.rows.last() {
            Some(last) if rows.rows.len() == limit => Some(last[key_index].clone()),
            _ => None,
        };
        let typed = rows
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| from_row(&rows.columns, r).map_err(|source| QueryError::Decode { row: i, source }))
            .collect::<Result<Vec<T>, _>>()?;
        Ok(Page { rows: typed, next })
    }
}
