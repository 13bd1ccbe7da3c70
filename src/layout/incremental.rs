//! The layouter when only some streams changed: the cost of a run is the change's, not the
//! fleet's (issue 21: a full run over 100,000 streams takes seconds, and a bulk apply
//! triggers one every few hundred milliseconds).
//!
//! [`Incremental`] keeps what a full run recomputes every time (nodes, classes, each stream's
//! slots, the loads) and applies stream changes to it. Its result equals [`layout`] over the
//! whole snapshot from the previous run's placements, because with the nodes unchanged that
//! run keeps every placement it made before (none exceeds a limit: a run never fills a node
//! past its limit, so the limit check of phase 1 never fires) and so only the changed streams
//! and those still short (retried every run) can move. Node changes and `rebalance` need a
//! full run: build a new [`Incremental`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::eligibility::{Class, Node, fnv};
use super::model::{
    Labels, LayoutOptions, LayoutResult, NodeView, Placement, Snapshot, StreamView, Zones,
};
use super::outcome::{counts, outcome};
use super::place::{State, Work, layout};
use crate::resources::wire::stream::NodeRole;

type ClassKey = (Arc<str>, Labels, Labels, Labels, Zones, Zones);

struct Entry {
    view: StreamView,
    class: usize,
    hash: u64,
    work: Work,
    placement: Placement,
}

/// A layout kept between runs; see the module documentation.
pub struct Incremental {
    /// Streamer nodes, sorted by hostname (the indexes of [`Work`]).
    nodes: Vec<NodeView>,
    index: HashMap<Arc<str>, usize>,
    classes: Vec<Class>,
    class_ids: HashMap<ClassKey, usize>,
    ingest: Vec<u32>,
    backup: Vec<u32>,
    streams: BTreeMap<Arc<str>, Entry>,
    /// Enabled streams not fully placed: every run retries them.
    short: BTreeSet<Arc<str>>,
}

impl Incremental {
    /// A full run of [`layout`], kept for the changes that follow.
    pub fn new(
        snapshot: &Snapshot,
        previous: &BTreeMap<Arc<str>, Placement>,
        opts: &LayoutOptions,
    ) -> (Self, LayoutResult) {
        let result = layout(snapshot, previous, opts);
        (Self::kept(snapshot, &result), result)
    }

    /// Keeps `result`, a full run of [`layout`] over `snapshot` (its placements may have been
    /// amended since without moving a stream, e.g. given an ingest history: the next changes
    /// start from those).
    pub fn kept(snapshot: &Snapshot, result: &LayoutResult) -> Self {
        // The node list exactly as a run builds it.
        let mut views: Vec<&NodeView> = snapshot.nodes.iter().collect();
        views.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        views.dedup_by(|a, b| a.hostname == b.hostname);
        let nodes: Vec<NodeView> = views
            .into_iter()
            .filter(|n| n.role == NodeRole::Streamer)
            .cloned()
            .collect();
        let index: HashMap<Arc<str>, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.hostname.clone(), i))
            .collect();
        let loads = |f: fn(&super::model::RoleCounts) -> u32| -> Vec<u32> {
            nodes
                .iter()
                .map(|n| f(&result.counts[&n.hostname]))
                .collect()
        };
        let mut me = Incremental {
            ingest: loads(|c| c.ingest),
            backup: loads(|c| c.dvr_backup),
            nodes,
            index,
            classes: Vec::new(),
            class_ids: HashMap::new(),
            streams: BTreeMap::new(),
            short: result.unplaced.keys().cloned().collect(),
        };
        let mut streams: Vec<&StreamView> = snapshot.streams.iter().collect();
        streams.sort_by(|a, b| a.key.cmp(&b.key));
        streams.dedup_by(|a, b| a.key == b.key);
        for s in streams {
            let placement = result.placements[&s.key].clone();
            let at = |h: &Arc<str>| me.index[h];
            let work = Work {
                ingest: placement.ingest.as_ref().map(at),
                backups: placement.dvr_backups.iter().map(at).collect(),
                ..Work::default()
            };
            let entry = entry(
                &mut me.classes,
                &mut me.class_ids,
                &me.nodes,
                s.clone(),
                work,
                placement,
            );
            me.streams.insert(s.key.clone(), entry);
        }
        me
    }

    /// Streams kept (every stream of the snapshot, enabled or not).
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is kept.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Whether `key` is kept (it was in the snapshot or an update since).
    pub fn contains(&self, key: &str) -> bool {
        self.streams.contains_key(key)
    }

    /// Enabled streams not fully placed ([`LayoutResult::unplaced`] of a full run).
    pub fn unplaced(&self) -> usize {
        self.short.len()
    }

    /// The placement of every stream, as [`LayoutResult::placements`] of a full run.
    pub fn placements(&self) -> BTreeMap<Arc<str>, Placement> {
        self.streams
            .iter()
            .map(|(k, e)| (k.clone(), e.placement.clone()))
            .collect()
    }

    /// Applies added or changed streams (`upserts`) and the removal of `removed` keys, and
    /// lays out what that affects. The result is a full run's over the new snapshot from the
    /// previous placements, except that `placements` holds only the streams it laid out again
    /// (the others are where they were: [`Incremental::placements`]). `opts.rebalance` is not
    /// honoured here (it is a full run: [`Incremental::new`]).
    pub fn update(
        &mut self,
        upserts: Vec<StreamView>,
        removed: &[Arc<str>],
        opts: &LayoutOptions,
    ) -> LayoutResult {
        let node_list: Vec<NodeView> = std::mem::take(&mut self.nodes);
        let mut st = State {
            nodes: node_list.iter().map(Node::new).collect(),
            ingest: std::mem::take(&mut self.ingest),
            backup: std::mem::take(&mut self.backup),
        };
        let mut olds: BTreeMap<Arc<str>, Placement> = BTreeMap::new();
        for key in removed {
            if let Some(e) = self.streams.remove(key) {
                st.release(&e.work);
                self.short.remove(key);
                olds.insert(key.clone(), e.placement);
            }
        }
        let mut changed: BTreeSet<Arc<str>> = BTreeSet::new();
        for view in upserts {
            let key = view.key.clone();
            let old = match self.streams.remove(&key) {
                Some(e) => {
                    st.release(&e.work);
                    e.placement
                }
                None => olds.remove(&key).unwrap_or_default(),
            };
            olds.insert(key.clone(), old.clone());
            let entry = entry(
                &mut self.classes,
                &mut self.class_ids,
                &node_list,
                view,
                Work::default(),
                old,
            );
            self.streams.insert(key.clone(), entry);
            changed.insert(key);
        }
        // Phase 1 for the changed streams, ingests first as in a full run.
        let index = &self.index;
        let at = |h: &str| index.get(h).copied();
        for key in &changed {
            let e = self.streams.get_mut(key).expect("just inserted");
            if !e.view.disabled {
                let prev = olds.get(key);
                st.keep_ingest(prev, at, &self.classes[e.class], &mut e.work);
            }
        }
        for key in &changed {
            let e = self.streams.get_mut(key).expect("just inserted");
            if !e.view.disabled {
                let wanted = e.view.dvr_redundancy as usize;
                let prev = olds.get(key);
                st.keep_backups(prev, at, &self.classes[e.class], wanted, &mut e.work);
            }
        }
        // Phase 3 over the changed streams and those still short, in a full run's order.
        let affected: BTreeSet<Arc<str>> = changed.union(&self.short).cloned().collect();
        let mut pending: Vec<(usize, &Arc<str>)> = affected
            .iter()
            .filter(|k| {
                let e = &self.streams[*k];
                !e.view.disabled
                    && (e.work.ingest.is_none()
                        || e.work.backups.len() < e.view.dvr_redundancy as usize)
            })
            .map(|k| (self.classes[self.streams[k].class].open.len(), k))
            .collect();
        pending.sort();
        for (_, key) in pending {
            let e = self.streams.get_mut(key).expect("affected streams exist");
            let wanted = e.view.dvr_redundancy as usize;
            st.fill_one(&self.classes[e.class], e.hash, wanted, &mut e.work);
        }
        let total: Vec<u32> = (0..st.nodes.len()).map(|i| st.total(i)).collect();
        let mut result = LayoutResult {
            counts: counts(&st),
            ..LayoutResult::default()
        };
        for key in &affected {
            let e = self.streams.get_mut(key).expect("affected streams exist");
            let old = olds.get(key).unwrap_or(&e.placement);
            let class = &self.classes[e.class];
            let o = outcome(&st.nodes, &total, &e.view, class, &e.work, old, opts);
            if o.unplaced.is_some() {
                self.short.insert(key.clone());
            } else {
                self.short.remove(key);
            }
            e.placement = o.placement.clone();
            // A full run starts every stream without losses: they explain this run only.
            e.work.ingest_lost = None;
            e.work.backup_lost = None;
            o.record(key.clone(), &mut result);
        }
        self.ingest = st.ingest;
        self.backup = st.backup;
        self.nodes = node_list;
        result
    }
}

/// An entry for `view`, its class computed once per distinct class (against `nodes`).
fn entry(
    classes: &mut Vec<Class>,
    class_ids: &mut HashMap<ClassKey, usize>,
    nodes: &[NodeView],
    mut view: StreamView,
    work: Work,
    placement: Placement,
) -> Entry {
    let key: ClassKey = (
        view.namespace.clone(),
        view.labels.clone(),
        view.required_node_labels.clone(),
        view.preferred_node_labels.clone(),
        view.required_zones.clone(),
        view.preferred_zones.clone(),
    );
    let class = match class_ids.get_key_value(&key) {
        // The view is kept until the stream changes: it shares its class's maps (equal by
        // definition) rather than holding its own copies, 100,000 times over.
        Some(((ns, labels, required, preferred, required_zones, preferred_zones), &id)) => {
            view.namespace = ns.clone();
            view.labels = labels.clone();
            view.required_node_labels = required.clone();
            view.preferred_node_labels = preferred.clone();
            view.required_zones = required_zones.clone();
            view.preferred_zones = preferred_zones.clone();
            id
        }
        None => {
            let nodes: Vec<Node> = nodes.iter().map(Node::new).collect();
            classes.push(Class::new(&nodes, &view));
            class_ids.insert(key, classes.len() - 1);
            classes.len() - 1
        }
    };
    Entry {
        hash: fnv(view.key.as_bytes()),
        view,
        class,
        work,
        placement,
    }
}
