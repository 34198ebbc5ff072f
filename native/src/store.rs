//! The store: the public API over the write pipeline, the read pool and the job locks.

use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use serde::de::DeserializeOwned;
use sqlweir_core::{
    BackendError, ErrorClass, ErrorKind, Health, JobRun, JobStatus, ManyOutcome, MetricsSnapshot, Pipeline, PushError,
    Receipt, RequestId, Value, Work, Write, WriteError, from_row,
};

use crate::engine::Engine;
use crate::error::{CloseError, LockError, OpenError, QueryError};
use crate::feed::{FeedHub, Subscription};
use crate::files::OpenFile;
use crate::job::{JobGuard, Wait, from_unix_ms, this_holder, unix_ms};
use crate::lease::{LeaseRefused, Leases, SqliteLeases, SqliteTarget};
use crate::mutex::lock;
use crate::open::{Target, open_reader, open_writer};
use crate::options::Options;
use crate::read::{QueryTicket, ReadPool, ReadThreads, Reads, Rows};
use crate::shared::{Refused, Shared, Wake, mark_writer_thread, on_writer_thread};
use crate::sqlite::{SqliteBackend, classify};
use crate::ticket::{Done, DoneKind, Slot, Ticket};
use crate::tx::{self, Tx, TxError, TxTicket};
use crate::writer;

/// A handle to one database with one writer. Cheap to clone; share it between threads.
///
/// The last handle dropped closes the store: it flushes every accepted write, joins the writer
/// and checkpoints, like [`Store::close`] but ignoring errors (they are logged). Call `close`
/// to see them.
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

struct Handle {
    /// The claim on the database file, given back once the writer stopped.
    file: Mutex<Option<OpenFile>>,
    shared: Arc<Shared>,
    reads: Arc<dyn Reads>,
    /// Where awaited queries run; started on the first one.
    read_threads: ReadThreads,
    /// How many reader threads to start: one per read connection.
    read_connections: usize,
    writer: Mutex<Option<JoinHandle<Result<(), CloseError>>>>,
    /// The job leases in the database (their own connection, opened on first use).
    leases: Arc<Leases>,
}

/// The error for a write queued from inside a transaction closure.
fn from_writer_thread() -> WriteError {
    WriteError::InvalidInput {
        message: "a write queued from inside a transaction closure would wait for the writer that runs \
                  the closure (a deadlock); use the closure's tx.execute, or queue it after the transaction"
            .into(),
    }
}

/// `write_once` on an engine without request markers.
fn unsupported_requests() -> WriteError {
    WriteError::Backend(BackendError::new(
        ErrorKind::Unsupported,
        ErrorClass::Rejected,
        None,
        "write_once and request ids are not supported on PostgreSQL yet (markers are SQLite only)",
    ))
}

static MEMORY_STORES: AtomicU64 = AtomicU64::new(0);

/// How soon a lock waiting for another process looks at the lease again; doubled up to
/// `LEASE_POLL_MAX` while it stays busy.
const LEASE_POLL_FIRST: std::time::Duration = std::time::Duration::from_millis(1);
const LEASE_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(50);

impl Store {
    /// Opens (or creates) the database at `path`: sets WAL, `synchronous`, foreign keys and a
    /// short busy timeout, runs the migrations not yet applied, opens the read pool and starts
    /// the writer thread. No write is accepted before the migrations ran.
    ///
    /// A file already open in this process is refused with `OpenError::AlreadyOpen`: share the
    /// `Store` (it is `Clone`) instead, so that one file keeps one writer.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store, OpenError> {
        let file = OpenFile::claim(path.as_ref())?;
        let store = Store::start(&Target::File(path.as_ref().to_path_buf()), options)?;
        *lock(&store.handle.file) = Some(file);
        Ok(store)
    }

    /// Opens a private in-memory database (SQLite's `memdb`, shared by this store's
    /// connections only). For tests and caches; nothing survives the store.
    pub fn open_in_memory(options: Options) -> Result<Store, OpenError> {
        let n = MEMORY_STORES.fetch_add(1, Ordering::Relaxed);
        Store::start(&Target::Memory(format!("file:/sqlweir-{}-{n}?vfs=memdb", std::process::id())), options)
    }

    fn start(target: &Target, options: Options) -> Result<Store, OpenError> {
        let conn = open_writer(target, &options)?;
        let journal_mode: String =
            conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(|e| OpenError::Setup(classify(e)))?;
        let mut readers = Vec::with_capacity(options.read_connections);
        for _ in 0..options.read_connections {
            readers.push(open_reader(target)?);
        }
        let version = format!("SQLite {}", rusqlite::version());
        let backend = SqliteBackend::new(conn).map_err(OpenError::Setup)?;
        let lease_target = match target {
            Target::File(p) => SqliteTarget::File(p.clone()),
            Target::Memory(uri) => SqliteTarget::Memory(uri.clone()),
        };
        let leases = Leases::new(Box::new(move || SqliteLeases::open(&lease_target)), options.job_lease);
        Store::with_engine(backend, Box::new(ReadPool::new(readers)), leases, journal_mode, version, options)
    }

    /// Starts the writer thread on `engine` and assembles the store.
    pub(crate) fn with_engine<E: Engine>(
        engine: E,
        reads: Box<dyn Reads>,
        leases: Arc<Leases>,
        journal_mode: String,
        engine_name: String,
        options: Options,
    ) -> Result<Store, OpenError> {
        let seed = options.seed.unwrap_or_else(|| RandomState::new().hash_one(SystemTime::now()));
        let pipeline = Pipeline::new(options.queue_capacity, options.backpressure, options.writer, seed);
        // A store whose engine reports no changed tables has a feed that ends at once.
        let feed = FeedHub::new(options.feed_capacity, !engine.reports_changes());
        let shared =
            Arc::new(Shared::new(Box::new(engine), pipeline, options.group_wait, journal_mode, engine_name, feed));
        let read_connections = options.read_connections;
        let for_writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sqlweir-writer".into())
            .spawn(move || {
                mark_writer_thread();
                let finished = writer::run(&for_writer);
                if let Some(file) = lock(&for_writer.release_on_exit).take() {
                    // Nobody joins this thread: report here, then give the file back.
                    if let Err(e) = &finished {
                        tracing::error!(error = %e, "closing the store after its last handle was dropped failed");
                    }
                    file.release();
                }
                finished
            })
            .map_err(OpenError::Thread)?;
        Ok(Store {
            handle: Arc::new(Handle {
                file: Mutex::new(None),
                shared,
                reads: Arc::from(reads),
                read_threads: ReadThreads::new(),
                read_connections,
                writer: Mutex::new(Some(thread)),
                leases,
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Queues one write. The ticket resolves after the COMMIT of its batch, or with this
    /// write's own error; the rest of its batch is unaffected by that error.
    ///
    /// ```
    /// use sqlweir::{params, Options, Store};
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE t(x)"]))?;
    /// let receipt = store.write("INSERT INTO t(x) VALUES (?1)", params![42]).wait()?;
    /// assert_eq!(receipt.changes, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&self, sql: &str, params: Vec<Value>) -> Ticket<Receipt> {
        self.enqueue_write(Write::one(sql, params), DoneKind::One)
    }

    /// Queues one write with named parameters (`:name`, `@name`, `$name`), built with
    /// [`named_params!`](crate::named_params). A name the statement does not have, a parameter
    /// left without a value, or a name given twice rejects this write alone with `InvalidInput`.
    ///
    /// ```
    /// use sqlweir::{named_params, Options, Store};
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE t(id INTEGER, name TEXT)"]))?;
    /// let sql = "INSERT INTO t(id, name) VALUES (:id, :name)";
    /// store.write_named(sql, named_params! { "name" => "x", "id" => 1 }).wait()?;
    /// assert!(store.write_named(sql, named_params! { "id" => 2 }).wait().is_err(), ":name has no value");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_named(&self, sql: &str, params: Vec<(String, Value)>) -> Ticket<Receipt> {
        self.enqueue_write(Write::named(sql, params), DoneKind::One)
    }

    /// Queues many parameter rows for one statement, as one entry of the queue. Resolves with
    /// how many rows committed and which were rejected (index and error).
    pub fn write_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> Ticket<ManyOutcome> {
        self.enqueue_write(Write::many(sql, rows), DoneKind::Many)
    }

    /// Queues one write recorded under the request id `id`, so that it applies at most once
    /// however often it is sent: for a client that sends the same write again after a lost
    /// connection, with the same id. Inside its batch's transaction the write first looks for
    /// the marker of `id` in the table `_sqlweir_requests`: found, it does not run, and the
    /// ticket resolves with the receipt recorded the first time (without `RETURNING` rows);
    /// not found, it runs, and its marker is written in the same transaction, so it commits if
    /// and only if the write does. A rejected write leaves no marker (sent again, it runs
    /// again). Markers stay until [`Store::forget_requests`] drops them.
    ///
    /// On PostgreSQL this fails with `Unsupported` (`ErrorKind::Unsupported`): markers are
    /// SQLite only for now.
    ///
    /// ```
    /// use sqlweir::{params, Options, RequestId, Store};
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE t(x)"]))?;
    /// let sql = "INSERT INTO t(x) VALUES (?1)";
    /// let first = store.write_once(RequestId::new("client-7", 1), sql, params![42]).wait()?;
    /// // The answer was lost; the client sends it again, with the same id.
    /// let again = store.write_once(RequestId::new("client-7", 1), sql, params![42]).wait()?;
    /// assert_eq!(again, first, "answered from the marker, not applied again");
    /// assert_eq!(store.query_as::<i64>("SELECT count(*) FROM t", &[])?, vec![1]);
    /// store.forget_requests("client-7", 2)?; // the client heard the answers of 1 and below
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_once(&self, id: RequestId, sql: &str, params: Vec<Value>) -> Ticket<Receipt> {
        match self.check_request(&id) {
            Ok(()) => self.enqueue_write(Write::one(sql, params).once(id), DoneKind::One),
            Err(e) => Ticket::ready(Err(e)),
        }
    }

    /// [`Store::write_many`] recorded under the request id `id`: applied at most once, a
    /// resend answered with the first outcome (rows committed and rows rejected). See
    /// [`Store::write_once`].
    pub fn write_many_once(&self, id: RequestId, sql: &str, rows: Vec<Vec<Value>>) -> Ticket<ManyOutcome> {
        match self.check_request(&id) {
            Ok(()) => self.enqueue_write(Write::many(sql, rows).once(id), DoneKind::Many),
            Err(e) => Ticket::ready(Err(e)),
        }
    }

    /// Drops the markers of `origin` numbered below `below` (`u64::MAX`: all of them), once
    /// that sender has heard the answers and will not send those writes again. The markers go
    /// in the transaction of the next batch that commits (nothing runs for this alone), so the
    /// table stays as small as the writes still unanswered. On PostgreSQL, `Unsupported`.
    pub fn forget_requests(&self, origin: &str, below: u64) -> Result<(), WriteError> {
        if !self.shared().records_requests {
            return Err(unsupported_requests());
        }
        self.shared().pipeline().forget(origin, below);
        Ok(())
    }

    fn check_request(&self, id: &RequestId) -> Result<(), WriteError> {
        if !self.shared().records_requests {
            return Err(unsupported_requests());
        }
        if i64::try_from(id.seq).is_err() {
            return Err(WriteError::InvalidInput {
                message: format!("request number {} is above {}, the largest SQLite integer", id.seq, i64::MAX),
            });
        }
        Ok(())
    }

    pub(crate) fn enqueue_write<T: Send + 'static>(
        &self,
        write: Write,
        wrap: fn(Arc<Slot<T>>) -> DoneKind,
    ) -> Ticket<T> {
        if let Err(e) = write.check() {
            return Ticket::ready(Err(e));
        }
        if on_writer_thread() {
            return Ticket::ready(Err(from_writer_thread()));
        }
        let slot = Slot::new();
        match self.shared().push_deferring(Work::Write(write), Done::new(wrap(slot.clone()))) {
            Ok(wake) => {
                if wake == Wake::Now {
                    self.shared().wake_writer();
                }
                Ticket::in_group(slot, self.shared().clone(), wake == Wake::Deferred)
            }
            Err(refused) => Ticket::ready(Err(self.refusal(refused))),
        }
    }

    /// Why the pipeline handed an entry back; the entry's own ticket is disarmed (its owner
    /// hears the error from the caller, not through the slot) and its work dropped here.
    fn refusal(&self, refused: Refused) -> WriteError {
        match refused {
            PushError::Closed((_, done)) => {
                done.disarm();
                WriteError::Closed
            }
            PushError::Full((_, done)) => {
                done.disarm();
                WriteError::QueueFull { capacity: self.shared().pipeline().capacity() }
            }
        }
    }

    /// Runs `f` on the writer, between batches, inside one `BEGIN IMMEDIATE` transaction: read,
    /// decide, write, and commit only if `f` returns `Ok`. Its value comes back after COMMIT.
    ///
    /// On lock contention the whole transaction is rolled back and `f` runs again (same retry
    /// policy as batches), so `f` must be safe to re-run: keep its side effects inside the
    /// transaction. An `Err` from `f` (or a panic) rolls everything back and is returned.
    ///
    /// ```
    /// use sqlweir::{params, Options, Store, TxError};
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE c(n INTEGER)", "INSERT INTO c VALUES (0)"]))?;
    /// let n = store.transaction(|tx| {
    ///     let n: i64 = tx.query_as("SELECT n FROM c", &[])?[0];
    ///     tx.execute("UPDATE c SET n = ?1", params![n + 1])?;
    ///     Ok(n + 1)
    /// }).wait()?;
    /// assert_eq!(n, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transaction<R, F>(&self, f: F) -> TxTicket<R>
    where
        R: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<R, TxError> + Send + 'static,
    {
        if on_writer_thread() {
            return TxTicket { inner: Ticket::ready(Err(from_writer_thread())) };
        }
        let (job, slot) = tx::job(f);
        // A transaction is one entry and obeys the backpressure setting like a write.
        if let Err(refused) = self.shared().push(Work::Transaction(job), Done::none()) {
            let error = match &refused {
                PushError::Closed(_) => WriteError::Closed,
                PushError::Full(_) => WriteError::QueueFull { capacity: self.shared().pipeline().capacity() },
            };
            let (PushError::Closed((work, _)) | PushError::Full((work, _))) = refused;
            if let Work::Transaction(job) = work {
                job.fail(error);
            }
        }
        TxTicket { inner: Ticket::accepted(slot) }
    }

    /// Resolves when every write accepted before this call has resolved.
    pub fn flush(&self) -> Ticket<()> {
        if on_writer_thread() {
            return Ticket::ready(Err(from_writer_thread()));
        }
        let slot = Slot::new();
        match self.shared().flush(Done::new(DoneKind::Flush(slot.clone()))) {
            Ok(()) => Ticket::accepted(slot),
            Err(nothing_pending) => {
                nothing_pending.disarm();
                Ticket::ready(Ok(()))
            }
        }
    }

    /// Runs a query on the read pool; rows as values. Never waits for the writer; a query
    /// started after an ack sees that write.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        crate::read::check_params(params)?;
        self.handle.reads.query(sql, params)
    }

    /// The tables `sql` reads, sorted, each once, from SQLite's authorizer while preparing it
    /// (nothing runs): a view counts with the tables beneath it, joins, subqueries and CTEs with
    /// theirs. What [`Store::watch`] listens for.
    ///
    /// ```
    /// use sqlweir::{Options, Store};
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE t(x)", "CREATE VIEW v AS SELECT x FROM t"]))?;
    /// assert_eq!(store.tables_read("SELECT x FROM v")?, vec!["t", "v"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tables_read(&self, sql: &str) -> Result<Vec<String>, QueryError> {
        self.handle.reads.tables_read(sql)
    }

    /// Runs a query on a reader thread, for async callers: the future resolves with the rows
    /// without ever blocking the executor's thread (any executor; no runtime needed). The
    /// blocking [`Store::query`] stays the cheaper choice on a plain thread.
    ///
    /// ```
    /// use sqlweir::{params, Options, Store};
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE t(x)"]))?;
    /// store.write("INSERT INTO t(x) VALUES (?1)", params![7]).wait()?;
    /// let rows = futures::executor::block_on(store.query_async("SELECT x FROM t", &[]))?;
    /// assert_eq!(rows.rows.len(), 1);
    /// let xs: Vec<i64> = futures::executor::block_on(store.query_as_async("SELECT x FROM t", &[]))?;
    /// assert_eq!(xs, vec![7]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn query_async(&self, sql: &str, params: &[Value]) -> QueryTicket<Rows> {
        self.read_on_thread(sql, params, Ok)
    }

    /// [`Store::query_as`] for async callers: runs on a reader thread, decodes there.
    pub fn query_as_async<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> QueryTicket<Vec<T>> {
        self.read_on_thread(sql, params, |rows| decode(&rows))
    }

    fn read_on_thread<T: Send + 'static>(
        &self,
        sql: &str,
        params: &[Value],
        finish: fn(Rows) -> Result<T, QueryError>,
    ) -> QueryTicket<T> {
        if let Err(e) = crate::read::check_params(params) {
            return QueryTicket::ready(Err(e));
        }
        let slot = Slot::new();
        let answer = slot.clone();
        let deliver = Box::new(move |result: Result<Rows, QueryError>| answer.resolve(Ok(result.and_then(finish))));
        self.handle.read_threads.submit(&self.handle.reads, self.handle.read_connections, sql, params, deliver);
        QueryTicket::accepted(slot)
    }

    /// Runs a query and deserializes each row into `T`: structs and maps by column name,
    /// tuples by position, a single column into a scalar.
    ///
    /// ```
    /// use sqlweir::{params, Options, Store};
    /// #[derive(serde::Deserialize)]
    /// struct Event { id: i64, source: String }
    /// let store = Store::open_in_memory(Options::default().migrations(&["CREATE TABLE e(id INTEGER PRIMARY KEY, source TEXT)"]))?;
    /// store.write("INSERT INTO e(source) VALUES (?1)", params!["c1"]).wait()?;
    /// let events: Vec<Event> = store.query_as("SELECT id, source FROM e WHERE source = ?1", &params!["c1"])?;
    /// assert_eq!((events[0].id, events[0].source.as_str()), (1, "c1"));
    /// let n: Vec<i64> = store.query_as("SELECT count(*) FROM e", &[])?;
    /// assert_eq!(n, vec![1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn query_as<T: DeserializeOwned>(&self, sql: &str, params: &[Value]) -> Result<Vec<T>, QueryError> {
        decode(&self.query(sql, params)?)
    }

    /// Takes the exclusive job lock `name` for the calling thread (see [`Store::lock_as`]).
    pub fn lock(&self, name: &str, wait: Wait) -> Result<JobGuard, LockError> {
        self.lock_as(name, &this_holder(), wait)
    }

    /// Takes the exclusive job lock `name`, naming its holder. The lock holds across every
    /// process and machine that writes to this database: it stops two runs of one job, such as
    /// a scheduled sync and one started by an admin request, wherever they start.
    ///
    /// In this process the lock is taken first in memory (a job already running here is
    /// waited for without touching the database), then as a lease row in the database
    /// (`_sqlweir_jobs`; on PostgreSQL with a session advisory lock too), renewed while the
    /// guard lives and lost at its expiry ([`Options::job_lease`](crate::Options::job_lease))
    /// if the holder dies. Waiting for another process polls the row, and a waiter stays first
    /// in line for the next grant.
    pub fn lock_as(&self, name: &str, holder: &str, wait: Wait) -> Result<JobGuard, LockError> {
        let shared = self.shared();
        let deadline = match wait {
            Wait::FailFast => None,
            Wait::Timeout(d) => Some(Instant::now() + d),
        };
        let left = || deadline.and_then(|d| d.checked_duration_since(Instant::now())).unwrap_or_default();
        let in_progress = |holder: String, since_ms: u64| LockError::InProgress {
            name: name.to_owned(),
            holder,
            since: from_unix_ms(since_ms),
        };
        let mut poll = LEASE_POLL_FIRST;
        loop {
            // This process first: a job running here is waited for on the condvar.
            let local = {
                let mut jobs = shared.jobs();
                loop {
                    if shared.is_closed() {
                        return Err(LockError::Closed);
                    }
                    match jobs.try_acquire(name, holder, unix_ms(SystemTime::now())) {
                        Ok(token) => break token,
                        Err(status) => {
                            let left = left();
                            if left.is_zero() {
                                return Err(in_progress(status.holder, status.since_ms));
                            }
                            jobs =
                                shared.job_released.wait_timeout(jobs, left).unwrap_or_else(PoisonError::into_inner).0;
                        }
                    }
                }
            };
            // Then the database, for every other process.
            let refused = match self.handle.leases.attempt(name, holder, !left().is_zero()) {
                Ok((fence, lost)) => {
                    let leases = self.handle.leases.clone();
                    return Ok(JobGuard { shared: shared.clone(), token: Some(local), leases, fence, lost });
                }
                Err(refused) => refused,
            };
            shared.jobs().abandon(local);
            shared.job_released.notify_all();
            match refused {
                LeaseRefused::Database(e) => return Err(LockError::Database(e)),
                LeaseRefused::Busy(status) => {
                    let left = left();
                    if left.is_zero() {
                        return Err(in_progress(status.holder, status.since_ms));
                    }
                    std::thread::sleep(poll.min(left));
                    poll = (poll * 2).min(LEASE_POLL_MAX).min(self.handle.leases.ttl() / 4);
                }
            }
        }
    }

    /// Who holds the job lock `name`, if anyone, in any process (an unexpired lease). If the
    /// database cannot be read, what this process knows.
    pub fn job_status(&self, name: &str) -> Option<JobStatus> {
        match self.handle.leases.status(name) {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(job = name, error = %e, "reading the job lease failed; showing this process's view");
                self.shared().jobs().status(name)
            }
        }
    }

    /// The last runs (at most 20) of job `name`, oldest first, from every process. If the
    /// database cannot be read, this process's runs.
    pub fn job_history(&self, name: &str) -> Vec<JobRun> {
        match self.handle.leases.history(name) {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!(job = name, error = %e, "reading the job history failed; showing this process's runs");
                self.shared().jobs().history(name)
            }
        }
    }

    /// The commit feed from now on: after each committed batch that changed rows, its batch id
    /// and the tables it changed, once per batch (never per row, never for a batch rolled
    /// back). Any number of subscribers, on any threads; a slow one is told it lagged and
    /// never slows the writer. See [`Subscription`].
    ///
    /// On a PostgreSQL store the feed has nothing to publish (the backend does not report
    /// changed tables yet): the subscription ends at once.
    pub fn subscribe(&self) -> Subscription {
        self.handle.shared.feed.subscribe()
    }

    /// A snapshot of the counters, latencies, breaker state and database facts.
    pub fn metrics(&self) -> MetricsSnapshot {
        let shared = self.shared();
        let mut m = shared.pipeline().snapshot();
        m.journal_mode.clone_from(&shared.journal_mode);
        m.engine.clone_from(&shared.engine);
        m
    }

    /// Ok, degraded or failing, with the reason.
    pub fn health(&self) -> Health {
        let shared = self.shared();
        shared.pipeline().health(shared.now())
    }

    /// Flushes every accepted write, stops the writer, checkpoints the WAL and closes every
    /// connection. Writes after this fail with `Closed`. Closing twice is fine. Closes the store
    /// for every clone of this handle.
    ///
    /// Called from inside a transaction closure (the writer thread), it stops new writes and
    /// returns at once: the writer flushes what is queued after the closure and then stops.
    pub fn close(&self) -> Result<(), CloseError> {
        self.handle.shutdown()
    }
}

impl Handle {
    fn shutdown(&self) -> Result<(), CloseError> {
        let Some(thread) = lock(&self.writer).take() else { return Ok(()) };
        let shared = &self.shared;
        shared.close();
        if on_writer_thread() {
            // The writer is this very thread (the last handle went away inside a transaction
            // closure): joining would deadlock. The writer drains the queue, finishes and gives
            // the file back itself.
            if let Some(file) = lock(&self.file).take() {
                *lock(&shared.release_on_exit) = Some(file);
            }
            drop(thread);
            return Ok(());
        }
        let joined = thread.join();
        self.reads.close();
        self.read_threads.close();
        // The writer is gone: the file may be opened again.
        if let Some(file) = lock(&self.file).take() {
            file.release();
        }
        let Ok(finished) = joined else {
            // Whatever is still held fails with Closed as its entries drop.
            let drained = shared.pipeline().drain();
            drop(drained);
            return Err(CloseError::WriterPanicked);
        };
        finished
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the store on drop failed");
        }
    }
}

fn decode<T: DeserializeOwned>(rows: &Rows) -> Result<Vec<T>, QueryError> {
    rows.rows
        .iter()
        .enumerate()
        .map(|(i, r)| from_row(&rows.columns, r).map_err(|source| QueryError::Decode { row: i, source }))
        .collect()
}
