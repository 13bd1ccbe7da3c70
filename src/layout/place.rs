//! The placement algorithm.
//!
//! Phases, each a pass over the streams in key order:
//! 1. keep every current ingest that is still allowed, then every current backup (ingests
//!    first, so a node over its limit sheds backups before ingests);
//! 2. with `rebalance`, move a kept stream only where that strictly helps: to a node with
//!    more preferred labels, or one whose load is at least two lower;
//! 3. place what is missing, most constrained streams first: a lost ingest is replaced by
//!    promoting a backup (it already holds the stream and its archive), else by the best
//!    node; then backups are filled up.
//!
//! "Best" is: in a preferred zone, then most preferred labels, then least loaded, then a per-stream hash of the
//! hostname. Loads only grow in phase 3, so a stream left unplaced there still finds every
//! node ineligible in the final state its decisions describe.
//!
//! Cost: O(S log S + C·N·(L+Z) + S·(1+R)·N) for S streams, N nodes, C classes of L labels
//! and Z zones, and R backups per stream, plus O(N) per changed or unplaced stream for its decisions.
//! Nothing is quadratic in N; 10,000 streams × 100 nodes is a few million cheap steps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::eligibility::{
    Class, Classes, NAMESPACE_NOT_ADMITTED, NODE_MISSES, Node, STREAM_MISSES, fnv, tie,
};
use super::model::{LayoutOptions, LayoutResult, Placement, Snapshot, StreamView};
use crate::resources::wire::stream::{ChangeReason, NodeRole};

/// Preference of a node for a stream, best first; equal ranks are ordered by [`tie`].
type Rank = (Reverse<u32>, u32, u32);

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Ingest,
    Backup,
}

/// A stream's placement while it is being computed (node indexes).
#[derive(Clone, Default)]
pub(super) struct Work {
    pub ingest: Option<usize>,
    pub backups: Vec<usize>,
    pub ingest_lost: Option<ChangeReason>,
    pub backup_lost: Option<ChangeReason>,
}

impl Work {
    pub fn holds(&self, i: usize) -> bool {
        self.ingest == Some(i) || self.backups.contains(&i)
    }
}

/// Nodes and their loads.
pub(super) struct State<'a> {
    pub nodes: Vec<Node<'a>>,
    pub ingest: Vec<u32>,
    pub backup: Vec<u32>,
}

impl State<'_> {
    pub fn total(&self, i: usize) -> u32 {
        self.ingest[i] + self.backup[i]
    }

    fn add(&mut self, i: usize, role: Role, delta: i32) {
        let load = match role {
            Role::Ingest => &mut self.ingest[i],
            Role::Backup => &mut self.backup[i],
        };
        *load = load.wrapping_add_signed(delta);
    }

    /// Why the stream may not stay on node `i` (`None` = it may).
    fn keep_refusal(&self, i: Option<usize>, class: &Class) -> Option<ChangeReason> {
        let Some(i) = i else {
            return Some(ChangeReason::NodeDeleted);
        };
        let mask = class.mask[i];
        if mask & NAMESPACE_NOT_ADMITTED != 0 {
            Some(ChangeReason::NamespaceMismatch)
        } else if self.nodes[i].offline {
            Some(ChangeReason::NodeBecomeOffline)
        } else if mask & STREAM_MISSES != 0 {
            Some(ChangeReason::StreamMissesNodeRequiredLabels)
        } else if mask & NODE_MISSES != 0 {
            Some(ChangeReason::NodeMissesStreamRequiredLabels)
        } else if self.total(i) >= self.nodes[i].limit {
            Some(ChangeReason::NodeChannelLimitExceeded)
        } else {
            None
        }
    }

    /// The best node that may newly take the stream in `role`, other than the ones it holds.
    fn pick(&self, class: &Class, hash: u64, work: &Work, role: Role) -> Option<usize> {
        let mut best: Option<(usize, Rank, u64)> = None;
        for &i in &class.open {
            if self.total(i) >= self.nodes[i].limit || work.holds(i) {
                continue;
            }
            let rank = self.rank(class, i, role);
            // The tie-breaking hash is only needed (and only computed) between equals.
            let better = match &best {
                None => true,
                Some((_, r, _)) if rank != *r => rank < *r,
                Some((_, _, h)) => tie(hash, self.nodes[i].hash) < *h,
            };
            if better {
                best = Some((i, rank, tie(hash, self.nodes[i].hash)));
            }
        }
        best.map(|(i, _, _)| i)
    }

    fn rank(&self, class: &Class, i: usize, role: Role) -> Rank {
        let (first, second) = match role {
            Role::Ingest => (self.ingest[i], self.total(i)),
            Role::Backup => (self.total(i), self.backup[i]),
        };
        (Reverse(class.pref[i]), first, second)
    }

    /// Phase 2 for one slot: where to move the stream from `cur`, if anywhere.
    fn better(
        &self,
        class: &Class,
        hash: u64,
        work: &Work,
        cur: usize,
        role: Role,
    ) -> Option<(usize, ChangeReason)> {
        let c = self.pick(class, hash, work, role)?;
        let load = |i| match role {
            Role::Ingest => self.ingest[i],
            Role::Backup => self.total(i),
        };
        if class.pref[c] > class.pref[cur] {
            Some((c, ChangeReason::PreferredLabelsBetterMatch))
        } else if class.pref[c] == class.pref[cur] && load(cur) > load(c) + 1 {
            Some((c, ChangeReason::RelayoutByApi))
        } else {
            None
        }
    }

    /// Phase 1 for one stream's ingest: keeps the previous one if it may stay.
    pub fn keep_ingest(
        &mut self,
        prev: Option<&Placement>,
        at: impl Fn(&str) -> Option<usize>,
        class: &Class,
        w: &mut Work,
    ) {
        let Some(h) = prev.and_then(|p| p.ingest.as_deref()) else {
            return;
        };
        let i = at(h);
        match self.keep_refusal(i, class) {
            Some(reason) => w.ingest_lost = Some(reason),
            None => {
                let i = i.expect("refusal covers unknown nodes");
                w.ingest = Some(i);
                self.add(i, Role::Ingest, 1);
            }
        }
    }

    /// Phase 1 for one stream's backups: keeps the previous ones that may stay, up to `wanted`.
    pub fn keep_backups(
        &mut self,
        prev: Option<&Placement>,
        at: impl Fn(&str) -> Option<usize>,
        class: &Class,
        wanted: usize,
        w: &mut Work,
    ) {
        let Some(p) = prev else { return };
        for h in &p.dvr_backups {
            let i = at(h);
            // A duplicate (hand-edited status) or one too many: dropping it is an adjustment.
            if i.is_some_and(|i| w.holds(i)) || w.backups.len() >= wanted {
                w.backup_lost
                    .get_or_insert(ChangeReason::DvrRedundancyAdjust);
                continue;
            }
            match self.keep_refusal(i, class) {
                Some(reason) => {
                    w.backup_lost.get_or_insert(reason);
                }
                None => {
                    let i = i.expect("refusal covers unknown nodes");
                    w.backups.push(i);
                    self.add(i, Role::Backup, 1);
                }
            }
        }
    }

    /// Phase 3 for one stream: an ingest if it has none, then backups up to `wanted`.
    pub fn fill_one(&mut self, class: &Class, hash: u64, wanted: usize, w: &mut Work) {
        if w.ingest.is_none() && !self.place_ingest(class, hash, w) {
            return;
        }
        while w.backups.len() < wanted {
            let Some(i) = self.pick(class, hash, w, Role::Backup) else {
                break;
            };
            self.add(i, Role::Backup, 1);
            w.backups.push(i);
        }
    }

    /// Gives back the slots a stream holds (it left, or is laid out again).
    pub fn release(&mut self, w: &Work) {
        if let Some(i) = w.ingest {
            self.add(i, Role::Ingest, -1);
        }
        for &i in &w.backups {
            self.add(i, Role::Backup, -1);
        }
    }

    /// Gives the stream an ingest: a promoted backup if it has one that may ingest, else the
    /// best node. Without one, it also gives up its backups (they would have nothing to copy).
    fn place_ingest(&mut self, class: &Class, hash: u64, w: &mut Work) -> bool {
        let promoted = w
            .backups
            .iter()
            .enumerate()
            .filter(|(_, i)| !self.nodes[**i].cordoned)
            .min_by_key(|(_, i)| {
                (
                    self.rank(class, **i, Role::Ingest),
                    tie(hash, self.nodes[**i].hash),
                )
            })
            .map(|(b, _)| b);
        if let Some(b) = promoted {
            let i = w.backups.remove(b);
            self.add(i, Role::Backup, -1);
            self.add(i, Role::Ingest, 1);
            w.ingest = Some(i);
        } else if let Some(i) = self.pick(class, hash, w, Role::Ingest) {
            self.add(i, Role::Ingest, 1);
            w.ingest = Some(i);
        } else {
            for i in w.backups.drain(..) {
                self.add(i, Role::Backup, -1);
            }
            return false;
        }
        true
    }
}
/// Computes the placement of every stream in `snapshot`, starting from `previous` (by stream
/// key; missing = never placed). Pure and deterministic: the order of the snapshot's vectors
/// does not matter.
pub fn layout(
    snapshot: &Snapshot,
    previous: &BTreeMap<Arc<str>, Placement>,
    opts: &LayoutOptions,
) -> LayoutResult {
    let mut run = Run::new(snapshot, previous);
    run.keep();
    if opts.rebalance {
        run.rebalance();
    }
    run.fill();
    run.finish(opts)
}

/// One computation: the inputs in index form plus the loads and placements so far.
pub(super) struct Run<'a> {
    /// Sorted by key; indexes into it are the stream ids below.
    pub streams: Vec<&'a StreamView>,
    pub prev: Vec<Option<&'a Placement>>,
    pub classes: Classes,
    hashes: Vec<u64>,
    index: HashMap<&'a str, usize>,
    pub st: State<'a>,
    pub work: Vec<Work>,
}

impl<'a> Run<'a> {
    fn new(snapshot: &'a Snapshot, previous: &'a BTreeMap<Arc<str>, Placement>) -> Self {
        let mut views: Vec<_> = snapshot.nodes.iter().collect();
        views.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        views.dedup_by(|a, b| a.hostname == b.hostname);
        // Other roles never hold streams; a placement on one is treated like a deleted node.
        let nodes: Vec<Node> = views
            .into_iter()
            .filter(|n| n.role == NodeRole::Streamer)
            .map(Node::new)
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (&*n.view.hostname, i))
            .collect();
        let mut streams: Vec<&StreamView> = snapshot.streams.iter().collect();
        streams.sort_by(|a, b| a.key.cmp(&b.key));
        streams.dedup_by(|a, b| a.key == b.key);
        let n = nodes.len();
        Run {
            classes: Classes::build(&nodes, &streams),
            hashes: streams.iter().map(|s| fnv(s.key.as_bytes())).collect(),
            prev: streams.iter().map(|s| previous.get(&*s.key)).collect(),
            work: streams.iter().map(|_| Work::default()).collect(),
            streams,
            index,
            st: State {
                nodes,
                ingest: vec![0; n],
                backup: vec![0; n],
            },
        }
    }

    pub fn class_of(&self, si: usize) -> &Class {
        &self.classes.list[self.classes.of_stream[si]]
    }

    /// Phase 1: keep what may stay.
    fn keep(&mut self) {
        let index = &self.index;
        let at = |h: &str| index.get(h).copied();
        for si in 0..self.streams.len() {
            if self.streams[si].disabled {
                continue;
            }
            let class = &self.classes.list[self.classes.of_stream[si]];
            self.st
                .keep_ingest(self.prev[si], at, class, &mut self.work[si]);
        }
        for si in 0..self.streams.len() {
            if self.streams[si].disabled {
                continue;
            }
            let wanted = self.streams[si].dvr_redundancy as usize;
            let class = &self.classes.list[self.classes.of_stream[si]];
            self.st
                .keep_backups(self.prev[si], at, class, wanted, &mut self.work[si]);
        }
    }

    /// Phase 2: move kept streams where that strictly helps.
    fn rebalance(&mut self) {
        for si in 0..self.streams.len() {
            if self.streams[si].disabled {
                continue;
            }
            let class = &self.classes.list[self.classes.of_stream[si]];
            let (hash, w, st) = (self.hashes[si], &mut self.work[si], &mut self.st);
            if let Some(cur) = w.ingest
                && let Some((to, reason)) = st.better(class, hash, w, cur, Role::Ingest)
            {
                st.add(cur, Role::Ingest, -1);
                st.add(to, Role::Ingest, 1);
                w.ingest = Some(to);
                w.ingest_lost.get_or_insert(reason);
            }
            for b in 0..w.backups.len() {
                let cur = w.backups[b];
                if let Some((to, reason)) = st.better(class, hash, w, cur, Role::Backup) {
                    st.add(cur, Role::Backup, -1);
                    st.add(to, Role::Backup, 1);
                    w.backups[b] = to;
                    w.backup_lost.get_or_insert(reason);
                }
            }
        }
    }

    /// Phase 3: place what is missing, streams with the fewest possible nodes first.
    fn fill(&mut self) {
        let mut pending: Vec<usize> = (0..self.streams.len())
            .filter(|&si| {
                let (s, w) = (self.streams[si], &self.work[si]);
                !s.disabled && (w.ingest.is_none() || w.backups.len() < s.dvr_redundancy as usize)
            })
            .collect();
        pending.sort_by_key(|&si| (self.class_of(si).open.len(), si));
        for si in pending {
            let class = &self.classes.list[self.classes.of_stream[si]];
            let wanted = self.streams[si].dvr_redundancy as usize;
            self.st
                .fill_one(class, self.hashes[si], wanted, &mut self.work[si]);
        }
    }
}
