//! Every stream rendered as the facade shows it, kept between requests: a list of 10,000
//! streams reuses the renderings of the streams, organizations and presets that did not change
//! (a [`Versioned`] value, see [`crate::api::cache`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use super::ApiState;
use super::cache::{Lenient, Stamp, Versioned, digest};
use super::query::Index;
use super::routes::live_nodes;
use super::routes::streams::STREAMS;
use super::views::{self, to_json};
use crate::resources::Stream;
use crate::state::NodeLive;

/// One stream's rendering and what it was rendered from.
struct Slot {
    /// (namespace, name) of the Stream.
    key: Key,
    /// Its Watcher name.
    name: String,
    /// In the facade's namespace (wins a Watcher name shared across namespaces).
    preferred: bool,
    /// Digest of the resourceVersions of the stream, its organization and its preset.
    versions: u64,
    /// The ingest node's live report the rendering read its stats from.
    node: Option<Arc<NodeLive>>,
    value: Arc<Value>,
}

type Key = (String, String);

/// What one build leaves for the next, so that a change costs in proportion to itself:
/// the renderings in index order, where each stream sits, and the last snapshot to update.
#[derive(Default)]
pub(crate) struct Work {
    slots: Vec<Slot>,
    at: HashMap<Key, u32>,
    /// Watcher name → the streams that have it (one, but for namespaces sharing a name).
    named: HashMap<String, Vec<Key>>,
    /// The live reports the renderings read.
    nodes: HashMap<String, Arc<NodeLive>>,
    /// Organization and Preset store counters at the last build (either moving re-checks
    /// every stream: they are rare, and any stream may show them).
    refs: [u64; 2],
    last: Option<(Arc<Index>, Arc<ByName>)>,
}

/// Position in the index by the hash of a Watcher name, in shards shared between builds:
/// a change copies the shards of the names it touches, not a map of every stream.
#[derive(Clone)]
struct ByName {
    shards: Vec<Arc<HashMap<u64, u32>>>,
}

/// 400 names a shard at 100,000 streams.
const BY_NAME_SHARDS: u64 = 256;

impl ByName {
    fn new() -> Self {
        Self {
            shards: (0..BY_NAME_SHARDS).map(|_| Arc::default()).collect(),
        }
    }

    fn shard(hash: u64) -> usize {
        (hash % BY_NAME_SHARDS) as usize
    }

    fn get(&self, hash: u64) -> Option<u32> {
        self.shards[Self::shard(hash)].get(&hash).copied()
    }

    fn insert(&mut self, hash: u64, at: u32) {
        Arc::make_mut(&mut self.shards[Self::shard(hash)]).insert(hash, at);
    }

    fn remove(&mut self, hash: u64) {
        let shard = &mut self.shards[Self::shard(hash)];
        if shard.contains_key(&hash) {
            Arc::make_mut(shard).remove(&hash);
        }
    }
}

/// The rendered streams, indexed for list queries; updated when the Stream, Organization
/// or Preset store or the live stats changed (see [`crate::api::cache`]). A Stream change
/// re-renders that stream and updates the last index (see [`Index::update`]): the cost of a
/// build is that of the change plus a few memory copies, not a walk of every stream.
pub(crate) type Cache = Versioned<RenderedStreams, Work, 4>;

/// Every stream, rendered: indexed for lists, and by Watcher name for single reads.
pub(crate) struct RenderedStreams {
    /// For list queries.
    pub(crate) index: Arc<Index>,
    /// Position in the index by the hash of a Watcher name (the facade namespace's stream
    /// when several namespaces have one of that name, as
    /// [`find`](super::routes::streams::find) picks); plain numbers in shards, so the next
    /// build copies the shards it changes instead of allocating a string per stream.
    by_name: Arc<ByName>,
}

fn name_hash(name: &str) -> u64 {
    digest([Some(name)])
}

impl RenderedStreams {
    /// The rendering of the stream [`find`](super::routes::streams::find) would return.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Value>> {
        let named = |v: &&Arc<Value>| v.get("name").and_then(Value::as_str) == Some(name);
        match self.by_name.get(name_hash(name)) {
            Some(i) => self.index.get(i as usize).filter(named).or_else(|| {
                // Two names with one 64-bit hash: look the slow way.
                self.index.items().find(named)
            }),
            None => None,
        }
    }

    /// Every stream rendered (shared renderings).
    pub(crate) fn all(state: &ApiState) -> Vec<Arc<Value>> {
        Self::current(state).index.items().cloned().collect()
    }

    /// The renderings as of now (at most [`STATS_MAX_AGE`] behind the live stats).
    pub(crate) fn current(state: &ApiState) -> Arc<Self> {
        let c = &state.stores.changes;
        // Read before the data: see `Versioned::get`.
        let stamp = Stamp([
            c.streams.get(),
            c.organizations.get(),
            c.presets.get(),
            state.live.changes(),
        ]);
        // The request handed the refresh rebuilds (the others are served the current renderings
        // meanwhile), so live numbers are at most a second behind the node reports.
        let _refreshing = match state.cache.streams.lenient(&stamp, LIVE, STATS_MAX_AGE) {
            Lenient::Serve(v) => return v,
            Lenient::ServeAndRefresh(guard) => Some(guard),
            Lenient::Build => None,
        };
        state.cache.streams.get(stamp, |work| build(state, work))
    }
}

/// Position of the live stats counter in the stamp.
const LIVE: usize = 3;
/// Live numbers in lists may lag the node reports by this much (they are a node resync old
/// anyway); store changes never lag. A rebuild re-renders every stream whose stats moved,
/// so rebuilding on each of the 20 node reports a second of a 100-node fleet would make
/// list latency that of a rebuild; this way one request a second pays for it.
const STATS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// The renderings for the stores now: an update of the last ones when only Streams and live
/// stats moved and the Stream watch journal kept up, otherwise a walk of every stream.
fn build(state: &ApiState, work: &mut Work) -> RenderedStreams {
    let c = &state.stores.changes;
    let touched = c.stream_journal.take();
    let refs = [c.organizations.get(), c.presets.get()];
    let nodes = live_nodes(state);
    let out = match (touched, &work.last) {
        (Some(touched), Some(_)) if refs == work.refs => update(state, work, touched, &nodes),
        _ => full(state, work, &nodes),
    };
    work.refs = refs;
    work.nodes = nodes;
    work.last = Some((out.index.clone(), out.by_name.clone()));
    out
}

/// Walks every stream: renders those whose inputs changed since `work` was filled, reuses
/// the rest.
fn full(
    state: &ApiState,
    work: &mut Work,
    nodes: &HashMap<String, Arc<NodeLive>>,
) -> RenderedStreams {
    let (orgs, presets) = (
        state.stores.organizations.state(),
        state.stores.presets.state(),
    );
    // resourceVersions by (namespace, name), borrowed: no allocation per stream.
    fn versions<K: kube::Resource>(objs: &[Arc<K>]) -> HashMap<(&str, &str), &str> {
        objs.iter()
            .filter_map(|o| {
                let m = o.meta();
                Some((
                    (m.namespace.as_deref().unwrap_or(""), m.name.as_deref()?),
                    m.resource_version.as_deref().unwrap_or(""),
                ))
            })
            .collect()
    }
    let (org_versions, preset_versions) = (versions(&orgs), versions(&presets));
    let streams = super::deleted::objects(&state.stores.streams);
    let mut old: HashMap<Key, Slot> = std::mem::take(&mut work.slots)
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    work.at.clear();
    work.named.clear();
    for s in &streams {
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        let versions = digest([
            s.metadata.resource_version.as_deref(),
            s.spec
                .organization_ref
                .as_deref()
                .and_then(|r| org_versions.get(&(ns, r)).copied()),
            s.spec
                .preset_ref
                .as_deref()
                .and_then(|r| preset_versions.get(&(ns, r)).copied()),
        ]);
        let key = (ns.to_string(), s.name_any());
        let slot = match old.remove(&key) {
            Some(mut r) if r.versions == versions && r.name == s.watcher_name() => {
                r.follow_stats(s, nodes);
                r
            }
            _ => render(state, s, versions, nodes),
        };
        place(work, slot);
    }
    let items = work.slots.iter().map(|s| s.value.clone()).collect();
    let mut by_name = ByName::new();
    let names: Vec<String> = work.named.keys().cloned().collect();
    for name in names {
        pick(work, &mut by_name, &name);
    }
    RenderedStreams {
        index: Arc::new(Index::new(items, STREAMS.search)),
        by_name: Arc::new(by_name),
    }
}

/// Re-renders the streams the journal or the live reports name, and edits the last index at
/// their positions: the cost is that of the change, not of the number of streams.
fn update(
    state: &ApiState,
    work: &mut Work,
    touched: Vec<(String, String)>,
    nodes: &HashMap<String, Arc<NodeLive>>,
) -> RenderedStreams {
    let mut dirty: HashSet<Key> = touched.into_iter().collect();
    // Streams whose stats a changed node report moved.
    let mut moved_names: HashSet<&str> = HashSet::new();
    for (host, report) in nodes {
        match work.nodes.get(host) {
            Some(old) if Arc::ptr_eq(old, report) => {}
            old => {
                for (name, live) in &report.streams {
                    let before = old.and_then(|o| o.streams.get(name)).map(|l| &l.stats);
                    if before != Some(&live.stats) {
                        moved_names.insert(name);
                    }
                }
                for name in old.iter().flat_map(|o| o.streams.keys()) {
                    if !report.streams.contains_key(name) {
                        moved_names.insert(name);
                    }
                }
            }
        }
    }
    for (host, old) in &work.nodes {
        if !nodes.contains_key(host) {
            moved_names.extend(old.streams.keys().map(String::as_str));
        }
    }
    for name in moved_names {
        dirty.extend(work.named.get(name).into_iter().flatten().cloned());
    }

    let (orgs, presets) = (&state.stores.organizations, &state.stores.presets);
    // Positions whose item is new: re-rendered, moved into a hole, appended.
    let mut changed: BTreeSet<u32> = BTreeSet::new();
    let mut affected: HashSet<String> = HashSet::new();
    let mut gone: Vec<u32> = Vec::new();
    let mut added: Vec<Slot> = Vec::new();
    for key in dirty {
        let now = state
            .stores
            .streams
            .get(&ObjectRef::new(&key.1).within(&key.0))
            .filter(|s| super::deleted::shown(s.as_ref()));
        let at = work.at.get(&key).copied();
        match (now, at) {
            (Some(s), at) => {
                let org = (s.spec.organization_ref.as_deref())
                    .and_then(|r| store_version(orgs, &key.0, r));
                let preset =
                    (s.spec.preset_ref.as_deref()).and_then(|r| store_version(presets, &key.0, r));
                let versions = digest([
                    s.metadata.resource_version.as_deref(),
                    org.as_deref(),
                    preset.as_deref(),
                ]);
                match at {
                    Some(p) => {
                        let slot = &mut work.slots[p as usize];
                        if slot.versions == versions && slot.name == s.watcher_name() {
                            if slot.follow_stats(&s, nodes) {
                                changed.insert(p);
                            }
                            continue;
                        }
                        let new = render(state, &s, versions, nodes);
                        affected.insert(std::mem::replace(slot, new).name);
                        affected.insert(work.slots[p as usize].name.clone());
                        changed.insert(p);
                    }
                    None => added.push(render(state, &s, versions, nodes)),
                }
            }
            (None, Some(p)) => gone.push(p),
            (None, None) => {}
        }
    }
    // Removals from the back, each filled by the last slot (which counts as new there: it
    // left its place in the order of the slots).
    gone.sort_unstable_by(|a, b| b.cmp(a));
    for p in gone {
        let slot = work.slots.swap_remove(p as usize);
        changed.remove(&(work.slots.len() as u32));
        work.at.remove(&slot.key);
        unname(work, &slot);
        affected.insert(slot.name);
        if let Some(moved) = work.slots.get(p as usize) {
            work.at.insert(moved.key.clone(), p);
            affected.insert(moved.name.clone());
            changed.insert(p);
        }
    }
    // Renamed slots: the Watcher name index follows.
    for &p in &changed {
        let slot = &work.slots[p as usize];
        {
            let known = work
                .named
                .get(&slot.name)
                .is_some_and(|keys| keys.contains(&slot.key));
            if !known {
                let (key, name) = (slot.key.clone(), slot.name.clone());
                for keys in work.named.values_mut() {
                    keys.retain(|k| *k != key);
                }
                work.named.retain(|_, keys| !keys.is_empty());
                work.named.entry(name).or_default().push(key);
            }
        }
    }
    for slot in added {
        affected.insert(slot.name.clone());
        changed.insert(work.slots.len() as u32);
        place(work, slot);
    }
    let Some((index, by_name)) = &work.last else {
        unreachable!("update runs after a full build");
    };
    let mut by_name = ByName::clone(by_name);
    for name in &affected {
        by_name.remove(name_hash(name));
        pick(work, &mut by_name, name);
    }
    let changed = changed
        .into_iter()
        .map(|p| (p, work.slots[p as usize].value.clone()))
        .collect();
    RenderedStreams {
        index: Arc::new(index.edit(work.slots.len(), changed)),
        by_name: Arc::new(by_name),
    }
}

fn store_version<K>(
    store: &kube::runtime::reflector::Store<K>,
    ns: &str,
    name: &str,
) -> Option<String>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .get(&ObjectRef::new(name).within(ns))
        .and_then(|o| o.meta().resource_version.clone())
}

/// The ingest node's live report of `s`.
fn ingest_report<'a>(
    s: &Stream,
    nodes: &'a HashMap<String, Arc<NodeLive>>,
) -> Option<&'a Arc<NodeLive>> {
    s.status
        .as_ref()
        .and_then(|st| st.layout.as_ref()?.ingest.as_deref())
        .and_then(|h| nodes.get(h))
}

impl Slot {
    /// Brings a rendering whose stream, organization and preset did not change up to the
    /// ingest node's live report: only the live stats moved, so the rest of the rendering
    /// stands (a render per stream and refresh was most of a refresh's cost at 100,000
    /// streams). Whether the rendering changed.
    fn follow_stats(&mut self, s: &Stream, nodes: &HashMap<String, Arc<NodeLive>>) -> bool {
        let node = ingest_report(s, nodes);
        let moved = !same_stats(self.node.as_ref(), node, &self.name);
        if moved {
            self.value = restat(&self.value, views::stream_stats(s, &self.name, nodes));
        }
        // Hold the newest report, so older ones are freed.
        self.node = node.cloned();
        moved
    }
}

/// `value` (a stream's rendering) with `stats` as its `stats` member, or without one: what
/// [`render`] gives when nothing but the live report changed (objects keep their members
/// sorted, so the member lands where a render puts it).
fn restat(value: &Value, stats: Option<Value>) -> Arc<Value> {
    let mut value = value.clone();
    if let Value::Object(members) = &mut value {
        match stats {
            Some(stats) => members.insert("stats".to_string(), stats),
            None => members.remove("stats"),
        };
    }
    Arc::new(value)
}

fn render(
    state: &ApiState,
    s: &Stream,
    versions: u64,
    nodes: &HashMap<String, Arc<NodeLive>>,
) -> Slot {
    state.metrics.stream_renders.inc();
    Slot {
        key: (
            s.metadata.namespace.clone().unwrap_or_default(),
            s.name_any(),
        ),
        name: s.watcher_name().to_string(),
        preferred: s.metadata.namespace.as_deref() == Some(state.config.namespace.as_str()),
        versions,
        node: ingest_report(s, nodes).cloned(),
        value: Arc::new(to_json(&views::stream(state, s, nodes))),
    }
}

/// Appends `slot` and indexes it.
fn place(work: &mut Work, slot: Slot) {
    work.at.insert(slot.key.clone(), work.slots.len() as u32);
    work.named
        .entry(slot.name.clone())
        .or_default()
        .push(slot.key.clone());
    work.slots.push(slot);
}

fn unname(work: &mut Work, slot: &Slot) {
    if let Some(keys) = work.named.get_mut(&slot.name) {
        keys.retain(|k| *k != slot.key);
        if keys.is_empty() {
            work.named.remove(&slot.name);
        }
    }
}

/// Sets `name`'s entry of `by_name`: the facade namespace's stream of that name, else the
/// first in index order.
fn pick(work: &Work, by_name: &mut ByName, name: &str) {
    let best = work
        .named
        .get(name)
        .into_iter()
        .flatten()
        .filter_map(|k| work.at.get(k).copied())
        .filter(|&p| work.slots[p as usize].name == name)
        .min_by_key(|&p| (!work.slots[p as usize].preferred, p));
    if let Some(p) = best {
        by_name.insert(name_hash(name), p);
    }
}

/// Whether two live reports give a stream the same stats (all a rendering reads from them).
fn same_stats(a: Option<&Arc<NodeLive>>, b: Option<&Arc<NodeLive>>, name: &str) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            Arc::ptr_eq(a, b)
                || a.streams.get(name).map(|l| &l.stats) == b.streams.get(name).map(|l| &l.stats)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    //! What the facade's list queries cost over 100,000 rendered streams, in process.

    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use super::super::query::{Index, Query};
    use super::STREAMS;

    /// A stream as `views::stream` renders one of the bench's converged cameras.
    fn rendered(i: usize, bitrate: u64) -> Arc<Value> {
        Arc::new(json!({
            "name": format!("cam-{i:05}"),
            "title": format!("Camera {i} at gate {}", i % 97),
            "comment": "installed by the bench",
            "inputs": [{"url": format!("rtsp://10.{}.{}.{}/live/main", i / 65_536, i / 256 % 256, i % 256), "priority": 0}],
            "postal_address": format!("{} Main Street", i % 1000),
            "dvr": {"root": "/storage", "expiration": 86_400},
            "named_by": "config",
            "organization_id": 1 + i as u64 % 10,
            "organization": {"id": 1 + i as u64 % 10, "title": format!("Org {}", i % 10)},
            "preset_id": 1,
            "preset": {"id": 1, "title": "default"},
            "layout": {"ingest": format!("node-{:04}", i / 100), "change_reason": "placed", "created_at": 1_764_000_000_000u64},
            "stats": {"alive": true, "bitrate": bitrate, "status": "running", "input": {"url": "rtsp://…", "bitrate": bitrate}},
            "created_at": 1_764_000_000_000u64 + i as u64,
        }))
    }

    /// The list queries of `benches/scale.rs` (`tests/scale/facade.rs`), as query pairs.
    const QUERIES: &[(&str, &str)] = &[
        ("list limit=100", "limit=100"),
        ("list select", "limit=100&select=name,title,stats.alive"),
        ("list sort=-stats.bitrate", "limit=100&sort=-stats.bitrate"),
        ("list q=", "limit=100&q=cam-0012"),
    ];

    fn answer(index: &Index, raw: &str) -> usize {
        let pairs = form_urlencoded::parse(raw.as_bytes()).into_owned();
        let q = Query::parse(pairs, &STREAMS).unwrap();
        let page = q.execute_indexed(index);
        serde_json::to_vec(&page.into_envelope("streams", json!({})))
            .unwrap()
            .len()
    }

    /// The index after stream `at` changed, as [`super::update`] makes it.
    fn changed(index: &Index, at: usize, value: Arc<Value>) -> Index {
        index.edit(index.len(), vec![(at as u32, value)])
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    /// `cargo test --release --lib facade_queries_at_scale -- --ignored --nocapture`
    /// (`PANOPTES_FACADE_ITEMS`, default 100,000).
    #[test]
    #[ignore]
    fn facade_queries_at_scale() {
        let n: usize = std::env::var("PANOPTES_FACADE_ITEMS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100_000);
        let items: Vec<Arc<Value>> = (0..n)
            .map(|i| rendered(i, (i * 7919 % 5000) as u64))
            .collect();
        let (t, bytes) = (Instant::now(), crate::footprint::live_bytes());
        let mut index = Index::new(items, STREAMS.search);
        for (_, raw) in QUERIES {
            answer(&index, raw);
        }
        eprintln!(
            "{n} streams: build and first answers {:.1} ms; the index holds {} bytes per \
             stream beyond the renderings (search text, name and -stats.bitrate orders; \
             glibc mallinfo2)",
            ms(t.elapsed()),
            crate::footprint::live_bytes().saturating_sub(bytes) / n,
        );
        // Single-threaded, at rest: each query alone.
        let rounds = 50;
        for (label, raw) in QUERIES {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..rounds {
                let t = Instant::now();
                bytes = answer(&index, raw);
                times.push(t.elapsed());
            }
            eprintln!(
                "  {label:28} p50 {:7.3} ms  p99 {:7.3} ms  ({bytes} bytes)",
                ms(percentile(times.clone(), 0.5)),
                ms(percentile(times, 0.99)),
            );
        }
        // One stream changes (its bitrate: it moves in the `-stats.bitrate` order), then
        // the four queries answer over the new index.
        let (mut update, mut after) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let at = (r * 7919) % n;
            let t = Instant::now();
            index = changed(&index, at, rendered(at, r as u64 * 13));
            update.push(t.elapsed());
            let t = Instant::now();
            for (_, raw) in QUERIES {
                answer(&index, raw);
            }
            after.push(t.elapsed());
        }
        eprintln!(
            "  one change: update p50 {:.3} ms p99 {:.3} ms; then the four queries p50 {:.3} ms",
            ms(percentile(update.clone(), 0.5)),
            ms(percentile(update, 0.99)),
            ms(percentile(after, 0.5)),
        );
        // Many streams change at once (a live stats refresh moves every bitrate).
        for share in [100, 10, 1] {
            let count = n / share;
            let changed: Vec<(u32, Arc<Value>)> = (0..count)
                .map(|k| k * share)
                .map(|at| (at as u32, rendered(at, (at * 31 % 5000) as u64)))
                .collect();
            let t = Instant::now();
            index = index.edit(n, changed);
            let took = t.elapsed();
            let t = Instant::now();
            for (_, raw) in QUERIES {
                answer(&index, raw);
            }
            eprintln!(
                "  {count} streams change at once: update {:.1} ms, then the four queries {:.1} ms",
                ms(took),
                ms(t.elapsed()),
            );
        }
        // 16 concurrent readers over the same index.
        let index = Arc::new(index);
        for (label, raw) in QUERIES {
            let started = Instant::now();
            let threads: Vec<_> = (0..16)
                .map(|_| {
                    let index = index.clone();
                    std::thread::spawn(move || {
                        let mut times = Vec::new();
                        while started.elapsed() < Duration::from_millis(1500) {
                            let t = Instant::now();
                            answer(&index, raw);
                            times.push(t.elapsed());
                        }
                        times
                    })
                })
                .collect();
            let times: Vec<Duration> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let rps = times.len() as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "  16 threads {label:28} p50 {:7.3} ms  p99 {:7.3} ms  {rps:.0} req/s",
                ms(percentile(times.clone(), 0.5)),
                ms(percentile(times, 0.99)),
            );
        }
    }
}
