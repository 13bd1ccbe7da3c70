//! The one Event policy of the operator, as data: for each reason, the Event's type, whether
//! it is written at all, how repeats aggregate, and the `event` name `/events` shows. Every
//! controller publishes transitions through [`super::EventWriter::publish`]; what becomes an
//! Event is decided here, not at the call sites.

use kube::runtime::events::EventType;

/// How repeats of one reason about one object fold into one Event series (kube's recorder
/// keys a series by object, reason and action; the note of the series is its first one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// One series per object and reason: a flapping camera is one Event with a count.
    Reason,
    /// One series per object, reason and note: different notes are different Events
    /// (a move to another node says where and why).
    Note,
}

/// What happens to one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Event reason (a condition reason, or one of the constants below).
    pub reason: &'static str,
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// Written to the API server at all (the rest is visible in conditions only).
    pub written: bool,
    /// How repeats aggregate.
    pub aggregate: Aggregate,
    /// The Watcher `event` member in `/events`.
    pub event: &'static str,
}

/// A stream moved to another node (or lost its node); the note says from where, to where
/// and the layouter's `change_reason`.
pub const MOVED: &str = "Moved";
/// A node answers again after being unreachable.
pub const REACHABLE: &str = "Reachable";
/// A node stopped answering.
pub const UNREACHABLE: &str = "Unreachable";
/// A stream's copy on a node was changed or removed by hand and written back (the note names
/// the node).
pub const DRIFT_REPAIRED: &str = "DriftRepaired";
/// An authenticated facade write (the audit; written by the facade, never rate-limited).
pub const API_CALL: &str = "ApiCall";

const fn rule(
    reason: &'static str,
    type_: EventType,
    written: bool,
    aggregate: Aggregate,
    event: &'static str,
) -> Rule {
    Rule {
        reason,
        type_,
        written,
        aggregate,
        event,
    }
}

use Aggregate::{Note, Reason};
use EventType::{Normal, Warning};

/// The table. Reasons not listed follow [`DEFAULT`].
pub const POLICY: &[Rule] = &[
    // What happens to cameras.
    rule("NotAlive", Warning, true, Reason, "stream_offline"),
    rule("Alive", Normal, true, Reason, "stream_online"),
    rule(MOVED, Normal, true, Note, "stream_moved"),
    rule("InSync", Normal, true, Reason, "config_applied"),
    rule("PushFailed", Warning, true, Reason, "config_refused"),
    rule(
        "Unschedulable",
        Warning,
        true,
        Reason,
        "stream_unschedulable",
    ),
    rule(
        "ZoneUnavailable",
        Warning,
        true,
        Reason,
        "stream_zone_unavailable",
    ),
    rule("LeftOnNode", Warning, true, Note, "stream_left_on_node"),
    // Someone's change on the node was undone: a Warning they can find, one series per node.
    rule(
        DRIFT_REPAIRED,
        Warning,
        true,
        Note,
        "stream_config_repaired",
    ),
    rule(
        "StaleCopiesLeft",
        Normal,
        false,
        Reason,
        "stream_stale_copies",
    ),
    rule(
        "RemovalPending",
        Warning,
        true,
        Reason,
        "stream_removal_pending",
    ),
    // Stream states that are steps, not news (conditions show them).
    rule("Pending", Normal, false, Reason, "stream_pending"),
    rule(
        "NotScheduled",
        Normal,
        false,
        Reason,
        "stream_not_scheduled",
    ),
    rule("Disabled", Normal, false, Reason, "stream_disabled"),
    rule("Deleting", Normal, false, Reason, "deleting"),
    rule("NotSynced", Normal, false, Reason, "stream_not_synced"),
    rule("Starting", Normal, false, Reason, "stream_starting"),
    rule("OnDemand", Normal, false, Reason, "stream_on_demand"),
    rule(
        "RolloutWaiting",
        Normal,
        false,
        Reason,
        "stream_rollout_waiting",
    ),
    rule(
        "RolloutPaused",
        Normal,
        false,
        Reason,
        "stream_rollout_paused",
    ),
    // What happens to nodes.
    rule(UNREACHABLE, Warning, true, Reason, "streamer_unreachable"),
    rule(REACHABLE, Normal, true, Reason, "streamer_reachable"),
    rule(
        "ApplyFailed",
        Warning,
        true,
        Reason,
        "streamer_config_refused",
    ),
    // Objects and identities.
    rule("IdAssigned", Normal, true, Note, "id_assigned"),
    rule("PasswordHashed", Normal, true, Reason, "password_hashed"),
    rule("MarkedDeleted", Normal, true, Reason, "marked_deleted"),
    // The facade's audit.
    rule(API_CALL, Normal, true, Note, "api_call"),
];

/// Anything else someone may have to act on (a condition gone bad): a written Warning.
pub const DEFAULT: Rule = rule("", Warning, true, Reason, "");

/// The rule of `reason`.
pub fn rule_of(reason: &str) -> Rule {
    POLICY
        .iter()
        .find(|r| r.reason == reason)
        .copied()
        .unwrap_or(Rule {
            reason: "",
            ..DEFAULT
        })
}

/// The Watcher `event` name of `reason`: the table's, else the reason in snake case.
pub fn event_name(reason: &str) -> String {
    let r = rule_of(reason);
    if !r.event.is_empty() {
        return r.event.to_string();
    }
    let mut out = String::new();
    for (i, c) in reason.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_one_row() {
        let mut seen = std::collections::HashSet::new();
        for r in POLICY {
            assert!(seen.insert(r.reason), "{} twice", r.reason);
            assert!(!r.event.is_empty() && !r.reason.is_empty());
        }
    }

    #[test]
    fn table_rows() {
        let cases = [
            ("NotAlive", Warning, true, Reason, "stream_offline"),
            ("Alive", Normal, true, Reason, "stream_online"),
            (MOVED, Normal, true, Note, "stream_moved"),
            ("Starting", Normal, false, Reason, "stream_starting"),
            (UNREACHABLE, Warning, true, Reason, "streamer_unreachable"),
            (
                DRIFT_REPAIRED,
                Warning,
                true,
                Note,
                "stream_config_repaired",
            ),
            // Unlisted: a written Warning named after the reason.
            (
                "SecretUnavailable",
                Warning,
                true,
                Reason,
                "secret_unavailable",
            ),
        ];
        for (reason, type_, written, aggregate, event) in cases {
            let r = rule_of(reason);
            assert_eq!(
                (r.type_, r.written, r.aggregate),
                (type_, written, aggregate),
                "{reason}"
            );
            assert_eq!(event_name(reason), event, "{reason}");
        }
    }
}
