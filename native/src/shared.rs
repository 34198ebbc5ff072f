//! What a store's handles and its writer thread share: the write pipeline (the core's machine),
//! the writer's wake-up, the job locks and the facts learned at open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlweir_core::{JobLocks, Pipeline, PushError, Work};

use crate::files::OpenFile;
use crate::ticket::Done;
use crate::tx::TxJob;

/// The core's write lifecycle with this crate's tickets and transaction closures.
pub(crate) type WritePipeline = Pipeline<Done, Box<dyn TxJob>>;

/// An entry handed back by the pipeline (closed, or full under `Backpressure::Fail`).
pub(crate) type Refused = PushError<(Work<Box<dyn TxJob>>, Done)>;

pub(crate) struct Shared {
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
    /// The file's claim when the last handle was dropped on the writer thread itself (a
    /// transaction closure held it): the writer cannot be joined from there, so it gives the
    /// claim back itself once it has drained the pipeline and stopped.
    pub(crate) release_on_exit: Mutex<Option<OpenFile>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its state consistent at each step (pipeline operations
    // are single calls), so a panic elsewhere must not make the store unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// Set on writer threads: a blocking wait for the writer from there would never end.
    static ON_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as a store's writer.
pub(crate) fn mark_writer_thread() {
    ON_WRITER.with(|on| on.set(true));
}

/// Whether the calling thread is a store's writer (running a transaction closure).
pub(crate) fn on_writer_thread() -> bool {
    ON_WRITER.with(std::cell::Cell::get)
}

impl Shared {
    pub(crate) fn new(pipeline: WritePipeline, journal_mode: String, engine: String) -> Self {
        Shared {
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
        let pushed = self.pipeline().push(work, done, self.now())?;
        if pushed.wake {
            self.work.notify_one();
        }
        Ok(())
    }

    /// Asks for `done` to be resolved once everything accepted so far has settled; hands it
    /// back when nothing is pending.
    pub(crate) fn flush(&self, done: Done) -> Result<(), Done> {
        let pushed = self.pipeline().flush(done)?;
        if pushed.wake {
            self.work.notify_one();
        }
        Ok(())
    }

    /// The writer waits for work, at most `timeout`.
    pub(crate) fn wait_for_work<'a>(
        &self,
        p: MutexGuard<'a, WritePipeline>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, WritePipeline> {
        match timeout {
            None => self.work.wait(p).unwrap_or_else(PoisonError::into_inner),
            Some(t) => self.work.wait_timeout(p, t).unwrap_or_else(PoisonError::into_inner).0,
        }
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
