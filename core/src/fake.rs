//! A fault-injecting in-memory backend for the core's tests (feature `fake`).
//!
//! It keeps a transaction's rows apart from committed ones, so a test can check that what was
//! acknowledged is exactly what is durable.

use std::collections::BTreeMap;

use crate::backend::{Applied, Backend};
use crate::error::{BackendError, ErrorClass, ErrorKind};
use crate::request::{Recorded, RequestId};
use crate::value::Value;

/// A failure to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A constraint error that leaves the transaction open (SQLite's default ABORT).
    Constraint,
    /// A constraint error after which the database rolled the transaction back.
    ConstraintRollingBack,
    /// Lock contention.
    Busy,
    /// An I/O failure.
    Io,
}

impl Fault {
    fn error(self) -> BackendError {
        match self {
            Fault::Constraint | Fault::ConstraintRollingBack => {
                BackendError::new(ErrorKind::Constraint, ErrorClass::Rejected, Some(2067), "UNIQUE constraint failed")
            }
            Fault::Busy => BackendError::new(ErrorKind::Busy, ErrorClass::Transient, Some(5), "database is locked"),
            Fault::Io => BackendError::new(ErrorKind::Io, ErrorClass::Fatal, Some(10), "disk I/O error"),
        }
    }
}

/// The fake database: one table of rows, keyed by their first parameter.
#[derive(Debug, Default)]
pub struct FakeBackend {
    committed: Vec<Vec<Value>>,
    staged: Option<Vec<Vec<Value>>>,
    /// Request markers: committed, and as the open transaction sees them.
    markers: BTreeMap<RequestId, Recorded>,
    staged_markers: Option<BTreeMap<RequestId, Recorded>>,
    faults: BTreeMap<i64, Fault>,
    busy_begins: u32,
    busy_commits: u32,
    unique: bool,
    /// The statements (standing for tables) of the rows applied since the last `begin`, for
    /// [`Backend::take_changed`]: kept through a rollback, as a real backend's bookkeeping may
    /// be, so the core must be the one that drops an abandoned attempt's.
    staged_tables: Vec<String>,
    /// `begin` calls made.
    pub begins: u64,
    /// Successful commits.
    pub commits: u64,
}

impl FakeBackend {
    /// An empty database with no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every execution of a row whose first parameter is `value` fails with `fault`.
    pub fn fail_value(&mut self, value: i64, fault: Fault) {
        self.faults.insert(value, fault);
    }

    /// The next `n` `begin` calls fail with lock contention.
    pub fn busy_for_attempts(&mut self, n: u32) {
        self.busy_begins = n;
    }

    /// The next `n` `commit` calls fail with lock contention.
    pub fn busy_on_commit(&mut self, n: u32) {
        self.busy_commits = n;
    }

    /// Rejects a row whose first parameter is already in the table, like a UNIQUE column.
    pub fn unique_first_column(&mut self) {
        self.unique = true;
    }

    /// First parameters of the committed rows, in commit order.
    pub fn committed_values(&self) -> Vec<i64> {
        self.committed
            .iter()
            .filter_map(|row| match row.first() {
                Some(Value::Integer(v)) => Some(*v),
                _ => None,
            })
            .collect()
    }

    /// The committed request markers.
    pub fn markers(&self) -> &BTreeMap<RequestId, Recorded> {
        &self.markers
    }

    /// Simulates a crash: the open transaction is lost, committed rows stay.
    pub fn crash(&mut self) {
        self.staged = None;
        self.staged_markers = None;
    }
}

impl Backend for FakeBackend {
    fn begin(&mut self) -> Result<(), BackendError> {
        assert!(self.staged.is_none(), "core bug: begin inside an open transaction");
        self.begins += 1;
        if self.busy_begins > 0 {
            self.busy_begins -= 1;
            return Err(Fault::Busy.error());
        }
        self.staged = Some(Vec::new());
        self.staged_markers = Some(self.markers.clone());
        self.staged_tables.clear();
        Ok(())
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<Applied, BackendError> {
        let staged = self.staged.as_mut().expect("core bug: execute outside a transaction");
        let key = match params.first() {
            Some(Value::Integer(v)) => Some(*v),
            _ => None,
        };
        if let Some(fault) = key.and_then(|k| self.faults.get(&k)).copied() {
            if fault == Fault::ConstraintRollingBack {
                self.staged = None;
                self.staged_markers = None;
            }
            return Err(fault.error());
        }
        if self.unique && key.is_some() {
            let dup = self.committed.iter().chain(staged.iter()).any(|r| r.first() == params.first());
            if dup {
                return Err(Fault::Constraint.error());
            }
        }
        staged.push(params.to_vec());
        self.staged_tables.push(sql.to_owned());
        Ok(Applied { changes: 1, last_rowid: (self.committed.len() + staged.len()) as i64, returned: None })
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        if self.busy_commits > 0 {
            self.busy_commits -= 1;
            return Err(Fault::Busy.error());
        }
        let staged = self.staged.take().expect("core bug: commit outside a transaction");
        self.committed.extend(staged);
        self.markers = self.staged_markers.take().expect("core bug: markers staged with the transaction");
        self.commits += 1;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), BackendError> {
        self.staged = None;
        self.staged_markers = None;
        Ok(())
    }

    fn recorded(&mut self, id: &RequestId) -> Result<Option<Recorded>, BackendError> {
        let staged = self.staged_markers.as_ref().expect("core bug: lookup outside a transaction");
        Ok(staged.get(id).cloned())
    }

    fn record(&mut self, origin: &str, entries: &[(u64, Recorded)]) -> Result<(), BackendError> {
        let staged = self.staged_markers.as_mut().expect("core bug: marker outside a transaction");
        for (seq, how) in entries {
            let id = RequestId::new(origin, *seq);
            assert!(!staged.contains_key(&id), "core bug: request {id} recorded twice");
            staged.insert(id, how.clone());
        }
        Ok(())
    }

    fn forget(&mut self, origin: &str, below: u64) -> Result<(), BackendError> {
        let staged = self.staged_markers.as_mut().expect("core bug: forget outside a transaction");
        staged.retain(|id, _| &*id.origin != origin || id.seq >= below);
        Ok(())
    }

    fn in_transaction(&self) -> bool {
        self.staged.is_some()
    }

    /// The fake has one table; a write's statement text stands for the table it changed.
    fn take_changed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.staged_tables)
    }
}
