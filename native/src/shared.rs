//! What a store's handles and its writer thread share: the write pipeline (the core's machine),
//! the writer's wake-up, the job locks and the facts learned at open.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlweir_core::{JobLocks, Pipeline, PushError, Work};

use crate::engine::Engine;
use crate::feed::FeedHub;
use crate::files::OpenFile;
use crate::mutex::lock;
use crate::options::GroupWait;
use crate::ticket::Done;
use crate::tx::TxJob;

/// The writer thread is running (it will poll the pipeline again).
const RUNNING: u8 = 0;
/// It waits for work until woken.
const WAITING: u8 = 1;
/// It waits at most `NAP` (write groups are active): an entry pushed now is picked up by then
/// even if nobody wakes it.
const NAPPING: u8 = 2;

/// How long the writer thread naps while write groups commit the writes: what a write whose
/// ticket nobody waits on may wait before the writer thread runs it.
const NAP: Duration = Duration::from_micros(250);
/// Write groups count as active this long after a leader's last batch.
const GROUPS_ACTIVE: Duration = Duration::from_millis(100);

/// What a pushed entry needs done about the writer thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Nothing: it is running, or napping and will look soon.
    No,
    /// Wake it now: it waits until woken.
    Now,
    /// It naps: a blocked owner may commit the entry itself; an awaiting one wakes it.
    Deferred,
}

/// The core's write lifecycle with this crate's tickets and transaction closures.
pub(crate) type WritePipeline = Pipeline<Done, Box<dyn TxJob>>;

/// An entry handed back by the pipeline (closed, or full under `Backpressure::Fail`).
pub(crate) type Refused = PushError<(Work<Box<dyn TxJob>>, Done)>;

pub(crate) struct Shared {
    /// The write connection. Whoever holds this lock runs the pipeline's batches: the writer
    /// thread, or a blocked caller leading its write group. It is taken and given back, never
    /// shared; `None` once the writer has stopped. Lock order: this before `pipeline`.
    conn: Mutex<Option<Box<dyn Engine>>>,
    /// Callers waiting a little for the connection to come free (a write group's followers):
    /// while any does, a leader that gives the connection back need not wake the writer.
    pub(crate) spinners: AtomicUsize,
    /// How a follower waits before it blocks.
    pub(crate) group_wait: GroupWait,
    /// How the writer thread waits on `work` (`RUNNING`, `WAITING`, `NAPPING`; set by it under
    /// the pipeline lock).
    writer_state: AtomicU8,
    /// Host time (µs) of the last batch a write group's leader ran.
    led_at: AtomicU64,
    /// How long (µs) the last batch's attempt took, whoever ran it: whether a wait for the
    /// next one is shorter than a sleep.
    pub(crate) last_batch_us: AtomicU64,
    pipeline: Mutex<WritePipeline>,
    /// The writer waits here for work; signalled when the pipeline says it waits.
    work: Condvar,
    jobs: Mutex<JobLocks>,
    pub(crate) job_released: Condvar,
    origin: Instant,
    closed: AtomicBool,
    /// The journal mode and the engine with its version, learned at open.
    pub(crate) journal_mode: String,
    pub(crate) engine: String,
    /// Whether the engine keeps request markers (`Store::write_once`).
    pub(crate) records_requests: bool,
    /// The file's claim when the last handle was dropped on the writer thread itself (a
    /// transaction closure held it): the writer cannot be joined from there, so it gives the
    /// claim back itself once it has drained the pipeline and stopped.
    pub(crate) release_on_exit: Mutex<Option<OpenFile>>,
    /// The commit feed: published after each committed batch, closed when the writer stops.
    pub(crate) feed: Arc<FeedHub>,
}

thread_local! {
    /// Set on writer threads: a blocking wait for the writer from there would never end.
    static ON_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as a store's writer.
pub(crate) fn mark_writer_thread() {
    ON_WRITER.with(|on| on.set(true));
}

/// Marks the calling thread as the writer while it leads a write group (it may run a
/// transaction closure); restores the mark when dropped.
pub(crate) struct OnWriter(bool);

impl OnWriter {
    pub(crate) fn enter() -> OnWriter {
        OnWriter(ON_WRITER.with(|on| on.replace(true)))
    }
}

impl Drop for OnWriter {
    fn drop(&mut self) {
        ON_WRITER.with(|on| on.set(self.0));
    }
}

/// Whether the calling thread is a store's writer (running a transaction closure).
pub(crate) fn on_writer_thread() -> bool {
    ON_WRITER.with(std::cell::Cell::get)
}

impl Shared {
    pub(crate) fn new(
        conn: Box<dyn Engine>,
        pipeline: WritePipeline,
        group_wait: GroupWait,
        journal_mode: String,
        engine: String,
        feed: FeedHub,
    ) -> Self {
        let records_requests = conn.records_requests();
        Shared {
            records_requests,
            feed: Arc::new(feed),
            conn: Mutex::new(Some(conn)),
            spinners: AtomicUsize::new(0),
            last_batch_us: AtomicU64::new(0),
            group_wait,
            writer_state: AtomicU8::new(RUNNING),
            led_at: AtomicU64::new(0),
            pipeline: Mutex::new(pipeline),
            work: Condvar::new(),
            jobs: Mutex::new(JobLocks::new()),
            job_released: Condvar::new(),
            origin: Instant::now(),
            closed: AtomicBool::new(false),
            journal_mode,
            engine,
            release_on_exit: Mutex::new(None),
        }
    }

    /// Host time: monotonic, since the store opened.
    pub(crate) fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    pub(crate) fn pipeline(&self) -> MutexGuard<'_, WritePipeline> {
        lock(&self.pipeline)
    }

    pub(crate) fn jobs(&self) -> MutexGuard<'_, JobLocks> {
        lock(&self.jobs)
    }

    /// Hands an entry to the pipeline, waking the writer if it waits for work.
    pub(crate) fn push(&self, work: Work<Box<dyn TxJob>>, done: Done) -> Result<(), Refused> {
        if self.push_deferring(work, done)? != Wake::No {
            self.wake_writer();
        }
        Ok(())
    }

    /// Hands an entry to the pipeline and says what the writer thread needs: woken now (the
    /// caller does it), or nothing, or (while write groups are active) a wake-up the caller may
    /// defer, because a blocked owner may commit the entry itself (see `Lead`).
    pub(crate) fn push_deferring(&self, work: Work<Box<dyn TxJob>>, done: Done) -> Result<Wake, Refused> {
        let mut p = self.pipeline();
        // The pipeline's own "wake" answer assumes one driver; the writer thread's state says
        // how it waits.
        p.push(work, done, self.now())?;
        Ok(match self.writer_state.load(Ordering::SeqCst) {
            WAITING => Wake::Now,
            NAPPING => Wake::Deferred,
            _ => Wake::No,
        })
    }

    /// Notes that a write group's leader ran a batch: the writer thread naps instead of
    /// waiting, so pushes need not wake it.
    pub(crate) fn led(&self) {
        self.led_at.store(self.now().as_micros() as u64, Ordering::Relaxed);
    }

    /// Wakes the writer thread if it waits for work.
    pub(crate) fn wake_writer(&self) {
        self.work.notify_one();
    }

    /// The write connection, for the writer thread (blocks while a leader holds it).
    pub(crate) fn conn(&self) -> MutexGuard<'_, Option<Box<dyn Engine>>> {
        lock(&self.conn)
    }

    /// The write connection if nobody holds it, for a write group's leader.
    pub(crate) fn try_conn(&self) -> Option<MutexGuard<'_, Option<Box<dyn Engine>>>> {
        match self.conn.try_lock() {
            Ok(conn) => Some(conn),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Asks for `done` to be resolved once everything accepted so far has settled; hands it
    /// back when nothing is pending.
    pub(crate) fn flush(&self, done: Done) -> Result<(), Done> {
        let mut p = self.pipeline();
        p.flush(done)?;
        let state = self.writer_state.load(Ordering::SeqCst);
        drop(p);
        if state != RUNNING {
            self.wake_writer();
        }
        Ok(())
    }

    /// The writer waits for work, at most `timeout`.
    pub(crate) fn wait_for_work<'a>(
        &self,
        p: MutexGuard<'a, WritePipeline>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, WritePipeline> {
        // While leaders commit the writes, nap instead: a write nobody waits on is still run
        // within a nap, and its push needs no wake-up.
        let since_led = self.now().saturating_sub(Duration::from_micros(self.led_at.load(Ordering::Relaxed)));
        let (state, timeout) = match timeout {
            _ if since_led < GROUPS_ACTIVE && self.led_at.load(Ordering::Relaxed) > 0 => {
                (NAPPING, Some(timeout.map_or(NAP, |t| t.min(NAP))))
            }
            None => (WAITING, None),
            Some(t) => (NAPPING, Some(t)),
        };
        self.writer_state.store(state, Ordering::SeqCst);
        let p = match timeout {
            None => self.work.wait(p).unwrap_or_else(PoisonError::into_inner),
            Some(t) => self.work.wait_timeout(p, t).unwrap_or_else(PoisonError::into_inner).0,
        };
        self.writer_state.store(RUNNING, Ordering::SeqCst);
        p
    }

    /// Refuses new writes and job locks; what is accepted still runs, then the writer stops.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pipeline().close();
        self.work.notify_all();
        self.job_released.notify_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
