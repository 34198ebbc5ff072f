//! The read pool: read-only connections for queries, apart from the writer's connection, so a
//! query never waits for a batch (under WAL, readers see the last commit and never block it).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use sqlweir_core::{BackendError, ErrorClass, ErrorKind, Value};
use sqlweir_sqlite::ReadConnection;

use crate::engine::Reads;
use crate::error::QueryError;

/// Rows of a query, as values by position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One `Vec<Value>` per row, in the columns' order.
    pub rows: Vec<Vec<Value>>,
}

/// A connection that can answer queries (SQLite read-only connection, PostgreSQL client).
pub(crate) trait Reader: Send + 'static {
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError>;
}

impl Reader for ReadConnection {
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        let (columns, rows) = self.query(sql, params).map_err(QueryError::Database)?;
        Ok(Rows { columns, rows })
    }
}

/// Refuses a query's parameters that SQLite would silently bind as something else (a NaN, an
/// unsigned integer past `i64::MAX`), as writes do.
pub(crate) fn check_params(params: &[Value]) -> Result<(), QueryError> {
    for (i, v) in params.iter().enumerate() {
        if let Err(why) = v.check() {
            return Err(QueryError::Database(BackendError::new(
                ErrorKind::InvalidInput,
                ErrorClass::Rejected,
                None,
                format!("parameter {}: {why}", i + 1),
            )));
        }
    }
    Ok(())
}

pub(crate) struct ReadPool<C> {
    idle: Mutex<Option<Vec<C>>>,
    returned: Condvar,
}

impl<C: Reader> ReadPool<C> {
    pub(crate) fn new(conns: Vec<C>) -> Self {
        ReadPool { idle: Mutex::new(Some(conns)), returned: Condvar::new() }
    }

    fn idle(&self) -> MutexGuard<'_, Option<Vec<C>>> {
        // The pool's list is only pushed and popped; a panic cannot leave it half updated.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<C: Reader> Reads for ReadPool<C> {
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        let mut conn = {
            let mut idle = self.idle();
            loop {
                match idle.as_mut() {
                    None => return Err(QueryError::Closed),
                    Some(list) => match list.pop() {
                        Some(c) => break c,
                        None => idle = self.returned.wait(idle).unwrap_or_else(PoisonError::into_inner),
                    },
                }
            }
        };
        let result = conn.run(sql, params);
        if let Some(list) = self.idle().as_mut() {
            list.push(conn);
        }
        self.returned.notify_one();
        result
    }

    fn close(&self) {
        let conns = self.idle().take();
        drop(conns);
        self.returned.notify_all();
    }
}
