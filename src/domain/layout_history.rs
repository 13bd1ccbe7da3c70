//! The placement history of a stream (`GET /streams/{name}/layouts`): the current layout and
//! up to [`KEPT`] earlier ones, each saying which node, since when and why it moved. Kept in
//! the Stream's status and extended only when the placement changes, in the status write that
//! records the change anyway: nothing is written at rest.

use crate::resources::stream::LayoutRecord;
use crate::resources::wire::StreamLayout;

/// Earlier placements kept (with the current one: the five Watcher keeps).
pub const KEPT: usize = 4;

/// The record of a layout (without the per-node verdicts and ingest history: those explain
/// the current placement only).
pub fn record_of(l: &StreamLayout) -> LayoutRecord {
    LayoutRecord {
        ingest: l.ingest.clone(),
        dvr_backups: l.dvr_backups.clone(),
        change_reason: l.change_reason,
        created_at: l.created_at,
        originator: l.originator,
    }
}

/// Whether `new` is another placement than `old` (not the same one written again).
fn moved(old: &StreamLayout, new: &StreamLayout) -> bool {
    old.ingest != new.ingest
        || old.dvr_backups != new.dvr_backups
        || old.created_at != new.created_at
}

/// The history after the layout goes from `old` to `new`: `old` pushed in front (newest
/// first) when the placement changed, the oldest dropped past [`KEPT`]; `None` when nothing
/// changed (the status keeps its history).
pub fn next(
    history: &[LayoutRecord],
    old: Option<&StreamLayout>,
    new: Option<&StreamLayout>,
) -> Option<Vec<LayoutRecord>> {
    let (Some(old), Some(new)) = (old, new) else {
        return None;
    };
    if !moved(old, new) {
        return None;
    }
    let mut out = Vec::with_capacity(KEPT);
    out.push(record_of(old));
    out.extend(history.iter().take(KEPT - 1).cloned());
    Some(out)
}

/// The note of a `Moved` Event when the ingest node changed: from where, to where, why.
pub fn moved_note(old: Option<&StreamLayout>, new: Option<&StreamLayout>) -> Option<String> {
    let from = old.and_then(|l| l.ingest.as_deref());
    let to = new.and_then(|l| l.ingest.as_deref());
    if from == to || from.is_none() {
        return None;
    }
    let why = new
        .and_then(|l| l.change_reason)
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    Some(match to {
        Some(to) => format!("moved from {} to {to}: {why}", from.unwrap_or_default()),
        None => format!(
            "lost its node {}: {why}; waiting for a node",
            from.unwrap_or_default()
        ),
    })
}

/// The layouts list: the current layout, then the earlier records, newest first.
pub fn listed(current: Option<&StreamLayout>, history: &[LayoutRecord]) -> Vec<StreamLayout> {
    let earlier = history.iter().map(|r| StreamLayout {
        ingest: r.ingest.clone(),
        dvr_backups: r.dvr_backups.clone(),
        change_reason: r.change_reason,
        created_at: r.created_at,
        originator: r.originator,
        ..Default::default()
    });
    current.cloned().into_iter().chain(earlier).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::wire::stream::{ChangeReason, Originator};

    fn layout(ingest: &str, at: i64, why: ChangeReason) -> StreamLayout {
        StreamLayout {
            ingest: Some(ingest.into()),
            dvr_backups: vec!["streamer-backup-1".into()],
            change_reason: Some(why),
            created_at: Some(at),
            originator: Some(Originator::Layouter),
            ..Default::default()
        }
    }

    #[test]
    fn moves_are_recorded_newest_first_and_at_most_five_are_listed() {
        let mut history = Vec::new();
        let mut current = layout("n0", 0, ChangeReason::NotDistributed);
        for i in 1..10 {
            let new = layout(&format!("n{i}"), i, ChangeReason::NodeBecomeOffline);
            history = next(&history, Some(&current), Some(&new)).unwrap();
            current = new;
            assert!(history.len() <= KEPT);
        }
        let listed = listed(Some(&current), &history);
        assert_eq!(listed.len(), KEPT + 1);
        let nodes: Vec<_> = listed.iter().map(|l| l.ingest.clone().unwrap()).collect();
        assert_eq!(nodes, ["n9", "n8", "n7", "n6", "n5"]);
    }

    #[test]
    fn the_same_layout_again_records_nothing() {
        let l = layout("n1", 5, ChangeReason::NotDistributed);
        assert_eq!(next(&[], Some(&l), Some(&l.clone())), None);
        assert_eq!(next(&[], None, Some(&l)), None);
        assert_eq!(moved_note(None, Some(&l)), None);
        let m = layout("n2", 6, ChangeReason::NodeBecomeOffline);
        assert_eq!(
            moved_note(Some(&l), Some(&m)).unwrap(),
            "moved from n1 to n2: node_become_offline"
        );
    }

    /// The history's cost in a Stream's status (the scale bench's bytes per stream): a full
    /// history of realistic records stays under 1 KiB of JSON.
    #[test]
    fn bytes_per_stream_of_a_full_history() {
        let records: Vec<LayoutRecord> = (0..KEPT)
            .map(|i| {
                record_of(&layout(
                    &format!("streamer-{i:03}.example.net"),
                    1_765_000_000_000 + i as i64,
                    ChangeReason::NodeBecomeOffline,
                ))
            })
            .collect();
        let bytes = serde_json::to_vec(&records).unwrap().len();
        eprintln!("layout history: {bytes} bytes per stream ({KEPT} records)");
        assert!(bytes < 1024, "{bytes}");
    }
}
