//! Who may hold what. Label and zone checks depend only on the stream's (namespace, labels,
//! required and preferred node labels, required and preferred zones), which few streams do
//! not share with many others, so they are computed once per distinct tuple ("class") and
//! node, not once per stream and node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::model::{NodeView, StreamView};
use crate::resources::text::Text;
use crate::resources::wire::stream::{DecisionReason, NodeLayoutDecision, NodeRole};

/// The node lacks labels the stream requires.
pub(super) const NODE_MISSES_LABELS: u8 = 1;
/// The stream lacks labels the node requires.
pub(super) const STREAM_MISSES_LABELS: u8 = 2;
/// The node does not admit the stream's namespace (`domain::tenancy`): for this stream the
/// node is not part of the pool at all, so it is not listed in its decisions either (a tenant
/// reading its Stream learns nothing about other namespaces' nodes).
pub(super) const NAMESPACE_NOT_ADMITTED: u8 = 4;
/// The node serves none of the zones the stream requires (wire reason: the node misses the
/// stream's required labels).
pub(super) const OUTSIDE_REQUIRED_ZONES: u8 = 8;
/// The node is in a dedicated zone the stream does not require (wire reason: the stream
/// misses the node's required labels).
pub(super) const DEDICATED_ZONE: u8 = 16;
/// Refusals the wire calls `node_misses_stream_required_labels`.
pub(super) const NODE_MISSES: u8 = NODE_MISSES_LABELS | OUTSIDE_REQUIRED_ZONES;
/// Refusals the wire calls `stream_misses_node_required_labels`.
pub(super) const STREAM_MISSES: u8 = STREAM_MISSES_LABELS | DEDICATED_ZONE;

/// Preference points of a preferred zone: more than any count of preferred labels.
const ZONE_PREFERENCE: u32 = 1 << 16;

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
type Set = BTreeSet<String>;
type ClassKey<'a> = (&'a str, &'a Map, &'a Map, &'a Map, &'a Set, &'a Set);

impl Classes {
    pub fn build(nodes: &[Node], streams: &[&StreamView]) -> Self {
        let mut ids: HashMap<ClassKey, usize> = HashMap::new();
        let mut list = Vec::new();
        let of_stream = streams
            .iter()
            .map(|s| {
                let key = (
                    &*s.namespace,
                    &*s.labels,
                    &*s.required_node_labels,
                    &*s.preferred_node_labels,
                    &*s.required_zones,
                    &*s.preferred_zones,
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
    pub fn new(nodes: &[Node], s: &StreamView) -> Self {
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
                if !s.required_zones.is_empty() && !meets(&n.view.zones, &s.required_zones) {
                    m |= OUTSIDE_REQUIRED_ZONES;
                }
                if !n.view.dedicated_zones.is_empty()
                    && !meets(&n.view.dedicated_zones, &s.required_zones)
                {
                    m |= DEDICATED_ZONE;
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
                let zone = meets(&n.view.zones, &s.preferred_zones);
                u32::from(zone) * ZONE_PREFERENCE + (hits.count() as u32).min(ZONE_PREFERENCE - 1)
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

/// Whether the two sets share a zone (both are small: a node serves a few zones).
fn meets(a: &Set, b: &Set) -> bool {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.iter().any(|z| large.contains(z))
}

/// The zones of `required` that no node of the class's pool (any health) serves, sorted:
/// why nothing can ever take the stream until someone joins one of them. Empty when the
/// stream requires no zone or some node of its pool serves one.
pub(super) fn unserved_zones(class: &Class, required: &Set) -> Vec<String> {
    let served = class
        .mask
        .iter()
        .any(|m| m & (NAMESPACE_NOT_ADMITTED | OUTSIDE_REQUIRED_ZONES) == 0);
    if required.is_empty() || served {
        return Vec::new();
    }
    required.iter().cloned().collect()
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
            if class.mask[i] & STREAM_MISSES != 0 {
                reasons.push(DecisionReason::StreamMissesNodeRequiredLabels);
            }
            if class.mask[i] & NODE_MISSES != 0 {
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
                hostname: Text::new(&n.view.hostname),
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
