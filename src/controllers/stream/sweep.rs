//! The steady look at every Stream (a rotated Secret the watch did not see, a node copy that
//! drifted between lists): one paced walk over the store per period, not a timer per stream.
//!
//! A `requeue` per healthy stream kept every stream in kube's scheduler for as long as it
//! existed (a map entry and a delay-queue slot: ~540 bytes each, 54 MB at 100,000 streams)
//! for a look due once every ten minutes. The walk holds one pointer per stream while it runs.

use std::sync::Arc;
use std::time::Duration;

use crate::controllers::Context;
use crate::controllers::refs::key_of;
use crate::resources::Stream;
use crate::state::Watched;

/// How often the walk hands out a slice: the walk spreads its reconciles over the period in
/// this many steps per second at most.
const TICK: Duration = Duration::from_secs(1);

/// One walk over `items`, spread over `ticks` steps: each item comes up exactly once, at most
/// `ceil(len / ticks)` per step, so a large store never arrives at the controller at once.
pub(crate) struct Walk<T> {
    due: std::vec::IntoIter<T>,
    per_tick: usize,
}

impl<T> Walk<T> {
    pub(crate) fn new(items: Vec<T>, ticks: usize) -> Self {
        let per_tick = items.len().div_ceil(ticks.max(1)).max(1);
        Self {
            due: items.into_iter(),
            per_tick,
        }
    }

    /// The next step's items (empty once the walk is over). Items are released as they are
    /// handed out: a stream deleted during the walk is not kept past its turn.
    pub(crate) fn step(&mut self) -> Vec<T> {
        self.due.by_ref().take(self.per_tick).collect()
    }
}

/// Asks the Stream controller to look at every stream once per `period`, forever. The first
/// walk starts one period after start: the initial watch reconciles every stream anyway.
pub(crate) async fn run(ctx: Arc<Context>, period: Duration) {
    let ticks = (period.as_secs_f64() / TICK.as_secs_f64()).ceil().max(1.0) as usize;
    let step = period / ticks as u32;
    let mut next = tokio::time::Instant::now() + period;
    loop {
        tokio::time::sleep_until(next).await;
        next += period;
        let mut walk = Walk::new(Stream::store(&ctx.stores).state(), ticks);
        let mut at = tokio::time::Instant::now();
        loop {
            let slice: Vec<Arc<Stream>> = walk.step();
            if slice.is_empty() {
                break;
            }
            for stream in slice {
                ctx.fleet.touch_stream(&key_of(stream.as_ref()));
            }
            at += step;
            tokio::time::sleep_until(at).await;
        }
        // A walk that fell behind (a stalled runtime) starts the next one at once, not in a
        // burst of the missed ones.
        next = next.max(tokio::time::Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_all(len: usize, ticks: usize) -> Vec<Vec<usize>> {
        let mut walk = Walk::new((0..len).collect(), ticks);
        std::iter::from_fn(|| Some(walk.step()).filter(|s| !s.is_empty())).collect()
    }

    #[test]
    fn a_walk_hands_out_every_item_once_spread_over_its_steps() {
        for (len, ticks, steps, widest) in [
            (0, 600, 0, 0),
            (5, 600, 5, 1),
            (600, 600, 600, 1),
            (601, 600, 301, 2),
            (100_000, 600, 599, 167),
            (7, 1, 1, 7),
            (7, 0, 1, 7),
        ] {
            let slices = walk_all(len, ticks);
            assert_eq!(slices.len(), steps, "{len} over {ticks}: steps");
            assert_eq!(
                slices.iter().map(Vec::len).max().unwrap_or(0),
                widest,
                "{len} over {ticks}: widest step"
            );
            let seen: Vec<usize> = slices.into_iter().flatten().collect();
            assert_eq!(
                seen,
                (0..len).collect::<Vec<_>>(),
                "{len}: each once, in order"
            );
        }
    }

    #[test]
    fn a_walk_lets_go_of_each_item_at_its_turn() {
        let items: Vec<Arc<u8>> = (0..4).map(Arc::new).collect();
        let watch = Arc::downgrade(&items[0]);
        let mut walk = Walk::new(items, 4);
        drop(walk.step());
        assert!(
            watch.upgrade().is_none(),
            "the walk still holds an item it handed out"
        );
    }
}
