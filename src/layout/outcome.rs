//! Turning a finished run into its result: what changed, why, and what is still missing.

use std::sync::Arc;

use super::eligibility::{Class, Node, decisions, unserved_zones};
use super::model::{
    Counts, LayoutOptions, LayoutResult, Placement, RoleCounts, Shortfall, StreamView, Unplaced,
};
use super::place::{Run, State, Work};
use crate::resources::text::Text;
use crate::resources::wire::stream::{ChangeReason, IngestHistoryItem, Originator, StreamLayout};

/// Ingest history entries kept per stream (Watcher keeps five).
const HISTORY: usize = 5;

impl Run<'_> {
    pub(super) fn finish(&self, opts: &LayoutOptions) -> LayoutResult {
        let st = &self.st;
        let total: Vec<u32> = (0..st.nodes.len()).map(|i| st.total(i)).collect();
        let mut result = LayoutResult {
            counts: counts(st),
            ..LayoutResult::default()
        };
        let empty = Placement::default();
        for (si, s) in self.streams.iter().enumerate() {
            let (w, old) = (&self.work[si], self.prev[si].unwrap_or(&empty));
            let o = outcome(&st.nodes, &total, s, self.class_of(si), w, old, opts);
            o.record(s.key.clone(), &mut result);
        }
        result
    }
}

/// Counts of every streamer node.
pub(super) fn counts(st: &State) -> Counts {
    let mut counts = Counts::new();
    for (i, node) in st.nodes.iter().enumerate() {
        let role = RoleCounts {
            ingest: st.ingest[i],
            dvr_backup: st.backup[i],
        };
        counts.insert(node.view.hostname.clone(), role);
    }
    counts
}

/// What a run decided for one stream.
pub(super) struct Outcome {
    pub placement: Placement,
    pub change: Option<StreamLayout>,
    pub unplaced: Option<Unplaced>,
}

impl Outcome {
    pub fn record(self, key: Arc<str>, result: &mut LayoutResult) {
        if let Some(u) = self.unplaced {
            result.unplaced.insert(key.clone(), u);
        }
        if let Some(c) = self.change {
            result.changes.insert(key.clone(), c);
        }
        result.placements.insert(key, self.placement);
    }
}

/// The outcome for stream `s`, placed as `w` from `old`, given every node's final `total`.
pub(super) fn outcome(
    nodes: &[Node],
    total: &[u32],
    s: &StreamView,
    class: &Class,
    w: &Work,
    old: &Placement,
    opts: &LayoutOptions,
) -> Outcome {
    let host = |i: usize| nodes[i].view.hostname.clone();
    let ingest = w.ingest.map(host);
    let backups: Vec<Arc<str>> = w.backups.iter().map(|&i| host(i)).collect();
    let changed = ingest != old.ingest || backups != old.dvr_backups;
    let history = history(old, ingest.as_deref(), opts.now_ms);
    let wanted = s.dvr_redundancy as usize;
    let shortfall = if s.disabled {
        None
    } else if ingest.is_none() {
        Some(Shortfall::Unschedulable)
    } else if backups.len() < wanted {
        Some(Shortfall::MissingBackups((wanted - backups.len()) as u32))
    } else {
        None
    };
    // Built only for streams that need them: the steady state builds none.
    let mut verdicts = Vec::new();
    if !s.disabled && (changed || shortfall.is_some()) {
        verdicts = decisions(nodes, class, total, |i| w.holds(i), opts.explain_all_nodes);
    }
    let unplaced = shortfall.map(|shortfall| {
        let decisions = if changed {
            verdicts.clone()
        } else {
            std::mem::take(&mut verdicts)
        };
        let unserved_zones = match shortfall {
            Shortfall::Unschedulable => unserved_zones(class, &s.required_zones),
            Shortfall::MissingBackups(_) => Vec::new(),
        };
        Unplaced {
            shortfall,
            unserved_zones,
            decisions,
        }
    });
    let change = changed.then(|| {
        let failed_over = ingest.is_some()
            && matches!(
                w.ingest_lost,
                Some(ChangeReason::NodeBecomeOffline | ChangeReason::NodeDeleted)
            );
        StreamLayout {
            ingest: ingest.as_deref().map(Text::new),
            dvr_backups: backups.iter().map(|h| Text::new(h)).collect(),
            inference: None,
            failover_from: old.ingest.as_deref().filter(|_| failed_over).map(Text::new),
            change_reason: Some(reason(s.disabled, old, w)),
            created_at: Some(opts.now_ms),
            originator: Some(Originator::Layouter),
            node_layout_decisions: verdicts,
            ingest_history: history.to_vec(),
        }
    });
    Outcome {
        placement: Placement {
            ingest,
            dvr_backups: backups,
            ingest_history: history,
        },
        change,
        unplaced,
    }
}

/// Why a changed placement changed: the first loss wins (ingest before backups); a change
/// without a loss is a redundancy adjustment.
fn reason(disabled: bool, old: &Placement, w: &Work) -> ChangeReason {
    if disabled {
        ChangeReason::StreamDisabled
    } else if old.ingest.is_none() && old.dvr_backups.is_empty() {
        ChangeReason::NotDistributed
    } else {
        w.ingest_lost
            .or(w.backup_lost)
            .unwrap_or(ChangeReason::DvrRedundancyAdjust)
    }
}

/// The previous history, plus the new ingest if it changed, trimmed to the last five.
fn history(old: &Placement, ingest: Option<&str>, now_ms: i64) -> Arc<[IngestHistoryItem]> {
    match ingest {
        Some(h) if Some(h) != old.ingest.as_deref() => {
            let item = IngestHistoryItem {
                created_at: now_ms,
                ingest: Text::new(h),
                originator: Originator::Layouter,
            };
            let older = &old.ingest_history;
            let kept = &older[older.len().saturating_sub(HISTORY - 1)..];
            kept.iter().cloned().chain([item]).collect()
        }
        _ => old.ingest_history.clone(),
    }
}
