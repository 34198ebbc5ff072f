//! How a store is opened and tuned.

use std::time::Duration;

use sqlweir_core::{RetryPolicy, WriterConfig};

/// When an acknowledged write is durable (SQLite's `synchronous` under WAL).
///
/// | setting | an ack means the write survives |
/// |---|---|
/// | `Normal` (default) | a crash of the process (the WAL is written before the ack); a power loss may lose the last commits, never corrupt the file |
/// | `Full` | a power loss too (the WAL is synced to disk before the ack) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `PRAGMA synchronous=NORMAL`.
    #[default]
    Normal,
    /// `PRAGMA synchronous=FULL`.
    Full,
}

pub use sqlweir_core::Backpressure;

/// Options for [`Store::open`](crate::Store::open). `Options::default()` suits most programs.
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) migrations: Vec<String>,
    pub(crate) synchronous: Synchronous,
    pub(crate) queue_capacity: usize,
    pub(crate) backpressure: Backpressure,
    pub(crate) writer: WriterConfig,
    pub(crate) busy_timeout: Duration,
    pub(crate) read_connections: usize,
    pub(crate) seed: Option<u64>,
    pub(crate) job_lease: Duration,
    pub(crate) group_wait: GroupWait,
    pub(crate) feed_capacity: usize,
}

/// How a blocked writer waits for its write group's leader before it sleeps (see
/// [`Options::group_wait`]). Measured against each other by the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupWait {
    /// Sleep on the ticket at once; never lead a group (every write is handed to the writer
    /// thread, as without write groups).
    Handoff,
    /// Sleep on the ticket at once when someone else holds the connection; lead when it is free.
    Park,
    /// Give up the core (`yield_now`) up to this many times, watching for the result or a free
    /// connection, then sleep.
    Yield(u32),
    /// Busy-wait (`spin_loop`) up to this many rounds of 64 hints, then sleep.
    Spin(u32),
}

impl Default for GroupWait {
    /// `Yield(50)`: on the benchmark's lock-step shape it measured fastest (docs/bench.md has the
    /// figures of each way). Behind a batch slower than a sleep and a wake-up (an fsync, a big
    /// batch) a follower sleeps at once whatever this says, so no way burns a core on a long
    /// commit.
    fn default() -> Self {
        GroupWait::Yield(50)
    }
}

/// Group commit waits for the producers a commit acked only after commits this slow: lower
/// than the core's default because a write group's leader waits such a linger out on its own
/// thread, yielding, instead of handing the batch to a timer (measured in docs/bench.md).
const NATIVE_GROUP_COMMIT_MIN: Duration = Duration::from_micros(100);

impl Default for Options {
    fn default() -> Self {
        Options {
            migrations: Vec::new(),
            synchronous: Synchronous::Normal,
            queue_capacity: 10_000,
            backpressure: Backpressure::Wait,
            writer: WriterConfig { group_commit_min: NATIVE_GROUP_COMMIT_MIN, ..WriterConfig::default() },
            busy_timeout: Duration::from_millis(5),
            read_connections: 4,
            seed: None,
            job_lease: Duration::from_secs(30),
            group_wait: GroupWait::default(),
            feed_capacity: sqlweir_core::feed::DEFAULT_FEED_CAPACITY,
        }
    }
}

impl Options {
    /// Schema steps, in order. Step `i` runs once, in its own transaction, and sets
    /// `PRAGMA user_version` to `i + 1`; reopening skips steps already applied. Append steps;
    /// never edit or reorder applied ones.
    pub fn migrations<S: AsRef<str>>(mut self, steps: &[S]) -> Self {
        self.migrations = steps.iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// Durability of an ack (default `Normal`); see [`Synchronous`].
    pub fn synchronous(mut self, s: Synchronous) -> Self {
        self.synchronous = s;
        self
    }

    /// Rows the queue holds before backpressure applies (default 10,000).
    pub fn queue_capacity(mut self, rows: usize) -> Self {
        self.queue_capacity = rows.max(1);
        self
    }

    /// What a write does when the queue is full (default `Wait`).
    pub fn backpressure(mut self, b: Backpressure) -> Self {
        self.backpressure = b;
        self
    }

    /// Base batch size in rows (default 100); it doubles under backlog up to
    /// [`batch_rows_ceiling`](Self::batch_rows_ceiling) and shrinks back when load drops.
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.writer.batch_rows = rows.max(1);
        self
    }

    /// Largest batch under load (default 10,000 rows).
    pub fn batch_rows_ceiling(mut self, rows: usize) -> Self {
        self.writer.batch_rows_ceiling = rows.max(1);
        self
    }

    /// How long the writer waits for more writes when a batch is not full (default 0: commit
    /// at once; batches still form while the previous one commits).
    pub fn linger(mut self, d: Duration) -> Self {
        self.writer.linger = d;
        self
    }

    /// Retry policy for lock contention (default: 5 ms base, 500 ms cap, 200 attempts, 30 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.writer.retry = policy;
        self
    }

    /// Consecutive failed attempts that open the breaker (default 5) and how long it stays
    /// open (default 500 ms).
    pub fn breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.writer.breaker_threshold = threshold.max(1);
        self.writer.breaker_cooldown = cooldown;
        self
    }

    /// Commits slower than this are logged (default 1 s).
    pub fn slow_commit(mut self, d: Duration) -> Self {
        self.writer.slow_commit = d;
        self
    }

    /// How long SQLite itself waits on a lock before the retry policy takes over (default
    /// 5 ms). Kept short so contention shows in metrics and follows the policy.
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }

    /// Read-only connections for queries (default 4, at least 1).
    pub fn read_connections(mut self, n: usize) -> Self {
        self.read_connections = n.max(1);
        self
    }

    /// How long a job lock's lease lasts without renewal (default 30 s, at least 300 ms). A
    /// guard renews it every third of that; a holder that dies loses the job when it expires,
    /// and one that stalls longer than this may find it taken (its token then refused).
    pub fn job_lease(mut self, d: Duration) -> Self {
        self.job_lease = d.max(Duration::from_millis(300));
        self
    }

    /// Fixes the retry jitter's seed, for reproducible tests.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How a thread blocked in `Ticket::wait` waits for the batch that carries its write
    /// (default `GroupWait::Yield(50)`). Except with `GroupWait::Handoff` (the writer thread
    /// commits every write), a blocked caller that finds nobody running a batch runs it itself
    /// on its own thread (it leads a write group).
    pub fn group_wait(mut self, wait: GroupWait) -> Self {
        self.group_wait = wait;
        self
    }

    /// How many recent commits the commit feed keeps for slow subscribers (default 256): one
    /// that falls further behind reads `FeedItem::Lagged` and goes on ([`crate::Subscription`]).
    pub fn feed_capacity(mut self, commits: usize) -> Self {
        self.feed_capacity = commits.max(1);
        self
    }
}
