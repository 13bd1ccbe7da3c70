//! Retry policy: exponential backoff with full jitter, for transient failures only.

use std::time::Duration;

use rand::Rng;

/// How often and how patiently a call is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub max_attempts: u32,
    /// Backoff base: the cap of the first wait.
    pub base_delay: Duration,
    /// Longest wait between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// One attempt only.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Upper bound of the wait after `failed` failed attempts: `min(max, base * 2^(failed-1))`.
    pub fn ceiling(&self, failed: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failed.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Wait after `failed` failed attempts: uniform in `[0, ceiling]` ("full jitter").
    pub fn backoff(&self, failed: u32) -> Duration {
        let cap = self.ceiling(failed).as_millis() as u64;
        Duration::from_millis(if cap == 0 {
            0
        } else {
            rand::rng().random_range(0..=cap)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_secs(1));
        assert_eq!(p.ceiling(60), Duration::from_secs(1));
        for n in 1..8 {
            assert!(p.backoff(n) <= p.ceiling(n));
        }
    }
}
