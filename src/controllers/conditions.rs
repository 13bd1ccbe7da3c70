//! Conditions written on transitions only: the desired set is compared with what the object
//! has, ignoring timestamps, and `lastTransitionTime` survives while a status does not flip.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition as a controller wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Condition type (`Ready`, `Synced`, …).
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// CamelCase reason, bounded set per type.
    pub reason: &'static str,
    /// What a person should know or do.
    pub message: String,
}

impl Desired {
    /// A True condition.
    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// A False condition.
    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// The conditions to write, or None when `existing` already says the same thing.
pub fn update(
    existing: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Vec<Condition>> {
    let mut changed = existing.len() != desired.len();
    let next: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let old = existing.iter().find(|c| c.type_ == d.type_);
            let same_status = old.is_some_and(|c| c.status == status_str(d.status));
            let same = same_status
                && old.is_some_and(|c| {
                    c.reason == d.reason
                        && c.message == d.message
                        && c.observed_generation == generation
                });
            changed |= !same;
            Condition {
                type_: d.type_.to_string(),
                status: status_str(d.status).to_string(),
                reason: d.reason.to_string(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time: match old {
                    Some(c) if same_status => c.last_transition_time.clone(),
                    _ => Time(now),
                },
            }
        })
        .collect();
    changed.then_some(next)
}

/// The `Ready` condition's (status, reason) of a condition list.
pub(crate) fn ready_of(conditions: &[Condition]) -> Option<(String, String)> {
    crate::resources::common::condition(conditions, "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The `Ready` condition `ready` merged over `existing` (transition times kept), and whether
/// Ready's status or reason changed (a transition worth an Event).
pub(crate) fn next_conditions(
    existing: &[Condition],
    ready: &Desired,
    generation: Option<i64>,
) -> (Vec<Condition>, bool) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let flipped = ready_of(existing)
        != Some((
            if ready.status { "True" } else { "False" }.to_string(),
            ready.reason.to_string(),
        ));
    let conditions = update(existing, std::slice::from_ref(ready), generation, now)
        .unwrap_or_else(|| existing.to_vec());
    (conditions, flipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn first_write_sets_transition_time() {
        let out = update(&[], &[Desired::yes("Ready", "Alive", "ok")], Some(1), t(10)).unwrap();
        assert_eq!(out[0].last_transition_time, Time(t(10)));
        assert_eq!(out[0].status, "True");
    }

    #[test]
    fn identical_desire_writes_nothing() {
        let d = [Desired::yes("Ready", "Alive", "ok")];
        let once = update(&[], &d, Some(1), t(10)).unwrap();
        assert_eq!(update(&once, &d, Some(1), t(20)), None);
    }

    #[test]
    fn message_change_keeps_transition_time_but_status_flip_moves_it() {
        let once = update(&[], &[Desired::yes("Ready", "Alive", "ok")], Some(1), t(10)).unwrap();
        let msg = update(
            &once,
            &[Desired::yes("Ready", "Alive", "still ok")],
            Some(1),
            t(20),
        )
        .unwrap();
        assert_eq!(msg[0].last_transition_time, Time(t(10)));
        let flip = update(
            &msg,
            &[Desired::no("Ready", "NotAlive", "down")],
            Some(1),
            t(30),
        )
        .unwrap();
        assert_eq!(flip[0].last_transition_time, Time(t(30)));
    }

    #[test]
    fn generation_change_is_a_change() {
        let d = [Desired::yes("Ready", "Alive", "ok")];
        let once = update(&[], &d, Some(1), t(10)).unwrap();
        assert!(update(&once, &d, Some(2), t(10)).is_some());
    }
}
