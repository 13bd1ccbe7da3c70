//! Stream status writes, off the reconcile path and with few in flight.
//!
//! A reconcile decides the status and hands it over here; it does not wait for the API server.
//! On a bulk apply the API server is the bottleneck: the creates of the new Streams and the
//! operator's status writes compete for it, and every status write a reconcile waited for held
//! one of the controller's slots, so pushes to the nodes queued behind API latency. Here a few
//! workers (each stream always on the same one, so a stream's writes land in order) write the
//! latest status of each stream; a stream whose status changes again before its write only gets
//! the newest. Cameras start streaming first and statuses follow, instead of both crawling.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::controllers::Context;
use crate::controllers::kit;
use crate::controllers::refs::Key;
use crate::resources::{Stream, StreamStatus};

/// Status writes in flight at once. At 100,000 cameras 8 drained ~94 writes/s (~85 ms each
/// under the creates' load), below the 142 creates/s the API server admitted, so statuses
/// trailed the last create by minutes; with one write per camera, 16 keep up.
pub const WRITERS: usize = 16;
/// A failed write is tried again after this long (unless a newer status replaced it).
const RETRY: Duration = Duration::from_secs(1);

/// A status waiting to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The object the status is for (a namesake created meanwhile is left alone).
    pub uid: String,
    /// The whole status.
    pub status: StreamStatus,
}

#[derive(Default)]
struct Queue {
    order: VecDeque<Key>,
    latest: HashMap<Key, Pending>,
    in_flight: Option<Key>,
}

#[derive(Default)]
struct Lane {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Lane {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The queue of status writes and its workers' lanes.
pub struct StatusWriter {
    lanes: Vec<Lane>,
    hasher: RandomState,
}

impl Default for StatusWriter {
    fn default() -> Self {
        Self::new(WRITERS)
    }
}

impl StatusWriter {
    /// A writer with `lanes` workers' worth of queues (run them with [`StatusWriter::run`]).
    pub fn new(lanes: usize) -> Self {
        Self {
            lanes: (0..lanes.max(1)).map(|_| Lane::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn lane(&self, key: &Key) -> &Lane {
        let i = self.hasher.hash_one(key) as usize % self.lanes.len();
        &self.lanes[i]
    }

    /// Queues `pending` as the status of `key`, replacing one not written yet.
    pub fn submit(&self, key: Key, pending: Pending) {
        let lane = self.lane(&key);
        let mut q = lane.lock();
        if q.latest.insert(key.clone(), pending).is_none() {
            q.order.push_back(key);
        }
        drop(q);
        lane.wake.notify_one();
    }

    /// A write of `key` is queued or in flight: what the object shows may be about to change,
    /// so it cannot tell whether a status is news.
    pub fn busy(&self, key: &Key) -> bool {
        let q = self.lane(key).lock();
        q.latest.contains_key(key) || q.in_flight.as_ref() == Some(key)
    }

    /// Drops a queued status (the object is gone).
    pub fn forget(&self, key: &Key) {
        let mut q = self.lane(key).lock();
        if q.latest.remove(key).is_some() {
            q.order.retain(|k| k != key);
        }
    }

    /// Statuses queued and not written yet.
    pub fn queued(&self) -> usize {
        self.lanes.iter().map(|l| l.lock().latest.len()).sum()
    }

    /// The next status of lane `i`, marking it in flight.
    fn next(&self, i: usize) -> Option<(Key, Pending)> {
        let mut q = self.lanes[i].lock();
        let key = q.order.pop_front()?;
        let pending = q.latest.remove(&key)?;
        q.in_flight = Some(key.clone());
        Some((key, pending))
    }

    fn done(&self, i: usize) {
        self.lanes[i].lock().in_flight = None;
    }

    /// Runs one worker per lane until the task is dropped.
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>) {
        let workers = (0..self.lanes.len()).map(|i| {
            let (me, ctx) = (self.clone(), ctx.clone());
            async move {
                loop {
                    let Some((key, pending)) = me.next(i) else {
                        me.lanes[i].wake.notified().await;
                        continue;
                    };
                    let result =
                        kit::replace_status::<Stream, _>(&ctx, &key, &pending.uid, &pending.status)
                            .await;
                    me.done(i);
                    let metrics = &ctx.controller_metrics;
                    let Err(error) = result else {
                        metrics.status_written("Stream", "ok");
                        continue;
                    };
                    if after_failure(&error) == AfterFailure::GiveUp {
                        // The API server refuses this status as invalid: writing it again
                        // cannot help. The next reconcile of the stream decides anew.
                        metrics.status_written("Stream", "dropped");
                        tracing::warn!(namespace = %key.namespace(), name = %key.name(), category = error.category(), %error, "the API server refuses a stream status; giving up on it");
                        continue;
                    }
                    metrics.status_written("Stream", "retried");
                    tracing::warn!(namespace = %key.namespace(), name = %key.name(), category = error.category(), %error, "writing a stream status failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    // A newer status queued meanwhile supersedes this one.
                    if !me.busy(&key) {
                        me.submit(key, pending);
                    }
                }
            }
        });
        futures::future::join_all(workers).await;
    }
}

/// What becomes of a status whose write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterFailure {
    /// Tried again after [`RETRY`] (the API server was busy, unreachable, or in conflict).
    Retry,
    /// Dropped: the API server rejects it as invalid, so the same write would fail forever.
    GiveUp,
}

fn after_failure(error: &kit::Error) -> AfterFailure {
    if error.is_invalid_input() {
        AfterFailure::GiveUp
    } else {
        AfterFailure::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_the_api_server_calls_invalid_is_given_up_anything_else_retried() {
        let failed = |code: u16, reason: &str| kit::Error::Kube {
            action: "writing status of",
            what: "Stream ns/s".into(),
            source: kube::Error::Api(Box::new(kube::core::Status {
                code,
                reason: reason.into(),
                ..kube::core::Status::failure("refused", reason)
            })),
        };
        for (code, reason, then) in [
            (422, "Invalid", AfterFailure::GiveUp),
            (400, "BadRequest", AfterFailure::GiveUp),
            (409, "Conflict", AfterFailure::Retry),
            (429, "TooManyRequests", AfterFailure::Retry),
            (500, "InternalError", AfterFailure::Retry),
            (503, "ServiceUnavailable", AfterFailure::Retry),
        ] {
            assert_eq!(
                after_failure(&failed(code, reason)),
                then,
                "{code} {reason}"
            );
        }
    }

    fn key(n: &str) -> Key {
        Key::new("ns", n)
    }

    fn pending(uid: &str, alive: bool) -> Pending {
        Pending {
            uid: uid.into(),
            status: StreamStatus {
                alive: Some(alive),
                ..StreamStatus::default()
            },
        }
    }

    #[test]
    fn the_latest_status_of_a_stream_replaces_a_queued_one_in_place() {
        let w = StatusWriter::new(1);
        w.submit(key("a"), pending("1", false));
        w.submit(key("b"), pending("2", false));
        w.submit(key("a"), pending("1", true));
        assert_eq!(w.queued(), 2);
        assert!(w.busy(&key("a")));
        let (k, p) = w.next(0).unwrap();
        assert_eq!((k, p), (key("a"), pending("1", true)));
        // In flight still counts as busy; done clears it.
        assert!(w.busy(&key("a")));
        w.done(0);
        assert!(!w.busy(&key("a")));
        w.forget(&key("b"));
        assert!(w.next(0).is_none());
        assert_eq!(w.queued(), 0);
    }

    #[test]
    fn a_stream_always_goes_to_the_same_lane() {
        let w = StatusWriter::new(4);
        for i in 0..50 {
            let k = key(&format!("s{i}"));
            let a: *const Lane = w.lane(&k);
            let b: *const Lane = w.lane(&k);
            assert_eq!(a, b);
        }
    }
}
