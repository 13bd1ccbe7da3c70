//! The live stats cache: what the nodes reported on their last probe and list. Fed by the
//! Streamer controller, read by the Stream controller (aliveness), the facade and `/metrics`.
//! Live figures never go to `.status` (that would be a write per stream per resync).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::resources::wire::{ServerStats, StreamStats};

/// What Panoptes last learnt about one node.
#[derive(Clone, Debug, Default)]
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
#[derive(Clone, Debug, Default, PartialEq)]
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
}

/// Shared, cheaply cloned handle to the cache.
#[derive(Clone, Default)]
pub struct LiveStats {
    nodes: Arc<RwLock<HashMap<String, Arc<NodeLive>>>>,
    /// Bumped under the write lock by every edit, for readers that cache what they derive
    /// (see [`LiveStats::changes`]).
    changes: Arc<AtomicU64>,
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
        self.read().get(hostname).cloned()
    }

    /// Every node's last report, by hostname.
    pub fn nodes(&self) -> Vec<(String, Arc<NodeLive>)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(h, n)| (h.clone(), n.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// What `hostname` reported for stream `name` on its last list.
    pub fn stream(&self, hostname: &str, name: &str) -> Option<StreamLive> {
        self.read().get(hostname)?.streams.get(name).cloned()
    }

    /// Edits the report of `hostname` in place (creating an empty one first if needed).
    pub fn update_node(&self, hostname: &str, edit: impl FnOnce(&mut NodeLive)) {
        let mut nodes = self.write();
        let entry = nodes.entry(hostname.to_string()).or_default();
        edit(Arc::make_mut(entry));
        self.bump();
    }

    /// Forgets a node that is no longer declared.
    pub(crate) fn remove_node(&self, hostname: &str) {
        let mut nodes = self.write();
        nodes.remove(hostname);
        self.bump();
    }

    /// Called with the write lock held, after the edit.
    fn bump(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<NodeLive>>> {
        // A poisoned lock only means a writer panicked mid-update of plain data; the data
        // is still a valid (if stale) report.
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<NodeLive>>> {
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
}
