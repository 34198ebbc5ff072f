//! Counters, latency histograms and the health verdict of a store.

use std::time::Duration;

use serde::Serialize;

/// A log-linear latency histogram in microseconds: 8 sub-buckets per power of two (about 12%
/// precision), fixed size, no allocation per sample.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const SUB: u64 = 8;
const BUCKETS: usize = 8 + 61 * 8;

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0 }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < SUB {
            return us as usize;
        }
        let msb = 63 - u64::from(us.leading_zeros());
        let shift = msb - 3;
        let mantissa = us >> shift; // in 8..16
        (SUB + (shift * SUB) + (mantissa - SUB)) as usize
    }

    fn lower_bound(index: usize) -> u64 {
        let i = index as u64;
        if i < SUB {
            return i;
        }
        let shift = (i - SUB) / SUB;
        let mantissa = (i - SUB) % SUB + SUB;
        mantissa << shift
    }

    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[Self::index(us).min(BUCKETS - 1)] += 1;
        self.total += 1;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), as the lower bound of its bucket; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(Self::lower_bound(i));
            }
        }
        Duration::from_micros(Self::lower_bound(BUCKETS - 1))
    }
}

/// Running counters kept by the writer.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub(crate) committed: u64,
    pub(crate) rejected: u64,
    pub(crate) failed: u64,
    pub(crate) retries: u64,
    pub(crate) replays: u64,
    pub(crate) batches: u64,
    pub(crate) batch_rows: u64,
    pub(crate) commit_latency: Histogram,
    pub(crate) ack_latency: Histogram,
    pub(crate) last_error: Option<String>,
    pub(crate) last_trouble_at: Option<Duration>,
}

/// A point-in-time view of a store, cheap to take.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// Rows waiting in the queue.
    pub queue_depth: usize,
    /// The queue's capacity in rows.
    pub queue_capacity: usize,
    /// Rows accepted into the queue since open.
    pub accepted: u64,
    /// Rows committed.
    pub committed: u64,
    /// Rows rejected alone with their own error (constraint, bad SQL, bad value).
    pub rejected: u64,
    /// Rows failed with their whole batch (retry budget spent, I/O failure).
    pub failed: u64,
    /// Batch attempts retried after lock contention.
    pub retries: u64,
    /// Batches replayed because the database rolled a transaction back after a rejected write.
    pub replays: u64,
    /// Batches committed.
    pub batches: u64,
    /// Mean rows per committed batch.
    pub mean_batch_size: f64,
    /// Current batch size cap (adapts under load).
    pub batch_limit: usize,
    /// Median time of one commit attempt (BEGIN to COMMIT).
    pub commit_p50: Duration,
    /// 99th percentile of commit attempts.
    pub commit_p99: Duration,
    /// Median time from acceptance to acknowledgement.
    pub ack_p50: Duration,
    /// 99th percentile from acceptance to acknowledgement.
    pub ack_p99: Duration,
    /// `"closed"`, `"open"` or `"half-open"`.
    pub breaker: &'static str,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// The last error the writer saw, if any.
    pub last_error: Option<String>,
    /// The database's journal mode (filled in by the backend).
    pub journal_mode: String,
    /// The database engine and its version, e.g. `SQLite 3.50.0` or `PostgreSQL 15.8` (filled in
    /// by the backend).
    pub engine: String,
}

/// Overall condition of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Writes commit normally.
    Ok,
    /// Writes commit, but slowly or after retries; the queue may be filling.
    Degraded,
    /// The breaker is open: nothing commits until the cooldown ends.
    Failing,
}

/// The health verdict and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Why, when not ok.
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((440.0..=500.0).contains(&p50), "p50 {p50}");
        assert!((870.0..=990.0).contains(&p99), "p99 {p99}");
        assert_eq!(h.count(), 1000);
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn bucket_bounds_are_monotonic() {
        let mut last = 0;
        for i in 0..BUCKETS {
            let lb = Histogram::lower_bound(i);
            assert!(i == 0 || lb > last, "bucket {i}");
            assert_eq!(Histogram::index(lb), i);
            last = lb;
        }
    }
}
