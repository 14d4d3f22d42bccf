//! The one backoff used by every retry in the daemon: the broker listener's reconnects,
//! the outbox's event deliveries and token renewal.
//!
//! Exponential: `initial`, doubling per failure up to `max`, optionally with *equal jitter*
//! (a delay uniformly within `[d/2, d]`, so a crowd of retries spreads out but none waits
//! longer than the schedule says). A success resets it.
//!
//! Why not a crate such as `backon`: its jitter adds up to a whole delay on top (`[d, 2d)`),
//! which would break the documented bounds (e.g. "at most 30 s between deliveries"), and its
//! retry drivers own the loop, while our callers interleave the wait with shutdown and with
//! a server's `Retry-After`. What is left is twenty lines, kept here once.

use std::time::Duration;

/// How delays grow. `Copy`: a policy is a value that callers pass around freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Spread each delay uniformly within `[d/2, d]`.
    pub jitter: bool,
}

impl BackoffPolicy {
    /// The delay before retry number `retry` (1 = the first retry), without jitter:
    /// `min(max, initial × 2^(retry−1))`.
    pub fn base(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `retry`, with jitter when the policy asks for it.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self.base(retry);
        if !self.jitter {
            return base;
        }
        use rand::Rng;
        let half = base / 2;
        let jitter_ns = rand::rng().random_range(0..=half.as_nanos().min(u64::MAX as u128) as u64);
        half + Duration::from_nanos(jitter_ns)
    }
}

/// A running backoff: counts failures since the last [`reset`](Self::reset).
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// The delay before the next attempt; the one after it doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let policy = BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            jitter: false,
        };
        let mut b = Backoff::new(policy);
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(policy.base(1000), policy.max);
    }

    #[test]
    fn equal_jitter_stays_within_half_and_whole_of_the_base() {
        let policy = BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            jitter: true,
        };
        for retry in 1..12 {
            let base = policy.base(retry);
            for _ in 0..50 {
                let d = policy.delay(retry);
                assert!(
                    d >= base / 2 && d <= base,
                    "{d:?} outside [{:?}, {base:?}]",
                    base / 2
                );
            }
        }
    }
}
