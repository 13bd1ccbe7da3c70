//! The Stream controller's verdict, apart from its I/O: what one sync did ([`SyncReport`]),
//! where the stream is placed and what its ingest node reports go in; the `Scheduled`,
//! `Synced` and `Ready` conditions come out. Pure, so every reason is a table row below.
//! `Ready` is [`domain::stream_health`](crate::domain::stream_health)'s verdict, the one
//! `/cluster/stats` shows too.

use std::sync::Arc;

use super::super::conditions::Desired;
use crate::domain::stream_health::{self, Facts, StreamHealth};
use crate::layout::{Placement, Shortfall, Unplaced};
use crate::resources::wire::DecisionReason;
use crate::state::StreamLive;

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Nodes of the placement holding the current config.
    pub synced: Vec<String>,
    /// `node: why` for each push that failed.
    pub failed: Vec<String>,
    /// `node: why` for each copy that should have gone but could not be removed.
    pub stale_left: Vec<String>,
    /// Some node's contents are not known yet (first list pending): judge again shortly.
    pub deferred: bool,
    /// Nodes keeping their copy while the stream waits for a node (it moved nowhere).
    pub kept: Vec<String>,
    /// Nodes whose copy had been edited (or deleted) by hand and was written back.
    pub repaired: Vec<String>,
    /// Nodes that run the previous config while the preset's change waits for its turn there.
    pub held: Vec<(String, Hold)>,
}

/// Why a node still runs a camera's previous config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Every rollout slot of the node is taken.
    Waiting { restarting: usize, budget: usize },
    /// The preset's rollout is paused.
    Paused,
}

/// How the stream is asked to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Running {
    /// Disabled: on no node.
    Disabled,
    /// Enabled; `on_demand` from the typed spec ([`stream_health::on_demand`]).
    Enabled { on_demand: bool },
}

/// The conditions and `status.alive`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `Scheduled`, `Synced`, `Ready`.
    pub conditions: [Desired; 3],
    /// What the ingest node said about frames.
    pub alive: Option<bool>,
}

/// Labels (`key=value`) the stream requires that a node lacks, by hostname: what
/// `node_misses_stream_required_labels` means for that node, in words a person can act on.
pub type LabelGaps = std::collections::BTreeMap<String, Vec<String>>;

/// Judges a stream after a sync. `live` is the ingest node's report of the stream.
pub fn judge(
    report: &SyncReport,
    placement: &Placement,
    unplaced: Option<&Unplaced>,
    live: Option<&StreamLive>,
    running: Running,
    gaps: &LabelGaps,
) -> Verdict {
    let disabled = running == Running::Disabled;
    let ingest = placement.ingest.as_deref().filter(|_| !disabled);
    let scheduled = match (disabled, ingest, unplaced) {
        (true, _, _) => Desired::no(
            "Scheduled",
            "Disabled",
            "the stream is disabled; it runs on no node",
        ),
        (false, None, Some(u)) if !u.unserved_zones.is_empty() => Desired::no(
            "Scheduled",
            "ZoneUnavailable",
            format!(
                "no streamer serves the required zone(s) {}; add a streamer to one of them (Streamer spec.zones) or change the stream's layout_rules.required_zones",
                u.unserved_zones.join(", ")
            ),
        ),
        (false, None, Some(u)) => Desired::no("Scheduled", "Unschedulable", explain(u, gaps)),
        (false, None, None) => Desired::no(
            "Scheduled",
            "Pending",
            "waiting for the layouter to place the stream",
        ),
        (false, Some(i), Some(u)) => Desired::yes(
            "Scheduled",
            "MissingBackups",
            format!("ingest on {i}; {}", explain(u, gaps)),
        ),
        (false, Some(i), None) => Desired::yes(
            "Scheduled",
            "Placed",
            placed_message(i, &placement.dvr_backups),
        ),
    };
    let synced = if disabled {
        if report.stale_left.is_empty() {
            Desired::yes("Synced", "Disabled", "no node holds the disabled stream")
        } else {
            Desired::no(
                "Synced",
                "RemovalPending",
                format!(
                    "could not remove the disabled stream from {}",
                    report.stale_left.join("; ")
                ),
            )
        }
    } else if ingest.is_none() && !report.kept.is_empty() {
        Desired::no(
            "Synced",
            "NotScheduled",
            format!(
                "the stream has no node to run on; it keeps running on {} until it has one",
                report.kept.join(", ")
            ),
        )
    } else if ingest.is_none() {
        Desired::no("Synced", "NotScheduled", "the stream has no node to run on")
    } else if !report.failed.is_empty() {
        Desired::no(
            "Synced",
            "PushFailed",
            format!("config not pushed to {}", report.failed.join("; ")),
        )
    } else if report.held.iter().any(|(_, h)| *h == Hold::Paused) {
        Desired::no(
            "Synced",
            "RolloutPaused",
            format!(
                "the preset's rollout is paused (spec.rollout.paused); {} keeps the previous config",
                held_nodes(&report.held)
            ),
        )
    } else if let Some((node, Hold::Waiting { restarting, budget })) = report.held.first() {
        Desired::no(
            "Synced",
            "RolloutWaiting",
            format!(
                "waiting for its turn in the preset's rollout: {restarting} of {budget} cameras restart on {node} now; {} keeps the previous config until then",
                held_nodes(&report.held)
            ),
        )
    } else if !report.stale_left.is_empty() {
        Desired::yes(
            "Synced",
            "StaleCopiesLeft",
            format!(
                "config matches on {}; old copies are removed when their nodes answer ({})",
                report.synced.join(", "),
                report.stale_left.join("; ")
            ),
        )
    } else {
        Desired::yes(
            "Synced",
            "InSync",
            format!("config matches on {}", report.synced.join(", ")),
        )
    };
    let health = stream_health::judge(&Facts {
        disabled,
        ingest,
        // A node held back by the rollout runs the previous config: the camera is up.
        synced: ingest.is_some_and(|i| {
            report.synced.iter().any(|s| s == i) || report.held.iter().any(|(h, _)| h == i)
        }),
        live,
        on_demand: matches!(running, Running::Enabled { on_demand: true }),
    });
    let i = ingest.unwrap_or_default();
    let ready = match &health {
        StreamHealth::Disabled => Desired::no("Ready", "Disabled", "the stream is disabled"),
        StreamHealth::NotScheduled => {
            Desired::no("Ready", "NotScheduled", "the stream has no ingest node")
        }
        StreamHealth::NotSynced => Desired::no(
            "Ready",
            "NotSynced",
            format!("the config is not on the ingest node {i} yet"),
        ),
        StreamHealth::Starting => Desired::no(
            "Ready",
            "Starting",
            format!("waiting for node {i} to report the stream"),
        ),
        StreamHealth::Alive { .. } => {
            Desired::yes("Ready", "Alive", format!("receiving frames on {i}"))
        }
        StreamHealth::OnDemand => Desired::yes(
            "Ready",
            "OnDemand",
            format!("configured on {i}; an on-demand stream starts when a viewer connects"),
        ),
        StreamHealth::NotAlive { source_error } => {
            let why = source_error
                .map(|e| format!(" (source error: {e})"))
                .unwrap_or_default();
            Desired::no(
                "Ready",
                "NotAlive",
                format!(
                    "node {i} receives no frames from the source{why}; check the camera and its input URL"
                ),
            )
        }
    };
    Verdict {
        alive: health.alive(),
        conditions: [scheduled, synced, ready],
    }
}

fn held_nodes(held: &[(String, Hold)]) -> String {
    let nodes: Vec<&str> = held.iter().map(|(h, _)| h.as_str()).collect();
    nodes.join(", ")
}

fn placed_message(ingest: &str, backups: &[Arc<str>]) -> String {
    if backups.is_empty() {
        format!("ingest on {ingest}")
    } else {
        let b: Vec<&str> = backups.iter().map(|b| &**b).collect();
        format!("ingest on {ingest}, DVR backups on {}", b.join(", "))
    }
}

/// Why a node cannot take the stream, in words (the wire tokens are Watcher's, for the
/// facade; a condition message is read by a person).
fn why_not(reason: DecisionReason, gap: Option<&Vec<String>>) -> String {
    match reason {
        DecisionReason::NodeMissesStreamRequiredLabels => match gap {
            Some(g) if !g.is_empty() => format!("lacks label {}", g.join(", ")),
            // Zones share the wire reason with labels (the reference's reasons are a closed set).
            _ => "lacks labels or a zone the stream requires (required_zones)".into(),
        },
        DecisionReason::StreamMissesNodeRequiredLabels => {
            "takes only streams with its requiredStreamLabels or requiring its dedicated zone"
                .into()
        }
        DecisionReason::NodeChannelLimitExceeded => "at its channel limit".into(),
        DecisionReason::StreamerDvrSizeExceeded => "its DVR is full".into(),
        DecisionReason::NodeNotAvailableForTranscoding => "cannot transcode".into(),
        DecisionReason::NodeOffline => "offline or cordoned".into(),
        DecisionReason::StreamerTotalBandwidthExceeded => "its bandwidth is used up".into(),
        DecisionReason::NamespaceMismatch => {
            "does not admit the stream's namespace (its admitNamespaces)".into()
        }
    }
}

/// A person-readable summary of why a stream is not (fully) placed.
fn explain(u: &Unplaced, gaps: &LabelGaps) -> String {
    let head = match u.shortfall {
        Shortfall::Unschedulable => "no node can ingest the stream".to_string(),
        Shortfall::MissingBackups(n) => format!("{n} DVR backup node(s) missing"),
    };
    let mut reasons: Vec<String> = u
        .decisions
        .iter()
        .filter(|d| !d.reasons.is_empty())
        .take(5)
        .map(|d| {
            let gap = gaps.get(d.hostname.as_str());
            let r: Vec<String> = d.reasons.iter().map(|r| why_not(*r, gap)).collect();
            format!("{} {}", d.hostname, r.join(" and "))
        })
        .collect();
    if u.decisions.is_empty() {
        reasons.push("no streamer nodes are declared".into());
    }
    format!("{head} ({})", reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::moves::at as on;
    use crate::resources::wire::StreamStats;

    fn report(synced: &[&str], failed: &[&str], stale: &[&str]) -> SyncReport {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect();
        SyncReport {
            synced: v(synced),
            failed: v(failed),
            stale_left: v(stale),
            ..SyncReport::default()
        }
    }

    fn live(alive: bool) -> StreamLive {
        StreamLive {
            stats: Some(StreamStats {
                alive: Some(alive),
                ..StreamStats::default()
            }),
            managed: true,
        }
    }

    /// What, the inputs of `judge`, (Scheduled, Synced, Ready) and `alive`.
    type Row<'a> = (
        &'a str,
        SyncReport,
        &'a Placement,
        Option<&'a Unplaced>,
        Option<&'a StreamLive>,
        Running,
        [&'a str; 3],
        Option<bool>,
    );

    /// (Scheduled, Synced, Ready) as `Reason` or `!Reason` for False.
    fn reasons(v: &Verdict) -> [String; 3] {
        v.conditions.clone().map(|d| {
            let bang = if d.status { "" } else { "!" };
            format!("{bang}{}", d.reason)
        })
    }

    #[test]
    fn conditions_by_case() {
        let enabled = Running::Enabled { on_demand: false };
        let on_demand = Running::Enabled { on_demand: true };
        let unschedulable = Unplaced {
            shortfall: Shortfall::Unschedulable,
            unserved_zones: vec![],
            decisions: vec![],
        };
        let short = Unplaced {
            shortfall: Shortfall::MissingBackups(1),
            unserved_zones: vec![],
            decisions: vec![],
        };
        let zoned = Unplaced {
            unserved_zones: vec!["nowhere".into()],
            ..unschedulable.clone()
        };
        let (up, down) = (live(true), live(false));
        let n1 = on(Some("n1"), &[]);
        let waiting = Hold::Waiting {
            restarting: 2,
            budget: 2,
        };
        let held = |synced: &[&str], held: &[(&str, Hold)]| SyncReport {
            held: held.iter().map(|(h, w)| (h.to_string(), *w)).collect(),
            ..report(synced, &[], &[])
        };
        let n1_n2 = on(Some("n1"), &["n2"]);
        let none = on(None, &[]);
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("alive", report(&["n1"], &[], &[]), &n1, None, Some(&up), enabled, ["Placed", "InSync", "Alive"], Some(true)),
            ("backups placed", report(&["n1", "n2"], &[], &[]), &n1_n2, None, Some(&up), enabled, ["Placed", "InSync", "Alive"], Some(true)),
            ("backup missing", report(&["n1"], &[], &[]), &n1, Some(&short), Some(&up), enabled, ["MissingBackups", "InSync", "Alive"], Some(true)),
            ("not alive", report(&["n1"], &[], &[]), &n1, None, Some(&down), enabled, ["Placed", "InSync", "!NotAlive"], Some(false)),
            ("idle on demand", report(&["n1"], &[], &[]), &n1, None, Some(&down), on_demand, ["Placed", "InSync", "OnDemand"], Some(false)),
            ("watched on demand", report(&["n1"], &[], &[]), &n1, None, Some(&up), on_demand, ["Placed", "InSync", "Alive"], Some(true)),
            ("not listed yet", report(&["n1"], &[], &[]), &n1, None, None, on_demand, ["Placed", "InSync", "!Starting"], None),
            ("push failed", report(&[], &["n1: 500"], &[]), &n1, None, Some(&up), enabled, ["Placed", "!PushFailed", "!NotSynced"], None),
            ("backup push failed", report(&["n1"], &["n2: 500"], &[]), &n1_n2, None, Some(&up), enabled, ["Placed", "!PushFailed", "Alive"], Some(true)),
            ("old copy left", report(&["n1"], &[], &["n0: unreachable"]), &n1, None, Some(&up), enabled, ["Placed", "StaleCopiesLeft", "Alive"], Some(true)),
            ("waiting for a node", report(&[], &[], &[]), &none, None, None, enabled, ["!Pending", "!NotScheduled", "!NotScheduled"], None),
            ("no node fits", report(&[], &[], &[]), &none, Some(&unschedulable), None, enabled, ["!Unschedulable", "!NotScheduled", "!NotScheduled"], None),
            ("no node in its zone", report(&[], &[], &[]), &none, Some(&zoned), None, enabled, ["!ZoneUnavailable", "!NotScheduled", "!NotScheduled"], None),
            ("disabled", report(&[], &[], &[]), &n1, None, Some(&up), Running::Disabled, ["!Disabled", "Disabled", "!Disabled"], None),
            ("disabled, copy left", report(&[], &[], &["n1: unreachable"]), &none, None, None, Running::Disabled, ["!Disabled", "!RemovalPending", "!Disabled"], None),
            ("rollout: waiting for a slot", held(&[], &[("n1", waiting)]), &n1, None, Some(&up), enabled, ["Placed", "!RolloutWaiting", "Alive"], Some(true)),
            ("rollout: backup waits", held(&["n1"], &[("n2", waiting)]), &n1_n2, None, Some(&up), enabled, ["Placed", "!RolloutWaiting", "Alive"], Some(true)),
            ("rollout: paused", held(&[], &[("n1", Hold::Paused)]), &n1, None, Some(&up), enabled, ["Placed", "!RolloutPaused", "Alive"], Some(true)),
            ("rollout: a failure wins", SyncReport { failed: vec!["n2: 500".into()], ..held(&[], &[("n1", waiting)]) }, &n1_n2, None, Some(&up), enabled, ["Placed", "!PushFailed", "Alive"], Some(true)),
        ];
        for (what, r, p, u, l, running, want, alive) in rows {
            let v = judge(&r, p, u, l, running, &LabelGaps::new());
            assert_eq!(reasons(&v), want.map(String::from), "{what}");
            assert_eq!(v.alive, alive, "{what}");
        }
    }

    /// An unschedulable stream's message names the label each node lacks, in words.
    #[test]
    fn unschedulable_names_the_missing_label() {
        let decision =
            |host: &str, reasons: Vec<DecisionReason>| crate::resources::wire::NodeLayoutDecision {
                role: Default::default(),
                hostname: host.into(),
                node_decision: false,
                reasons,
            };
        let u = Unplaced {
            shortfall: Shortfall::Unschedulable,
            decisions: vec![
                decision(
                    "ghost",
                    vec![
                        DecisionReason::NodeMissesStreamRequiredLabels,
                        DecisionReason::NodeOffline,
                    ],
                ),
                decision(
                    "streamer-1",
                    vec![DecisionReason::NodeMissesStreamRequiredLabels],
                ),
            ],
            unserved_zones: Vec::new(),
        };
        let gaps = LabelGaps::from([
            ("ghost".to_string(), vec!["site=east".to_string()]),
            ("streamer-1".to_string(), vec!["site=east".to_string()]),
        ]);
        assert_eq!(
            explain(&u, &gaps),
            "no node can ingest the stream (ghost lacks label site=east and offline or cordoned; \
             streamer-1 lacks label site=east)"
        );
        assert!(!explain(&u, &LabelGaps::new()).contains("node_misses"));
    }

    #[test]
    fn messages_say_where_and_why() {
        let v = judge(
            &report(&["n1", "n2"], &[], &[]),
            &on(Some("n1"), &["n2"]),
            None,
            Some(&StreamLive {
                stats: Some(StreamStats {
                    alive: Some(false),
                    source_error: Some("404".into()),
                    ..StreamStats::default()
                }),
                managed: true,
            }),
            Running::Enabled { on_demand: false },
            &LabelGaps::new(),
        );
        let [scheduled, synced, ready] = v.conditions;
        assert_eq!(scheduled.message, "ingest on n1, DVR backups on n2");
        assert_eq!(synced.message, "config matches on n1, n2");
        assert!(
            ready.message.contains("(source error: 404)"),
            "{}",
            ready.message
        );
    }
}
