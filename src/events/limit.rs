//! Token buckets bounding Event writes: one per object (a flapping camera writes a few Events,
//! then one now and then) and, for the whole operator, one for Normal and one for Warning
//! Events (100,000 cameras flapping at once write at most twice
//! [`Limits::global_per_second`] Events a second, and a storm of Normal Events — every camera
//! coming up at a leader's start — cannot starve the Warnings). Pure: time comes in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Events one object may write in a burst.
    pub object_burst: f64,
    /// One more Event per object every this long.
    pub object_refill: Duration,
    /// Events of one type (Normal, Warning) the operator may write in a burst.
    pub global_burst: f64,
    /// Sustained Events of one type per second for the operator.
    pub global_per_second: f64,
    /// Objects tracked; past it, objects whose bucket is full again are forgotten (a full
    /// bucket is what an untracked object gets anyway).
    pub max_objects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            object_burst: 5.0,
            object_refill: Duration::from_secs(60),
            global_burst: 100.0,
            global_per_second: 10.0,
            max_objects: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, per_second: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.at = now;
    }

    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The buckets.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    /// Normal, Warning.
    global: [Bucket; 2],
    objects: HashMap<String, Bucket>,
}

impl Limiter {
    /// Full buckets at `now`.
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self {
            limits,
            global: [Bucket::full(limits.global_burst, now); 2],
            objects: HashMap::new(),
        }
    }

    fn object_rate(&self) -> f64 {
        1.0 / self
            .limits
            .object_refill
            .as_secs_f64()
            .max(f64::MIN_POSITIVE)
    }

    /// Whether an Event about `object` (a Warning or not) may be written at `now` (taking a
    /// token of the object's and of its type's bucket when it may).
    pub fn admit(&mut self, object: &str, warning: bool, now: Instant) -> bool {
        let l = self.limits;
        let rate = self.object_rate();
        let global = &mut self.global[usize::from(warning)];
        global.refill(l.global_burst, l.global_per_second, now);
        if self.objects.len() >= l.max_objects && !self.objects.contains_key(object) {
            self.objects.retain(|_, b| {
                b.refill(l.object_burst, rate, now);
                b.tokens < l.object_burst
            });
            if self.objects.len() >= l.max_objects {
                return false;
            }
        }
        let bucket = self
            .objects
            .entry(object.to_string())
            .or_insert_with(|| Bucket::full(l.object_burst, now));
        bucket.refill(l.object_burst, rate, now);
        let global = &mut self.global[usize::from(warning)];
        if bucket.tokens < 1.0 || global.tokens < 1.0 {
            return false;
        }
        bucket.take() && global.take()
    }

    /// Objects tracked.
    pub fn tracked(&self) -> usize {
        self.objects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_gets_its_burst_then_one_per_refill() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits::default(), t0);
        let admitted = (0..100).filter(|_| l.admit("cam", false, t0)).count();
        assert_eq!(admitted, 5);
        assert!(!l.admit("cam", false, t0 + Duration::from_secs(30)));
        assert!(l.admit("cam", false, t0 + Duration::from_secs(61)));
        // Another object is not held back by the first.
        assert!(l.admit("other", false, t0));
    }

    #[test]
    fn many_objects_are_held_by_the_global_bucket() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits::default(), t0);
        let burst = (0..100_000)
            .filter(|i| l.admit(&format!("c{i}"), false, t0))
            .count();
        assert_eq!(burst, 100);
        // The Warnings have their own budget: a storm of Normal Events does not starve them.
        assert!(l.admit("broken-node", true, t0));
        // Ten seconds later: ten a second more.
        let t1 = t0 + Duration::from_secs(10);
        let later = (0..100_000)
            .filter(|i| l.admit(&format!("d{i}"), false, t1))
            .count();
        assert_eq!(later, 100);
    }

    #[test]
    fn the_object_table_stays_bounded() {
        let limits = Limits {
            max_objects: 10,
            global_burst: 1e9,
            global_per_second: 1e9,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let mut l = Limiter::new(limits, t0);
        for i in 0..1000 {
            l.admit(
                &format!("c{i}"),
                i % 2 == 0,
                t0 + Duration::from_secs(i * 400),
            );
            assert!(l.tracked() <= 10);
        }
    }
}
