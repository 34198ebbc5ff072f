//! Circuit breaker: after consecutive failed batches the writer stops trying for a cooldown,
//! then one half-open trial batch decides.

use std::time::Duration;

/// Where the breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Batches run normally.
    Closed,
    /// No batch runs until the host time `until`.
    Open {
        /// Host time when the cooldown ends.
        until: Duration,
    },
    /// The next batch is a trial: success closes the breaker, failure opens it again.
    HalfOpen,
}

impl BreakerState {
    /// `"closed"`, `"open"` or `"half-open"`.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// A state change, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Closed or half-open to open.
    Opened,
    /// Open to half-open: the cooldown ended.
    HalfOpened,
    /// Half-open (or failing) to closed.
    Closed,
}

impl Transition {
    /// What the breaker did: `"opened"`, `"half-opened"` or `"closed"`.
    pub fn name(self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::HalfOpened => "half-opened",
            Transition::Closed => "closed",
        }
    }
}

/// The breaker. The host asks [`Breaker::wait`] before each attempt and reports its result.
#[derive(Clone, Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    consecutive_failures: u32,
    state: BreakerState,
    opened: u64,
}

impl Breaker {
    /// Opens after `threshold` consecutive failed attempts, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            consecutive_failures: 0,
            state: BreakerState::Closed,
            opened: 0,
        }
    }

    /// How long to wait before the next attempt may run; `None` means go now. Moves an open
    /// breaker whose cooldown has ended to half-open.
    pub fn wait(&mut self, now: Duration) -> (Option<Duration>, Option<Transition>) {
        match self.state {
            BreakerState::Open { until } if now < until => (Some(until.saturating_sub(now)), None),
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen;
                (None, Some(Transition::HalfOpened))
            }
            _ => (None, None),
        }
    }

    /// An attempt succeeded.
    pub fn on_success(&mut self) -> Option<Transition> {
        let was = self.state;
        self.consecutive_failures = 0;
        self.state = BreakerState::Closed;
        (was != BreakerState::Closed).then_some(Transition::Closed)
    }

    /// An attempt failed (transient or fatal).
    pub fn on_failure(&mut self, now: Duration) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let trips = match self.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => self.consecutive_failures >= self.threshold,
            BreakerState::Open { .. } => false,
        };
        if trips {
            self.state = BreakerState::Open { until: now + self.cooldown };
            self.opened += 1;
            Some(Transition::Opened)
        } else {
            None
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Failed attempts since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Times the breaker opened.
    pub fn times_opened(&self) -> u64 {
        self.opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn opens_at_threshold_then_half_opens_then_closes() {
        let mut b = Breaker::new(3, MS(100));
        assert_eq!(b.on_failure(MS(0)), None);
        assert_eq!(b.on_failure(MS(1)), None);
        assert_eq!(b.on_failure(MS(2)), Some(Transition::Opened));
        assert_eq!(b.state(), BreakerState::Open { until: MS(102) });
        assert_eq!(b.wait(MS(50)), (Some(MS(52)), None));
        assert_eq!(b.wait(MS(102)), (None, Some(Transition::HalfOpened)));
        assert_eq!(b.on_success(), Some(Transition::Closed));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn failed_trial_reopens_at_once() {
        let mut b = Breaker::new(2, MS(10));
        b.on_failure(MS(0));
        b.on_failure(MS(0));
        assert_eq!(b.wait(MS(10)).1, Some(Transition::HalfOpened));
        assert_eq!(b.on_failure(MS(10)), Some(Transition::Opened));
        assert_eq!(b.state(), BreakerState::Open { until: MS(20) });
        assert_eq!(b.times_opened(), 2);
    }

    #[test]
    fn success_resets_the_count() {
        let mut b = Breaker::new(2, MS(10));
        b.on_failure(MS(0));
        assert_eq!(b.on_success(), None);
        assert_eq!(b.on_failure(MS(0)), None, "count restarted after success");
    }
}
