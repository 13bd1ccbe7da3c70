//! The placement algorithm: pure functions over a snapshot, no I/O.
//!
//! [`layout`] decides, for every stream, one ingest node and `dvr_redundancy` DVR-backup nodes,
//! all distinct, and explains each decision per node. Choices the Watcher reference leaves
//! open:
//! - a DVR backup is a channel too: ingests and backups both count against a node's
//!   `channel_limit`;
//! - only `streamer` nodes hold streams and appear in decisions; a placement on a node that
//!   left the snapshot or changed role moves with `node_deleted`;
//! - unhealthy and draining nodes are `node_offline` (their streams move with
//!   `node_become_offline`, and `failover_from` names the old ingest); a cordoned node keeps
//!   what it holds and is `node_offline` for everything else;
//! - preferred node labels rank nodes before load but never move a placed stream unless
//!   `rebalance` is set (`preferred_labels_better_match`);
//! - when the ingest is lost a backup is promoted, since it already holds the archive;
//! - an enabled stream nobody can ingest has no placement at all (its backups are released)
//!   and is listed in [`LayoutResult::unplaced`] with every node's reasons; a stream short of
//!   backups keeps the ones it got and is listed there too;
//! - `node_layout_decisions` lists the nodes holding the stream and those refusing it (every
//!   node when it is unplaced); [`LayoutOptions::explain_all_nodes`] adds the willing but
//!   unchosen ones, at N entries per stream in time and status size;
//! - `ingest_history` is oldest first, ending with the current ingest;
//! - zones are names: a stream with `required_zones` goes only to nodes serving one of them,
//!   and a node in a dedicated zone takes only streams requiring one of its dedicated zones.
//!   Wire reasons have no zone values (strict clients know a closed enum), so a node outside
//!   the required zones reports `node_misses_stream_required_labels` and a dedicated node
//!   refusing a stream `stream_misses_node_required_labels` (a zone is a label in effect);
//!   [`Unplaced::unserved_zones`] names required zones nobody serves, for a clear message;
//! - a preferred zone outranks preferred labels and load, and like them moves no placed
//!   stream unless `rebalance` is set.
//!
//! The layouter loop keeps `result.placements` as the next run's `previous` (or rebuilds it
//! from the streams' status with `Placement::from(&layout)`) and writes `result.changes` to
//! status ([`Incremental`] keeps a run and lays out only what changed since, with the same
//! result); the preview operations run the same function on an edited snapshot and report
//! `changes` (streams) or `preview_counts(&counts(&previous), &result.counts)` (streamers).

mod eligibility;
mod incremental;
mod model;
mod outcome;
mod place;
mod preview;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use incremental::Incremental;
pub use model::{
    Counts, Labels, LayoutOptions, LayoutResult, NodeView, Placement, RoleCounts, Shortfall,
    Snapshot, StreamView, Unplaced, Zones, labels, zones,
};
pub use place::layout;
pub use preview::{CountChange, CountRole, counts, preview_counts};
