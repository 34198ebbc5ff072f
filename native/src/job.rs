//! Job locks: "only one nightly sync at a time", with who holds it and the last runs, across
//! every process and machine that writes to the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlweir_core::{JobOutcome, JobToken};

use crate::error::LockError;
use crate::lease::Leases;
use crate::shared::Shared;

/// How [`Store::lock`](crate::Store::lock) waits when the job is already running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once with `LockError::InProgress`.
    FailFast,
    /// Wait up to this long for the holder to finish, then fail with `InProgress`.
    Timeout(Duration),
}

/// Holds a job lock; releasing it (drop, [`succeed`](Self::succeed), [`fail`](Self::fail) or
/// [`finish`](Self::finish)) records the run in the job's history. Dropped during a panic, the
/// run is recorded as failed.
///
/// The lock is a lease in the database, renewed in the background while the guard lives. Each
/// grant carries a [fencing token](Self::token) one above the previous grant's: a holder that
/// stalled past its lease's expiry (a long GC pause, a suspended VM) may find its job taken by
/// another process, and then its token is refused by [`check`](Self::check), by the release,
/// and by any write you fence on it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct JobGuard {
    pub(crate) shared: Arc<Shared>,
    pub(crate) token: Option<JobToken>,
    pub(crate) leases: Arc<Leases>,
    pub(crate) fence: u64,
    /// Set by the renewal thread when the lease was found taken by another holder.
    pub(crate) lost: Arc<AtomicBool>,
}

impl JobGuard {
    /// The job's name.
    pub fn name(&self) -> &str {
        self.token.as_ref().map_or("", JobToken::name)
    }

    /// The fencing token of this grant: larger than every earlier grant's of this job, in every
    /// process. Hand it to whatever the job writes to, and have that refuse a token lower than
    /// the highest it saw; in the same database, fence a write on the lease row:
    /// `... WHERE EXISTS (SELECT 1 FROM _sqlweir_jobs WHERE name = ?1 AND token = ?2 AND holder IS NOT NULL)`.
    pub fn token(&self) -> u64 {
        self.fence
    }

    /// Asks the database whether this guard still holds the job: `Err(LockError::Lost)` when
    /// its lease expired and was taken by another holder (or expired and is about to be).
    pub fn check(&self) -> Result<(), LockError> {
        let lost = || LockError::Lost { name: self.name().to_owned(), token: self.fence };
        if self.lost.load(Ordering::Acquire) {
            return Err(lost());
        }
        match self.leases.holds(self.name(), self.fence) {
            Ok(true) => Ok(()),
            Ok(false) => Err(lost()),
            Err(e) => Err(LockError::Database(e)),
        }
    }

    /// Releases the lock, recording success.
    pub fn succeed(self) {
        let _ = self.finish(JobOutcome::Succeeded);
    }

    /// Releases the lock, recording a failure and why.
    pub fn fail(self, reason: impl Into<String>) {
        let _ = self.finish(JobOutcome::Failed(reason.into()));
    }

    /// Releases the lock, recording `outcome`; says whether the lease was still this guard's.
    /// `Err(LockError::Lost)`: another holder took it after it expired, and this run was
    /// recorded (by that holder) as ended by expiry.
    pub fn finish(mut self, outcome: JobOutcome) -> Result<(), LockError> {
        self.release(outcome)
    }

    fn release(&mut self, outcome: JobOutcome) -> Result<(), LockError> {
        let Some(token) = self.token.take() else { return Ok(()) };
        let name = token.name().to_owned();
        // The database first: a waiter of this process woken below finds the lease free.
        let released = self.leases.release(&name, self.fence, &outcome);
        self.shared.jobs().release(token, outcome, unix_ms(SystemTime::now()));
        self.shared.job_released.notify_all();
        match released {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::warn!(job = %name, token = self.fence, "job lock was lost before its release: its lease expired and was taken");
                Err(LockError::Lost { name, token: self.fence })
            }
            Err(e) => {
                tracing::warn!(job = %name, error = %e, "releasing a job lease failed; it ends at its expiry");
                Err(LockError::Database(e))
            }
        }
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            JobOutcome::Failed("the holder panicked".into())
        } else {
            JobOutcome::Succeeded
        };
        let _ = self.release(outcome);
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Describes the calling thread, as the default holder name.
pub(crate) fn this_holder() -> String {
    let t = std::thread::current();
    let name = t.name().map_or_else(|| format!("{:?}", t.id()), str::to_owned);
    format!("pid {} thread {name}", std::process::id())
}
