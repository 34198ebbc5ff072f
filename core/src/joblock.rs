//! Named exclusive job locks ("sync already in progress") with status and a short history.
//!
//! Two layers, both decisions only: [`JobLocks`], the table of one process (or one browser
//! leader), and [`decide`], the rule for a lease row in the database that every process of
//! every machine writing to that database obeys (see [`Lease`]). The host supplies wall-clock
//! milliseconds, does the I/O and any waiting.

use std::collections::{HashMap, VecDeque};

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
    held: HashMap<String, Held>,
    history: HashMap<String, VecDeque<JobRun>>,
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

    /// Gives the lock back without recording a run: the holder never ran the job (the lease in
    /// the database was refused). A stale token is ignored.
    pub fn abandon(&mut self, token: JobToken) {
        let JobToken { name, id } = token;
        if self.held.get(&name).is_some_and(|h| h.id == id) {
            self.held.remove(&name);
        }
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

/// A job's lease row, as the database keeps it: who holds the job until when, the fencing
/// token of the latest grant, and who waits to be next.
///
/// The row outlives its holders: `token` only grows, by one at each grant, so a holder whose
/// lease expired and was granted to someone else carries a token lower than the row's and is
/// refused everywhere the token is checked (renewal, release, fenced writes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// The holder's description; `None` when the job is free.
    pub holder: Option<String>,
    /// The holding store's unique id (one per open store, in any process or machine).
    pub owner: Option<String>,
    /// The fencing token of the latest grant (0: never granted).
    pub token: u64,
    /// When the latest grant was made (Unix ms).
    pub since_ms: u64,
    /// When the lease ends unless renewed (Unix ms).
    pub expires_ms: u64,
    /// The store waiting to be next, if any, with its holder's description, until when.
    pub queued: Option<(String, String, u64)>,
}

/// What [`decide`] says about one attempt to take a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Take it: write `token` (the row's plus one) with the caller as holder until now + the
    /// lease time. `expired` is the previous holder's run when it ended by expiry (it died or
    /// lost the database without releasing): record it in the history.
    Grant {
        /// The new fencing token.
        token: u64,
        /// The run that ended by expiry, to record.
        expired: Option<JobRun>,
    },
    /// Someone holds it (or is next in line). With `queue`, record the caller as next in line.
    Busy {
        /// Who holds it, or who is next.
        status: JobStatus,
        /// Whether the caller should take the queue slot.
        queue: bool,
    },
}

/// Why an expired lease's run is recorded as failed.
pub const EXPIRED: &str = "lease expired: the holder stopped renewing it (it died or lost the database)";

/// The lease rule, the same for every process: a lease is free when it has no holder or its
/// expiry has passed; a free lease goes to the store next in line while that store keeps
/// polling (so two processes contending take turns instead of one starving the other), else to
/// anyone. `owner` is the caller's store id; `wants_queue` when the caller will try again.
pub fn decide(lease: Option<&Lease>, owner: &str, now_ms: u64, wants_queue: bool) -> LeaseDecision {
    let empty = Lease::default();
    let lease = lease.unwrap_or(&empty);
    let queue_free = lease.queued.as_ref().is_none_or(|(o, _, until)| o == owner || *until <= now_ms);
    if let Some(holder) = &lease.holder
        && lease.expires_ms > now_ms
    {
        let status = JobStatus { holder: holder.clone(), since_ms: lease.since_ms };
        return LeaseDecision::Busy { status, queue: wants_queue && queue_free };
    }
    if !queue_free && let Some((_, next, _)) = &lease.queued {
        let status = JobStatus { holder: format!("{next} (next in line)"), since_ms: now_ms };
        return LeaseDecision::Busy { status, queue: false };
    }
    let expired = lease.holder.as_ref().map(|holder| JobRun {
        holder: holder.clone(),
        started_ms: lease.since_ms,
        duration_ms: lease.expires_ms.saturating_sub(lease.since_ms),
        outcome: JobOutcome::Failed(EXPIRED.into()),
    });
    LeaseDecision::Grant { token: lease.token + 1, expired }
}

/// Whether the store `owner` holding `token` may renew or release the lease: its token is
/// still the latest grant and nobody released it. (A lease past its expiry that nobody took
/// yet may still be renewed: no other holder exists.)
pub fn still_granted(lease: Option<&Lease>, owner: &str, token: u64) -> bool {
    lease.is_some_and(|l| l.token == token && l.holder.is_some() && l.owner.as_deref() == Some(owner))
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

    fn held(owner: &str, token: u64, since: u64, expires: u64) -> Lease {
        Lease {
            holder: Some(format!("{owner}'s job")),
            owner: Some(owner.into()),
            token,
            since_ms: since,
            expires_ms: expires,
            queued: None,
        }
    }

    #[test]
    fn a_lease_goes_to_one_holder_until_it_expires_and_tokens_only_grow() {
        assert_eq!(decide(None, "a", 1000, false), LeaseDecision::Grant { token: 1, expired: None });
        let lease = held("a", 1, 1000, 2000);
        assert!(matches!(
            decide(Some(&lease), "b", 1999, false),
            LeaseDecision::Busy { status, queue: false } if status.holder == "a's job" && status.since_ms == 1000
        ));
        assert!(matches!(decide(Some(&lease), "a", 1500, false), LeaseDecision::Busy { .. }), "no re-entry");
        let LeaseDecision::Grant { token, expired: Some(run) } = decide(Some(&lease), "b", 2000, false) else {
            panic!("an expired lease is free")
        };
        assert_eq!(token, 2);
        assert_eq!((run.holder.as_str(), run.started_ms, run.duration_ms), ("a's job", 1000, 1000));
        assert_eq!(run.outcome, JobOutcome::Failed(EXPIRED.into()));
        let released = Lease { holder: None, owner: None, token: 7, ..Lease::default() };
        assert_eq!(decide(Some(&released), "b", 0, false), LeaseDecision::Grant { token: 8, expired: None });
    }

    #[test]
    fn the_store_next_in_line_gets_a_freed_lease_first() {
        let mut lease = held("a", 3, 0, 100);
        assert!(matches!(decide(Some(&lease), "b", 50, true), LeaseDecision::Busy { queue: true, .. }));
        lease.queued = Some(("b".into(), "b's job".into(), 300));
        assert!(matches!(decide(Some(&lease), "c", 60, true), LeaseDecision::Busy { queue: false, .. }), "slot taken");
        lease.holder = None;
        lease.owner = None;
        let LeaseDecision::Busy { status, queue: false } = decide(Some(&lease), "a", 70, true) else {
            panic!("the releaser does not jump the queue")
        };
        assert_eq!(status.holder, "b's job (next in line)");
        assert_eq!(decide(Some(&lease), "b", 80, true), LeaseDecision::Grant { token: 4, expired: None });
        assert_eq!(
            decide(Some(&lease), "a", 300, true),
            LeaseDecision::Grant { token: 4, expired: None },
            "a stale queue slot is ignored"
        );
    }

    #[test]
    fn only_the_latest_grant_may_renew_or_release() {
        let lease = held("a", 5, 0, 100);
        assert!(still_granted(Some(&lease), "a", 5));
        assert!(still_granted(Some(&lease), "a", 5), "past expiry, nobody took it: still a's");
        assert!(!still_granted(Some(&lease), "a", 4), "a stale token is refused");
        assert!(!still_granted(Some(&lease), "b", 5));
        assert!(!still_granted(Some(&Lease { holder: None, ..lease.clone() }), "a", 5), "released");
        assert!(!still_granted(None, "a", 5));
    }

    #[test]
    fn abandon_frees_the_lock_without_a_run() {
        let mut locks = JobLocks::new();
        let t = locks.try_acquire("job", "me", 10).unwrap();
        locks.abandon(t);
        assert_eq!(locks.status("job"), None);
        assert!(locks.history("job").is_empty());
    }
}
