//! What the store needs from a database beyond the core's `Backend`: the write side the writer
//! thread owns. SQLite and PostgreSQL implement it (and `read::Reads`, the read side).

use sqlweir_core::{Backend, Value};

use crate::error::{CloseError, QueryError};
use crate::read::Rows;

/// The write connection. Moved into the writer thread at open; only the writer touches it.
pub(crate) trait Engine: Backend + Send + 'static {
    /// Runs a read on the write connection, inside the open transaction (for `Tx::query`).
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError>;
    /// Last work when the store closes, after every write resolved (SQLite: checkpoint).
    fn finish(&mut self) -> Result<(), CloseError>;
    /// Whether it keeps request markers (`Store::write_once`); SQLite does, PostgreSQL not yet.
    fn records_requests(&self) -> bool {
        true
    }
    /// Whether it reports the tables each batch changed (`Backend::take_changed`), so that the
    /// store's commit feed has something to publish. PostgreSQL does not (yet).
    fn reports_changes(&self) -> bool {
        false
    }
}
