//! Job leases in the database: what makes a job lock hold across processes and machines.
//!
//! A lease is a row of `_sqlweir_jobs` (name, holder, owner, expiry, fencing token, who is next
//! in line) that every store obeys by the core's rule (`sqlweir_core::joblock::decide`); a run's
//! end goes to `_sqlweir_job_runs` (the last 20 per job). The rows are read and written on a
//! connection of their own, opened on first use, never through the write queue: a grant must
//! not wait behind a backlog of batches, and a renewal must not either (a full queue or an open
//! breaker would let a live holder's lease expire). SQLite keeps the lease in the database file
//! ([`SqliteLeases`]); PostgreSQL adds a session advisory lock (`postgres.rs`).
//!
//! While a guard lives, a renewal thread of the store extends its lease every third of the
//! lease time. A holder that dies stops renewing, and its lease is taken once it expires; a
//! holder whose lease was taken meanwhile (it stalled past the expiry) is refused at its next
//! renewal, check or release, and by any write fenced on its token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sqlweir_core::joblock;
use sqlweir_core::{BackendError, JobOutcome, JobRun, JobStatus, Lease, LeaseDecision};

use crate::mutex::lock;
use crate::sqlite::classify;

/// How long a failed attempt keeps the caller first in line: a few polls.
pub(crate) const QUEUE_HOLD: Duration = Duration::from_millis(250);

/// What one attempt to take a lease did.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Taken, with this fencing token.
    Granted(u64),
    /// Somebody holds it (or is next in line).
    Busy(JobStatus),
}

/// The lease rows of one database, on a connection of their own.
pub(crate) trait LeaseDb: Send {
    /// One attempt to take `name` for `holder` of store `owner` for `ttl`: the row read, the
    /// core's rule applied and its writes made, in one transaction. With `queue`, a busy
    /// attempt records the caller as next in line.
    fn attempt(
        &mut self,
        name: &str,
        holder: &str,
        owner: &str,
        ttl: Duration,
        queue: bool,
    ) -> Result<Attempt, BackendError>;
    /// Extends the lease; `false` when `token` is no longer the latest grant (refused).
    fn renew(&mut self, name: &str, owner: &str, token: u64, ttl: Duration) -> Result<bool, BackendError>;
    /// Ends the lease and records the run; `false` when `token` is stale (nothing recorded:
    /// whoever took the lease recorded this run as expired).
    fn release(&mut self, name: &str, owner: &str, token: u64, outcome: &JobOutcome) -> Result<bool, BackendError>;
    /// Whether `token` is the latest grant and unexpired.
    fn holds(&mut self, name: &str, owner: &str, token: u64) -> Result<bool, BackendError>;
    /// Who holds `name` (an unexpired lease), if anyone.
    fn status(&mut self, name: &str) -> Result<Option<JobStatus>, BackendError>;
    /// The last runs of `name`, oldest first.
    fn history(&mut self, name: &str) -> Result<Vec<JobRun>, BackendError>;
}

type Opener = Box<dyn Fn() -> Result<Box<dyn LeaseDb>, BackendError> + Send + Sync>;

/// A lease this store holds.
struct Held {
    token: u64,
    lost: Arc<AtomicBool>,
}

/// A store's leases: the lease connection (opened on first use), the leases held, and the
/// renewal thread while any is held.
pub(crate) struct Leases {
    open: Opener,
    /// The lease connection; `None` until first use, and after a failure (reopened then).
    db: Mutex<Option<Box<dyn LeaseDb>>>,
    /// This store's id in the lease rows: unique per open store, in any process.
    owner: String,
    ttl: Duration,
    held: Mutex<HashMap<String, Held>>,
    renewing: AtomicBool,
}

impl Leases {
    pub(crate) fn new(open: Opener, ttl: Duration) -> Arc<Leases> {
        use std::hash::{BuildHasher, RandomState};
        let random = RandomState::new().hash_one(SystemTime::now());
        Arc::new(Leases {
            open,
            db: Mutex::new(None),
            owner: format!("pid {} store {random:016x}", std::process::id()),
            ttl,
            held: Mutex::new(HashMap::new()),
            renewing: AtomicBool::new(false),
        })
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Runs `f` on the lease connection, opening it first if needed; a failure drops the
    /// connection, so the next call reopens it.
    fn with_db<T>(&self, f: impl FnOnce(&mut dyn LeaseDb) -> Result<T, BackendError>) -> Result<T, BackendError> {
        let mut db = lock(&self.db);
        if db.is_none() {
            *db = Some((self.open)()?);
        }
        let conn = db.as_mut().expect("opened just above");
        let result = f(conn.as_mut());
        if result.is_err() {
            *db = None;
        }
        result
    }

    /// One attempt to take `name` (see [`LeaseDb::attempt`]); a grant is renewed from then on.
    pub(crate) fn attempt(
        self: &Arc<Self>,
        name: &str,
        holder: &str,
        queue: bool,
    ) -> Result<(u64, Arc<AtomicBool>), LeaseRefused> {
        match self.with_db(|db| db.attempt(name, holder, &self.owner, self.ttl, queue)) {
            Ok(Attempt::Granted(token)) => {
                let lost = Arc::new(AtomicBool::new(false));
                lock(&self.held).insert(name.to_owned(), Held { token, lost: lost.clone() });
                self.start_renewing();
                Ok((token, lost))
            }
            Ok(Attempt::Busy(status)) => Err(LeaseRefused::Busy(status)),
            Err(e) => Err(LeaseRefused::Database(e)),
        }
    }

    /// Ends the lease `token` of `name`; `Ok(false)` when it was no longer ours.
    pub(crate) fn release(&self, name: &str, token: u64, outcome: &JobOutcome) -> Result<bool, BackendError> {
        {
            let mut held = lock(&self.held);
            if held.get(name).is_some_and(|h| h.token == token) {
                held.remove(name);
            }
        }
        self.with_db(|db| db.release(name, &self.owner, token, outcome))
    }

    /// Whether the lease `token` of `name` still holds.
    pub(crate) fn holds(&self, name: &str, token: u64) -> Result<bool, BackendError> {
        self.with_db(|db| db.holds(name, &self.owner, token))
    }

    pub(crate) fn status(&self, name: &str) -> Result<Option<JobStatus>, BackendError> {
        self.with_db(|db| db.status(name))
    }

    pub(crate) fn history(&self, name: &str) -> Result<Vec<JobRun>, BackendError> {
        self.with_db(|db| db.history(name))
    }

    /// Starts the renewal thread unless it runs. It holds the leases weakly and ends when the
    /// store and its last guard are gone, or when nothing is held.
    fn start_renewing(self: &Arc<Self>) {
        if self.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Leases> = Arc::downgrade(self);
        let every = self.ttl / 3;
        let spawned = std::thread::Builder::new().name("sqlweir-leases".into()).spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(leases) = weak.upgrade() else { return };
                if !leases.renew_all() {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            // Without renewals the lease still holds for one lease time; say so loudly.
            tracing::error!(error = %e, "cannot start the job-lease renewal thread; leases will expire");
            self.renewing.store(false, Ordering::Release);
        }
    }

    /// Renews every lease held; marks lost the ones refused. Returns false (and stops the
    /// thread) when nothing is held.
    fn renew_all(&self) -> bool {
        let held: Vec<(String, u64)> = {
            let held = lock(&self.held);
            if held.is_empty() {
                // Cleared under the `held` lock: a grant after this starts a new thread.
                self.renewing.store(false, Ordering::Release);
                return false;
            }
            held.iter().map(|(name, h)| (name.clone(), h.token)).collect()
        };
        for (name, token) in held {
            match self.with_db(|db| db.renew(&name, &self.owner, token, self.ttl)) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(job = %name, token, "job lease was taken by another holder after it expired");
                    let mut held = lock(&self.held);
                    if let Some(h) = held.get(&name).filter(|h| h.token == token) {
                        h.lost.store(true, Ordering::Release);
                        held.remove(&name);
                    }
                }
                // Tried again at the next renewal; the lease holds until its expiry meanwhile.
                Err(e) => tracing::warn!(job = %name, error = %e, "renewing a job lease failed"),
            }
        }
        true
    }
}

/// Why an attempt did not grant.
pub(crate) enum LeaseRefused {
    Busy(JobStatus),
    Database(BackendError),
}

pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where a SQLite store's leases live: its file, or its in-memory database's URI.
pub(crate) enum SqliteTarget {
    File(PathBuf),
    Memory(String),
}

/// The lease rows of a SQLite database, on a connection of their own. The clock is this
/// machine's wall clock: every process sharing a SQLite file runs on one machine.
pub(crate) struct SqliteLeases {
    conn: Connection,
}

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS _sqlweir_jobs(name TEXT PRIMARY KEY, token INTEGER NOT NULL, \
     holder TEXT, owner TEXT, since_ms INTEGER, expires_ms INTEGER, \
     queued_owner TEXT, queued_holder TEXT, queued_until_ms INTEGER); \
     CREATE TABLE IF NOT EXISTS _sqlweir_job_runs(name TEXT NOT NULL, token INTEGER NOT NULL, holder TEXT NOT NULL, \
     started_ms INTEGER NOT NULL, duration_ms INTEGER NOT NULL, failure TEXT, PRIMARY KEY(name, token))";

impl SqliteLeases {
    pub(crate) fn open(target: &SqliteTarget) -> Result<Box<dyn LeaseDb>, BackendError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match target {
            SqliteTarget::File(p) => Connection::open_with_flags(p, flags),
            SqliteTarget::Memory(uri) => Connection::open_with_flags(uri, flags),
        }
        .map_err(classify)?;
        // Lease transactions are tiny; waiting for the writer's batch is right here (the
        // writer's own short busy timeout is its retry policy's business).
        conn.busy_timeout(Duration::from_secs(5)).map_err(classify)?;
        let mut leases = SqliteLeases { conn };
        let tx = leases.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
        tx.execute_batch(SQLITE_SCHEMA).map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(Box::new(leases))
    }
}

fn read_lease(conn: &Connection, name: &str) -> rusqlite::Result<Option<Lease>> {
    conn.query_row(
        "SELECT holder, owner, token, since_ms, expires_ms, queued_owner, queued_holder, queued_until_ms \
         FROM _sqlweir_jobs WHERE name = ?1",
        [name],
        |r| {
            let queued = match (r.get::<_, Option<String>>(5)?, r.get::<_, Option<String>>(6)?) {
                (Some(o), Some(h)) => Some((o, h, r.get::<_, Option<i64>>(7)?.unwrap_or(0) as u64)),
                _ => None,
            };
            Ok(Lease {
                holder: r.get(0)?,
                owner: r.get(1)?,
                token: r.get::<_, i64>(2)? as u64,
                since_ms: r.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
                expires_ms: r.get::<_, Option<i64>>(4)?.unwrap_or(0) as u64,
                queued,
            })
        },
    )
    .optional()
}

fn record_run(conn: &Connection, name: &str, token: u64, run: &JobRun) -> rusqlite::Result<()> {
    let failure = match &run.outcome {
        JobOutcome::Succeeded => None,
        JobOutcome::Failed(why) => Some(why.as_str()),
    };
    conn.execute(
        "INSERT OR REPLACE INTO _sqlweir_job_runs(name, token, holder, started_ms, duration_ms, failure) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![name, token as i64, run.holder, run.started_ms as i64, run.duration_ms as i64, failure],
    )?;
    conn.execute(
        "DELETE FROM _sqlweir_job_runs WHERE name = ?1 AND token NOT IN \
         (SELECT token FROM _sqlweir_job_runs WHERE name = ?1 ORDER BY token DESC LIMIT ?2)",
        rusqlite::params![name, joblock::HISTORY_LEN as i64],
    )?;
    Ok(())
}

pub(crate) fn run_from_parts(holder: String, started_ms: i64, duration_ms: i64, failure: Option<String>) -> JobRun {
    JobRun {
        holder,
        started_ms: started_ms as u64,
        duration_ms: duration_ms as u64,
        outcome: failure.map_or(JobOutcome::Succeeded, JobOutcome::Failed),
    }
}

impl LeaseDb for SqliteLeases {
    fn attempt(
        &mut self,
        name: &str,
        holder: &str,
        owner: &str,
        ttl: Duration,
        queue: bool,
    ) -> Result<Attempt, BackendError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
        let now = unix_ms_now();
        let lease = read_lease(&tx, name).map_err(classify)?;
        let attempt = match joblock::decide(lease.as_ref(), owner, now, queue) {
            LeaseDecision::Grant { token, expired } => {
                if let Some(run) = expired {
                    record_run(&tx, name, token - 1, &run).map_err(classify)?;
                }
                tx.execute(
                    "INSERT INTO _sqlweir_jobs(name, token, holder, owner, since_ms, expires_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET token = excluded.token, \
                     holder = excluded.holder, owner = excluded.owner, since_ms = excluded.since_ms, \
                     expires_ms = excluded.expires_ms, queued_owner = NULL, queued_holder = NULL, queued_until_ms = NULL",
                    rusqlite::params![name, token as i64, holder, owner, now as i64, (now + ttl.as_millis() as u64) as i64],
                )
                .map_err(classify)?;
                Attempt::Granted(token)
            }
            LeaseDecision::Busy { status, queue } => {
                if queue {
                    tx.execute(
                        "UPDATE _sqlweir_jobs SET queued_owner = ?2, queued_holder = ?3, queued_until_ms = ?4 WHERE name = ?1",
                        rusqlite::params![name, owner, holder, (now + QUEUE_HOLD.as_millis() as u64) as i64],
                    )
                    .map_err(classify)?;
                }
                Attempt::Busy(status)
            }
        };
        tx.commit().map_err(classify)?;
        Ok(attempt)
    }

    fn renew(&mut self, name: &str, owner: &str, token: u64, ttl: Duration) -> Result<bool, BackendError> {
        let expires = unix_ms_now() + ttl.as_millis() as u64;
        let changed = self
            .conn
            .execute(
                "UPDATE _sqlweir_jobs SET expires_ms = ?4 WHERE name = ?1 AND owner = ?2 AND token = ?3 AND holder IS NOT NULL",
                rusqlite::params![name, owner, token as i64, expires as i64],
            )
            .map_err(classify)?;
        Ok(changed == 1)
    }

    fn release(&mut self, name: &str, owner: &str, token: u64, outcome: &JobOutcome) -> Result<bool, BackendError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(classify)?;
        let lease = read_lease(&tx, name).map_err(classify)?;
        if !joblock::still_granted(lease.as_ref(), owner, token) {
            return Ok(false);
        }
        let lease = lease.expect("still granted");
        let now = unix_ms_now();
        tx.execute(
            "UPDATE _sqlweir_jobs SET holder = NULL, owner = NULL, since_ms = NULL, expires_ms = NULL WHERE name = ?1",
            [name],
        )
        .map_err(classify)?;
        let run = JobRun {
            holder: lease.holder.unwrap_or_default(),
            started_ms: lease.since_ms,
            duration_ms: now.saturating_sub(lease.since_ms),
            outcome: outcome.clone(),
        };
        record_run(&tx, name, token, &run).map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(true)
    }

    fn holds(&mut self, name: &str, owner: &str, token: u64) -> Result<bool, BackendError> {
        let lease = read_lease(&self.conn, name).map_err(classify)?;
        Ok(joblock::still_granted(lease.as_ref(), owner, token) && lease.is_some_and(|l| l.expires_ms > unix_ms_now()))
    }

    fn status(&mut self, name: &str) -> Result<Option<JobStatus>, BackendError> {
        let lease = read_lease(&self.conn, name).map_err(classify)?;
        Ok(lease.and_then(|l| match l.holder {
            Some(holder) if l.expires_ms > unix_ms_now() => Some(JobStatus { holder, since_ms: l.since_ms }),
            _ => None,
        }))
    }

    fn history(&mut self, name: &str) -> Result<Vec<JobRun>, BackendError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT holder, started_ms, duration_ms, failure FROM _sqlweir_job_runs WHERE name = ?1 \
                 ORDER BY token DESC LIMIT ?2",
            )
            .map_err(classify)?;
        let mut runs: Vec<JobRun> = stmt
            .query_map(rusqlite::params![name, joblock::HISTORY_LEN as i64], |r| {
                Ok(run_from_parts(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(classify)?
            .collect::<Result<_, _>>()
            .map_err(classify)?;
        runs.reverse();
        Ok(runs)
    }
}
