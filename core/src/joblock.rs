//! Named exclusive job locks ("sync already in progress") with status and a short history.
//!
//! The host supplies wall-clock milliseconds and does any waiting; this module only decides.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Runs kept per job name.
pub const HISTORY_LEN: usize = 20;

/// Who holds a job lock, since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    /// The holder's description (thread, process, or what the caller named).
    pub holder: String,
    /// Wall-clock milliseconds since the Unix epoch when it was taken.
    pub since_ms: u64,
}

/// How a job run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum JobOutcome {
    /// The holder reported success, or released the guard normally.
    Succeeded,
    /// The holder reported failure (or panicked), with a reason.
    Failed(String),
}

/// One finished run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobRun {
    /// Who ran it.
    pub holder: String,
    /// When it started (Unix ms).
    pub started_ms: u64,
    /// How long it held the lock, in ms.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: JobOutcome,
}

/// Proof of holding a job lock; give it back to [`JobLocks::release`].
#[derive(Debug, PartialEq, Eq)]
pub struct JobToken {
    name: String,
    id: u64,
}

impl JobToken {
    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug)]
struct Held {
    status: JobStatus,
    id: u64,
}

/// The table of job locks.
#[derive(Debug, Default)]
pub struct JobLocks {
    held: BTreeMap<String, Held>,
    history: BTreeMap<String, VecDeque<JobRun>>,
    next_id: u64,
}

impl JobLocks {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the lock, or reports who has it.
    pub fn try_acquire(&mut self, name: &str, holder: &str, now_ms: u64) -> Result<JobToken, JobStatus> {
        if let Some(h) = self.held.get(name) {
            return Err(h.status.clone());
        }
        self.next_id += 1;
        let status = JobStatus { holder: holder.to_owned(), since_ms: now_ms };
        self.held.insert(name.to_owned(), Held { status, id: self.next_id });
        Ok(JobToken { name: name.to_owned(), id: self.next_id })
    }

    /// Gives the lock back and records the run. A stale token (already released) is ignored.
    pub fn release(&mut self, token: JobToken, outcome: JobOutcome, now_ms: u64) {
        let Some(held) = self.held.get(&token.name) else { return };
        if held.id != token.id {
            return;
        }
        let held = self.held.remove(&token.name).expect("entry was just read");
        let runs = self.history.entry(token.name).or_default();
        if runs.len() == HISTORY_LEN {
            runs.pop_front();
        }
        runs.push_back(JobRun {
            holder: held.status.holder,
            started_ms: held.status.since_ms,
            duration_ms: now_ms.saturating_sub(held.status.since_ms),
            outcome,
        });
    }

    /// Who holds `name` now, if anyone.
    pub fn status(&self, name: &str) -> Option<JobStatus> {
        self.held.get(name).map(|h| h.status.clone())
    }

    /// The last runs of `name`, oldest first (at most [`HISTORY_LEN`]).
    pub fn history(&self, name: &str) -> Vec<JobRun> {
        self.history.get(name).map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_sees_the_first() {
        let mut locks = JobLocks::new();
        let t = locks.try_acquire("sync", "cron", 1000).unwrap();
        let busy = locks.try_acquire("sync", "admin", 1500).unwrap_err();
        assert_eq!(busy, JobStatus { holder: "cron".into(), since_ms: 1000 });
        assert!(locks.try_acquire("other", "admin", 1500).is_ok(), "names are independent");
        locks.release(t, JobOutcome::Succeeded, 4000);
        assert_eq!(locks.status("sync"), None);
        let runs = locks.history("sync");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].duration_ms, 3000);
        assert!(locks.try_acquire("sync", "admin", 5000).is_ok());
    }

    #[test]
    fn history_keeps_the_last_twenty() {
        let mut locks = JobLocks::new();
        for i in 0..25u64 {
            let t = locks.try_acquire("job", "me", i * 10).unwrap();
            let outcome = if i % 2 == 0 { JobOutcome::Succeeded } else { JobOutcome::Failed(format!("run {i}")) };
            locks.release(t, outcome, i * 10 + 5);
        }
        let runs = locks.history("job");
        assert_eq!(runs.len(), HISTORY_LEN);
        assert_eq!(runs[0].started_ms, 50);
        assert_eq!(runs[19].outcome, JobOutcome::Succeeded);
        assert_eq!(runs[18].outcome, JobOutcome::Failed("run 23".into()));
    }
}
