//! The store: opening, the write API, queries, job locks, metrics and closing.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, OpenFlags};
use serde::de::DeserializeOwned;
use sqlweir_core::{
    Health, JobLocks, JobRun, JobStatus, ManyOutcome, MetricsSnapshot, PushError, Receipt, Value, Write, WriteError,
    WriteQueue, WriteResult, WriterState, from_row,
};

use crate::engine::{Engine, Reads};
use crate::error::{CloseError, LockError, OpenError, QueryError};
use crate::job::{JobGuard, Wait, from_unix_ms, this_holder, unix_ms};
use crate::options::{Backpressure, Options, Synchronous};
use crate::read::{QueryTicket, ReadPool, ReadThreads, Rows};
use crate::sqlite::{SqliteBackend, classify};
use crate::ticket::{Admit, Slot, Ticket};
use crate::tx::{self, Tx, TxError, TxJob, TxTicket};
use crate::writer;
use sqlweir_sqlite::{MigrationError, ReadConnection};

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
}

/// State shared by the handles and the writer thread.
pub(crate) struct Shared {
    queue: Mutex<QueueState>,
    /// The writer waits here for work; signalled only when `writer_waiting` is set.
    work: Condvar,
    /// Blocked producers wait here for room; signalled only when some are waiting.
    room: Condvar,
    writer: Mutex<WriterState>,
    jobs: Mutex<JobLocks>,
    pub(crate) job_released: Condvar,
    origin: Instant,
    backpressure: Backpressure,
    closed: AtomicBool,
    journal_mode: String,
    engine_version: String,
    /// The file's claim when the last handle was dropped on the writer thread itself (a
    /// transaction closure held it): the writer cannot be joined from there, so it gives the
    /// claim back itself once it has drained the queue and stopped.
    release_on_exit: Mutex<Option<OpenFile>>,
}

thread_local! {
    /// Set on writer threads: a blocking wait for the writer from there would never end.
    static ON_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a store's writer (running a transaction closure).
pub(crate) fn on_writer_thread() -> bool {
    ON_WRITER.with(std::cell::Cell::get)
}

/// The error for a write queued from inside a transaction closure.
fn from_writer_thread() -> WriteError {
    WriteError::InvalidInput {
        message: "a write queued from inside a transaction closure would wait for the writer that runs \
                  the closure (a deadlock); use the closure's tx.execute, or queue it after the transaction"
            .into(),
    }
}

pub(crate) struct QueueState {
    pub(crate) queue: WriteQueue<Pending>,
    pub(crate) writer_waiting: bool,
    /// Flush markers queued: while any waits, the writer does not linger.
    pub(crate) flushes: usize,
    producers_waiting: usize,
    room_wakers: Vec<Waker>,
}

/// A queued entry and whom to tell.
pub(crate) struct Pending {
    pub(crate) op: Op,
    pub(crate) done: Done,
}

/// What a queued entry asks of the writer.
pub(crate) enum Op {
    /// A write, batched with its neighbours.
    Write(Write),
    /// A flush marker: resolves once everything before it has.
    Flush,
    /// A transaction closure: runs alone, between batches (it resolves its own ticket).
    Transaction(Box<dyn TxJob>),
}

/// The owner's side of a queued entry. Dropped unresolved (the writer panicked), it fails the
/// ticket with `Closed`, so no owner waits forever.
pub(crate) struct Done(Option<DoneKind>);

pub(crate) enum DoneKind {
    One(Arc<Slot<Receipt>>),
    Many(Arc<Slot<ManyOutcome>>),
    Flush(Arc<Slot<()>>),
    /// A transaction's ticket; the job resolves it with the closure's result.
    Transaction,
}

impl Done {
    /// Resolves with the write's result; the write goes along, to be freed by its owner.
    /// Its owner's waker is pushed to `wake`, for the writer to wake after the whole batch.
    pub(crate) fn complete(mut self, result: WriteResult, batch: u64, write: Write, wake: &mut Vec<Waker>) {
        let waker = match self.0.take() {
            Some(DoneKind::One(slot)) => slot.resolve_deferred(writer::one_receipt(result, batch), Some(write)),
            Some(DoneKind::Many(slot)) => slot.resolve_deferred(Ok(writer::many_outcome(result, batch)), Some(write)),
            Some(DoneKind::Flush(slot)) => slot.resolve_deferred(Ok(()), None),
            Some(DoneKind::Transaction) | None => None,
        };
        wake.extend(waker);
    }

    /// Drops the owner's side without resolving it: the entry was handed back, not accepted.
    /// (Dropping it armed would fail the ticket with `Closed`; forgetting it would leak the slot.)
    fn disarm(mut self) {
        self.0 = None;
    }

    pub(crate) fn fail(mut self, error: WriteError) {
        if let Some(kind) = self.0.take() {
            fail_kind(kind, error);
        }
    }

    pub(crate) fn flush(mut self) {
        if let Some(DoneKind::Flush(slot)) = self.0.take() {
            slot.resolve(Ok(()));
        }
    }
}

fn fail_kind(kind: DoneKind, error: WriteError) {
    match kind {
        DoneKind::One(slot) => slot.resolve(Err(error)),
        DoneKind::Many(slot) => slot.resolve(Err(error)),
        DoneKind::Flush(slot) => slot.resolve(Ok(())),
        DoneKind::Transaction => {}
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(kind) = self.0.take() {
            fail_kind(kind, WriteError::Closed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its state consistent at each step (queue operations
    // are single calls), so a panic elsewhere must not make the store unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    pub(crate) fn queue(&self) -> MutexGuard<'_, QueueState> {
        lock(&self.queue)
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, WriterState> {
        lock(&self.writer)
    }

    pub(crate) fn jobs(&self) -> MutexGuard<'_, JobLocks> {
        lock(&self.jobs)
    }

    pub(crate) fn wait_for_work<'a>(
        &self,
        q: MutexGuard<'a, QueueState>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, QueueState> {
        match timeout {
            None => self.work.wait(q).unwrap_or_else(PoisonError::into_inner),
            Some(t) => self.work.wait_timeout(q, t).unwrap_or_else(PoisonError::into_inner).0,
        }
    }

    /// Tells waiting producers that the queue has room.
    pub(crate) fn room_made(&self, q: &mut QueueState) {
        if q.producers_waiting > 0 {
            self.room.notify_all();
        }
        for w in q.room_wakers.drain(..) {
            w.wake();
        }
    }

    /// Enqueues, or hands the entry back when the queue is full.
    fn push(&self, q: &mut QueueState, pending: Pending, rows: usize) -> Result<(), PushError<Pending>> {
        q.queue.push(pending, rows, self.now())?;
        if q.writer_waiting {
            self.work.notify_one();
        }
        Ok(())
    }
}

/// A write waiting for room under `Backpressure::Wait`.
struct Waiting<T> {
    shared: Arc<Shared>,
    op: Option<Op>,
    rows: usize,
    wrap: fn(Arc<Slot<T>>) -> DoneKind,
}

impl<T: Send + 'static> Waiting<T> {
    fn push(&mut self, q: &mut QueueState) -> Option<Result<Arc<Slot<T>>, WriteError>> {
        if q.queue.is_closed() {
            return Some(Err(WriteError::Closed));
        }
        if !q.queue.has_room_for(self.rows) {
            return None;
        }
        let slot = Slot::new();
        let Some(op) = self.op.take() else { return Some(Err(WriteError::Closed)) };
        let pending = Pending { op, done: Done(Some((self.wrap)(slot.clone()))) };
        match self.shared.push(q, pending, self.rows) {
            Ok(()) => Some(Ok(slot)),
            Err(PushError::Full(p) | PushError::Closed(p)) => {
                // Cannot happen under the lock after the checks above; keep the write anyway.
                let Pending { op, done } = p;
                self.op = Some(op);
                done.disarm();
                None
            }
        }
    }
}

impl<T: Send + 'static> Admit<T> for Waiting<T> {
    fn try_admit(&mut self, waker: Option<&Waker>) -> Option<Result<Arc<Slot<T>>, WriteError>> {
        let shared = self.shared.clone();
        let mut q = shared.queue();
        let admitted = self.push(&mut q);
        if admitted.is_none()
            && let Some(w) = waker
        {
            q.room_wakers.push(w.clone());
        }
        admitted
    }

    fn admit_dropped(&mut self) {
        let Some(op) = self.op.take() else { return };
        let mut q = self.shared.queue();
        let pending = Pending { op, done: Done(None) };
        if q.queue.push_overflowing(pending, self.rows, self.shared.now()).is_err() {
            tracing::error!("a ticket waiting for room was dropped after close; its write was not applied");
            return;
        }
        if q.writer_waiting {
            self.shared.work.notify_one();
        }
        tracing::warn!(
            rows = self.rows,
            "a ticket waiting for room was dropped; its write was queued past the capacity \
             (await or wait tickets to get backpressure)"
        );
    }

    fn admit_blocking(&mut self) -> Result<Arc<Slot<T>>, WriteError> {
        let shared = self.shared.clone();
        let mut q = shared.queue();
        loop {
            if let Some(r) = self.push(&mut q) {
                return r;
            }
            q.producers_waiting += 1;
            q = shared.room.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.producers_waiting -= 1;
        }
    }
}

enum Target {
    File(PathBuf),
    Memory(String),
}

impl Target {
    fn describe(&self) -> PathBuf {
        match self {
            Target::File(p) => p.clone(),
            Target::Memory(uri) => PathBuf::from(uri),
        }
    }
}

static MEMORY_STORES: AtomicU64 = AtomicU64::new(0);

/// Database files open in this process: one file, one writer, even across `Store::open` calls.
static OPEN_FILES: Mutex<BTreeSet<FileId>> = Mutex::new(BTreeSet::new());

/// What a database file is, as the OS sees it: its device and inode where there are such
/// (every spelling, symlink and hard link of one file gives the same), else its canonical path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FileId {
    Inode(u64, u64),
    Path(PathBuf),
}

impl FileId {
    fn of(path: &Path) -> FileId {
        // A file that does not exist yet is created empty (SQLite reads an empty file as an
        // empty database), so that it has an identity before anyone else can link to it.
        // SQLite's special names (`:memory:`, `file:` URIs) are not paths: never create those.
        let special = path.to_str().is_some_and(|p| p.is_empty() || p == ":memory:" || p.starts_with("file:"));
        if !special && !path.exists() {
            let _ = std::fs::OpenOptions::new().write(true).create_new(true).open(path);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if let Ok(meta) = std::fs::metadata(path) {
                return FileId::Inode(meta.dev(), meta.ino());
            }
        }
        // Elsewhere (or when the file cannot be read: SQLite will say why) the canonical path
        // stands for the file; its directory must exist.
        if let Ok(canonical) = std::fs::canonicalize(path) {
            return FileId::Path(canonical);
        }
        FileId::Path(match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => {
                std::fs::canonicalize(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
                    .map_or_else(|_| path.to_path_buf(), |d| d.join(name))
            }
            _ => path.to_path_buf(),
        })
    }
}

/// A file's place in [`OPEN_FILES`], given back when the store's writer has stopped (or when
/// opening fails).
struct OpenFile(Mutex<Option<FileId>>);

impl OpenFile {
    /// Claims `path` for this process, or says it is already open.
    fn claim(path: &Path) -> Result<OpenFile, OpenError> {
        let key = FileId::of(path);
        if !lock(&OPEN_FILES).insert(key.clone()) {
            return Err(OpenError::AlreadyOpen { path: path.to_path_buf() });
        }
        Ok(OpenFile(Mutex::new(Some(key))))
    }

    fn release(&self) {
        if let Some(key) = lock(&self.0).take() {
            lock(&OPEN_FILES).remove(&key);
        }
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        self.release();
    }
}

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
        Store::with_engine(backend, Box::new(ReadPool::new(readers)), journal_mode, version, options)
    }

    /// Starts the writer thread on `engine` and assembles the store.
    pub(crate) fn with_engine<E: Engine>(
        engine: E,
        reads: Box<dyn Reads>,
        journal_mode: String,
        engine_version: String,
        options: Options,
    ) -> Result<Store, OpenError> {
        let seed = options.seed.unwrap_or_else(|| RandomState::new().hash_one(SystemTime::now()));
        let shared = Arc::new(Shared {
            queue: Mutex::new(QueueState {
                queue: WriteQueue::new(options.queue_capacity),
                writer_waiting: false,
                flushes: 0,
                producers_waiting: 0,
                room_wakers: Vec::new(),
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            writer: Mutex::new(WriterState::new(options.writer, seed)),
            jobs: Mutex::new(JobLocks::new()),
            job_released: Condvar::new(),
            origin: Instant::now(),
            backpressure: options.backpressure,
            closed: AtomicBool::new(false),
            journal_mode,
            engine_version,
            release_on_exit: Mutex::new(None),
        });
        let read_connections = options.read_connections;
        let for_writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sqlweir-writer".into())
            .spawn(move || {
                ON_WRITER.with(|on| on.set(true));
                let finished = writer::run(&for_writer, engine).finish();
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
        let rows = write.row_count();
        self.enqueue(Op::Write(write), rows, wrap)
    }

    /// Enqueues an entry of `rows` rows, following the backpressure setting when full.
    pub(crate) fn enqueue<T: Send + 'static>(
        &self,
        op: Op,
        rows: usize,
        wrap: fn(Arc<Slot<T>>) -> DoneKind,
    ) -> Ticket<T> {
        let shared = self.shared();
        let slot = Slot::new();
        let pending = Pending { op, done: Done(Some(wrap(slot.clone()))) };
        let refused = {
            let mut q = shared.queue();
            match shared.push(&mut q, pending, rows) {
                Ok(()) => return Ticket::accepted(slot),
                Err(refused) => refused,
            }
        };
        match refused {
            PushError::Closed(p) => {
                p.done.fail(WriteError::Closed);
                Ticket::ready(Err(WriteError::Closed))
            }
            PushError::Full(p) => {
                // Not accepted: take the entry back without resolving the slot.
                let Pending { op, done } = p;
                done.disarm();
                match shared.backpressure {
                    Backpressure::Fail => {
                        let capacity = shared.queue().queue.capacity();
                        Ticket::ready(Err(WriteError::QueueFull { capacity }))
                    }
                    Backpressure::Wait => {
                        Ticket::unaccepted(Box::new(Waiting { shared: shared.clone(), op: Some(op), rows, wrap }))
                    }
                }
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
        let shared = self.shared();
        let mut q = shared.queue();
        let pending = Pending { op: Op::Transaction(job), done: Done(Some(DoneKind::Transaction)) };
        // A transaction is one entry; it waits for room like a write would (blocking here is
        // short: the writer drains the queue) so it is never dropped.
        match shared.push(&mut q, pending, 1) {
            Ok(()) => TxTicket { inner: Ticket::accepted(slot) },
            Err(PushError::Closed(p)) => {
                drop(q);
                drop(p);
                TxTicket { inner: Ticket::ready(Err(WriteError::Closed)) }
            }
            Err(PushError::Full(p)) => {
                // Queue past the capacity rather than block or refuse: one entry, bounded by
                // the callers waiting on their tickets.
                let _ = q.queue.push_overflowing(p, 1, shared.now());
                if q.writer_waiting {
                    shared.work.notify_one();
                }
                TxTicket { inner: Ticket::accepted(slot) }
            }
        }
    }

    /// Resolves when every write accepted before this call has resolved.
    pub fn flush(&self) -> Ticket<()> {
        if on_writer_thread() {
            return Ticket::ready(Err(from_writer_thread()));
        }
        let shared = self.shared();
        let slot = Slot::new();
        let mut q = shared.queue();
        if q.queue.is_closed() {
            return Ticket::ready(Ok(()));
        }
        let pending = Pending { op: Op::Flush, done: Done(Some(DoneKind::Flush(slot.clone()))) };
        match shared.push(&mut q, pending, 0) {
            Ok(()) => {
                q.flushes += 1;
                Ticket::accepted(slot)
            }
            Err(_) => Ticket::ready(Ok(())),
        }
    }

    /// Runs a query on the read pool; rows as values. Never waits for the writer; a query
    /// started after an ack sees that write.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, QueryError> {
        crate::read::check_params(params)?;
        self.handle.reads.query(sql, params)
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

    /// Takes the exclusive job lock `name`, naming its holder. The lock lives in this store
    /// (this process): it stops two runs of one job inside a program, such as a scheduled sync
    /// and one started by an admin request.
    pub fn lock_as(&self, name: &str, holder: &str, wait: Wait) -> Result<JobGuard, LockError> {
        let shared = self.shared();
        let deadline = match wait {
            Wait::FailFast => None,
            Wait::Timeout(d) => Some(Instant::now() + d),
        };
        let mut jobs = shared.jobs();
        loop {
            if shared.closed.load(Ordering::Acquire) {
                return Err(LockError::Closed);
            }
            match jobs.try_acquire(name, holder, unix_ms(SystemTime::now())) {
                Ok(token) => return Ok(JobGuard { shared: shared.clone(), token: Some(token) }),
                Err(status) => {
                    let left = deadline.and_then(|d| d.checked_duration_since(Instant::now())).unwrap_or_default();
                    if left.is_zero() {
                        return Err(LockError::InProgress {
                            name: name.to_owned(),
                            holder: status.holder,
                            since: from_unix_ms(status.since_ms),
                        });
                    }
                    jobs = shared.job_released.wait_timeout(jobs, left).unwrap_or_else(PoisonError::into_inner).0;
                }
            }
        }
    }

    /// Who holds the job lock `name`, if anyone.
    pub fn job_status(&self, name: &str) -> Option<JobStatus> {
        self.shared().jobs().status(name)
    }

    /// The last runs (at most 20) of job `name`, oldest first.
    pub fn job_history(&self, name: &str) -> Vec<JobRun> {
        self.shared().jobs().history(name)
    }

    /// A snapshot of the counters, latencies, breaker state and database facts.
    pub fn metrics(&self) -> MetricsSnapshot {
        let shared = self.shared();
        let (depth, capacity, accepted) = {
            let q = shared.queue();
            (q.queue.rows(), q.queue.capacity(), q.queue.accepted())
        };
        let mut m = shared.writer().snapshot(depth, capacity, accepted);
        m.journal_mode.clone_from(&shared.journal_mode);
        m.sqlite_version.clone_from(&shared.engine_version);
        m
    }

    /// Ok, degraded or failing, with the reason.
    pub fn health(&self) -> Health {
        let shared = self.shared();
        let (depth, capacity) = {
            let q = shared.queue();
            (q.queue.rows(), q.queue.capacity())
        };
        shared.writer().health(depth, capacity, shared.now())
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
        shared.closed.store(true, Ordering::Release);
        shared.job_released.notify_all();
        {
            let mut q = shared.queue();
            q.queue.close();
            shared.work.notify_all();
            shared.room.notify_all();
            for w in q.room_wakers.drain(..) {
                w.wake();
            }
        }
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
            // Whatever is still queued fails with Closed as its entries drop.
            let drained = shared.queue().queue.take(usize::MAX);
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

fn open_writer(target: &Target, options: &Options) -> Result<Connection, OpenError> {
    let path = target.describe();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match target {
        Target::File(p) => Connection::open_with_flags(p, flags),
        Target::Memory(uri) => Connection::open_with_flags(uri, flags),
    }
    .map_err(|e| open_failure(&path, classify(e)))?;
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(OpenError::ReadOnly { path, source: None });
    }
    let setup = |e| open_failure(&path, classify(e));
    conn.busy_timeout(options.busy_timeout).map_err(setup)?;
    conn.set_prepared_statement_cache_capacity(256);
    // Reading the journal mode is the first access to the file: a non-database fails here.
    if let Target::File(_) = target {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(setup)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "the database refused WAL; reads may wait for commits");
        }
    } else {
        conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0)).map_err(setup)?;
    }
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(setup)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(setup)?;
    migrate(&conn, &options.migrations)?;
    Ok(conn)
}

fn open_reader(target: &Target) -> Result<ReadConnection, OpenError> {
    let path = target.describe();
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match target {
        Target::File(p) => Connection::open_with_flags(p, flags),
        Target::Memory(uri) => Connection::open_with_flags(uri, flags),
    }
    .map_err(|e| open_failure(&path, classify(e)))?;
    // Readers wait on the rare locks a WAL reader can meet (recovery, a memdb commit).
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| OpenError::Setup(classify(e)))?;
    conn.set_prepared_statement_cache_capacity(64);
    ReadConnection::new(conn).map_err(OpenError::Setup)
}

fn open_failure(path: &Path, e: sqlweir_core::BackendError) -> OpenError {
    let path = path.to_path_buf();
    match e.code.map(|c| c & 0xff) {
        Some(rusqlite::ffi::SQLITE_NOTADB) => OpenError::NotADatabase { path, source: e },
        Some(rusqlite::ffi::SQLITE_READONLY) => OpenError::ReadOnly { path, source: Some(e) },
        Some(rusqlite::ffi::SQLITE_CANTOPEN | rusqlite::ffi::SQLITE_PERM) => OpenError::CannotOpen { path, source: e },
        _ => OpenError::Setup(e),
    }
}

fn migrate(conn: &Connection, steps: &[String]) -> Result<(), OpenError> {
    sqlweir_sqlite::migrate(conn, steps).map_err(|e| match e {
        MigrationError::TooNew { found, known } => OpenError::SchemaTooNew { found, known },
        MigrationError::Step { step, source } => OpenError::Migration { step, source },
        MigrationError::Setup(source) => OpenError::Setup(source),
    })
}
