//! Deleting a streamer is make-before-break: its streams move first (the node drains), and
//! only a node that holds nothing is deleted. Whether they can move is the layouter's answer
//! for the world with the node draining: a stream it leaves unplaced there would go dark, so
//! the delete is refused naming it, before anything is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::layout::{LayoutResult, Placement};

/// Whether `placement` puts anything (ingest or a DVR backup) on `host`.
pub fn holds(placement: &Placement, host: &str) -> bool {
    placement.ingest.as_deref() == Some(host) || placement.dvr_backups.iter().any(|h| &**h == host)
}

/// The streams `placements` put on `host`, by name.
pub fn held(placements: &BTreeMap<Arc<str>, Placement>, host: &str) -> Vec<Arc<str>> {
    placements
        .iter()
        .filter(|(_, p)| holds(p, host))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The streams on `host` now (`before`) that the layouter cannot place elsewhere once the
/// node drains (`after`, the world with the node draining): left without an ingest node, or
/// still on the node. The ones a delete would strand.
pub fn stranded(host: &str, before: &LayoutResult, after: &LayoutResult) -> Vec<Arc<str>> {
    held(&before.placements, host)
        .into_iter()
        .filter(|name| {
            after
                .placements
                .get(name)
                .is_none_or(|p| p.ingest.is_none() || holds(p, host))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(ingest: Option<&str>, backups: &[&str]) -> Placement {
        Placement {
            ingest: ingest.map(Into::into),
            dvr_backups: backups.iter().map(|h| (*h).into()).collect(),
            ingest_history: Arc::from([]),
        }
    }

    fn result(items: &[(&str, Placement)]) -> LayoutResult {
        LayoutResult {
            placements: items
                .iter()
                .map(|(n, p)| (Arc::from(*n), p.clone()))
                .collect(),
            ..LayoutResult::default()
        }
    }

    #[test]
    fn only_streams_left_on_the_node_or_unplaced_are_stranded() {
        let before = result(&[
            ("moves", placed(Some("a"), &[])),
            ("backup", placed(Some("b"), &["a"])),
            ("stuck", placed(Some("a"), &[])),
            ("elsewhere", placed(Some("b"), &[])),
        ]);
        let after = result(&[
            ("moves", placed(Some("b"), &[])),
            ("backup", placed(Some("b"), &["a"])),
            ("stuck", placed(None, &[])),
            ("elsewhere", placed(Some("b"), &[])),
        ]);
        assert_eq!(held(&before.placements, "a").len(), 3);
        let names: Vec<String> = stranded("a", &before, &after)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["backup", "stuck"]);
    }
}
