//! Inputs and outputs of the layouter. Inputs are built from the custom resources once per
//! run and shared through `Arc`s, so a preview can clone a snapshot and edit one entry cheaply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::domain::tenancy::Admission;
use crate::resources::stream::StreamSpec;
use crate::resources::streamer::StreamerSpec;
use crate::resources::wire::stream::{
    IngestHistoryItem, NodeLayoutDecision, NodeRole, StreamLayout,
};

/// Key/value labels, shared between snapshots.
pub type Labels = Arc<BTreeMap<String, String>>;

/// Builds [`Labels`] from pairs (handy in tests and previews).
pub fn labels<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Labels {
    Arc::new(
        pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    )
}

/// A set of zone names, shared between snapshots.
pub type Zones = Arc<BTreeSet<String>>;

/// The empty [`Labels`], one allocation for the process.
pub fn no_labels() -> Labels {
    static EMPTY: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(Labels::default);
    EMPTY.clone()
}

/// The empty [`Zones`], one allocation for the process.
pub fn no_zones() -> Zones {
    static EMPTY: std::sync::LazyLock<Zones> = std::sync::LazyLock::new(Zones::default);
    EMPTY.clone()
}

/// Builds [`Zones`] from names (handy in tests and previews).
pub fn zones<Z: Into<String>>(names: impl IntoIterator<Item = Z>) -> Zones {
    Arc::new(names.into_iter().map(Into::into).collect())
}

/// What the layouter needs to know about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Identity of the node; placements name nodes by it.
    pub hostname: Arc<str>,
    /// Only `streamer` nodes take streams (ingest or DVR backup); others are ignored.
    pub role: NodeRole,
    /// Most streams (ingest and DVR backups together) the node may hold; `None` = unlimited.
    pub channel_limit: Option<u32>,
    /// Matched against streams' required (and preferred) node labels.
    pub labels: Labels,
    /// Labels a stream must carry to be placed here.
    pub required_stream_labels: Labels,
    /// Keeps its streams but takes no new ones.
    pub cordoned: bool,
    /// Gives up every stream.
    pub draining: bool,
    /// Reachable and ready, as judged by the caller (with whatever grace it wants).
    pub healthy: bool,
    /// The namespaces whose streams the node may hold (its own and the admitted ones).
    pub admission: Admission,
    /// Zones the node serves (`Streamer.spec.zones`).
    pub zones: Zones,
    /// Those of its zones that are dedicated: the node takes only streams requiring one of
    /// them.
    pub dedicated_zones: Zones,
}

impl NodeView {
    /// A healthy, unlimited, unlabelled streamer.
    pub fn new(hostname: impl Into<Arc<str>>) -> Self {
        NodeView {
            hostname: hostname.into(),
            role: NodeRole::Streamer,
            channel_limit: None,
            labels: Labels::default(),
            required_stream_labels: Labels::default(),
            cordoned: false,
            draining: false,
            healthy: true,
            admission: Admission::default(),
            zones: Zones::default(),
            dedicated_zones: Zones::default(),
        }
    }

    /// The view of a `Streamer` in `namespace`; health comes from the caller's probes, and
    /// `dedicated` says which zone names are dedicated zones.
    pub fn from_spec(
        namespace: &str,
        spec: &StreamerSpec,
        healthy: bool,
        dedicated: impl Fn(&str) -> bool,
    ) -> Self {
        let zones: BTreeSet<String> = spec.zones.iter().flatten().cloned().collect();
        NodeView {
            hostname: spec.hostname.as_str().into(),
            role: spec.role.unwrap_or_default(),
            channel_limit: spec
                .channel_limit
                .map(|l| u32::try_from(l.max(0)).unwrap_or(u32::MAX)),
            labels: Arc::new(spec.labels.clone().unwrap_or_default()),
            required_stream_labels: Arc::new(
                spec.required_stream_labels.clone().unwrap_or_default(),
            ),
            cordoned: spec.cordon.unwrap_or(false),
            // Drain implies cordon (the CRD enforces it); treat it as such even if not.
            draining: spec.drain.unwrap_or(false),
            healthy,
            admission: Admission::new(
                namespace,
                spec.admit_namespaces
                    .as_ref()
                    .map(|a| a.iter().map(|n| n.0.clone()).collect::<Vec<_>>())
                    .as_deref(),
            ),
            dedicated_zones: Arc::new(zones.iter().filter(|z| dedicated(z)).cloned().collect()),
            zones: Arc::new(zones),
        }
    }
}

/// What the layouter needs to know about one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamView {
    /// Unique key of the stream (e.g. `namespace/name` or the Watcher name); also seeds the
    /// tie-breaking hash, so it must be stable across runs.
    pub key: Arc<str>,
    /// Disabled streams get no placement.
    pub disabled: bool,
    /// Matched against nodes' required stream labels.
    pub labels: Labels,
    /// A node must carry all of these.
    pub required_node_labels: Labels,
    /// Nodes carrying more of these win over less-loaded ones.
    pub preferred_node_labels: Labels,
    /// Number of DVR backup nodes besides the ingest node.
    pub dvr_redundancy: u32,
    /// Namespace of the stream: only nodes admitting it may hold the stream.
    pub namespace: Arc<str>,
    /// A node must serve one of these zones (empty = any node).
    pub required_zones: Zones,
    /// Nodes serving one of these win over all others (before preferred labels and load).
    pub preferred_zones: Zones,
}

impl StreamView {
    /// An enabled stream without labels or backups.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        StreamView {
            key: key.into(),
            disabled: false,
            labels: no_labels(),
            required_node_labels: no_labels(),
            preferred_node_labels: no_labels(),
            dvr_redundancy: 0,
            namespace: "".into(),
            required_zones: no_zones(),
            preferred_zones: no_zones(),
        }
    }

    /// The view of a `Stream` spec in `namespace`. `dvr_redundancy` comes from the stream's
    /// own `dvr`; a caller that merges a preset should overwrite it with the effective value.
    pub fn from_spec(key: impl Into<Arc<str>>, namespace: &str, spec: &StreamSpec) -> Self {
        let placement = spec.placement.as_ref();
        // Most cameras set none of these: the empty ones are one shared allocation, not five
        // per stream (the layouter keeps a view of each of 100,000 streams; issue 21).
        let map = |m: Option<&BTreeMap<String, String>>| match m {
            Some(m) if !m.is_empty() => Arc::new(m.clone()),
            _ => no_labels(),
        };
        let rules = spec.config.layout_rules.as_ref();
        let set = |z: Option<&Vec<String>>| -> Zones {
            match z {
                Some(z) if !z.is_empty() => Arc::new(z.iter().cloned().collect()),
                _ => no_zones(),
            }
        };
        StreamView {
            key: key.into(),
            disabled: spec.config.disabled.unwrap_or(false),
            labels: map(spec.config.labels.as_ref()),
            required_node_labels: map(placement.and_then(|p| p.required_node_labels.as_ref())),
            preferred_node_labels: map(placement.and_then(|p| p.preferred_node_labels.as_ref())),
            dvr_redundancy: spec
                .config
                .dvr
                .as_ref()
                .and_then(|d| d.redundancy_factor)
                .map_or(0, |r| u32::try_from(r.max(0)).unwrap_or(u32::MAX)),
            // One allocation per namespace, shared by its streams' views.
            namespace: crate::resources::text::Text::new(namespace).into(),
            required_zones: set(rules.and_then(|r| r.required_zones.as_ref())),
            preferred_zones: set(rules.and_then(|r| r.preferred_zones.as_ref())),
        }
    }
}

/// Everything the layouter looks at. Order does not matter; keys and hostnames should be
/// unique (for duplicates the first occurrence wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// All nodes, of any role and health.
    pub nodes: Vec<NodeView>,
    /// All streams, enabled or not.
    pub streams: Vec<StreamView>,
}

/// Where a stream is, in the compact form the layouter carries from run to run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    /// Ingest node, if placed.
    pub ingest: Option<Arc<str>>,
    /// DVR backup nodes, in the order they were assigned.
    pub dvr_backups: Vec<Arc<str>>,
    /// The last five ingest placements, oldest first (shared: most runs only copy it).
    pub ingest_history: Arc<[IngestHistoryItem]>,
}

impl From<&StreamLayout> for Placement {
    fn from(l: &StreamLayout) -> Self {
        Placement {
            ingest: l.ingest.as_deref().map(Into::into),
            dvr_backups: l.dvr_backups.iter().map(|h| h.as_str().into()).collect(),
            ingest_history: l.ingest_history.as_slice().into(),
        }
    }
}

/// Knobs of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayoutOptions {
    /// Timestamp (UTC ms) of new placements; the layouter reads no clock.
    pub now_ms: i64,
    /// Even out the load (and honour preferred labels) even if that moves well-placed streams.
    pub rebalance: bool,
    /// List every streamer in `node_layout_decisions`. By default only the nodes holding the
    /// stream and those refusing it are listed (every node when it is unplaced): listing the
    /// willing-but-unchosen ones too costs N entries per stream in time and in status size
    /// (10,000 streams × 100 nodes = 1M entries) and explains nothing a reason could.
    pub explain_all_nodes: bool,
}

/// Why an enabled stream is not fully placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// No node can take the ingest; the stream has no placement at all.
    Unschedulable,
    /// The ingest is placed but this many DVR backups are missing.
    MissingBackups(u32),
}

/// An enabled stream that is not fully placed, with every node's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Unplaced {
    /// What is missing.
    pub shortfall: Shortfall,
    /// For an unschedulable stream whose required zones no node of its pool serves (healthy
    /// or not): those zones, sorted. Empty otherwise.
    pub unserved_zones: Vec<String>,
    /// One verdict per streamer node, sorted by hostname.
    pub decisions: Vec<NodeLayoutDecision>,
}

/// Streams (ingest) and DVR backups held by one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleCounts {
    /// Streams ingested by the node.
    pub ingest: u32,
    /// DVR backup copies held by the node.
    pub dvr_backup: u32,
}

/// Per-node counts, by hostname.
pub type Counts = BTreeMap<Arc<str>, RoleCounts>;

/// Outcome of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayoutResult {
    /// Streams whose placement changed, with the layout to record in their status.
    pub changes: BTreeMap<Arc<str>, StreamLayout>,
    /// Every enabled stream that is not fully placed, changed or not.
    pub unplaced: BTreeMap<Arc<str>, Unplaced>,
    /// The placement of every stream in the snapshot; the `previous` of the next run.
    pub placements: BTreeMap<Arc<str>, Placement>,
    /// Counts of every streamer node in the snapshot (zeros included) after this run.
    pub counts: Counts,
}
