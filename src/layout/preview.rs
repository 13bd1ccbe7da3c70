//! Per-node counts and the streamer preview (Watcher's `CentralStreamerLayoutPredictionItem`).
//!
//! A preview runs [`super::layout`] on a hypothetical snapshot with the real previous
//! placements and compares `counts(previous)` with the result's `counts`; the stream preview
//! is the result's `changes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{Counts, Placement};

/// Which count of a node changed (the wire's `role` of a prediction item).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CountRole {
    /// Streams the node ingests.
    Ingest,
    /// DVR backup copies the node holds.
    DvrBackup,
}

/// How one count of one node would change (wire shape of `CentralStreamerLayoutPredictionItem`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CountChange {
    /// Node hostname.
    pub hostname: String,
    /// Which count.
    pub role: CountRole,
    /// Count before the change.
    pub before: i64,
    /// Count after the change.
    pub after: i64,
    /// `after - before`.
    pub delta: i64,
}

/// Counts per node of a set of placements (nodes holding nothing are absent).
pub fn counts(placements: &BTreeMap<Arc<str>, Placement>) -> Counts {
    let mut counts = Counts::new();
    for p in placements.values() {
        if let Some(h) = &p.ingest {
            counts.entry(h.clone()).or_default().ingest += 1;
        }
        for h in &p.dvr_backups {
            counts.entry(h.clone()).or_default().dvr_backup += 1;
        }
    }
    counts
}

/// The counts that differ, by hostname then role (ingest first); a missing node counts zero.
pub fn preview_counts(before: &Counts, after: &Counts) -> Vec<CountChange> {
    let hosts: std::collections::BTreeSet<&Arc<str>> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for h in hosts {
        let (b, a) = (
            before.get(h).copied().unwrap_or_default(),
            after.get(h).copied().unwrap_or_default(),
        );
        for (role, b, a) in [
            (CountRole::Ingest, b.ingest, a.ingest),
            (CountRole::DvrBackup, b.dvr_backup, a.dvr_backup),
        ] {
            if a != b {
                let (before, after) = (i64::from(b), i64::from(a));
                out.push(CountChange {
                    hostname: h.to_string(),
                    role,
                    before,
                    after,
                    delta: after - before,
                });
            }
        }
    }
    out
}
