//! Taking over streams a Watcher left running on the nodes (issue 20's "takeover without
//! outage"), as pure rules.
//!
//! A node stream without Panoptes's ownership label is foreign and never touched, except when
//! the Stream of the same Watcher name opts in with [`ADOPT_ANNOTATION`] (which
//! `panoptes import` writes on every stream it imports). Even then Panoptes only adopts a copy
//! whose config already equals what Panoptes would push, up to metadata ([`METADATA`]: the
//! ownership label itself, a comment): adopting may write metadata, never a change that makes
//! Flussonic restart the stream. A copy that differs elsewhere is left alone and the Stream
//! says where it differs.
//!
//! Placement sticks to the node already running the stream: a Stream without a recorded
//! placement whose name a node holds starts from that node ([`seed`]) and stays there when
//! the node is eligible; [`record`] then writes that first placement to its status like any
//! other (reason `not_distributed`, the node in its ingest history).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::flussonic::Drift;
use crate::layout::{LayoutResult, Placement};
use crate::resources::text::Text;
use crate::resources::wire::stream::{ChangeReason, IngestHistoryItem, Originator, StreamLayout};

/// Annotation on a Stream: `"true"` lets Panoptes adopt the node stream of the same name
/// that it does not own yet (see the module documentation for what adoption may change).
pub const ADOPT_ANNOTATION: &str = "panoptes.dev/adopt";

/// Top-level members of a node stream whose change does not restart it in Flussonic.
pub const METADATA: &[&str] = &["labels", "comment"];

/// Whether a Stream with these annotations opts in to adoption.
pub fn adopts(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(ADOPT_ANNOTATION).map(String::as_str) == Some("true")
}

/// What adopting a foreign copy would take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// The copy is what Panoptes would push already (no write).
    InSync,
    /// Only metadata differs: one write that does not restart the stream.
    Metadata,
    /// These members differ (JSON pointers; `/` when the node has no disk config to compare):
    /// writing them would restart the stream, so it is not adopted.
    WouldRestart(Vec<String>),
}

fn is_metadata(pointer: &str) -> bool {
    let top = pointer
        .strip_prefix('/')
        .and_then(|p| p.split('/').next())
        .unwrap_or_default();
    METADATA.contains(&top)
}

/// The takeover a drift (Panoptes's body against the foreign copy's `config_on_disk`) means.
pub fn takeover(drift: &Drift) -> Takeover {
    match drift {
        Drift::InSync => Takeover::InSync,
        Drift::Missing => Takeover::WouldRestart(vec!["/".into()]),
        Drift::Differs(paths) if paths.iter().all(|p| is_metadata(p)) => Takeover::Metadata,
        Drift::Differs(paths) => {
            Takeover::WouldRestart(paths.iter().filter(|p| !is_metadata(p)).cloned().collect())
        }
    }
}

/// Starts every stream in `holders` (layout key → the nodes holding a copy it may keep, sorted)
/// that has no placement in `previous` from the first of those nodes, so the layouter keeps it
/// there when that node is eligible. Returns the seeded keys and their node.
pub fn seed(
    previous: &mut BTreeMap<Arc<str>, Placement>,
    holders: impl IntoIterator<Item = (Arc<str>, Vec<String>)>,
) -> BTreeMap<Arc<str>, Arc<str>> {
    let mut seeded = BTreeMap::new();
    for (key, nodes) in holders {
        let Some(first) = nodes.into_iter().next() else {
            continue;
        };
        if previous.contains_key(&key) {
            continue;
        }
        let host: Arc<str> = first.into();
        previous.insert(
            key.clone(),
            Placement {
                ingest: Some(host.clone()),
                ..Placement::default()
            },
        );
        seeded.insert(key, host);
    }
    seeded
}

/// Makes the first placement of the [`seed`]ed streams a recorded change like any other: a
/// stream kept on its node gets a layout for its status (the layouter saw no change, since
/// the seed looked like a placement), one that moved (its node was not eligible) reads as
/// a first distribution, not a failover; both get the ingest in their history.
pub fn record(result: &mut LayoutResult, seeded: &BTreeMap<Arc<str>, Arc<str>>, now_ms: i64) {
    for key in seeded.keys() {
        let Some(placement) = result.placements.get_mut(key) else {
            continue;
        };
        let Some(ingest) = placement.ingest.clone() else {
            continue;
        };
        if placement.ingest_history.is_empty() {
            placement.ingest_history = Arc::from(vec![IngestHistoryItem {
                created_at: now_ms,
                ingest: Text::new(&ingest),
                originator: Originator::Layouter,
            }]);
        }
        let layout = result
            .changes
            .entry(key.clone())
            .or_insert_with(|| StreamLayout {
                ingest: Some(Text::new(&ingest)),
                dvr_backups: placement.dvr_backups.iter().map(|h| Text::new(h)).collect(),
                created_at: Some(now_ms),
                originator: Some(Originator::Layouter),
                ..StreamLayout::default()
            });
        layout.change_reason = Some(ChangeReason::NotDistributed);
        layout.failover_from = None;
        layout.ingest_history = placement.ingest_history.to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LayoutOptions;
    use crate::layout::{NodeView, Snapshot, StreamView, layout};

    #[test]
    fn only_metadata_differences_may_be_adopted() {
        let differs = |p: &[&str]| Drift::Differs(p.iter().map(|s| s.to_string()).collect());
        assert_eq!(takeover(&Drift::InSync), Takeover::InSync);
        assert_eq!(
            takeover(&differs(&["/labels", "/comment"])),
            Takeover::Metadata
        );
        assert_eq!(
            takeover(&differs(&["/labels/managed-by"])),
            Takeover::Metadata
        );
        assert_eq!(
            takeover(&differs(&[
                "/labels/managed-by",
                "/dvr/expiration",
                "/inputs/0/url"
            ])),
            Takeover::WouldRestart(vec!["/dvr/expiration".into(), "/inputs/0/url".into()])
        );
        // `labelsx` is not `labels`.
        assert_eq!(
            takeover(&differs(&["/labelsx"])),
            Takeover::WouldRestart(vec!["/labelsx".into()])
        );
        assert_eq!(
            takeover(&Drift::Missing),
            Takeover::WouldRestart(vec!["/".into()])
        );
        let yes = BTreeMap::from([(ADOPT_ANNOTATION.to_string(), "true".to_string())]);
        let no = BTreeMap::from([(ADOPT_ANNOTATION.to_string(), "yes".to_string())]);
        assert!(adopts(&yes) && !adopts(&no) && !adopts(&BTreeMap::new()));
    }

    fn snapshot(streams: &[&str]) -> Snapshot {
        Snapshot {
            nodes: ["a", "b", "c"].iter().map(|h| NodeView::new(*h)).collect(),
            streams: streams.iter().map(|s| StreamView::new(*s)).collect(),
        }
    }

    /// Without the seed the layouter spreads streams by load and hash; with it every stream
    /// stays on the node already running it, and its status gets that placement.
    #[test]
    fn seeded_streams_stay_on_their_node_and_are_recorded() {
        let keys: Vec<String> = (0..12).map(|i| format!("ns/cam{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let snap = snapshot(&refs);
        let opts = LayoutOptions {
            now_ms: 7,
            ..LayoutOptions::default()
        };
        // All twelve run on `b` today.
        let holders = || {
            keys.iter()
                .map(|k| (Arc::from(k.as_str()), vec!["b".to_string()]))
        };
        let fresh = layout(&snap, &BTreeMap::new(), &opts);
        assert!(
            fresh
                .placements
                .values()
                .any(|p| p.ingest.as_deref() != Some("b")),
            "the layouter would move some of them"
        );
        let mut previous = BTreeMap::new();
        // One stream already has a recorded placement: the seed leaves it alone.
        previous.insert(
            Arc::from("ns/cam0"),
            Placement {
                ingest: Some("c".into()),
                ..Placement::default()
            },
        );
        let seeded = seed(&mut previous, holders());
        assert_eq!(seeded.len(), 11);
        let mut result = layout(&snap, &previous, &opts);
        record(&mut result, &seeded, 7);
        for k in &keys[1..] {
            let p = &result.placements[k.as_str()];
            assert_eq!(p.ingest.as_deref(), Some("b"), "{k}");
            let l = &result.changes[k.as_str()];
            assert_eq!(l.ingest.as_deref(), Some("b"));
            assert_eq!(l.change_reason, Some(ChangeReason::NotDistributed));
            assert_eq!(l.ingest_history.len(), 1);
            assert_eq!(p.ingest_history.len(), 1);
        }
        assert_eq!(result.placements["ns/cam0"].ingest.as_deref(), Some("c"));
        assert!(!result.changes.contains_key("ns/cam0"));
    }

    /// A node that may not take the stream does not keep it: the stream is placed elsewhere
    /// and that reads as a first distribution.
    #[test]
    fn a_seed_on_an_ineligible_node_moves_as_a_first_distribution() {
        let mut snap = snapshot(&["ns/cam"]);
        snap.nodes[1].healthy = false;
        let mut previous = BTreeMap::new();
        let seeded = seed(
            &mut previous,
            [(Arc::from("ns/cam"), vec!["b".to_string()])],
        );
        let mut result = layout(&snap, &previous, &LayoutOptions::default());
        record(&mut result, &seeded, 1);
        let l = &result.changes["ns/cam"];
        assert_ne!(l.ingest.as_deref(), Some("b"));
        assert_eq!(l.change_reason, Some(ChangeReason::NotDistributed));
        assert_eq!(l.failover_from, None);
    }
}
