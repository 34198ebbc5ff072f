//! The native SQLite engine: the shared rusqlite backend (crate `sqlweir-sqlite`) plus what the
//! store needs around it here (in-transaction reads, the final checkpoint).

use rusqlite::ffi;
use sqlweir_core::Value;
pub(crate) use sqlweir_sqlite::{SqliteBackend, classify, classify_code};

use crate::engine::Engine;
use crate::error::{CloseError, QueryError};
use crate::read::Rows;

impl Engine for SqliteBackend {
    fn reports_changes(&self) -> bool {
        true
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        let (columns, rows) = SqliteBackend::query(self, sql, params, false).map_err(QueryError::Database)?;
        Ok(Rows { columns, rows })
    }

    fn finish(&mut self) -> Result<(), CloseError> {
        // TRUNCATE leaves an empty WAL behind, so the file alone holds everything.
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|e| CloseError::Checkpoint(classify(e)))?;
        if busy != 0 {
            return Err(CloseError::Checkpoint(classify_code(
                ffi::SQLITE_BUSY,
                "a reader kept the checkpoint from finishing".into(),
            )));
        }
        Ok(())
    }
}
