//! The read pool: read-only connections for queries, apart from the writer's connection, so a
//! query never waits for a batch (under WAL, readers see the last commit and never block it).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use sqlweir_core::{BackendError, ErrorClass, ErrorKind, Value};
use sqlweir_sqlite::ReadConnection;

use crate::error::QueryError;
use crate::ticket::{Slot, Ticket};

/// Rows of a query, as values by position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One `Vec<Value>` per row, in the columns' order.
    pub rows: Vec<Vec<Value>>,
}

/// The read side: connections that never block the writer.
pub(crate) trait Reads: Send + Sync {
    /// Runs a query on an idle connection, waiting for one if all are busy.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, QueryError>;
    /// The tables `sql` reads (SQLite's authorizer while preparing it; nothing runs).
    fn tables_read(&self, sql: &str) -> Result<Vec<String>, QueryError>;
    /// Closes every connection; queries after this fail with `Closed`.
    fn close(&self);
}

/// A connection that can answer queries (SQLite read-only connection, PostgreSQL client).
pub(crate) trait Reader: Send + 'static {
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError>;
    fn tables_read(&mut self, sql: &str) -> Result<Vec<String>, QueryError>;
}

impl Reader for ReadConnection {
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        let (columns, rows) = self.query(sql, params).map_err(QueryError::Database)?;
        Ok(Rows { columns, rows })
    }

    fn tables_read(&mut self, sql: &str) -> Result<Vec<String>, QueryError> {
        ReadConnection::tables_read(self, sql).map_err(QueryError::Database)
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

impl<C: Reader> ReadPool<C> {
    /// Runs `f` on an idle connection, waiting for one if all are busy.
    fn with_conn<T>(&self, f: impl FnOnce(&mut C) -> Result<T, QueryError>) -> Result<T, QueryError> {
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
        let result = f(&mut conn);
        if let Some(list) = self.idle().as_mut() {
            list.push(conn);
        }
        self.returned.notify_one();
        result
    }
}

impl<C: Reader> Reads for ReadPool<C> {
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        self.with_conn(|conn| conn.run(sql, params))
    }

    fn tables_read(&self, sql: &str) -> Result<Vec<String>, QueryError> {
        self.with_conn(|conn| conn.tables_read(sql))
    }

    fn close(&self) {
        let conns = self.idle().take();
        drop(conns);
        self.returned.notify_all();
    }
}

/// A query running on a reader thread: resolves with its rows, or why not. Await it from any
/// executor.
#[must_use = "a query ticket does nothing useful unless awaited"]
pub struct QueryTicket<T> {
    inner: Ticket<Result<T, QueryError>>,
}

impl<T> QueryTicket<T> {
    pub(crate) fn ready(result: Result<T, QueryError>) -> Self {
        QueryTicket { inner: Ticket::ready(Ok(result)) }
    }

    pub(crate) fn accepted(slot: Arc<Slot<Result<T, QueryError>>>) -> Self {
        QueryTicket { inner: Ticket::accepted(slot) }
    }
}

impl<T: Unpin> Future for QueryTicket<T> {
    type Output = Result<T, QueryError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The slot fails only with `Closed` (dropped unresolved), which a query reports as its own.
        Pin::new(&mut self.inner).poll(cx).map(|r| r.unwrap_or(Err(QueryError::Closed)))
    }
}

/// What a reader thread calls with a query's result.
pub(crate) type Deliver = Box<dyn FnOnce(Result<Rows, QueryError>) + Send>;

/// A query handed to a reader thread. Dropped without running (the store closed first), it
/// answers `Closed`, so no awaiting task waits forever.
struct ReadJob {
    sql: String,
    params: Vec<Value>,
    deliver: Option<Deliver>,
}

impl Drop for ReadJob {
    fn drop(&mut self) {
        if let Some(deliver) = self.deliver.take() {
            deliver(Err(QueryError::Closed));
        }
    }
}

/// Reader threads for async callers: a query awaited from an executor runs here, so it never
/// blocks the executor's thread. Started on the first async query, one per read connection.
pub(crate) struct ReadThreads {
    state: Mutex<ThreadsState>,
}

struct ThreadsState {
    jobs: Option<std::sync::mpsc::Sender<ReadJob>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    closed: bool,
}

impl ReadThreads {
    pub(crate) fn new() -> Self {
        ReadThreads { state: Mutex::new(ThreadsState { jobs: None, threads: Vec::new(), closed: false }) }
    }

    fn state(&self) -> MutexGuard<'_, ThreadsState> {
        // Only a sender and a list of handles: a panic cannot leave them half updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the query on a reader thread; `deliver` gets the result there.
    pub(crate) fn submit(&self, reads: &Arc<dyn Reads>, threads: usize, sql: &str, params: &[Value], deliver: Deliver) {
        let job = ReadJob { sql: sql.to_owned(), params: params.to_vec(), deliver: Some(deliver) };
        let mut state = self.state();
        if state.closed {
            return; // the job drops here and answers Closed
        }
        if state.jobs.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<ReadJob>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..threads.max(1) {
                let (rx, reads) = (rx.clone(), reads.clone());
                let spawned = std::thread::Builder::new().name(format!("sqlweir-reader-{i}")).spawn(move || {
                    loop {
                        // The receiver is shared: one idle thread at a time waits on it.
                        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(mut job) = next else { return };
                        let result = reads.query(&job.sql, &job.params);
                        if let Some(deliver) = job.deliver.take() {
                            deliver(result);
                        }
                    }
                });
                match spawned {
                    Ok(handle) => state.threads.push(handle),
                    Err(e) => tracing::error!(error = %e, "could not start a reader thread"),
                }
            }
            state.jobs = Some(tx);
        }
        if let Some(jobs) = &state.jobs {
            // A send fails only when every reader thread is gone; the job then answers Closed.
            let _ = jobs.send(job);
        }
    }

    /// Stops the reader threads after the queries already handed to them.
    pub(crate) fn close(&self) {
        let threads = {
            let mut state = self.state();
            state.closed = true;
            state.jobs = None;
            std::mem::take(&mut state.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }
}
