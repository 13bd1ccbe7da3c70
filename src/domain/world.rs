//! The layout input world: what the layouter places, built once for the layouter loop and for
//! the facade's previews (which add a hypothetical edit), so a preview shows the placement the
//! operator then makes. Nothing here writes.
//!
//! The rules it applies, each in one place:
//! - a Watcher name belongs to its oldest Stream; a younger one is [`Blocked`] and not placed;
//! - a Stream being deleted, or whose preset does not exist yet, is not placed (it takes no
//!   room: the Stream's status says why);
//! - a Stream's DVR redundancy is its effective config's ([`super::effective`]: a locked
//!   preset wins);
//! - a node is the Streamer owning its hostname ([`super::tenancy`]), placeable by
//!   [`super::health::node_placeable`];
//! - a zone a Streamer lists is dedicated when a Zone of that name in the Streamer's own
//!   namespace says so ([`super::zones`]); zone names need no Zone object to match.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::effective;
use super::health::node_placeable;
use super::key::ObjectKey;
use super::tenancy::{hostname_owners, owns_hostname};
use crate::layout::{self, LayoutOptions, LayoutResult, NodeView, Placement, Snapshot, StreamView};
use crate::resources::{Preset, Stream, StreamSpec, Streamer, StreamerSpec, Zone};
use crate::state::{LiveStats, Stores};

mod tracked;

pub use tracked::{Delta, Tracked};

/// Why a stream is not placed although it is declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Another (older) Stream already uses the same Watcher name.
    NameConflict(ObjectKey),
}

/// A change a preview asks about, applied to the world as if saved.
#[derive(Clone, Copy, Debug)]
pub enum Edit<'a> {
    /// Stream `key` saved with `spec` (created if there is none).
    Stream {
        /// The Stream object.
        key: &'a ObjectKey,
        /// Its spec after the save.
        spec: &'a StreamSpec,
    },
    /// The Streamer of `spec.hostname` saved with `spec` (created in `namespace` if no
    /// Streamer declares that hostname).
    Node {
        /// Its spec after the save.
        spec: &'a StreamerSpec,
        /// Namespace of a new Streamer.
        namespace: &'a str,
    },
}

/// The layouter's input and what its consumers need to act on the result.
#[derive(Debug, Default)]
pub struct World {
    /// The layouter's input.
    pub snapshot: Snapshot,
    /// Placements the streams' statuses record (where a restarted layouter resumes).
    pub previous: BTreeMap<Arc<str>, Placement>,
    /// Watcher name → the Stream owning it.
    pub names: HashMap<String, ObjectKey>,
    /// Streams that may not be pushed, and why.
    pub blocked: HashMap<ObjectKey, Blocked>,
    /// Hostname → the Streamer declaring it.
    pub streamers: HashMap<String, ObjectKey>,
}

impl World {
    /// The world of the stores and this replica's live stats, with `edit` applied.
    pub fn build(stores: &Stores, live: &LiveStats, edit: Option<Edit<'_>>) -> Self {
        Self::build_with(stores, live, edit, false).0
    }

    /// [`World::build`] (with no edit), and the [`Tracked`] streams that let the next runs
    /// apply Stream changes without building it again.
    pub fn build_tracked(stores: &Stores, live: &LiveStats) -> (Self, Tracked) {
        let (world, tracked) = Self::build_with(stores, live, None, true);
        (world, tracked.unwrap_or_default())
    }

    fn build_with(
        stores: &Stores,
        live: &LiveStats,
        edit: Option<Edit<'_>>,
        track: bool,
    ) -> (Self, Option<Tracked>) {
        let placeable = |hostname: &str| node_placeable(live.node(hostname).as_deref());
        Self::assemble_with(
            stores.streams.state(),
            preset_in(stores),
            &stores.streamers.state(),
            &stores.zones.state(),
            placeable,
            edit,
            track,
        )
    }

    /// The world of these objects (pure, for tests): `preset` looks a Preset up by namespace
    /// and name, `placeable` says whether a hostname may take streams.
    pub fn assemble(
        streams: Vec<Arc<Stream>>,
        preset: impl Fn(&str, &str) -> Option<Arc<Preset>>,
        streamers: &[Arc<Streamer>],
        zones: &[Arc<Zone>],
        placeable: impl Fn(&str) -> bool,
        edit: Option<Edit<'_>>,
    ) -> Self {
        Self::assemble_with(streams, preset, streamers, zones, placeable, edit, false).0
    }

    /// [`World::assemble`] (with no edit) and its [`Tracked`] streams (pure, for tests).
    pub fn assemble_tracked(
        streams: Vec<Arc<Stream>>,
        preset: impl Fn(&str, &str) -> Option<Arc<Preset>>,
        streamers: &[Arc<Streamer>],
        zones: &[Arc<Zone>],
        placeable: impl Fn(&str) -> bool,
    ) -> (Self, Tracked) {
        let (world, tracked) =
            Self::assemble_with(streams, preset, streamers, zones, placeable, None, true);
        (world, tracked.unwrap_or_default())
    }

    fn assemble_with(
        mut streams: Vec<Arc<Stream>>,
        preset: impl Fn(&str, &str) -> Option<Arc<Preset>>,
        streamers: &[Arc<Streamer>],
        zones: &[Arc<Zone>],
        placeable: impl Fn(&str) -> bool,
        edit: Option<Edit<'_>>,
        track: bool,
    ) -> (Self, Option<Tracked>) {
        // A zone being deleted still counts: it is gone once the API server says so.
        let dedicated: HashSet<(&str, &str)> = zones
            .iter()
            .filter(|z| z.is_dedicated())
            .map(|z| (z.metadata.namespace.as_deref().unwrap_or(""), z.zone_name()))
            .collect();
        let node = |ns: &str, spec: &StreamerSpec, healthy: bool| {
            NodeView::from_spec(ns, spec, healthy, |z| dedicated.contains(&(ns, z)))
        };
        if let Some(Edit::Stream { key, spec }) = edit {
            edited(&mut streams, key, spec);
        }
        let mut keyed: Vec<(ObjectKey, Arc<Stream>)> = streams
            .into_iter()
            .map(|s| (ObjectKey::of(s.as_ref()), s))
            .collect();
        // Oldest first, so the first holder of a Watcher name keeps it (a Stream not created
        // yet is the youngest).
        keyed.sort_by(|(ka, a), (kb, b)| age(a).cmp(&age(b)).then_with(|| ka.cmp(kb)));
        let mut world = World::default();
        let mut tracked = track.then(Tracked::default);
        for (key, s) in &keyed {
            if let Some(layout) = s.status.as_ref().and_then(|st| st.layout.as_ref()) {
                world
                    .previous
                    .insert(key.as_arc().clone(), Placement::from(layout));
            }
            let name = s.watcher_name().to_string();
            let placed = match world.names.get(&name) {
                Some(owner) => {
                    world
                        .blocked
                        .insert(key.clone(), Blocked::NameConflict(owner.clone()));
                    false
                }
                None => {
                    world.names.insert(name.clone(), key.clone());
                    match view_of(key, s, &preset) {
                        Some(view) => {
                            world.snapshot.streams.push(view);
                            true
                        }
                        None => false,
                    }
                }
            };
            if let Some(t) = tracked.as_mut() {
                t.track(key, s, name, placed);
            }
        }
        if let Some(t) = tracked.as_mut() {
            t.settle(&world.names, &world.blocked);
        }
        let (edited_node, new_ns) = match edit {
            Some(Edit::Node { spec, namespace }) => (Some(spec), namespace),
            _ => (None, ""),
        };
        let owners = hostname_owners(streamers.iter().map(|s| s.as_ref()));
        let mut edited_ns = None;
        for s in streamers.iter().filter(|s| owns_hostname(&owners, s)) {
            let ns = s.namespace().unwrap_or_default();
            let host = &s.spec.hostname;
            world
                .streamers
                .insert(host.clone(), ObjectKey::new(&ns, &s.name_any()));
            if edited_node.is_some_and(|n| n.hostname == *host) {
                // An edited node keeps its namespace.
                edited_ns = Some(ns);
                continue;
            }
            let healthy = placeable(host);
            world.snapshot.nodes.push(node(&ns, &s.spec, healthy));
        }
        if let Some(n) = edited_node {
            let ns = edited_ns.unwrap_or_else(|| new_ns.to_string());
            let healthy = placeable(&n.hostname);
            world.snapshot.nodes.push(node(&ns, n, healthy));
        }
        (world, tracked)
    }

    /// Runs the real layouter over this world from `previous` placements.
    pub fn layout(&self, previous: &BTreeMap<Arc<str>, Placement>) -> LayoutResult {
        layout::layout(&self.snapshot, previous, &options())
    }
}

/// The options every layout of the world runs with (full or [`crate::layout::Incremental`]).
pub fn options() -> LayoutOptions {
    LayoutOptions {
        now_ms: chrono::Utc::now().timestamp_millis(),
        ..LayoutOptions::default()
    }
}

/// Looks a Preset up in the stores by namespace and name.
fn preset_in(stores: &Stores) -> impl Fn(&str, &str) -> Option<Arc<Preset>> + '_ {
    |ns: &str, name: &str| stores.presets.get(&ObjectRef::new(name).within(ns))
}

/// When a Stream was created, ordered oldest first; a Stream not created yet is the youngest.
type Age = (bool, Option<Time>);

fn age(s: &Stream) -> Age {
    let created = &s.meta().creation_timestamp;
    (created.is_none(), created.clone())
}

/// The layouter's view of Stream `s` (key `key`), `None` when it takes no room: it is being
/// deleted, or its preset does not exist yet (the Stream's status says why). Name conflicts
/// are the caller's.
fn view_of(
    key: &ObjectKey,
    s: &Stream,
    preset: impl Fn(&str, &str) -> Option<Arc<Preset>>,
) -> Option<StreamView> {
    if s.meta().deletion_timestamp.is_some() {
        return None;
    }
    let preset = match &s.spec.preset_ref {
        None => None,
        Some(p) => Some(preset(key.namespace(), p)?),
    };
    let mut view = StreamView::from_spec(key.as_arc().clone(), key.namespace(), &s.spec);
    view.dvr_redundancy =
        effective::dvr_redundancy(&s.spec.config, preset.as_deref().map(|p| &p.spec));
    Some(view)
}

/// What a preview compares: the real layouter over the world as is and over the world with
/// the edit, each from the placements the streams' statuses record.
pub struct Preview {
    /// Over the world as is.
    pub before: LayoutResult,
    /// Over the edited world.
    pub after: LayoutResult,
    /// The edited world (who owns which Watcher name).
    pub world: World,
}

impl Preview {
    /// The preview of `edit` on the stores and this replica's live stats.
    pub fn of(stores: &Stores, live: &LiveStats, edit: Edit<'_>) -> Self {
        let now = World::build(stores, live, None);
        let world = World::build(stores, live, Some(edit));
        Self {
            before: now.layout(&now.previous),
            after: world.layout(&world.previous),
            world,
        }
    }
}

/// Replaces Stream `key` in `streams` by its edited version, or adds it as a new Stream.
fn edited(streams: &mut Vec<Arc<Stream>>, key: &ObjectKey, spec: &StreamSpec) {
    let at = streams
        .iter()
        .position(|s| ObjectKey::of(s.as_ref()) == *key);
    let mut s = match at {
        // Keeps its age, deletion and recorded layout.
        Some(i) => streams.swap_remove(i).as_ref().clone(),
        None => {
            let mut s = Stream::new(key.name(), StreamSpec::default());
            s.metadata.namespace = Some(key.namespace().to_string());
            s
        }
    };
    s.spec = spec.clone();
    streams.push(Arc::new(s));
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::resources::PresetSpec;

    fn stream(name: &str, age_s: i64, spec: serde_json::Value) -> Arc<Stream> {
        let mut s = Stream::new(name, serde_json::from_value(spec).unwrap());
        s.metadata.namespace = Some("cams".into());
        s.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(1_000_000 - age_s).unwrap()));
        Arc::new(s)
    }

    fn node(host: &str) -> Arc<Streamer> {
        let mut s = Streamer::new(
            host,
            serde_json::from_value(json!({"hostname": host})).unwrap(),
        );
        s.metadata.namespace = Some("cams".into());
        Arc::new(s)
    }

    fn locked() -> Arc<Preset> {
        let spec: PresetSpec = serde_json::from_value(json!({"title": "L", "isAdjustable": false,
            "dvr": {"redundancy_factor": 2}}))
        .unwrap();
        let mut p = Preset::new("locked", spec);
        p.metadata.namespace = Some("cams".into());
        Arc::new(p)
    }

    fn world(streams: Vec<Arc<Stream>>, edit: Option<Edit<'_>>) -> World {
        let preset = |ns: &str, name: &str| (ns == "cams" && name == "locked").then(locked);
        let nodes = [node("n1"), node("n2"), node("n3")];
        World::assemble(streams, preset, &nodes, &[], |h| h != "n3", edit)
    }

    fn keys(w: &World) -> Vec<&str> {
        w.snapshot.streams.iter().map(|v| &*v.key).collect()
    }

    /// Where the layouter loop's time goes at fleet scale (printed, not asserted: `cargo test
    /// --lib domain::world::tests::cost_at_scale -- --ignored --nocapture`): building the
    /// world from N cached Streams that all carry a layout, then the layout from the placements
    /// their statuses record (nothing changed: what every run of a bulk apply repeats for the
    /// streams already placed).
    #[test]
    #[ignore]
    fn cost_at_scale() {
        use crate::resources::wire::StreamLayout;
        for n in [10_000usize, 100_000] {
            let nodes: Vec<Arc<Streamer>> = (0..n / 100)
                .map(|i| node(&format!("node-{i:05}")))
                .collect();
            let streams: Vec<Arc<Stream>> = (0..n)
                .map(|i| {
                    let spec = json!({"labels": {"site": "a"}, "placement":
                        {"preferredNodeLabels": {"site": "a"}}});
                    let mut s = stream(&format!("cam-{i:06}"), 5, spec).as_ref().clone();
                    s.status = Some(crate::resources::StreamStatus {
                        layout: Some(StreamLayout {
                            ingest: Some(format!("node-{:05}", i % (n / 100)).into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                    Arc::new(s)
                })
                .collect();
            let t = std::time::Instant::now();
            let w = World::assemble(streams, |_, _| None, &nodes, &[], |_| true, None);
            let assemble = t.elapsed();
            let t = std::time::Instant::now();
            let r = w.layout(&w.previous);
            let layout = t.elapsed();
            assert!(r.changes.is_empty());
            println!(
                "{n} streams / {} nodes: World::assemble {assemble:?}, layout {layout:?}",
                n / 100
            );
        }
    }

    /// One change to the Streams of a store: (Stream, what happens to it).
    #[derive(Clone, Debug)]
    enum Op {
        /// Created (or recreated, a new object) at `age`, or edited (keeping its age), with a
        /// Watcher name of three (two shared), a preset (locked, missing or none), disabled
        /// or not, and a DVR redundancy.
        Save {
            age: Option<i64>,
            name: Option<&'static str>,
            preset: Option<&'static str>,
            disabled: bool,
            dvr: u8,
        },
        /// Marked for deletion (it keeps its name and takes no room).
        Deleting,
        /// Gone.
        Delete,
    }

    fn arb_op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (
                prop::option::weighted(0.9, 0i64..4),
                prop::option::of(prop::sample::select(vec!["dup", "twin"])),
                prop::option::weighted(0.3, prop::sample::select(vec!["locked", "ghost"])),
                prop::bool::weighted(0.15),
                0u8..3,
            )
                .prop_map(|(age, name, preset, disabled, dvr)| Op::Save {
                    age,
                    name,
                    preset,
                    disabled,
                    dvr,
                }),
            1 => Just(Op::Deleting),
            1 => Just(Op::Delete),
        ]
    }

    /// A store of Streams the ops change as the API server would (uid per object,
    /// generation per spec change).
    #[derive(Default)]
    struct Store {
        streams: BTreeMap<ObjectKey, Arc<Stream>>,
        uids: u64,
    }

    impl Store {
        fn apply(&mut self, key: &ObjectKey, op: &Op) {
            let old = self.streams.get(key).map(|s| s.as_ref().clone());
            match op {
                Op::Save {
                    age,
                    name,
                    preset,
                    disabled,
                    dvr,
                } => {
                    let spec = json!({"name": name, "presetRef": preset, "disabled": disabled,
                        "dvr": {"redundancy_factor": dvr}});
                    let mut s = match old {
                        Some(s) => s,
                        None => {
                            self.uids += 1;
                            let mut s = stream(key.name(), age.unwrap_or(0), json!({}))
                                .as_ref()
                                .clone();
                            s.metadata.namespace = Some(key.namespace().into());
                            s.metadata.uid = Some(format!("uid-{}", self.uids));
                            if age.is_none() {
                                s.metadata.creation_timestamp = None;
                            }
                            s
                        }
                    };
                    s.spec = serde_json::from_value(spec).unwrap();
                    s.metadata.generation = Some(s.metadata.generation.unwrap_or(0) + 1);
                    self.streams.insert(key.clone(), Arc::new(s));
                }
                Op::Deleting => {
                    if let Some(mut s) = old {
                        s.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
                        self.streams.insert(key.clone(), Arc::new(s));
                    }
                }
                Op::Delete => {
                    self.streams.remove(key);
                }
            }
        }

        fn world(&self) -> (World, Tracked) {
            let preset = |ns: &str, name: &str| (ns == "cams" && name == "locked").then(locked);
            let nodes: Vec<Arc<Streamer>> = ["n1", "n2", "n3"]
                .iter()
                .map(|h| {
                    let mut n = node(h).as_ref().clone();
                    n.spec.channel_limit = Some(3);
                    Arc::new(n)
                })
                .collect();
            let streams = self.streams.values().cloned().collect();
            World::assemble_tracked(streams, preset, &nodes, &[], |h| h != "n3")
        }
    }

    /// Streams in two namespaces (`cams/x-1` sorts before `cams-b/x-0` as a pair, after it as
    /// a layout key).
    fn key_of(i: usize) -> ObjectKey {
        let ns = if i % 3 == 2 { "cams-b" } else { "cams" };
        ObjectKey::new(ns, &format!("x-{}", i % 4))
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 128,
            failure_persistence: None,
            ..Default::default()
        })]

        /// The Tracked streams and the incremental layout, run after run over random
        /// creates, edits, deletions and renames, equal a build of the whole world and a full
        /// layout from the previous placements: the snapshot, the Watcher-name owners (the
        /// oldest holder keeps a name; a younger one takes it over when it goes), the blocks,
        /// and the layout; the deltas, applied to the fleet's copies, give the same maps.
        #[test]
        fn tracked_streams_equal_a_build_of_the_whole_world(
            start in proptest::collection::vec((0usize..12, arb_op()), 0..12),
            steps in proptest::collection::vec(
                proptest::collection::vec((0usize..12, arb_op()), 1..5),
                1..6,
            ),
        ) {
            use crate::layout::{Incremental, layout};
            let mut store = Store::default();
            for (i, op) in &start {
                store.apply(&key_of(*i), op);
            }
            let o = |n: i64| LayoutOptions { now_ms: n, ..Default::default() };
            let (world, mut tracked) = store.world();
            let (mut inc, first) = Incremental::new(&world.snapshot, &BTreeMap::new(), &o(1));
            let (mut names, mut blocked, mut placements) = (world.names, world.blocked, first.placements);
            for (n, step) in steps.iter().enumerate() {
                for (i, op) in step {
                    store.apply(&key_of(*i), op);
                }
                let lookup = |k: &ObjectKey| store.streams.get(k).cloned();
                let preset = |ns: &str, name: &str| (ns == "cams" && name == "locked").then(locked);
                let touched = step.iter().map(|(i, _)| key_of(*i));
                let delta = tracked.apply(touched, lookup, preset);
                let (whole, _) = store.world();
                let full = layout(&whole.snapshot, &placements, &o(10 + n as i64));
                let r = inc.update(delta.upserts, &delta.removed, &o(10 + n as i64));
                for (name, owner) in delta.owners {
                    match owner {
                        Some(k) => names.insert(name, k),
                        None => names.remove(&name),
                    };
                }
                for (k, b) in delta.blocked {
                    match b {
                        Some(b) => blocked.insert(k, b),
                        None => blocked.remove(&k),
                    };
                }
                let keys: std::collections::BTreeSet<Arc<str>> =
                    whole.snapshot.streams.iter().map(|v| v.key.clone()).collect();
                proptest::prop_assert_eq!(&tracked.placed(), &keys, "snapshot after step {}", n);
                proptest::prop_assert_eq!(tracked.owners(), &whole.names, "owners after step {}", n);
                proptest::prop_assert_eq!(&names, &whole.names, "owner deltas after step {}", n);
                proptest::prop_assert_eq!(tracked.blocked(), &whole.blocked, "blocks after step {}", n);
                proptest::prop_assert_eq!(&blocked, &whole.blocked, "block deltas after step {}", n);
                proptest::prop_assert_eq!(&r.changes, &full.changes, "changes after step {}", n);
                proptest::prop_assert_eq!(&r.unplaced, &full.unplaced, "unplaced after step {}", n);
                proptest::prop_assert_eq!(&inc.placements(), &full.placements, "placements after step {}", n);
                placements = full.placements;
            }
        }
    }

    #[test]
    fn a_status_write_changes_nothing_and_a_younger_holder_takes_a_freed_name() {
        let mut store = Store::default();
        let save = |age| Op::Save {
            age: Some(age),
            name: Some("dup"),
            preset: None,
            disabled: false,
            dvr: 0,
        };
        let (old, young) = (
            ObjectKey::new("cams", "old"),
            ObjectKey::new("cams", "young"),
        );
        store.apply(&old, &save(2));
        store.apply(&young, &save(1));
        let (_, mut tracked) = store.world();
        // A status write: same generation, nothing to do.
        let mut s = store.streams[&young].as_ref().clone();
        s.status = Some(Default::default());
        store.streams.insert(young.clone(), Arc::new(s));
        let lookup = |k: &ObjectKey| store.streams.get(k).cloned();
        let delta = tracked.apply([young.clone()], lookup, |_, _| None);
        assert_eq!(delta, Delta::default());
        store.apply(&old, &Op::Delete);
        let lookup = |k: &ObjectKey| store.streams.get(k).cloned();
        let delta = tracked.apply([old.clone(), old.clone()], lookup, |_, _| None);
        assert_eq!(delta.changed, 1);
        assert_eq!(delta.removed, [old.as_arc().clone()]);
        assert_eq!(delta.gone, std::slice::from_ref(&old));
        assert_eq!(delta.owners, [("dup".to_string(), Some(young.clone()))]);
        assert_eq!(delta.blocked, [(young.clone(), None)]);
        let keys: Vec<&str> = delta.upserts.iter().map(|v| &*v.key).collect();
        assert_eq!(keys, ["cams/young"]);
    }

    #[test]
    fn only_placeable_streams_enter_the_snapshot() {
        let mut leaving = stream("leaving", 5, json!({})).as_ref().clone();
        leaving.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        let w = world(
            vec![
                stream("young", 1, json!({"name": "dup"})),
                stream("old", 9, json!({"name": "dup"})),
                stream("orphan", 5, json!({"presetRef": "ghost"})),
                stream("solo", 5, json!({})),
                Arc::new(leaving),
            ],
            None,
        );
        assert_eq!(keys(&w), ["cams/old", "cams/solo"]);
        let young = ObjectKey::new("cams", "young");
        assert_eq!(
            w.blocked.get(&young),
            Some(&Blocked::NameConflict(ObjectKey::new("cams", "old")))
        );
        assert_eq!(w.names["dup"], ObjectKey::new("cams", "old"));
        // A deleting or preset-less stream still holds its name.
        assert!(w.names.contains_key("leaving") && w.names.contains_key("orphan"));
    }

    #[test]
    fn a_locked_preset_sets_the_redundancy() {
        let w = world(
            vec![stream(
                "cam",
                1,
                json!({"presetRef": "locked", "dvr": {"redundancy_factor": 1}}),
            )],
            None,
        );
        assert_eq!(w.snapshot.streams[0].dvr_redundancy, 2);
    }

    #[test]
    fn nodes_carry_the_health_rule_and_an_edit_replaces_or_adds_one() {
        let healthy = |w: &World| -> Vec<(String, bool)> {
            let mut v: Vec<_> = w
                .snapshot
                .nodes
                .iter()
                .map(|n| (n.hostname.to_string(), n.healthy))
                .collect();
            v.sort();
            v
        };
        let w = world(vec![], None);
        let want = |l: &[(&str, bool)]| {
            l.iter()
                .map(|(h, b)| (h.to_string(), *b))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            healthy(&w),
            want(&[("n1", true), ("n2", true), ("n3", false)])
        );
        assert_eq!(w.streamers["n2"], ObjectKey::new("cams", "n2"));
        let spec: StreamerSpec =
            serde_json::from_value(json!({"hostname": "n2", "role": "inference"})).unwrap();
        let w = world(
            vec![],
            Some(Edit::Node {
                spec: &spec,
                namespace: "other",
            }),
        );
        assert_eq!(w.snapshot.nodes.len(), 3);
        let n2 = w
            .snapshot
            .nodes
            .iter()
            .find(|n| &*n.hostname == "n2")
            .unwrap();
        assert_ne!(n2.role, Default::default(), "the edited spec");
        let spec: StreamerSpec = serde_json::from_value(json!({"hostname": "n9"})).unwrap();
        let w = world(
            vec![],
            Some(Edit::Node {
                spec: &spec,
                namespace: "other",
            }),
        );
        assert_eq!(w.snapshot.nodes.len(), 4);
    }

    #[test]
    fn a_stream_edit_keeps_the_objects_age_and_a_new_stream_is_the_youngest() {
        let old = stream("old", 9, json!({"name": "dup"}));
        let key = ObjectKey::new("cams", "old");
        let spec: StreamSpec =
            serde_json::from_value(json!({"name": "dup", "dvr": {"redundancy_factor": 1}}))
                .unwrap();
        let w = world(
            vec![old.clone(), stream("young", 1, json!({"name": "dup"}))],
            Some(Edit::Stream {
                key: &key,
                spec: &spec,
            }),
        );
        assert_eq!(keys(&w), ["cams/old"]);
        assert_eq!(w.snapshot.streams[0].dvr_redundancy, 1);
        let new = ObjectKey::new("cams", "new");
        let w = world(
            vec![old],
            Some(Edit::Stream {
                key: &new,
                spec: &spec,
            }),
        );
        assert_eq!(
            keys(&w),
            ["cams/old"],
            "a new stream cannot take an old one's name"
        );
        assert!(w.blocked.contains_key(&new));
    }
}
