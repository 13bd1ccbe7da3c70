//! Per-object exponential backoff with jitter (kube's `error_policy` has none), and the
//! shared `error_policy` built on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::controller::Action;
use rand::Rng;

use super::Error;
use crate::controllers::refs::Key;

/// Exponential backoff with jitter, per object: 1 s, 2 s, 4 s … capped (5 min by default),
/// each delay drawn from [d/2, d]. Reset when the object reconciles cleanly.
pub struct Backoff {
    failures: Mutex<HashMap<Key, u32>>,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::capped(Self::CAP)
    }
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(300);

    /// A backoff that never waits longer than `cap`.
    pub fn capped(cap: Duration) -> Self {
        Self {
            failures: Mutex::default(),
            cap,
        }
    }

    /// The longest wait.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Records a failure of `key` and returns how long to wait.
    pub fn failed(&self, key: &Key) -> Duration {
        let n = {
            let mut f = self.failures.lock().expect("backoff poisoned");
            let n = f.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let full = Self::BASE
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(self.cap);
        let half = full / 2;
        half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
    }

    /// Forgets the failures of `key`.
    pub(crate) fn succeeded(&self, key: &Key) {
        self.failures.lock().expect("backoff poisoned").remove(key);
    }
}

/// The shared `error_policy`: invalid input waits for a change, anything else backs off.
pub(crate) fn error_action(backoff: &Backoff, key: &Key, kind: &str, error: &Error) -> Action {
    tracing::warn!(kind, namespace = %key.namespace(), name = %key.name(), category = error.category(), %error, "reconcile failed");
    if error.is_invalid_input() {
        Action::await_change()
    } else {
        Action::requeue(backoff.failed(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let b = Backoff::default();
        let k = Key::new("ns", "x");
        let d1 = b.failed(&k);
        assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
        let d2 = b.failed(&k);
        assert!(d2 >= Duration::from_secs(1) && d2 <= Duration::from_secs(2));
        for _ in 0..40 {
            assert!(b.failed(&k) <= Backoff::CAP);
        }
        b.succeeded(&k);
        assert!(b.failed(&k) <= Duration::from_secs(1));
    }

    #[test]
    fn a_capped_backoff_never_waits_past_its_cap() {
        let b = Backoff::capped(Duration::from_secs(10));
        let k = Key::new("ns", "x");
        for _ in 0..40 {
            assert!(b.failed(&k) <= Duration::from_secs(10));
        }
    }
}
