//! What the Stream and Streamer controllers and the layouter loop share in memory: the
//! current placements (the layouter's output, ahead of what `.status.layout` says while its
//! writes are in flight), what each node holds on disk (from lists and pushes), and the
//! triggers between the three loops.
//!
//! Pushes are driven from here rather than from `.status`, so a placement reaches the nodes
//! without waiting for its status write to round-trip through the API server. Changed layouts
//! wait here until the Stream controller records them with the rest of the stream's status:
//! one status write per stream on a bulk apply instead of one for the layout and one or two
//! for the conditions.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use super::refs::Key;
use crate::domain::moves::Wanted;
use crate::layout::{Placement, Unplaced};
use crate::resources::wire::StreamLayout;
use crate::resources::{Stream, Streamer};

/// A node copy's `config_on_disk`, held as its compact JSON text. A parsed tree of even a
/// small body is three or more B-tree maps, ~2.4 KiB per stream held for the whole run (the
/// largest per-stream cost after the Stream store, `make heap`); its text is ~150 bytes.
/// It is parsed only when a body is compared with it, which the stream controller's matched
/// digests skip at rest. `serde_json`'s maps are sorted, so equal values have equal text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk(Box<str>);

impl Disk {
    /// The copy of `value`.
    pub fn of(value: &Value) -> Self {
        Self(serde_json::to_string(value).unwrap_or_default().into())
    }

    /// The value, parsed again.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// One stream as one node holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeCopy {
    /// The node's `config_on_disk` (or what Panoptes last pushed, until the next list).
    pub config_on_disk: Option<Arc<Disk>>,
    /// Carries Panoptes' ownership label; foreign streams are never touched.
    pub managed: bool,
}

pub use crate::domain::world::Blocked;

/// The maps every push writes (four per push, most of them keyed by the node's and the
/// stream's names), hashed with foldhash: SipHash was a fifth of what a push cost the fleet
/// at 100,000 streams. foldhash is seeded at random per process like std's, which is enough
/// against names chosen to collide: they come from Streams (written by those allowed to) and
/// from the operator's own nodes.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

#[derive(Default)]
struct Inner {
    /// The first layout run finished; before it nothing is known to be a leftover.
    laid_out: bool,
    placements: HashMap<Key, Placement>,
    unplaced: HashMap<Key, Unplaced>,
    /// hostname → streams placed there (ingest or DVR backup).
    by_node: HashMap<Arc<str>, HashSet<Key>>,
    /// Watcher name → the Stream that owns it.
    names: HashMap<String, Key>,
    blocked: HashMap<Key, Blocked>,
    /// hostname → node stream name → copy.
    on_node: HashMap<String, HashMap<String, NodeCopy>>,
    /// node stream name → the nodes `on_node` has a copy of it on, so asking who holds one
    /// name costs its holders, not a look into every node's map (at 1,000 nodes that walk was
    /// the largest per-reconcile cost of the Stream controller; issue 21).
    holding: FastMap<Box<str>, Vec<Arc<str>>>,
    /// Every hostname `holding` names, shared by all of its entries.
    hostnames: FastSet<Arc<str>>,
    /// hostname → the Streamer declaring it.
    streamers: HashMap<String, Key>,
    /// Nodes listed at least once since start (before that, what they hold is unknown).
    listed: HashSet<String>,
    /// Lists of each node recorded since start (a rollout's restart is judged on a later one).
    lists: HashMap<String, u64>,
    /// When each node's last list was recorded, and the time between its last two.
    list_pace: HashMap<String, (Instant, Option<Duration>)>,
    /// Nodes whose list failed since start (the first layout does not wait for them).
    list_failed: HashSet<String>,
    /// Nodes whose Streamer was reconciled since start (before that, no client is expected).
    seen: HashSet<String>,
    /// Layouts the layouter changed that the stream's status does not show yet.
    unrecorded: HashMap<Key, StreamLayout>,
    /// hostname → node stream name → the config the node answered our last push with: a
    /// listed copy that differs from it (or is gone) was changed on the node, not by us.
    pushed: FastMap<String, FastMap<String, Arc<Disk>>>,
    /// Counts pushes and deletes: a list taken before one of them does not show it.
    epoch: u64,
    /// hostname → node stream name → the epoch of its last push or delete, for those newer
    /// than the node's last list (pruned as lists land).
    recent: FastMap<String, FastMap<String, u64>>,
}

impl Inner {
    /// Indexes a copy of `name` on `hostname` in `holding`.
    fn hold(&mut self, hostname: &str, name: &str) {
        let host = match self.hostnames.get(hostname) {
            Some(h) => h.clone(),
            None => {
                let h: Arc<str> = hostname.into();
                self.hostnames.insert(h.clone());
                h
            }
        };
        match self.holding.get_mut(name) {
            Some(hosts) if !hosts.contains(&host) => hosts.push(host),
            Some(_) => {}
            None => {
                self.holding.insert(name.into(), vec![host]);
            }
        }
    }

    /// Drops `hostname` from the holders of `name` in `holding`.
    fn release(&mut self, hostname: &str, name: &str) {
        if let Some(hosts) = self.holding.get_mut(name) {
            hosts.retain(|h| &**h != hostname);
            if hosts.is_empty() {
                self.holding.remove(name);
            }
        }
    }

    /// The nodes with a copy of `name` and the copies, sorted by hostname.
    fn copies_of<'a>(&'a self, name: &'a str) -> Vec<(&'a str, &'a NodeCopy)> {
        let mut out: Vec<(&str, &NodeCopy)> = self
            .holding
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|h| Some((&**h, self.on_node.get(&**h)?.get(name)?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// See [`Fleet::drifted`].
    fn drifted(&self, hostname: &str, name: &str) -> bool {
        let Some(pushed) = self.pushed.get(hostname).and_then(|m| m.get(name)) else {
            return false;
        };
        let listed = self
            .on_node
            .get(hostname)
            .and_then(|m| m.get(name))
            .and_then(|c| c.config_on_disk.as_ref());
        listed != Some(pushed)
    }

    /// See [`Fleet::list_period`].
    fn list_period(&self, hostname: &str) -> Option<Duration> {
        let (at, period) = *self.list_pace.get(hostname)?;
        Some(period?.max(at.elapsed()))
    }

    /// Notes a push or delete of `name` on `hostname` (see [`Fleet::record_list_since`]).
    fn mark(&mut self, hostname: &str, name: &str) {
        self.epoch += 1;
        let epoch = self.epoch;
        upsert(node_map(&mut self.recent, hostname), name, epoch);
    }
}

/// The per-node map of `hostname`, allocating its key only when the node is new (a push
/// records into three such maps under the fleet's write lock; `entry(to_string())` paid
/// for a key per map per push).
fn node_map<'a, V, S: BuildHasher + Default>(
    maps: &'a mut HashMap<String, HashMap<String, V, S>, S>,
    hostname: &str,
) -> &'a mut HashMap<String, V, S> {
    if !maps.contains_key(hostname) {
        maps.insert(hostname.to_string(), HashMap::default());
    }
    maps.get_mut(hostname).expect("inserted above")
}

/// Sets `map[name] = value`, allocating the key only when `name` is new.
fn upsert<V, S: BuildHasher>(map: &mut HashMap<String, V, S>, name: &str, value: V) {
    match map.get_mut(name) {
        Some(v) => *v = value,
        None => {
            map.insert(name.to_string(), value);
        }
    }
}

/// An incremental layout run's outcome for [`Fleet::amend_layout`]: only what changed.
#[derive(Debug, Default)]
pub struct LayoutUpdate {
    /// Streams laid out again: the placement, and why it falls short if it does.
    pub placed: Vec<(Key, Placement, Option<Unplaced>)>,
    /// Streams that left the layout.
    pub removed: Vec<Key>,
    /// Watcher names whose owner changed (`None`: nobody holds it now).
    pub owners: Vec<(String, Option<Key>)>,
    /// Streams whose block changed (`None`: not blocked now).
    pub blocked: Vec<(Key, Option<Blocked>)>,
    /// Streams gone from the store.
    pub gone: Vec<Key>,
    /// The changed layouts, to be recorded in status.
    pub changes: HashMap<Key, StreamLayout>,
}

/// One stream as the fleet sees it ([`Fleet::stream_view`]).
#[derive(Debug, Default)]
pub struct StreamView {
    /// The layouter ran at least once; before that the rest is empty.
    pub laid_out: bool,
    /// Some Stream owns the Watcher name.
    pub owned: bool,
    /// Why the stream may not be pushed, if it may not.
    pub blocked: Option<Blocked>,
    /// Where the layouter placed it.
    pub placement: Option<Placement>,
    /// Why an enabled stream is not (fully) placed, if it is not.
    pub unplaced: Option<Unplaced>,
}

/// The nodes a placement holds a stream on.
fn hosts(p: &Placement) -> impl Iterator<Item = &Arc<str>> {
    p.ingest.iter().chain(p.dvr_backups.iter())
}

/// Shared in-memory fleet state.
pub struct Fleet {
    inner: RwLock<Inner>,
    layout_wanted: Notify,
    stream_tx: mpsc::UnboundedSender<ObjectRef<Stream>>,
    stream_rx: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<Stream>>>>,
    streamer_tx: mpsc::UnboundedSender<ObjectRef<Streamer>>,
    streamer_rx: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<Streamer>>>>,
}

impl Default for Fleet {
    fn default() -> Self {
        let (stream_tx, stream_rx) = mpsc::unbounded_channel();
        let (streamer_tx, streamer_rx) = mpsc::unbounded_channel();
        Self {
            inner: RwLock::default(),
            layout_wanted: Notify::new(),
            stream_tx,
            stream_rx: Mutex::new(Some(stream_rx)),
            streamer_tx,
            streamer_rx: Mutex::new(Some(streamer_rx)),
        }
    }
}

fn obj_ref<K: kube::Resource<DynamicType = ()>>(key: &Key) -> ObjectRef<K> {
    ObjectRef::new(key.name()).within(key.namespace())
}

impl Fleet {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    // ---- triggers ------------------------------------------------------------------------

    /// Asks the layouter loop for a run (coalesced).
    pub fn request_layout(&self) {
        self.layout_wanted.notify_one();
    }

    /// Resolves when a layout run was requested.
    pub async fn layout_requested(&self) {
        self.layout_wanted.notified().await;
    }

    /// Asks the Stream controller to reconcile `key`.
    pub fn touch_stream(&self, key: &Key) {
        let _ = self.stream_tx.send(obj_ref(key));
    }

    /// Asks the Streamer controller to reconcile the Streamer of `hostname`, if declared.
    pub fn touch_node(&self, hostname: &str) {
        if let Some(key) = self.read().streamers.get(hostname) {
            let _ = self.streamer_tx.send(obj_ref(key));
        }
    }

    /// The Stream controller's extra triggers (taken once).
    pub fn take_stream_triggers(&self) -> Option<mpsc::UnboundedReceiver<ObjectRef<Stream>>> {
        self.stream_rx.lock().ok()?.take()
    }

    /// The Streamer controller's extra triggers (taken once).
    pub fn take_streamer_triggers(&self) -> Option<mpsc::UnboundedReceiver<ObjectRef<Streamer>>> {
        self.streamer_rx.lock().ok()?.take()
    }

    // ---- layout ----------------------------------------------------------------------------

    /// True once the layouter ran at least once.
    pub fn laid_out(&self) -> bool {
        self.read().laid_out
    }

    /// Every placement (the layouter's `previous`).
    pub fn placements(&self) -> HashMap<Key, Placement> {
        self.read().placements.clone()
    }

    /// The placement of one stream.
    pub fn placement(&self, key: &Key) -> Option<Placement> {
        self.read().placements.get(key).cloned()
    }

    /// Why an enabled stream is not (fully) placed, if it is not.
    pub fn unplaced(&self, key: &Key) -> Option<Unplaced> {
        self.read().unplaced.get(key).cloned()
    }

    /// Whether `hostname` keeps its copy of the stream `key` ([`Wanted::keeps`]).
    pub fn keeps(&self, key: &Key, hostname: &str) -> bool {
        let inner = self.read();
        let unplaced = inner.unplaced.contains_key(key);
        Wanted::from_layout(inner.placements.get(key), unplaced).keeps(hostname)
    }

    /// What a reconcile of the stream `key` (Watcher name `name`) reads from the fleet, under
    /// one lock. At 100,000 streams each of these maps is larger than the caches, and asking
    /// them one lock at a time (the lock's word bouncing between cores each time) was ~5 % of
    /// the operator's CPU in a restart's push (issue 21).
    pub fn stream_view(&self, key: &Key, name: &str) -> StreamView {
        let inner = self.read();
        if !inner.laid_out {
            return StreamView::default();
        }
        StreamView {
            laid_out: true,
            owned: inner.names.contains_key(name),
            blocked: inner.blocked.get(key).cloned(),
            placement: inner.placements.get(key).cloned(),
            unplaced: inner.unplaced.get(key).cloned(),
        }
    }

    /// Why a stream may not be pushed, if it may not (a reconcile asks [`Fleet::stream_view`]).
    #[cfg(test)]
    pub fn blocked(&self, key: &Key) -> Option<Blocked> {
        self.read().blocked.get(key).cloned()
    }

    /// The Stream owning a Watcher name.
    pub fn owner_of(&self, name: &str) -> Option<Key> {
        self.read().names.get(name).cloned()
    }

    /// Whether some Stream owns a Watcher name (a reconcile asks [`Fleet::stream_view`]).
    #[cfg(test)]
    pub fn has_owner(&self, name: &str) -> bool {
        self.read().names.contains_key(name)
    }

    /// Streams placed on `hostname`.
    pub fn assigned(&self, hostname: &str) -> HashSet<Key> {
        self.read()
            .by_node
            .get(hostname)
            .cloned()
            .unwrap_or_default()
    }

    /// (ingest, DVR backup) counts of `hostname`.
    pub fn assigned_counts(&self, hostname: &str) -> (i64, i64) {
        let inner = self.read();
        let Some(keys) = inner.by_node.get(hostname) else {
            return (0, 0);
        };
        keys.iter().fold((0, 0), |(i, b), k| {
            match inner.placements.get(k).and_then(|p| p.ingest.as_deref()) {
                Some(h) if h == hostname => (i + 1, b),
                _ => (i, b + 1),
            }
        })
    }

    /// Installs a layout run's outcome: every placement, the unplaced, the name owners, the
    /// blocked streams and the changed layouts (to be recorded in status). Returns the
    /// hostnames that lost streams.
    pub fn install_layout(
        &self,
        placements: HashMap<Key, Placement>,
        unplaced: HashMap<Key, Unplaced>,
        names: HashMap<String, Key>,
        blocked: HashMap<Key, Blocked>,
        streamers: HashMap<String, Key>,
        changes: HashMap<Key, StreamLayout>,
    ) -> HashSet<String> {
        let mut by_node: HashMap<Arc<str>, HashSet<Key>> = HashMap::new();
        for (key, p) in &placements {
            for h in p.ingest.iter().chain(p.dvr_backups.iter()) {
                by_node.entry(h.clone()).or_default().insert(key.clone());
            }
        }
        let mut inner = self.write();
        // Only nodes that lost streams are reported (their leftovers go at once). Nodes that
        // only gained streams need nothing from the Streamer controller: the Stream controller
        // pushes, and the assigned counts in their status follow on the next resync. Reporting
        // every gaining node turned each layout run of a bulk apply into a probe, a list and a
        // status write per node.
        // A stream waiting for a node (its only one is down) did not leave this one
        // (domain::moves): reporting it would have the node's copy removed on its return.
        let mut changed: HashSet<String> = HashSet::new();
        for (h, keys) in &inner.by_node {
            let now = by_node.get(h);
            let lost = |k: &Key| {
                let wanted = Wanted::from_layout(placements.get(k), unplaced.contains_key(k));
                now.is_none_or(|n| !n.contains(k)) && !wanted.keeps(h)
            };
            if keys.iter().any(lost) {
                changed.insert(h.to_string());
            }
        }
        // Streams that are gone have nothing left to record.
        let present: HashSet<&Key> = names.values().chain(blocked.keys()).collect();
        inner.unrecorded.retain(|k, _| present.contains(k));
        inner.unrecorded.extend(changes);
        inner.placements = placements;
        inner.unplaced = unplaced;
        inner.by_node = by_node;
        inner.names = names;
        inner.blocked = blocked;
        inner.streamers = streamers;
        inner.laid_out = true;
        changed
    }

    /// Installs an incremental layout run's outcome: like [`Fleet::install_layout`] for the
    /// streams `update` names, everything else as it is (a run over a few changed streams
    /// costs what they do, not what 100,000 placements do). Returns the hostnames that lost
    /// streams.
    pub fn amend_layout(&self, update: LayoutUpdate) -> HashSet<String> {
        let mut guard = self.write();
        let inner = &mut *guard;
        let mut lost: HashSet<String> = HashSet::new();
        let placed = update.placed.into_iter().map(|(k, p, u)| (k, Some((p, u))));
        let removed = update.removed.into_iter().map(|k| (k, None));
        for (key, now) in placed.chain(removed) {
            let old = inner.placements.remove(&key);
            inner.unplaced.remove(&key);
            let (now, short) = now.map_or((None, None), |(p, u)| (Some(p), u));
            // As in `install_layout`: a node that no longer holds the stream lost it, unless
            // the stream waits for that node (domain::moves).
            let wanted = Wanted::from_layout(now.as_ref(), short.is_some());
            for h in old.iter().flat_map(hosts) {
                if now.as_ref().is_some_and(|p| hosts(p).any(|n| n == h)) {
                    continue;
                }
                if let Some(keys) = inner.by_node.get_mut(h) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        inner.by_node.remove(h);
                    }
                }
                if !wanted.keeps(h) {
                    lost.insert(h.to_string());
                }
            }
            if let Some(p) = now {
                for h in hosts(&p) {
                    inner
                        .by_node
                        .entry(h.clone())
                        .or_default()
                        .insert(key.clone());
                }
                inner.placements.insert(key.clone(), p);
            }
            if let Some(u) = short {
                inner.unplaced.insert(key, u);
            }
        }
        for (name, owner) in update.owners {
            match owner {
                Some(k) => inner.names.insert(name, k),
                None => inner.names.remove(&name),
            };
        }
        for (key, blocked) in update.blocked {
            match blocked {
                Some(b) => inner.blocked.insert(key, b),
                None => inner.blocked.remove(&key),
            };
        }
        // Streams that are gone have nothing left to record.
        for key in &update.gone {
            inner.unrecorded.remove(key);
        }
        inner.unrecorded.extend(update.changes);
        lost
    }

    /// The layout to record in `key`'s status, given what the status shows: the layouter's
    /// latest one while the status does not show it yet, else the status' own (an apply that
    /// left it out would remove it). Forgets the pending one once the status shows it, so a
    /// reconcile of a stale copy of the object cannot write an older layout back.
    pub fn layout_to_record(
        &self,
        key: &Key,
        shown: Option<&StreamLayout>,
    ) -> Option<StreamLayout> {
        let pending = self.read().unrecorded.get(key).cloned();
        match pending {
            Some(p) if shown == Some(&p) => {
                let mut inner = self.write();
                if inner.unrecorded.get(key) == Some(&p) {
                    inner.unrecorded.remove(key);
                }
                Some(p)
            }
            Some(p) => Some(p),
            None => shown.cloned(),
        }
    }

    // ---- what nodes hold --------------------------------------------------------------------

    /// What `hostname` holds for `name`, as last seen or pushed.
    pub fn copy_on(&self, hostname: &str, name: &str) -> Option<NodeCopy> {
        self.read().on_node.get(hostname)?.get(name).cloned()
    }

    /// Managed copies of `name` on any node.
    pub fn holders(&self, name: &str) -> Vec<String> {
        let inner = self.read();
        inner
            .copies_of(name)
            .into_iter()
            .filter(|(_, c)| c.managed)
            .map(|(h, _)| h.to_string())
            .collect()
    }

    /// Nodes holding a configured copy of `name` (managed or not) with whether it is managed,
    /// sorted: where a stream with no placement yet already runs.
    pub fn configured_on(&self, name: &str) -> Vec<(String, bool)> {
        let inner = self.read();
        inner
            .copies_of(name)
            .into_iter()
            .filter(|(_, c)| c.config_on_disk.is_some())
            .map(|(h, c)| (h.to_string(), c.managed))
            .collect()
    }

    /// Replaces what `hostname` holds with a fresh list taken just now (no push or delete
    /// raced it); see [`Fleet::record_list_since`].
    pub fn record_list(&self, hostname: &str, listed: HashMap<String, NodeCopy>) -> Vec<String> {
        let since = self.list_begins();
        self.record_list_since(hostname, listed, since)
    }

    /// The mark to take before a list request, for [`Fleet::record_list_since`].
    pub fn list_begins(&self) -> u64 {
        self.read().epoch
    }

    /// Replaces what `hostname` holds with a list whose request began at `since` (from
    /// [`Fleet::list_begins`]); returns the names whose disk config changed, appeared or
    /// vanished since the previous list. A stream pushed or deleted while the list was in
    /// flight keeps what the push or delete recorded: the list predates it, and taking its
    /// word would report a fresh push as removed by hand (at 100,000 streams, 25 false
    /// `DriftRepaired` Warnings and repushes during one bulk create).
    pub fn record_list_since(
        &self,
        hostname: &str,
        mut listed: HashMap<String, NodeCopy>,
        since: u64,
    ) -> Vec<String> {
        let mut inner = self.write();
        if let Some(recent) = inner.recent.remove(hostname) {
            let old = inner.on_node.get(hostname);
            let mut newer = FastMap::default();
            for (name, at) in recent {
                if at <= since {
                    continue;
                }
                match old.and_then(|o| o.get(&name)) {
                    Some(ours) => listed.insert(name.clone(), ours.clone()),
                    None => listed.remove(&name),
                };
                newer.insert(name, at);
            }
            if !newer.is_empty() {
                inner.recent.insert(hostname.to_string(), newer);
            }
        }
        // A listed copy equal to what we pushed (or to the previous listing) shares that value
        // instead of holding a second parse of it: with a list per node every few seconds,
        // the copies would otherwise be one `config_on_disk` tree per stream twice over
        // (~2 KiB per stream, the largest per-stream cost after the stores).
        let pushed = inner.pushed.get(hostname);
        let before = inner.on_node.get(hostname);
        for (name, copy) in &mut listed {
            let Some(disk) = copy.config_on_disk.as_mut() else {
                continue;
            };
            let known = pushed
                .and_then(|p| p.get(name))
                .into_iter()
                .chain(before.and_then(|b| b.get(name)?.config_on_disk.as_ref()));
            for k in known {
                if Arc::ptr_eq(k, disk) || **k == **disk {
                    *disk = k.clone();
                    break;
                }
            }
        }
        inner.listed.insert(hostname.to_string());
        *inner.lists.entry(hostname.to_string()).or_default() += 1;
        let now = Instant::now();
        let last = inner.list_pace.get(hostname).map(|(at, _)| now - *at);
        inner.list_pace.insert(hostname.to_string(), (now, last));
        let old = inner.on_node.remove(hostname).unwrap_or_default();
        let mut listed = listed;
        let mut changed = Vec::new();
        for (n, c) in listed.iter_mut() {
            match old.get(n) {
                // The copy held before stays, so its identity does too: the Stream controller
                // knows which copies it found in sync and compares only new ones.
                Some(o) if o == c => *c = o.clone(),
                _ => changed.push(n.clone()),
            }
        }
        let gone: Vec<String> = old
            .keys()
            .filter(|n| !listed.contains_key(*n))
            .cloned()
            .collect();
        for n in &gone {
            inner.release(hostname, n);
        }
        for n in listed.keys().filter(|n| !old.contains_key(*n)) {
            inner.hold(hostname, n);
        }
        changed.extend(gone);
        inner.on_node.insert(hostname.to_string(), listed);
        changed.sort();
        changed.dedup();
        changed
    }

    /// How many lists of `hostname` were recorded since start.
    pub fn lists(&self, hostname: &str) -> u64 {
        self.read().lists.get(hostname).copied().unwrap_or(0)
    }

    /// How far apart `hostname`'s lists are now: the time between its last two, or since
    /// the last one if that is longer (a node whose lists stalled); `None` before two lists.
    pub fn list_period(&self, hostname: &str) -> Option<Duration> {
        self.read().list_period(hostname)
    }

    /// [`Fleet::lists`] and [`Fleet::list_period`] of `hostname` under one lock.
    pub fn list_pace(&self, hostname: &str) -> (u64, Option<Duration>) {
        let inner = self.read();
        let lists = inner.lists.get(hostname).copied().unwrap_or(0);
        (lists, inner.list_period(hostname))
    }

    /// True once `hostname` was listed since start.
    pub fn listed(&self, hostname: &str) -> bool {
        self.read().listed.contains(hostname)
    }

    /// What a push to `hostname` needs to know under one lock: `None` before the node's
    /// first list, else its copy of `name` and whether that copy drifted from our last push
    /// ([`Fleet::copy_on`], [`Fleet::drifted`]). At a restart every stream asks this once.
    pub fn push_view(&self, hostname: &str, name: &str) -> Option<(Option<NodeCopy>, bool)> {
        let inner = self.read();
        if !inner.listed.contains(hostname) {
            return None;
        }
        let copy = inner.on_node.get(hostname).and_then(|m| m.get(name));
        Some((copy.cloned(), inner.drifted(hostname, name)))
    }

    /// Records that `hostname`'s Streamer was reconciled (its client is built or refused).
    pub fn record_seen(&self, hostname: &str) {
        if !self.read().seen.contains(hostname) {
            self.write().seen.insert(hostname.to_string());
        }
    }

    /// True once `hostname`'s Streamer was reconciled since start.
    pub fn seen(&self, hostname: &str) -> bool {
        self.read().seen.contains(hostname)
    }

    /// Records that listing `hostname` failed.
    pub fn record_list_failure(&self, hostname: &str) {
        self.write().list_failed.insert(hostname.to_string());
    }

    /// True once listing `hostname` was tried since start, successfully or not.
    pub fn list_tried(&self, hostname: &str) -> bool {
        let inner = self.read();
        inner.listed.contains(hostname) || inner.list_failed.contains(hostname)
    }

    /// Every Stream currently blocked.
    pub fn blocked_keys(&self) -> HashSet<Key> {
        self.read().blocked.keys().cloned().collect()
    }

    /// Records a successful push.
    pub fn record_push(&self, hostname: &str, name: &str, config_on_disk: Value) {
        let disk = Arc::new(Disk::of(&config_on_disk));
        let copy = NodeCopy {
            config_on_disk: Some(disk.clone()),
            managed: true,
        };
        let mut inner = self.write();
        inner.mark(hostname, name);
        inner.hold(hostname, name);
        upsert(node_map(&mut inner.pushed, hostname), name, disk);
        upsert(node_map(&mut inner.on_node, hostname), name, copy);
    }

    /// True when the node's copy of `name` is not what our last push left there (edited or
    /// deleted by hand): the next push is a drift repair.
    pub fn drifted(&self, hostname: &str, name: &str) -> bool {
        self.read().drifted(hostname, name)
    }

    /// Records a successful delete.
    pub fn record_delete(&self, hostname: &str, name: &str) {
        let mut inner = self.write();
        inner.mark(hostname, name);
        if let Some(m) = inner.on_node.get_mut(hostname)
            && m.remove(name).is_some()
        {
            inner.release(hostname, name);
        }
        if let Some(m) = inner.pushed.get_mut(hostname) {
            m.remove(name);
        }
    }

    /// Forgets a node that is no longer declared.
    pub fn forget_node(&self, hostname: &str) {
        let mut inner = self.write();
        for name in inner.on_node.remove(hostname).unwrap_or_default().keys() {
            inner.release(hostname, name);
        }
        inner.hostnames.remove(hostname);
        inner.pushed.remove(hostname);
        inner.recent.remove(hostname);
        inner.listed.remove(hostname);
        inner.list_pace.remove(hostname);
        inner.seen.remove(hostname);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> Key {
        Key::new("ns", n)
    }

    fn placed(ingest: &str, backups: &[&str]) -> Placement {
        Placement {
            ingest: Some(ingest.into()),
            dvr_backups: backups.iter().map(|b| (*b).into()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn install_reports_nodes_that_lost_streams() {
        let fleet = Fleet::default();
        let mut p = HashMap::new();
        p.insert(key("a"), placed("n1", &["n2"]));
        p.insert(key("b"), placed("n1", &[]));
        let changed = fleet.install_layout(
            p.clone(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
        );
        assert!(
            changed.is_empty(),
            "gaining streams needs no node reconcile"
        );
        assert_eq!(fleet.assigned_counts("n1"), (2, 0));
        assert_eq!(fleet.assigned_counts("n2"), (0, 1));
        p.insert(key("b"), placed("n3", &[]));
        let changed = fleet.install_layout(
            p,
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
        );
        assert_eq!(changed, HashSet::from(["n1".into()]));
    }

    #[test]
    fn a_stream_waiting_for_its_node_did_not_leave_it() {
        let fleet = Fleet::default();
        let install = |p: HashMap<Key, Placement>, unplaced: HashMap<Key, Unplaced>| {
            fleet.install_layout(
                p,
                unplaced,
                HashMap::new(),
                HashMap::new(),
                HashMap::new(),
                HashMap::new(),
            )
        };
        let on_n1 = || HashMap::from([(key("pinned"), placed("n1", &[]))]);
        let nowhere = || HashMap::from([(key("pinned"), Placement::default())]);
        let unschedulable = HashMap::from([(
            key("pinned"),
            Unplaced {
                shortfall: crate::layout::Shortfall::Unschedulable,
                unserved_zones: vec![],
                decisions: vec![],
            },
        )]);
        install(on_n1(), HashMap::new());
        let changed = install(nowhere(), unschedulable);
        assert!(
            changed.is_empty(),
            "its node is down: it waits, nothing moved"
        );
        assert!(fleet.keeps(&key("pinned"), "n1"));
        install(on_n1(), HashMap::new());
        // No ingest and not unplaced: disabled.
        let changed = install(nowhere(), HashMap::new());
        assert_eq!(changed, HashSet::from(["n1".into()]), "disabled");
        assert!(!fleet.keeps(&key("pinned"), "n1"));
        install(on_n1(), HashMap::new());
        let changed = install(HashMap::new(), HashMap::new());
        assert_eq!(changed, HashSet::from(["n1".into()]), "gone");
        assert!(!fleet.keeps(&key("pinned"), "n1"));
    }

    #[test]
    fn an_amended_layout_equals_the_same_layout_installed_whole() {
        let unschedulable = Unplaced {
            shortfall: crate::layout::Shortfall::Unschedulable,
            unserved_zones: vec![],
            decisions: vec![],
        };
        let conflict = |n: &str| Blocked::NameConflict(key(n));
        let names = |l: &[&str]| -> HashMap<String, Key> {
            l.iter().map(|n| (n.to_string(), key(n))).collect()
        };
        let start = || {
            let fleet = Fleet::default();
            fleet.install_layout(
                HashMap::from([
                    (key("a"), placed("n1", &["n2"])),
                    (key("b"), placed("n1", &[])),
                    (key("c"), placed("n2", &[])),
                    (key("e"), placed("n3", &[])),
                ]),
                HashMap::new(),
                names(&["a", "b", "c", "e"]),
                HashMap::from([(key("d"), conflict("a"))]),
                HashMap::new(),
                HashMap::new(),
            );
            fleet
        };
        let moved = StreamLayout {
            ingest: Some("n3".into()),
            ..StreamLayout::default()
        };
        // b moves to n3, c waits for its node (n2 keeps it), a leaves (d, now the older
        // holder of its name, is being deleted), e is gone.
        let amended = start();
        let lost = amended.amend_layout(LayoutUpdate {
            placed: vec![
                (key("b"), placed("n3", &[]), None),
                (key("c"), Placement::default(), Some(unschedulable.clone())),
            ],
            removed: vec![key("a"), key("e")],
            owners: vec![("a".into(), Some(key("d"))), ("e".into(), None)],
            blocked: vec![(key("d"), None), (key("a"), Some(conflict("d")))],
            gone: vec![key("e")],
            changes: HashMap::from([(key("b"), moved.clone())]),
        });
        let whole = start();
        let expected = whole.install_layout(
            HashMap::from([
                (key("b"), placed("n3", &[])),
                (key("c"), Placement::default()),
            ]),
            HashMap::from([(key("c"), unschedulable)]),
            HashMap::from([
                ("a".to_string(), key("d")),
                ("b".to_string(), key("b")),
                ("c".to_string(), key("c")),
            ]),
            HashMap::from([(key("a"), conflict("d"))]),
            HashMap::new(),
            HashMap::from([(key("b"), moved)]),
        );
        assert_eq!(lost, expected);
        assert_eq!(lost, HashSet::from(["n1".into(), "n2".into(), "n3".into()]));
        for f in [&amended, &whole] {
            for n in ["a", "b", "c", "d", "e"] {
                assert_eq!(f.placement(&key(n)), whole.placement(&key(n)), "{n}");
                assert_eq!(f.unplaced(&key(n)), whole.unplaced(&key(n)), "{n}");
                assert_eq!(f.blocked(&key(n)), whole.blocked(&key(n)), "{n}");
                assert_eq!(f.owner_of(n), whole.owner_of(n), "{n}");
                assert_eq!(
                    f.layout_to_record(&key(n), None),
                    whole.layout_to_record(&key(n), None),
                    "{n}"
                );
            }
            for h in ["n1", "n2", "n3"] {
                assert_eq!(f.assigned(h), whole.assigned(h), "{h}");
                assert_eq!(f.assigned_counts(h), whole.assigned_counts(h), "{h}");
            }
        }
    }

    #[test]
    fn changed_layouts_wait_until_the_status_shows_them() {
        let fleet = Fleet::default();
        let layout = |h: &str| StreamLayout {
            ingest: Some(h.into()),
            ..StreamLayout::default()
        };
        let install = |changes: HashMap<Key, StreamLayout>, names: &[&str]| {
            fleet.install_layout(
                HashMap::new(),
                HashMap::new(),
                names.iter().map(|n| (n.to_string(), key(n))).collect(),
                HashMap::new(),
                HashMap::new(),
                changes,
            );
        };
        install(HashMap::from([(key("a"), layout("n1"))]), &["a", "b"]);
        let old = layout("n0");
        // Not shown yet: the new one, as often as asked.
        assert_eq!(
            fleet.layout_to_record(&key("a"), Some(&old)),
            Some(layout("n1"))
        );
        assert_eq!(fleet.layout_to_record(&key("a"), None), Some(layout("n1")));
        // Nothing pending: whatever the status shows stays.
        assert_eq!(
            fleet.layout_to_record(&key("b"), Some(&old)),
            Some(old.clone())
        );
        assert_eq!(fleet.layout_to_record(&key("b"), None), None);
        // Shown: forgotten, so a later look at the status is the truth.
        assert_eq!(
            fleet.layout_to_record(&key("a"), Some(&layout("n1"))),
            Some(layout("n1"))
        );
        assert_eq!(
            fleet.layout_to_record(&key("a"), Some(&layout("n2"))),
            Some(layout("n2"))
        );
        // A newer change replaces an unrecorded one; a stream that is gone drops its own.
        install(HashMap::from([(key("b"), layout("n1"))]), &["b"]);
        install(HashMap::from([(key("b"), layout("n2"))]), &["b"]);
        assert_eq!(fleet.layout_to_record(&key("b"), None), Some(layout("n2")));
        install(HashMap::new(), &[]);
        assert_eq!(fleet.layout_to_record(&key("b"), None), None);
    }

    #[test]
    fn a_list_taken_before_a_push_or_delete_does_not_undo_it() {
        let fleet = Fleet::default();
        let copy = || NodeCopy {
            config_on_disk: Some(Arc::new(Disk::of(&serde_json::json!({ "v": 1 })))),
            managed: true,
        };
        fleet.record_list("n1", HashMap::from([("old".to_string(), copy())]));
        // A list request goes out; meanwhile "a" is pushed and "old" deleted.
        let since = fleet.list_begins();
        fleet.record_push("n1", "a", serde_json::json!({ "v": 2 }));
        fleet.record_delete("n1", "old");
        let changed =
            fleet.record_list_since("n1", HashMap::from([("old".to_string(), copy())]), since);
        assert!(changed.is_empty(), "{changed:?}");
        assert!(!fleet.drifted("n1", "a"), "a fresh push is not a hand edit");
        assert_eq!(fleet.holders("a"), vec!["n1"]);
        assert!(fleet.holders("old").is_empty());
        // A list taken after them is believed: "a" gone now is a removal by hand.
        let since = fleet.list_begins();
        fleet.record_list_since("n1", HashMap::new(), since);
        assert!(fleet.drifted("n1", "a"));
        assert!(
            fleet.read().recent.is_empty(),
            "marks are pruned as lists land"
        );
    }

    #[test]
    fn a_push_view_is_what_the_separate_questions_answer() {
        let fleet = Fleet::default();
        let view = |name: &str| fleet.push_view("n1", name);
        let apart = |name: &str| {
            fleet
                .listed("n1")
                .then(|| (fleet.copy_on("n1", name), fleet.drifted("n1", name)))
        };
        assert_eq!(view("a"), None, "not listed yet");
        fleet.record_list("n1", HashMap::new());
        fleet.record_push("n1", "a", serde_json::json!({ "v": 1 }));
        assert_eq!(view("a"), apart("a"));
        assert_eq!(view("a").map(|(_, d)| d), Some(false), "our own push");
        assert_eq!(view("b"), Some((None, false)), "never pushed");
        let since = fleet.list_begins();
        fleet.record_list_since("n1", HashMap::new(), since);
        assert_eq!(view("a"), Some((None, true)), "removed by hand");
        assert_eq!(view("a"), apart("a"));
    }

    #[test]
    fn a_stream_view_is_what_the_separate_questions_answer() {
        let fleet = Fleet::default();
        let (a, b, c) = (
            Key::new("ns", "a"),
            Key::new("ns", "b"),
            Key::new("ns", "c"),
        );
        let apart = |key: &Key, name: &str| {
            (
                fleet.laid_out(),
                fleet.has_owner(name),
                fleet.blocked(key),
                fleet.placement(key),
                fleet.unplaced(key),
            )
        };
        let view = |key: &Key, name: &str| {
            let v = fleet.stream_view(key, name);
            (v.laid_out, v.owned, v.blocked, v.placement, v.unplaced)
        };
        assert_eq!(
            view(&a, "a"),
            (false, false, None, None, None),
            "before the first layout"
        );
        let placed = Placement {
            ingest: Some("n1".into()),
            ..Placement::default()
        };
        let short = Unplaced {
            shortfall: crate::layout::Shortfall::MissingBackups(1),
            unserved_zones: vec!["z1".into()],
            decisions: vec![],
        };
        fleet.install_layout(
            HashMap::from([(a.clone(), placed.clone()), (b.clone(), placed)]),
            HashMap::from([(b.clone(), short)]),
            HashMap::from([("a".to_string(), a.clone()), ("b".to_string(), b.clone())]),
            HashMap::from([(c.clone(), Blocked::NameConflict(a.clone()))]),
            HashMap::new(),
            HashMap::new(),
        );
        for (key, name) in [(&a, "a"), (&b, "b"), (&c, "a"), (&c, "c")] {
            assert_eq!(view(key, name), apart(key, name), "{key:?} as {name}");
        }
        assert!(
            view(&a, "a")
                .3
                .is_some_and(|p| p.ingest.as_deref() == Some("n1"))
        );
        assert!(view(&b, "b").4.is_some(), "placed short");
        assert!(
            view(&c, "a").2.is_some() && !view(&c, "c").1,
            "blocked, its name not its own"
        );
    }

    #[test]
    fn lists_report_changes_and_pushes_update_copies() {
        let fleet = Fleet::default();
        let copy = |v: i64| NodeCopy {
            config_on_disk: Some(Arc::new(Disk::of(&serde_json::json!({ "v": v })))),
            managed: true,
        };
        let first = fleet.record_list(
            "n1",
            HashMap::from([("a".to_string(), copy(1)), ("b".to_string(), copy(1))]),
        );
        assert_eq!(first, vec!["a", "b"]);
        let second = fleet.record_list(
            "n1",
            HashMap::from([("a".to_string(), copy(2)), ("c".to_string(), copy(1))]),
        );
        assert_eq!(second, vec!["a", "b", "c"]);
        let held = fleet.copy_on("n1", "c").unwrap().config_on_disk.unwrap();
        assert_eq!(fleet.lists("n1"), 2);
        let third = fleet.record_list(
            "n1",
            HashMap::from([("a".to_string(), copy(2)), ("c".to_string(), copy(1))]),
        );
        assert!(third.is_empty());
        let relisted = fleet.copy_on("n1", "c").unwrap().config_on_disk.unwrap();
        assert!(
            Arc::ptr_eq(&held, &relisted),
            "an unchanged copy keeps its identity across lists"
        );
        fleet.record_push("n2", "a", serde_json::json!({}));
        assert_eq!(fleet.holders("a"), vec!["n1", "n2"]);
        fleet.record_delete("n1", "a");
        assert_eq!(fleet.holders("a"), vec!["n2"]);
    }

    #[test]
    fn a_listed_copy_equal_to_a_known_one_shares_it() {
        let fleet = Fleet::default();
        let listed = |v: i64| {
            HashMap::from([(
                "a".to_string(),
                NodeCopy {
                    config_on_disk: Some(Arc::new(Disk::of(&serde_json::json!({ "v": v })))),
                    managed: true,
                },
            )])
        };
        let disk = |f: &Fleet| f.copy_on("n1", "a").unwrap().config_on_disk.unwrap();
        fleet.record_push("n1", "a", serde_json::json!({ "v": 1 }));
        let pushed = disk(&fleet);
        fleet.record_list("n1", listed(1));
        assert!(
            Arc::ptr_eq(&pushed, &disk(&fleet)),
            "the pushed value, not a second parse"
        );
        fleet.record_list("n1", listed(2));
        let listed_before = disk(&fleet);
        assert_eq!(listed_before.value(), serde_json::json!({ "v": 2 }));
        fleet.record_list("n1", listed(2));
        assert!(
            Arc::ptr_eq(&listed_before, &disk(&fleet)),
            "the previous listing's value"
        );
    }

    #[test]
    fn node_copies_are_held_as_text_equal_when_their_values_are() {
        // Key order is not part of a value: a node answering with its keys in another order
        // than the push holds the same copy (else every list would look like drift).
        let a: Value = serde_json::from_str(
            r#"{"name":"a","inputs":[{"url":"fake://a","priority":1}],"static":true}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"static":true,"inputs":[{"priority":1,"url":"fake://a"}],"name":"a"}"#,
        )
        .unwrap();
        assert_eq!(Disk::of(&a), Disk::of(&b));
        assert_ne!(Disk::of(&a), Disk::of(&serde_json::json!({"name": "a"})));
        assert_eq!(Disk::of(&a).value(), a);
        assert_eq!(
            &*Disk::of(&a).0,
            r#"{"inputs":[{"priority":1,"url":"fake://a"}],"name":"a","static":true}"#
        );
    }

    /// The name index answers as a walk over every node's copies would, whatever mix of
    /// lists, pushes, deletes and forgotten nodes came before.
    mod holding {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            List(usize, Vec<(usize, bool, bool)>),
            Push(usize, usize),
            Delete(usize, usize),
            Forget(usize),
        }

        const NODES: [&str; 3] = ["n1", "n2", "n3"];
        const NAMES: [&str; 4] = ["a", "b", "c", "d"];

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (
                    0..3usize,
                    proptest::collection::vec((0..4usize, any::<bool>(), any::<bool>()), 0..4)
                )
                    .prop_map(|(n, l)| Op::List(n, l)),
                (0..3usize, 0..4usize).prop_map(|(n, s)| Op::Push(n, s)),
                (0..3usize, 0..4usize).prop_map(|(n, s)| Op::Delete(n, s)),
                (0..3usize).prop_map(Op::Forget),
            ]
        }

        proptest! {
            #[test]
            fn holders_equal_a_walk_over_every_node(ops in proptest::collection::vec(op(), 0..24)) {
                let fleet = Fleet::default();
                for op in ops {
                    match op {
                        Op::List(n, copies) => {
                            let listed = copies
                                .into_iter()
                                .map(|(s, configured, managed)| {
                                    let disk = configured
                                        .then(|| Arc::new(Disk::of(&serde_json::json!({ "s": s }))));
                                    (NAMES[s].to_string(), NodeCopy { config_on_disk: disk, managed })
                                })
                                .collect();
                            fleet.record_list(NODES[n], listed);
                        }
                        Op::Push(n, s) => fleet.record_push(NODES[n], NAMES[s], serde_json::json!({})),
                        Op::Delete(n, s) => fleet.record_delete(NODES[n], NAMES[s]),
                        Op::Forget(n) => fleet.forget_node(NODES[n]),
                    }
                    for name in NAMES {
                        let inner = fleet.read();
                        let mut walk: Vec<(&String, &NodeCopy)> = inner
                            .on_node
                            .iter()
                            .filter_map(|(h, m)| Some((h, m.get(name)?)))
                            .collect();
                        walk.sort_by(|a, b| a.0.cmp(b.0));
                        let holders: Vec<String> =
                            walk.iter().filter(|(_, c)| c.managed).map(|(h, _)| (*h).clone()).collect();
                        let configured: Vec<(String, bool)> = walk
                            .iter()
                            .filter(|(_, c)| c.config_on_disk.is_some())
                            .map(|(h, c)| ((*h).clone(), c.managed))
                            .collect();
                        drop(inner);
                        prop_assert_eq!(fleet.holders(name), holders, "{}", name);
                        prop_assert_eq!(fleet.configured_on(name), configured, "{}", name);
                    }
                    let inner = fleet.read();
                    prop_assert!(inner.holding.values().all(|h| !h.is_empty()));
                    prop_assert!(inner.holding.values().flatten().all(|h| inner.on_node.contains_key(&**h)));
                }
            }
        }
    }
}
