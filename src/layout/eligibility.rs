//! Who may hold what. Label checks depend only on the (stream labels, required node labels,
//! preferred node labels) triple, which few streams do not share with many others, so they
//! are computed once per distinct triple ("class") and node, not once per stream and node.

use std::collections::{BTreeMap, HashMap};

use super::model::{NodeView, StreamView};
use crate::resources::wire::stream::{DecisionReason, NodeLayoutDecision, NodeRole};

/// The node lacks labels the stream requires.
pub(super) const NODE_MISSES_LABELS: u8 = 1;
/// The stream lacks labels the node requires.
pub(super) const STREAM_MISSES_LABELS: u8 = 2;
/// The node does not admit the stream's namespace (`domain::tenancy`): for this stream the
/// node is not part of the pool at all, so it is not listed in its decisions either (a tenant
/// reading its Stream learns nothing about other namespaces' nodes).
pub(super) const NAMESPACE_NOT_ADMITTED: u8 = 4;

/// A streamer node as the placement loop sees it.
pub(super) struct Node<'a> {
    pub view: &'a NodeView,
    /// `u32::MAX` when unlimited, so "full" is one comparison.
    pub limit: u32,
    /// Unhealthy or draining: holds nothing.
    pub offline: bool,
    /// Takes nothing new.
    pub cordoned: bool,
    pub hash: u64,
}

impl<'a> Node<'a> {
    pub fn new(view: &'a NodeView) -> Self {
        Node {
            view,
            limit: view.channel_limit.unwrap_or(u32::MAX),
            offline: !view.healthy || view.draining,
            cordoned: view.cordoned,
            hash: fnv(view.hostname.as_bytes()),
        }
    }
}

/// Label verdicts of one class against every node (indexed like the node list).
pub(super) struct Class {
    pub mask: Vec<u8>,
    /// How many of the stream's preferred labels each node carries.
    pub pref: Vec<u32>,
    /// Nodes that could take a new stream of this class if they had room: the only ones
    /// placement scans. Placing classes with few of them first keeps greedy placement from
    /// starving them.
    pub open: Vec<usize>,
}

/// Classes and which class each stream belongs to.
pub(super) struct Classes {
    pub of_stream: Vec<usize>,
    pub list: Vec<Class>,
}

type Map = BTreeMap<String, String>;

impl Classes {
    pub fn build(nodes: &[Node], streams: &[&StreamView]) -> Self {
        let mut ids: HashMap<(&str, &Map, &Map, &Map), usize> = HashMap::new();
        let mut list = Vec::new();
        let of_stream = streams
            .iter()
            .map(|s| {
                let key = (
                    &*s.namespace,
                    &*s.labels,
                    &*s.required_node_labels,
                    &*s.preferred_node_labels,
                );
                *ids.entry(key).or_insert_with(|| {
                    list.push(Class::new(nodes, s));
                    list.len() - 1
                })
            })
            .collect();
        Classes { of_stream, list }
    }
}

impl Class {
    fn new(nodes: &[Node], s: &StreamView) -> Self {
        let mask: Vec<u8> = nodes
            .iter()
            .map(|n| {
                let mut m = 0;
                if !contains_all(&n.view.labels, &s.required_node_labels) {
                    m |= NODE_MISSES_LABELS;
                }
                if !contains_all(&s.labels, &n.view.required_stream_labels) {
                    m |= STREAM_MISSES_LABELS;
                }
                if !n.view.admission.admits(&s.namespace) {
                    m |= NAMESPACE_NOT_ADMITTED;
                }
                m
            })
            .collect();
        let pref = nodes
            .iter()
            .map(|n| {
                let hits = s
                    .preferred_node_labels
                    .iter()
                    .filter(|(k, v)| n.view.labels.get(*k) == Some(*v));
                hits.count() as u32
            })
            .collect();
        let open = (0..nodes.len())
            .filter(|&i| mask[i] == 0 && !nodes[i].offline && !nodes[i].cordoned)
            .collect();
        Class { mask, pref, open }
    }
}

fn contains_all(have: &Map, want: &Map) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The verdicts of the nodes for one stream in the final state: those holding it and those
/// refusing it, or all with `every_node`. `holds(i)` tells whether the stream is on node `i`
/// (then a cordon is no objection and its own slot is not counted).
pub(super) fn decisions(
    nodes: &[Node],
    class: &Class,
    total: &[u32],
    holds: impl Fn(usize) -> bool,
    every_node: bool,
) -> Vec<NodeLayoutDecision> {
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let held = holds(i);
            if class.mask[i] & NAMESPACE_NOT_ADMITTED != 0 && !held {
                return None;
            }
            let mut reasons = Vec::new();
            // Pushed in `DecisionReason` order, so the list is sorted.
            if class.mask[i] & STREAM_MISSES_LABELS != 0 {
                reasons.push(DecisionReason::StreamMissesNodeRequiredLabels);
            }
            if class.mask[i] & NODE_MISSES_LABELS != 0 {
                reasons.push(DecisionReason::NodeMissesStreamRequiredLabels);
            }
            if total[i] - u32::from(held) >= n.limit {
                reasons.push(DecisionReason::NodeChannelLimitExceeded);
            }
            if n.offline || (n.cordoned && !held) {
                reasons.push(DecisionReason::NodeOffline);
            }
            if class.mask[i] & NAMESPACE_NOT_ADMITTED != 0 {
                reasons.push(DecisionReason::NamespaceMismatch);
            }
            if !every_node && !held && reasons.is_empty() {
                return None;
            }
            Some(NodeLayoutDecision {
                role: NodeRole::Streamer,
                hostname: n.view.hostname.to_string(),
                node_decision: reasons.is_empty(),
                reasons,
            })
        })
        .collect()
}

/// FNV-1a: stable across platforms and Rust releases, unlike `DefaultHasher`.
pub(super) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Tie-breaker between equally loaded nodes: a per-(stream, node) pseudo-random order, so ties
/// do not all go to the alphabetically first node (splitmix64 finaliser).
pub(super) fn tie(stream: u64, node: u64) -> u64 {
    let mut z = stream ^ node.rotate_left(29);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
