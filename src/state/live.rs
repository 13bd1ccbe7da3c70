//! The live stats cache: what the nodes reported on their last probe and list. Fed by the
//! Streamer controller, read by the Stream controller (aliveness), the facade and `/metrics`.
//! Live figures never go to `.status` (that would be a write per stream per resync).
//!
//! On a standby replica the cache is a mirror of the leader's (see `crate::peer`): it is
//! refreshed from [`LiveStats::delta`] answers and knows how old its last refresh is
//! ([`LiveStats::stale_for`]), so a facade can say when its live fields are stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::resources::wire::{ServerStats, StreamStats};

/// A mirror whose last refresh is older than this reports itself stale.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// What Panoptes last learnt about one node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeLive {
    /// The node answered its last probe.
    pub reachable: bool,
    /// The node's readiness probe passed (reachable and serving).
    pub ready: bool,
    /// When the node was last probed (UTC ms).
    pub(crate) last_probe_ms: i64,
    /// Why the last probe or list failed, for people (never contains credentials).
    pub last_error: Option<String>,
    /// `GET /config/stats` of the last successful probe.
    pub server: Option<ServerStats>,
    /// Streams the node reported on its last list, by node stream name.
    pub streams: HashMap<String, StreamLive>,
}

/// One stream as one node reported it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamLive {
    /// Runtime statistics (absent for a stream that never ran).
    pub stats: Option<StreamStats>,
    /// The stream carries Panoptes' ownership label on disk.
    pub managed: bool,
}

impl StreamLive {
    /// The node says the stream is receiving frames.
    pub fn alive(&self) -> bool {
        self.stats.as_ref().and_then(|s| s.alive).unwrap_or(false)
    }

    /// The node says the stream is still connecting to its source (`status: waiting`).
    pub fn connecting(&self) -> bool {
        self.stats
            .as_ref()
            .is_some_and(|s| s.status.as_deref() == Some("waiting"))
    }
}

/// Shared, cheaply cloned handle to the cache.
#[derive(Clone, Default)]
pub struct LiveStats {
    nodes: Arc<RwLock<Nodes>>,
    /// Bumped under the write lock by every edit, for readers that cache what they derive
    /// (see [`LiveStats::changes`]).
    changes: Arc<AtomicU64>,
    /// None: this replica's own probes fill the cache. Some: a mirror of the leader's,
    /// last refreshed at the inner instant (None: never yet) or since the mirror started.
    mirror: Arc<Mutex<Option<Mirror>>>,
}

#[derive(Default)]
struct Nodes {
    reports: HashMap<String, Arc<NodeLive>>,
    /// The value of `changes` at each node's last edit, so a mirror fetches only what moved.
    versions: HashMap<String, u64>,
}

#[derive(Clone, Copy)]
struct Mirror {
    since: Instant,
    synced: Option<Instant>,
}

/// The nodes edited after a given `changes` value, as a standby fetches them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LiveDelta {
    /// Which cache the delta comes from (the sender's choice; a receiver asking with another
    /// epoch gets a full delta, since its `since` means nothing here).
    #[serde(default)]
    pub epoch: u64,
    /// The cache's `changes` when the delta was taken (the next request's `since`).
    pub changes: u64,
    /// Whether `nodes` is the whole cache (the receiver drops what is not in it).
    pub full: bool,
    /// Every node the cache holds (a partial delta's receiver drops the others).
    pub hosts: Vec<String>,
    /// Reports of the nodes edited since the request's `since`.
    pub nodes: HashMap<String, NodeLive>,
}

impl LiveStats {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many edits the cache has seen (only ever grows). Read it before reading the
    /// cache: while it stays the same, nothing read after it has changed.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// The last report of `hostname` (shared, not copied).
    pub fn node(&self, hostname: &str) -> Option<Arc<NodeLive>> {
        self.read().reports.get(hostname).cloned()
    }

    /// Every node's last report, by hostname.
    pub fn nodes(&self) -> Vec<(String, Arc<NodeLive>)> {
        let mut all: Vec<_> = self
            .read()
            .reports
            .iter()
            .map(|(h, n)| (h.clone(), n.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// What `hostname` reported for stream `name` on its last list.
    pub fn stream(&self, hostname: &str, name: &str) -> Option<StreamLive> {
        self.read()
            .reports
            .get(hostname)?
            .streams
            .get(name)
            .cloned()
    }

    /// Edits the report of `hostname` in place (creating an empty one first if needed).
    pub fn update_node(&self, hostname: &str, edit: impl FnOnce(&mut NodeLive)) {
        let mut nodes = self.write();
        let entry = nodes.reports.entry(hostname.to_string()).or_default();
        edit(Arc::make_mut(entry));
        let v = self.bump();
        nodes.versions.insert(hostname.to_string(), v);
    }

    /// Forgets a node that is no longer declared.
    pub(crate) fn remove_node(&self, hostname: &str) {
        let mut nodes = self.write();
        nodes.reports.remove(hostname);
        nodes.versions.remove(hostname);
        self.bump();
    }

    /// The nodes edited after `since` (every node when `since` is 0).
    pub fn delta(&self, since: u64) -> LiveDelta {
        let nodes = self.read();
        let changes = self.changes();
        let full = since == 0 || since > changes;
        let mut hosts: Vec<String> = nodes.reports.keys().cloned().collect();
        hosts.sort();
        LiveDelta {
            epoch: 0,
            changes,
            full,
            nodes: nodes
                .reports
                .iter()
                .filter(|(h, _)| full || nodes.versions.get(*h).is_none_or(|v| *v > since))
                .map(|(h, n)| (h.clone(), (**n).clone()))
                .collect(),
            hosts,
        }
    }

    /// Applies what the leader sent and records the refresh. Only edits count as changes
    /// (an empty delta leaves [`LiveStats::changes`] alone, so derived caches stay warm).
    pub fn apply(&self, delta: LiveDelta) {
        let mut nodes = self.write();
        let before = nodes.reports.len();
        if delta.full {
            nodes.reports.retain(|h, _| delta.nodes.contains_key(h));
        } else {
            nodes.reports.retain(|h, _| delta.hosts.contains(h));
        }
        let mut edited = nodes.reports.len() != before;
        for (host, report) in delta.nodes {
            nodes.reports.insert(host, Arc::new(report));
            edited = true;
        }
        if edited {
            self.bump();
        }
        drop(nodes);
        if let Some(m) = self
            .mirror
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            m.synced = Some(Instant::now());
        }
    }

    /// Makes this cache a mirror of the leader's (true) or this replica's own again (false,
    /// when it starts to lead: what the mirror holds stays until its own probes replace it).
    pub fn set_mirror(&self, mirror: bool) {
        *self.mirror.lock().unwrap_or_else(|e| e.into_inner()) = mirror.then(|| Mirror {
            since: Instant::now(),
            synced: None,
        });
    }

    /// How long a mirror has gone without a refresh, once that exceeds [`STALE_AFTER`]
    /// (None: fresh, or not a mirror).
    pub fn stale_for(&self) -> Option<Duration> {
        let m = (*self.mirror.lock().unwrap_or_else(|e| e.into_inner()))?;
        let age = m.synced.unwrap_or(m.since).elapsed();
        (m.synced.is_none() || age > STALE_AFTER).then_some(age)
    }

    /// Called with the write lock held, after the edit; the new `changes`.
    fn bump(&self) -> u64 {
        self.changes.fetch_add(1, Ordering::Release) + 1
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Nodes> {
        // A poisoned lock only means a writer panicked mid-update of plain data; the data
        // is still a valid (if stale) report.
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Nodes> {
        self.nodes.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_visible_and_snapshots_are_stable() {
        let live = LiveStats::new();
        live.update_node("a", |n| {
            n.reachable = true;
            n.streams.insert(
                "cam1".into(),
                StreamLive {
                    stats: Some(StreamStats {
                        alive: Some(true),
                        ..Default::default()
                    }),
                    managed: true,
                },
            );
        });
        let before = live.node("a").unwrap();
        let count = live.changes();
        live.update_node("a", |n| n.reachable = false);
        assert!(live.changes() > count, "every edit is counted");
        assert!(before.reachable, "a snapshot taken earlier is not changed");
        assert!(!live.node("a").unwrap().reachable);
        assert!(live.stream("a", "cam1").unwrap().alive());
        assert!(live.stream("a", "nope").is_none());
        live.remove_node("a");
        assert!(live.nodes().is_empty());
    }

    #[test]
    fn a_mirror_follows_deltas_and_knows_when_it_is_stale() {
        let leader = LiveStats::new();
        leader.update_node("a", |n| n.reachable = true);
        leader.update_node("b", |n| n.ready = true);
        let standby = LiveStats::new();
        standby.set_mirror(true);
        assert!(standby.stale_for().is_some(), "never synced: stale");
        let d = leader.delta(0);
        assert!(d.full && d.nodes.len() == 2);
        let since = d.changes;
        standby.apply(d);
        assert!(standby.stale_for().is_none());
        assert!(standby.node("a").unwrap().reachable);
        // Only what moved is sent; a removed node is dropped by the receiver.
        leader.update_node("a", |n| n.reachable = false);
        leader.remove_node("b");
        let d = leader.delta(since);
        assert!(!d.full);
        assert_eq!(d.nodes.keys().collect::<Vec<_>>(), ["a"]);
        standby.apply(d);
        assert!(!standby.node("a").unwrap().reachable);
        assert!(standby.node("b").is_none());
        // Nothing moved: nothing sent, no change counted.
        let before = standby.changes();
        standby.apply(leader.delta(leader.changes()));
        assert_eq!(standby.changes(), before);
        standby.set_mirror(false);
        assert!(
            standby.stale_for().is_none(),
            "its own cache is never stale"
        );
    }
}
