//! Job locks: "only one nightly sync at a time", with who holds it and the last runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlweir_core::{JobOutcome, JobToken};

use crate::shared::Shared;

/// How [`Store::lock`](crate::Store::lock) waits when the job is already running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once with `LockError::InProgress`.
    FailFast,
    /// Wait up to this long for the holder to finish, then fail with `InProgress`.
    Timeout(Duration),
}

/// Holds a job lock; releasing it (drop, [`succeed`](Self::succeed) or [`fail`](Self::fail))
/// records the run in the job's history. Dropped during a panic, the run is recorded as failed.
#[must_use = "the lock is released when the guard is dropped"]
pub struct JobGuard {
    pub(crate) shared: Arc<Shared>,
    pub(crate) token: Option<JobToken>,
}

impl JobGuard {
    /// The job's name.
    pub fn name(&self) -> &str {
        self.token.as_ref().map_or("", JobToken::name)
    }

    /// Releases the lock, recording success.
    pub fn succeed(mut self) {
        self.release(JobOutcome::Succeeded);
    }

    /// Releases the lock, recording a failure and why.
    pub fn fail(mut self, reason: impl Into<String>) {
        self.release(JobOutcome::Failed(reason.into()));
    }

    fn release(&mut self, outcome: JobOutcome) {
        if let Some(token) = self.token.take() {
            self.shared.jobs().release(token, outcome, unix_ms(SystemTime::now()));
            self.shared.job_released.notify_all();
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
        self.release(outcome);
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
