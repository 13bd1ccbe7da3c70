//! Property tests over random snapshots: invariants, determinism, stability and balance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::*;
use crate::resources::wire::stream::{ChangeReason, NodeRole};

type Prev = BTreeMap<Arc<str>, Placement>;

fn opts(rebalance: bool) -> LayoutOptions {
    LayoutOptions {
        now_ms: 7,
        rebalance,
        ..Default::default()
    }
}

fn arb_labels(keys: &'static [(&'static str, &'static str)]) -> impl Strategy<Value = Labels> {
    proptest::sample::subsequence(keys, 0..=keys.len()).prop_map(labels)
}

fn arb_zones() -> impl Strategy<Value = Zones> {
    proptest::sample::subsequence(&["a", "b", "c"][..], 0..=2).prop_map(zones)
}

fn arb_node(i: usize) -> impl Strategy<Value = NodeView> {
    (
        (arb_zones(), prop::bool::weighted(0.15)),
        prop::option::weighted(0.4, 0u32..6),
        arb_labels(&[("zone", "a"), ("disk", "ssd")]),
        prop::option::weighted(0.15, Just(labels([("tier", "gold")]))),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            move |(
                (zs, dedicated),
                limit,
                labels,
                required,
                cordoned,
                draining,
                healthy,
                streamer,
            )| NodeView {
                hostname: format!("n{i}").into(),
                role: if streamer {
                    NodeRole::Streamer
                } else {
                    NodeRole::Inference
                },
                channel_limit: limit,
                labels,
                required_stream_labels: required.unwrap_or_default(),
                cordoned: cordoned || draining,
                draining,
                healthy,
                admission: Default::default(),
                // A dedicated node is dedicated in its first zone.
                dedicated_zones: zones(zs.iter().take(usize::from(dedicated)).cloned()),
                zones: zs,
            },
        )
}

fn arb_stream(i: usize) -> impl Strategy<Value = StreamView> {
    (
        prop::bool::weighted(0.1),
        arb_labels(&[("tier", "gold")]),
        prop::option::weighted(0.2, arb_labels(&[("zone", "a")])),
        prop::option::weighted(0.2, arb_labels(&[("disk", "ssd")])),
        0u32..4,
        prop::option::weighted(0.25, arb_zones()),
        prop::option::weighted(0.25, arb_zones()),
    )
        .prop_map(
            move |(disabled, labels, required, preferred, r, required_zones, preferred_zones)| {
                StreamView {
                    key: format!("s{i:03}").into(),
                    disabled,
                    labels,
                    required_node_labels: required.unwrap_or_default(),
                    preferred_node_labels: preferred.unwrap_or_default(),
                    dvr_redundancy: r,
                    namespace: "".into(),
                    required_zones: required_zones.unwrap_or_default(),
                    preferred_zones: preferred_zones.unwrap_or_default(),
                }
            },
        )
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (1usize..8, 0usize..40).prop_flat_map(|(n, s)| {
        let nodes: Vec<_> = (0..n).map(arb_node).collect();
        let streams: Vec<_> = (0..s).map(arb_stream).collect();
        (nodes, streams).prop_map(|(nodes, streams)| Snapshot { nodes, streams })
    })
}

/// A previous layout computed on a perturbed version of the snapshot, so it is realistic but
/// stale (nodes changed health, limits and labels since).
fn arb_case() -> impl Strategy<Value = (Snapshot, Prev)> {
    (arb_snapshot(), any::<u64>()).prop_flat_map(|(snapshot, seed)| {
        let older = (
            proptest::collection::vec(arb_node(0), snapshot.nodes.len()),
            Just(snapshot.clone()),
        )
            .prop_map(move |(fresh, current)| {
                let mut old = current.clone();
                for (i, (n, f)) in old.nodes.iter_mut().zip(fresh).enumerate() {
                    if (seed >> (i % 64)) & 1 == 1 {
                        *n = NodeView {
                            hostname: n.hostname.clone(),
                            ..f
                        };
                    }
                }
                layout(&old, &Prev::new(), &opts(false)).placements
            });
        (Just(snapshot), older)
    })
}

fn streamers(s: &Snapshot) -> BTreeMap<&str, &NodeView> {
    s.nodes
        .iter()
        .filter(|n| n.role == NodeRole::Streamer)
        .map(|n| (&*n.hostname, n))
        .collect()
}

fn allowed(n: &NodeView, s: &StreamView) -> bool {
    let all = |have: &Labels, want: &Labels| want.iter().all(|(k, v)| have.get(k) == Some(v));
    n.healthy
        && !n.draining
        && all(&n.labels, &s.required_node_labels)
        && all(&s.labels, &n.required_stream_labels)
        && in_zones(n, s)
}

/// The zone rules, restated: a required zone must be served, and a dedicated node takes only
/// streams requiring one of its dedicated zones.
fn in_zones(n: &NodeView, s: &StreamView) -> bool {
    let meets = |a: &Zones, b: &Zones| a.iter().any(|z| b.contains(z));
    (s.required_zones.is_empty() || meets(&n.zones, &s.required_zones))
        && (n.dedicated_zones.is_empty() || meets(&n.dedicated_zones, &s.required_zones))
}

fn check_invariants(
    snap: &Snapshot,
    prev: &Prev,
    r: &LayoutResult,
    every_node: bool,
) -> Result<(), TestCaseError> {
    let nodes = streamers(snap);
    let mut load: BTreeMap<&str, u32> = BTreeMap::new();
    for s in &snap.streams {
        let p = &r.placements[&s.key];
        let held: Vec<&str> = p
            .ingest
            .iter()
            .chain(&p.dvr_backups)
            .map(|h| &**h)
            .collect();
        let distinct: BTreeSet<_> = held.iter().collect();
        prop_assert_eq!(distinct.len(), held.len(), "distinct nodes for {}", s.key);
        prop_assert!(p.dvr_backups.len() <= s.dvr_redundancy as usize);
        prop_assert!(
            p.ingest.is_some() || p.dvr_backups.is_empty(),
            "no backups without ingest"
        );
        if s.disabled {
            prop_assert!(held.is_empty());
        }
        let before = prev.get(&s.key);
        for (slot, h) in held.iter().enumerate() {
            let n = nodes
                .get(h)
                .ok_or_else(|| TestCaseError::fail(format!("{h} is not a streamer")))?;
            prop_assert!(allowed(n, s), "{} may not be on {}", s.key, h);
            // A cordoned node keeps what it held, in the same role, and takes nothing new.
            let was_there = before.is_some_and(|b| match (slot, &p.ingest) {
                (0, Some(_)) => b.ingest.as_deref() == Some(h),
                _ => b.dvr_backups.iter().any(|x| &**x == *h),
            });
            prop_assert!(
                !n.cordoned || was_there,
                "{} newly on cordoned {}",
                s.key,
                h
            );
            *load.entry(h).or_default() += 1;
        }
        match (&r.unplaced.get(&s.key), s.disabled) {
            (Some(u), false) => {
                let holds = |h: &str| held.contains(&h);
                prop_assert_eq!(u.decisions.len(), nodes.len());
                match u.shortfall {
                    Shortfall::Unschedulable => prop_assert!(p.ingest.is_none()),
                    Shortfall::MissingBackups(m) => {
                        prop_assert_eq!(m as usize + p.dvr_backups.len(), s.dvr_redundancy as usize)
                    }
                }
                // Unplaced only when truly no node could take it.
                for d in &u.decisions {
                    prop_assert!(
                        holds(&d.hostname) || !d.reasons.is_empty(),
                        "{} could go to {}",
                        s.key,
                        d.hostname
                    );
                }
            }
            (None, false) => {
                prop_assert!(p.ingest.is_some() && p.dvr_backups.len() == s.dvr_redundancy as usize)
            }
            (Some(_), true) => prop_assert!(false, "disabled streams are never unplaced"),
            (None, true) => {}
        }
        if let Some(l) = r.changes.get(&s.key) {
            prop_assert!(l.change_reason.is_some());
            let hosts: Vec<_> = l
                .node_layout_decisions
                .iter()
                .map(|d| d.hostname.as_str())
                .collect();
            prop_assert!(hosts.is_sorted());
            let listed: BTreeSet<&str> = l
                .node_layout_decisions
                .iter()
                .map(|d| d.hostname.as_str())
                .collect();
            if every_node {
                prop_assert_eq!(listed.len(), nodes.len());
            }
            for h in &held {
                prop_assert!(
                    listed.contains(h),
                    "{} holds {} but has no verdict",
                    h,
                    s.key
                );
            }
            for d in &l.node_layout_decisions {
                prop_assert_eq!(d.node_decision, d.reasons.is_empty());
                prop_assert!(every_node || !d.node_decision || held.contains(&d.hostname.as_str()));
                if held.contains(&d.hostname.as_str()) {
                    prop_assert!(
                        d.node_decision,
                        "{} holds {} against its own verdict",
                        d.hostname,
                        s.key
                    );
                }
            }
        }
    }
    for (h, n) in &nodes {
        let l = load.get(h).copied().unwrap_or(0);
        prop_assert!(n.channel_limit.is_none_or(|lim| l <= lim), "{h} holds {l}");
        let c = r.counts[*h];
        prop_assert_eq!(c.ingest + c.dvr_backup, l);
    }
    Ok(())
}

/// `after` keeps `before`'s ingest and extends its backups (or the stream was not placed).
fn kept(before: &Placement, after: &Placement) -> bool {
    before.ingest.is_none()
        || (before.ingest == after.ingest && after.dvr_backups.starts_with(&before.dvr_backups))
}

proptest! {
    // Failing inputs are kept beside the tests, not in a crate-level directory.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "src/layout/proptest-regressions.txt"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold((snap, prev) in arb_case(), rebalance in any::<bool>(), every in any::<bool>()) {
        let o = LayoutOptions { explain_all_nodes: every, ..opts(rebalance) };
        check_invariants(&snap, &prev, &layout(&snap, &prev, &o), every)?;
        check_invariants(&snap, &Prev::new(), &layout(&snap, &Prev::new(), &o), every)?;
    }

    #[test]
    fn deterministic_and_order_free((snap, prev) in arb_case(), rebalance in any::<bool>()) {
        let r = layout(&snap, &prev, &opts(rebalance));
        prop_assert_eq!(&r, &layout(&snap, &prev, &opts(rebalance)));
        let mut shuffled = snap.clone();
        shuffled.nodes.reverse();
        shuffled.streams.rotate_left(snap.streams.len() / 3);
        prop_assert_eq!(&r, &layout(&shuffled, &prev, &opts(rebalance)));
    }

    #[test]
    fn a_layout_is_a_fixed_point((snap, prev) in arb_case()) {
        let r1 = layout(&snap, &prev, &opts(false));
        let r2 = layout(&snap, &r1.placements, &opts(false));
        prop_assert!(r2.changes.is_empty(), "{:?}", r2.changes.keys().collect::<Vec<_>>());
        prop_assert_eq!(&r2.placements, &r1.placements);
        prop_assert_eq!(&r2.unplaced, &r1.unplaced);
    }

    #[test]
    fn adding_a_node_moves_nothing((snap, prev) in arb_case(), extra in arb_node(99)) {
        let r1 = layout(&snap, &prev, &opts(false));
        let mut grown = snap.clone();
        grown.nodes.push(extra);
        let r2 = layout(&grown, &r1.placements, &opts(false));
        for (k, before) in &r1.placements {
            prop_assert!(kept(before, &r2.placements[k]), "{} moved", k);
            if !r1.unplaced.contains_key(k) {
                prop_assert!(!r2.changes.contains_key(k), "{} changed", k);
            }
        }
    }

    #[test]
    fn losing_a_node_moves_only_its_streams((snap, prev) in arb_case(), pick in any::<prop::sample::Index>(), delete in any::<bool>()) {
        let r1 = layout(&snap, &prev, &opts(false));
        let lost = pick.index(snap.nodes.len());
        let host = snap.nodes[lost].hostname.clone();
        let mut shrunk = snap.clone();
        if delete {
            shrunk.nodes.remove(lost);
        } else {
            shrunk.nodes[lost].healthy = false;
        }
        let r2 = layout(&shrunk, &r1.placements, &opts(false));
        for (k, before) in &r1.placements {
            let after = &r2.placements[k];
            let on_lost = before.ingest.as_ref() == Some(&host) || before.dvr_backups.contains(&host);
            if !on_lost {
                prop_assert!(kept(before, after), "{} moved", k);
                continue;
            }
            let was_streamer = snap.nodes[lost].role == NodeRole::Streamer;
            let already_out = !snap.nodes[lost].healthy || snap.nodes[lost].draining || !was_streamer;
            prop_assert!(already_out || r2.changes.contains_key(k), "{} stayed on {}", k, host);
            if let Some(l) = r2.changes.get(k) {
                let why = if delete { ChangeReason::NodeDeleted } else { ChangeReason::NodeBecomeOffline };
                prop_assert_eq!(l.change_reason, Some(why));
            }
        }
    }

    #[test]
    fn fresh_layout_is_balanced(nodes in 1usize..12, streams in 0usize..200, r in 0u32..3) {
        let snap = Snapshot {
            nodes: (0..nodes).map(|i| NodeView::new(format!("n{i}"))).collect(),
            streams: (0..streams).map(|i| StreamView { dvr_redundancy: r, ..StreamView::new(format!("s{i}")) }).collect(),
        };
        let res = layout(&snap, &Prev::new(), &opts(false));
        let ingest: Vec<u32> = res.counts.values().map(|c| c.ingest).collect();
        prop_assert!(ingest.iter().max().unwrap() - ingest.iter().min().unwrap() <= 1, "{:?}", ingest);
    }

    #[test]
    fn rebalance_evens_out_a_grown_cluster(nodes in 1usize..8, added in 1usize..4, streams in 0usize..150) {
        let mut snap = Snapshot {
            nodes: (0..nodes).map(|i| NodeView::new(format!("n{i}"))).collect(),
            streams: (0..streams).map(|i| StreamView::new(format!("s{i}"))).collect(),
        };
        let r1 = layout(&snap, &Prev::new(), &opts(false));
        snap.nodes.extend((0..added).map(|i| NodeView::new(format!("new{i}"))));
        let r2 = layout(&snap, &r1.placements, &opts(true));
        let ingest: Vec<u32> = r2.counts.values().map(|c| c.ingest).collect();
        prop_assert!(ingest.iter().max().unwrap() - ingest.iter().min().unwrap() <= 1, "{:?}", ingest);
        prop_assert!(r2.changes.values().all(|l| l.change_reason == Some(ChangeReason::RelayoutByApi)));
        prop_assert!(layout(&snap, &r2.placements, &opts(true)).changes.is_empty());
    }

    #[test]
    fn a_preferred_zone_wins_when_it_can(
        node_zones in proptest::collection::vec(arb_zones(), 1..6),
        streams in proptest::collection::vec((arb_zones(), arb_zones()), 0..30),
    ) {
        let snap = Snapshot {
            nodes: node_zones.iter().enumerate().map(|(i, z)| NodeView { zones: z.clone(), ..NodeView::new(format!("n{i}")) }).collect(),
            streams: streams.iter().enumerate().map(|(i, (req, pref))| StreamView {
                required_zones: req.clone(),
                preferred_zones: pref.clone(),
                ..StreamView::new(format!("s{i}"))
            }).collect(),
        };
        let r = layout(&snap, &Prev::new(), &opts(false));
        for s in &snap.streams {
            let eligible: Vec<&NodeView> = snap.nodes.iter().filter(|n| in_zones(n, s)).collect();
            let p = &r.placements[&s.key];
            prop_assert_eq!(p.ingest.is_some(), !eligible.is_empty(), "{} placed iff some node is in its zones", s.key);
            let preferred = |n: &NodeView| n.zones.iter().any(|z| s.preferred_zones.contains(z));
            if eligible.iter().any(|n| preferred(n)) {
                let host = p.ingest.as_deref().unwrap();
                let on = snap.nodes.iter().find(|n| &*n.hostname == host).unwrap();
                prop_assert!(preferred(on), "{} is on {} outside its preferred zones", s.key, host);
            }
            if p.ingest.is_none() && !s.required_zones.is_empty() {
                let served = snap.nodes.iter().any(|n| n.zones.iter().any(|z| s.required_zones.contains(z)));
                let u = &r.unplaced[&s.key];
                prop_assert_eq!(u.unserved_zones.is_empty(), served, "{}: unserved zones {:?}", s.key, u.unserved_zones);
            }
        }
    }

    #[test]
    fn preview_counts_add_up((snap, prev) in arb_case()) {
        let r = layout(&snap, &prev, &opts(false));
        let before = counts(&prev);
        let changes = preview_counts(&before, &r.counts);
        for c in &changes {
            prop_assert!(c.delta != 0 && c.delta == c.after - c.before);
        }
        let total = |c: &Counts| c.values().map(|v| i64::from(v.ingest + v.dvr_backup)).sum::<i64>();
        let delta: i64 = changes.iter().map(|c| c.delta).sum();
        prop_assert_eq!(delta, total(&r.counts) - total(&before));
    }

    /// The incremental layouter equals a full run from the previous placements, run after
    /// run, over random sequences of added, changed and removed streams (keys s000–s049, so
    /// steps hit existing streams and new ones).
    #[test]
    fn incremental_equals_a_full_run(
        (snap, prev) in arb_case(),
        steps in proptest::collection::vec(
            proptest::collection::vec((0usize..50, arb_stream(0), prop::bool::weighted(0.25)), 0..8),
            1..5,
        ),
        every in any::<bool>(),
    ) {
        let o = LayoutOptions { explain_all_nodes: every, ..opts(false) };
        let (mut inc, first) = Incremental::new(&snap, &prev, &o);
        prop_assert_eq!(&first, &layout(&snap, &prev, &o));
        let mut current: BTreeMap<Arc<str>, StreamView> = BTreeMap::new();
        for s in &snap.streams {
            current.entry(s.key.clone()).or_insert_with(|| s.clone());
        }
        let mut placements = first.placements;
        for (n, step) in steps.into_iter().enumerate() {
            let mut edits: BTreeMap<Arc<str>, Option<StreamView>> = BTreeMap::new();
            for (j, view, remove) in step {
                let key: Arc<str> = format!("s{j:03}").into();
                edits.insert(key.clone(), (!remove).then_some(StreamView { key, ..view }));
            }
            let (mut upserts, mut removed) = (Vec::new(), Vec::new());
            for (key, edit) in edits {
                match edit {
                    Some(view) => {
                        current.insert(key, view.clone());
                        upserts.push(view);
                    }
                    None => {
                        current.remove(&key);
                        removed.push(key);
                    }
                }
            }
            let o = LayoutOptions { now_ms: 100 + n as i64, ..o.clone() };
            let whole = Snapshot { nodes: snap.nodes.clone(), streams: current.values().cloned().collect() };
            let full = layout(&whole, &placements, &o);
            let r = inc.update(upserts, &removed, &o);
            prop_assert_eq!(&r.changes, &full.changes, "changes after step {}", n);
            prop_assert_eq!(&r.unplaced, &full.unplaced, "unplaced after step {}", n);
            prop_assert_eq!(&r.counts, &full.counts, "counts after step {}", n);
            prop_assert_eq!(&inc.placements(), &full.placements, "placements after step {}", n);
            placements = full.placements;
        }
    }
}
