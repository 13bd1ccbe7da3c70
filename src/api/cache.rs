//! Shared, versioned values the facade derives from the stores.
//!
//! A list of 10,000 streams must not walk the stores on every request: 16 concurrent
//! requests on 2 cores leave about a millisecond of CPU each. A [`Versioned`] value is
//! rebuilt only when a [`Stamp`] (change counters of the stores and of the live stats cache
//! it depends on, read before the data) has moved past the one it was built from; readers
//! otherwise share it without blocking each other. The counters are bumped as soon as a
//! store applies a watch event, so a write shows in the next read as soon as the store has
//! it, with no time-based staleness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Change counters read before the data a value is built from. Counters only grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp<const N: usize>(pub [u64; N]);

impl<const N: usize> Stamp<N> {
    /// True when data read after `self` was taken is at least as new as data read after
    /// `other` was: no counter of `other` is ahead.
    pub fn covers(&self, other: &Self) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a >= b)
    }
}

/// A value derived from versioned data, rebuilt on demand when the data moved on.
///
/// `W` is the builder's working state kept between builds (e.g. per-object renderings to
/// reuse), touched only by the one request that rebuilds.
pub struct Versioned<T, W, const N: usize> {
    current: RwLock<Option<(Stamp<N>, Instant, Arc<T>)>>,
    work: Mutex<W>,
    refreshing: AtomicBool,
}

impl<T, W: Default, const N: usize> Default for Versioned<T, W, N> {
    fn default() -> Self {
        Self {
            current: RwLock::new(None),
            work: Mutex::new(W::default()),
            refreshing: AtomicBool::new(false),
        }
    }
}

/// What [`Versioned::lenient`] found.
pub enum Lenient<T> {
    /// Current in every strict counter and young enough: serve it.
    Serve(Arc<T>),
    /// Older than allowed: the caller got the job of refreshing it (call
    /// [`Versioned::get`], then drop the guard); callers meanwhile get `Serve`.
    ServeAndRefresh(RefreshGuard),
    /// A strict counter moved (or nothing was built yet): build with [`Versioned::get`].
    Build,
}

/// Held while one caller refreshes a value in the background.
pub struct RefreshGuard(Arc<dyn Fn() + Send + Sync>);

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        (self.0)();
    }
}

impl<T, W, const N: usize> Versioned<T, W, N> {
    /// The value for data at `stamp` or newer. `stamp` must be read before the data `build`
    /// reads. One caller at a time builds; callers that wanted the same data meanwhile take
    /// its result instead of building again.
    pub fn get(&self, stamp: Stamp<N>, build: impl FnOnce(&mut W) -> T) -> Arc<T> {
        if let Some(v) = self.fresh(&stamp) {
            return v;
        }
        let mut work = self.work.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.fresh(&stamp) {
            return v;
        }
        let value = Arc::new(build(&mut work));
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Never replace a value with one built from older data.
        if current.as_ref().is_none_or(|(s, _, _)| stamp.covers(s)) {
            *current = Some((stamp, Instant::now(), value.clone()));
        }
        value
    }

    fn fresh(&self, stamp: &Stamp<N>) -> Option<Arc<T>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|(s, _, _)| s.covers(stamp))
            .map(|(_, _, v)| v.clone())
    }

    /// For data whose counter `lenient` may run ahead without a rebuild on every change
    /// (live stats: they change on every node resync, 20 times a second with 100 nodes,
    /// and are seconds old by nature): the current value is served while every other
    /// counter is current; once it is older than `max_age` and `lenient` moved, one caller
    /// is handed the refresh and the others keep being served. Strict counters (the
    /// stores: a write must show in the next read) still force a build.
    pub fn lenient(
        self: &Arc<Self>,
        stamp: &Stamp<N>,
        lenient: usize,
        max_age: Duration,
    ) -> Lenient<T>
    where
        T: Send + Sync + 'static,
        W: Send + 'static,
    {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        let Some((s, built, v)) = current.as_ref() else {
            return Lenient::Build;
        };
        let strict_current = (0..N).all(|i| i == lenient || s.0[i] >= stamp.0[i]);
        if !strict_current {
            return Lenient::Build;
        }
        let v = v.clone();
        if s.covers(stamp) || built.elapsed() < max_age {
            return Lenient::Serve(v);
        }
        drop(current);
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return Lenient::Serve(v);
        }
        let me = Arc::downgrade(self);
        let guard = RefreshGuard(Arc::new(move || {
            if let Some(me) = me.upgrade() {
                me.refreshing.store(false, Ordering::Release);
            }
        }));
        Lenient::ServeAndRefresh(guard)
    }
}

/// FNV-1a over some strings (separated), for comparing resourceVersions without
/// allocating per object.
pub fn digest<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.unwrap_or("").bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The facade's versioned values.
#[derive(Default)]
pub struct Caches {
    /// Every stream rendered ([`crate::api::rendered_streams`]).
    pub(crate) streams: Arc<crate::api::rendered_streams::Cache>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn covers_is_componentwise() {
        assert!(Stamp([2, 3]).covers(&Stamp([2, 3])));
        assert!(Stamp([3, 3]).covers(&Stamp([2, 3])));
        assert!(!Stamp([3, 2]).covers(&Stamp([2, 3])));
    }

    #[test]
    fn rebuilds_only_when_a_counter_moved() {
        let v: Versioned<u64, u64, 2> = Versioned::default();
        let builds = AtomicUsize::new(0);
        let build = |stamp: [u64; 2]| {
            let builds = &builds;
            move |work: &mut u64| {
                builds.fetch_add(1, Ordering::SeqCst);
                *work += 1;
                stamp[0] * 10 + stamp[1]
            }
        };
        assert_eq!(*v.get(Stamp([0, 0]), build([0, 0])), 0);
        assert_eq!(*v.get(Stamp([0, 0]), build([0, 0])), 0);
        assert_eq!(builds.load(Ordering::SeqCst), 1, "same stamp: shared");
        assert_eq!(*v.get(Stamp([0, 1]), build([0, 1])), 1);
        assert_eq!(*v.get(Stamp([1, 1]), build([1, 1])), 11);
        assert_eq!(builds.load(Ordering::SeqCst), 3, "each change: one build");
        // A reader that took its stamp before the last build is served the newer value.
        assert_eq!(*v.get(Stamp([0, 1]), build([0, 1])), 11);
        assert_eq!(builds.load(Ordering::SeqCst), 3);
        assert_eq!(
            *v.work.lock().unwrap(),
            3,
            "working state persists across builds"
        );
    }

    #[test]
    fn a_lenient_counter_serves_the_current_value_and_hands_out_one_refresh() {
        let v: Arc<Versioned<u64, (), 2>> = Arc::default();
        let age = Duration::from_millis(30);
        assert!(matches!(v.lenient(&Stamp([0, 0]), 1, age), Lenient::Build));
        v.get(Stamp([0, 0]), |_| 1);
        // Only the lenient counter moved: served as is while young.
        assert!(matches!(v.lenient(&Stamp([0, 5]), 1, age), Lenient::Serve(x) if *x == 1));
        // A strict counter moved: build.
        assert!(matches!(v.lenient(&Stamp([1, 0]), 1, age), Lenient::Build));
        std::thread::sleep(age);
        // Old and behind: the first caller refreshes, the others are served meanwhile.
        let guard = match v.lenient(&Stamp([0, 5]), 1, age) {
            Lenient::ServeAndRefresh(g) => g,
            _ => panic!("expected the refresh job"),
        };
        assert!(matches!(
            v.lenient(&Stamp([0, 5]), 1, age),
            Lenient::Serve(_)
        ));
        v.get(Stamp([0, 5]), |_| 2);
        drop(guard);
        assert!(matches!(v.lenient(&Stamp([0, 5]), 1, age), Lenient::Serve(x) if *x == 2));
        // Old but current in every counter: nothing to refresh.
        std::thread::sleep(age);
        assert!(matches!(
            v.lenient(&Stamp([0, 5]), 1, age),
            Lenient::Serve(_)
        ));
    }

    #[test]
    fn concurrent_readers_share_one_build() {
        let v: Versioned<u64, (), 1> = Versioned::default();
        let builds = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    v.get(Stamp([7]), |_| {
                        builds.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        7
                    })
                });
            }
        });
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }
}
