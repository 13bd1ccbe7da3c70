//! Stream status writes, off the reconcile path and with few in flight.
//!
//! A reconcile decides the status and hands it over here; it does not wait for the API server.
//! On a bulk apply the API server is the bottleneck: the creates of the new Streams and the
//! operator's status writes compete for it, and every status write a reconcile waited for held
//! one of the controller's slots, so pushes to the nodes queued behind API latency. Here a few
//! lanes (each stream always on the same one, and never in flight twice, so a stream's writes
//! land in order) write the latest status of each stream; a stream whose status changes again
//! before its write only gets the newest, and a lane with a deep queue sends a few writes at
//! once. Cameras start streaming first and statuses follow, instead of both crawling.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::controllers::Context;
use crate::controllers::kit;
use crate::controllers::refs::Key;
use crate::resources::{Stream, StreamStatus};

/// Lanes of status writes: each stream always on the same one, so its writes land in order.
/// At 100,000 cameras 8 writes in flight drained ~94 writes/s (~85 ms each under the creates'
/// load), below the 142 creates/s the API server admitted.
pub const WRITERS: usize = 16;
/// Writes one lane has in flight at most, when its queue is deep: 16 lanes at one write each
/// drained ~150 statuses/s at 100,000 cameras (~100 ms per patch with the API server busy
/// serving two replicas' watches), so a bulk apply's statuses trailed its last create by
/// minutes. Writes of different streams in one lane are independent; the bound keeps the
/// operator at 64 writes in flight, well under the API server's default of 200 mutating
/// requests in flight.
const PER_LANE: usize = 4;
/// Statuses queued in a lane per extra write in flight: a shallow queue is drained one write
/// at a time, as before (a handful of changes does not need a burst).
const DEPTH_PER_WRITE: usize = 64;

/// How many writes a lane sends at once with `depth` statuses queued.
fn batch(depth: usize) -> usize {
    (1 + depth / DEPTH_PER_WRITE).min(PER_LANE)
}

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
    /// Statuses being written now (a lane takes its next batch once these are done, so a
    /// stream is never in flight twice).
    in_flight: HashMap<Key, Pending>,
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
        q.latest.contains_key(key) || q.in_flight.contains_key(key)
    }

    /// The newest status of `key` not known to be written yet (queued, else in flight): what
    /// the object is about to show. A reconcile compares with this, not with the object, so
    /// the same status is not queued again while its write is under way.
    pub fn newest(&self, key: &Key) -> Option<Pending> {
        let q = self.lane(key).lock();
        q.latest.get(key).or_else(|| q.in_flight.get(key)).cloned()
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

    /// The next statuses of lane `i` to write together, marking them in flight.
    fn next(&self, i: usize) -> Vec<(Key, Pending)> {
        let mut q = self.lanes[i].lock();
        let n = batch(q.order.len());
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(key) = q.order.pop_front() else {
                break;
            };
            let Some(pending) = q.latest.remove(&key) else {
                continue;
            };
            q.in_flight.insert(key.clone(), pending.clone());
            out.push((key, pending));
        }
        out
    }

    fn done(&self, i: usize) {
        self.lanes[i].lock().in_flight.clear();
    }

    /// Runs one worker per lane until the task is dropped.
    pub async fn run(self: Arc<Self>, ctx: Arc<Context>) {
        let workers = (0..self.lanes.len()).map(|i| {
            let (me, ctx) = (self.clone(), ctx.clone());
            async move {
                loop {
                    let writes = me.next(i);
                    if writes.is_empty() {
                        me.lanes[i].wake.notified().await;
                        continue;
                    }
                    let results = futures::future::join_all(writes.iter().map(|(key, pending)| {
                        kit::replace_status::<Stream, _>(&ctx, key, &pending.uid, &pending.status)
                    }))
                    .await;
                    me.done(i);
                    let mut again = Vec::new();
                    for ((key, pending), result) in writes.into_iter().zip(results) {
                        if let Some(retry) = me.written(&ctx, key, pending, result) {
                            again.push(retry);
                        }
                    }
                    if again.is_empty() {
                        continue;
                    }
                    tokio::time::sleep(RETRY).await;
                    for (key, pending) in again {
                        // A newer status queued meanwhile supersedes this one.
                        if !me.busy(&key) {
                            me.submit(key, pending);
                        }
                    }
                }
            }
        });
        futures::future::join_all(workers).await;
    }

    /// Counts one finished write; what is to be tried again.
    fn written(
        &self,
        ctx: &Context,
        key: Key,
        pending: Pending,
        result: Result<(), kit::Error>,
    ) -> Option<(Key, Pending)> {
        let metrics = &ctx.controller_metrics;
        let Err(error) = result else {
            metrics.status_written("Stream", "ok");
            return None;
        };
        if after_failure(&error) == AfterFailure::GiveUp {
            // The API server refuses this status as invalid: writing it again cannot help.
            // The next reconcile of the stream decides anew.
            metrics.status_written("Stream", "dropped");
            tracing::warn!(namespace = %key.namespace(), name = %key.name(), category = error.category(), %error, "the API server refuses a stream status; giving up on it");
            return None;
        }
        metrics.status_written("Stream", "retried");
        tracing::warn!(namespace = %key.namespace(), name = %key.name(), category = error.category(), %error, "writing a stream status failed; retrying");
        Some((key, pending))
    }
}

/// What a status write changes against the status it replaces, for
/// `panoptes_status_changes_total{kind="Stream",part}`: `new` for a stream's first status,
/// else each condition type whose status or reason moved (`Scheduled`, `Synced`, `Ready`,
/// others as `conditions`; a message alone is `messages`), `layout`, `alive`, `syncedNodes`,
/// `credentialBinding`, `observedGeneration`. A write that changes none of them is `same`: a
/// repeat the reconcile could not tell from news.
pub fn changed_parts(old: &StreamStatus, new: &StreamStatus) -> Vec<&'static str> {
    if old.watcher_name.is_none() && old.common.conditions.is_empty() {
        return vec!["new"];
    }
    let mut parts = Vec::new();
    let mut messages = false;
    for c in &new.common.conditions {
        let before = crate::resources::common::condition(&old.common.conditions, &c.type_);
        match before {
            Some(b) if b.status == c.status && b.reason == c.reason => {
                messages |= b.message != c.message;
            }
            _ => parts.push(match c.type_.as_ref() {
                "Scheduled" => "Scheduled",
                "Synced" => "Synced",
                "Ready" => "Ready",
                _ => "conditions",
            }),
        }
    }
    if old.common.conditions.len() != new.common.conditions.len() {
        parts.push("conditions");
    }
    if messages {
        parts.push("messages");
    }
    if old.layout != new.layout {
        parts.push("layout");
    }
    if old.alive != new.alive {
        parts.push("alive");
    }
    if old.synced_nodes != new.synced_nodes {
        parts.push("syncedNodes");
    }
    if old.credential_binding != new.credential_binding {
        parts.push("credentialBinding");
    }
    if old.common.observed_generation != new.common.observed_generation {
        parts.push("observedGeneration");
    }
    parts.sort_unstable();
    parts.dedup();
    if parts.is_empty() {
        parts.push("same");
    }
    parts
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
        let writes = w.next(0);
        assert_eq!(writes, vec![(key("a"), pending("1", true))]);
        // In flight still counts as busy, and is the newest status until done clears it.
        assert!(w.busy(&key("a")));
        assert_eq!(w.newest(&key("a")), Some(pending("1", true)));
        w.done(0);
        assert!(!w.busy(&key("a")));
        assert_eq!(w.newest(&key("a")), None);
        w.forget(&key("b"));
        assert!(w.next(0).is_empty());
        assert_eq!(w.queued(), 0);
    }

    #[test]
    fn a_status_queued_while_its_write_is_in_flight_is_the_newest() {
        let w = StatusWriter::new(1);
        w.submit(key("a"), pending("1", false));
        let _ = w.next(0);
        w.submit(key("a"), pending("1", true));
        assert_eq!(w.newest(&key("a")), Some(pending("1", true)));
        w.done(0);
        // Written after the first write is done, never beside it.
        assert_eq!(w.next(0), vec![(key("a"), pending("1", true))]);
    }

    #[test]
    fn a_deep_queue_is_drained_several_writes_at_a_time() {
        assert_eq!(batch(0), 1);
        assert_eq!(batch(DEPTH_PER_WRITE - 1), 1);
        assert_eq!(batch(DEPTH_PER_WRITE), 2);
        assert_eq!(batch(100_000), PER_LANE);
        let w = StatusWriter::new(1);
        for i in 0..DEPTH_PER_WRITE * 2 {
            w.submit(key(&format!("s{i}")), pending("1", true));
        }
        let first = w.next(0);
        assert_eq!(first.len(), 3);
        let names: std::collections::HashSet<_> = first.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(names.len(), 3, "one write per stream in a batch");
        assert!(first.iter().all(|(k, _)| w.busy(k)));
    }

    #[test]
    fn a_write_is_counted_by_what_it_changes() {
        use crate::resources::common::{CommonStatus, Condition};
        let cond = |type_: &str, status: &str, reason: &str, message: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: Some(1),
        };
        let status = |conditions: Vec<Condition>, alive: Option<bool>| StreamStatus {
            common: CommonStatus {
                conditions,
                observed_generation: Some(1),
            },
            watcher_name: Some("cam".into()),
            alive,
            synced_nodes: vec!["n1".into()],
            ..StreamStatus::default()
        };
        let settled = status(
            vec![
                cond("Scheduled", "True", "Placed", "on n1"),
                cond("Ready", "True", "Alive", "running"),
            ],
            Some(true),
        );
        let starting = status(
            vec![
                cond("Scheduled", "True", "Placed", "on n1"),
                cond("Ready", "False", "Starting", "not shown running yet"),
            ],
            None,
        );
        let reworded = status(
            vec![
                cond("Scheduled", "True", "Placed", "on n1 (zone a)"),
                cond("Ready", "True", "Alive", "running"),
            ],
            Some(true),
        );
        let mut moved = settled.clone();
        moved.synced_nodes = vec!["n2".into()];
        let mut newer = settled.clone();
        newer.common.observed_generation = Some(2);
        for (old, new, want) in [
            (&StreamStatus::default(), &settled, vec!["new"]),
            (&starting, &settled, vec!["Ready", "alive"]),
            (&settled, &settled, vec!["same"]),
            (&settled, &reworded, vec!["messages"]),
            (&settled, &moved, vec!["syncedNodes"]),
            (&settled, &newer, vec!["observedGeneration"]),
        ] {
            assert_eq!(changed_parts(old, new), want);
        }
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
