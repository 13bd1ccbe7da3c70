//! The simulator's clock: wall time plus an offset tests can advance, so the runtime
//! life-cycle (start delay, retries, `ts_delay`, uptime) can be driven without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shared by every node of a [`crate::Cluster`]. Cloning shares the offset.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    offset_ms: Arc<AtomicI64>,
    /// Non-zero: time stands still at this instant (frozen stats, for comparisons).
    frozen_at: Arc<AtomicI64>,
}

impl SimClock {
    /// Current simulated time, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        let frozen = self.frozen_at.load(Ordering::Relaxed);
        if frozen != 0 {
            return frozen;
        }
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        wall + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves simulated time forward (never backward).
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    /// Stops simulated time (every runtime figure stays as it is) until [`SimClock::thaw`].
    pub fn freeze(&self) {
        let now = self.now_ms();
        self.frozen_at.store(now, Ordering::Relaxed);
    }

    /// Lets simulated time run again.
    pub fn thaw(&self) {
        self.frozen_at.store(0, Ordering::Relaxed);
    }

    /// Total offset added so far.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::Relaxed).max(0) as u64)
    }
}
