//! Retry policy for transient errors: exponential backoff with full jitter, bounded by attempts
//! and by a time budget.

use std::time::Duration;

/// When and how often a batch that hit lock contention is tried again.
///
/// The delay before retry `n` (1-based) is uniform in `[0, min(cap, base * 2^(n-1))]` ("full
/// jitter"), so writers that collided do not collide again in lock step. The batch fails with
/// `Busy` when `max_attempts` attempts have failed or the waits would exceed `budget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff ceiling.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Total waiting allowed for one batch.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    /// 5 ms base, 500 ms cap, up to 200 attempts within 30 s: a lock held for seconds by another
    /// process delays writes but fails none.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(500),
            max_attempts: 200,
            budget: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt, after `failed_attempts` attempts failed and `waited`
    /// was spent waiting; `None` when the policy is exhausted. `random` is any uniformly random
    /// `u64` from the caller (the core has no randomness of its own).
    pub fn next_delay(&self, failed_attempts: u32, waited: Duration, random: u64) -> Option<Duration> {
        if failed_attempts >= self.max_attempts || waited >= self.budget {
            return None;
        }
        let exponent = failed_attempts.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        let delay = ceiling.mul_f64(fraction);
        Some(delay.min(self.budget.saturating_sub(waited)))
    }
}

/// A small deterministic generator (SplitMix64) for jitter. Hosts seed it; tests fix the seed.
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Jitter(seed)
    }

    /// The next random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exhausts_by_attempts_and_by_budget() {
        let p = RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_secs(1),
            max_attempts: 3,
            budget: Duration::from_secs(5),
        };
        assert!(p.next_delay(2, Duration::ZERO, 0).is_some());
        assert_eq!(p.next_delay(3, Duration::ZERO, 0), None);
        assert_eq!(p.next_delay(1, Duration::from_secs(5), 0), None);
        assert_eq!(
            p.next_delay(1, Duration::from_millis(4999), u64::MAX),
            Some(Duration::from_millis(1)),
            "clipped to budget"
        );
    }

    proptest! {
        #[test]
        fn delay_stays_within_the_exponential_ceiling(attempt in 1u32..40, random: u64) {
            let p = RetryPolicy::default();
            let d = p.next_delay(attempt, Duration::ZERO, random).unwrap();
            let ceiling = p.base.saturating_mul(1 << (attempt - 1).min(30)).min(p.cap);
            prop_assert!(d <= ceiling);
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let p = RetryPolicy::default();
        let mut j = Jitter::new(7);
        let delays: Vec<Duration> = (0..100).map(|_| p.next_delay(8, Duration::ZERO, j.next_u64()).unwrap()).collect();
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 90, "full jitter gives distinct delays");
        assert!(delays.iter().any(|d| *d < p.cap / 2) && delays.iter().any(|d| *d > p.cap / 2));
    }
}
