//! Conditions written on transitions only: the desired set is compared with what the object
//! has, ignoring timestamps, and `lastTransitionTime` survives while a status does not flip.
//!
//! Every status write also carries kstatus' `Stalled` and `Reconciling` ([`progress`]), so
//! Flux, kpt and Argo CD tell "stuck until a person acts" from "on its way" without waiting
//! out their timeouts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::resources::common::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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

/// How long a missing reference (Secret, Preset, Organization) may be on its way before it
/// counts as a mistake, by default: in one GitOps sync the referenced object can land a little
/// later.
pub const MISSING_GRACE: Duration = Duration::from_secs(60);

/// The grace in force (`--missing-reference-grace-seconds`, set once by `Context::new`).
/// Process-wide rather than passed down: every status write of every kind reads it, and it is
/// one setting of the process.
static GRACE_SECONDS: AtomicU64 = AtomicU64::new(MISSING_GRACE.as_secs());

/// Sets the grace for every later status write.
pub fn set_missing_grace(grace: Duration) {
    GRACE_SECONDS.store(grace.as_secs(), Ordering::Relaxed);
}

/// The grace in force.
pub fn missing_grace() -> Duration {
    Duration::from_secs(GRACE_SECONDS.load(Ordering::Relaxed))
}

/// Reasons no retry fixes: the object, or something it names, must change. `Stalled=True` at
/// once.
const TERMINAL: &[&str] = &[
    "IdConflict",
    "NameConflict",
    "HostnameConflict",
    "LoginConflict",
    "CredentialsRejected",
    "CredentialsInvalid",
    "CaBundleInvalid",
    "InsecureTransport",
    "ConfigExternal",
    "ConfigRejected",
];

/// Reasons of a referenced object that does not exist (or cannot be read): `Reconciling`
/// during [`MISSING_GRACE_SECONDS`] since Ready turned False, `Stalled` after.
const MISSING: &[&str] = &[
    crate::domain::refs::MISSING_REFERENCE,
    "SecretUnavailable",
    "PasswordSecretMissing",
    "CredentialsNotBound",
];

/// Reasons of work in flight that ends by itself: `Reconciling=True`.
const IN_FLIGHT: &[&str] = &[
    "Pending",
    "Starting",
    "NotSynced",
    "Deleting",
    "Draining",
    "RemovalPending",
    "StaleCopiesLeft",
    "MarkedDeleted",
];

/// The kstatus condition (`Stalled` or `Reconciling`, True) that the computed `desired` set
/// implies, or None: Ready=True, a camera switched off on purpose, and failures of the world
/// outside (a node down, a camera without frames), which keep plain `Ready=False`. The cause
/// is the first False condition with a terminal or missing reason, else Ready's own. `since`
/// is when Ready last turned False (None: it turns False now).
pub fn progress(
    desired: &[Desired],
    since: Option<Timestamp>,
    now: Timestamp,
    grace: Duration,
) -> Option<Desired> {
    let ready = desired.iter().find(|d| d.type_ == "Ready")?;
    if ready.status {
        return None;
    }
    let failed = || desired.iter().filter(|d| !d.status);
    let cause = failed()
        .find(|d| TERMINAL.contains(&d.reason))
        .or_else(|| failed().find(|d| MISSING.contains(&d.reason)))
        .unwrap_or(ready);
    let stalled = |c: &Desired| Desired::yes("Stalled", c.reason, c.message.clone());
    if TERMINAL.contains(&cause.reason) {
        return Some(stalled(cause));
    }
    if MISSING.contains(&cause.reason) {
        let waited = since.map_or(0, |t| now.as_second() - t.as_second());
        return Some(
            if waited >= i64::try_from(grace.as_secs()).unwrap_or(i64::MAX) {
                stalled(cause)
            } else {
                Desired::yes("Reconciling", cause.reason, cause.message.clone())
            },
        );
    }
    IN_FLIGHT
        .contains(&cause.reason)
        .then(|| Desired::yes("Reconciling", cause.reason, cause.message.clone()))
}

/// How soon a controller should look again so that a missing reference turns Stalled when
/// its grace ends, even if nothing else changes; None when `desired` waits for no reference.
pub fn recheck(desired: &[Desired]) -> Option<Duration> {
    let waits = desired
        .iter()
        .any(|d| !d.status && MISSING.contains(&d.reason));
    waits.then(|| missing_grace().max(Duration::from_secs(1)))
}

/// The conditions to write, or None when `existing` already says the same thing. `desired`
/// gets its kstatus condition from [`progress`] first.
pub fn update(
    existing: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Vec<Condition>> {
    let since = existing
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .map(|c| c.last_transition_time.0);
    let extra = progress(desired, since, now, missing_grace());
    let desired: Vec<Desired> = desired.iter().cloned().chain(extra).collect();
    let desired = desired.as_slice();
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
            // Unchanged: the old condition is the one built below, texts and time included;
            // cloning it shares its texts instead of looking each up in the pool again (this
            // runs on every reconcile, and its result is dropped when nothing changed).
            if let Some(c) = old.filter(|_| same) {
                return c.clone();
            }
            Condition {
                type_: d.type_.into(),
                status: status_str(d.status).into(),
                reason: d.reason.into(),
                message: d.message.as_str().into(),
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
        .map(|c| (c.status.to_string(), c.reason.to_string()))
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

/// Like [`next_conditions`], with conditions besides `Ready` (`extra`) kept in step.
pub(crate) fn next_conditions_with(
    existing: &[Condition],
    ready: &Desired,
    extra: &[Desired],
    generation: Option<i64>,
) -> (Vec<Condition>, bool) {
    if extra.is_empty() {
        return next_conditions(existing, ready, generation);
    }
    let (_, flipped) = next_conditions(existing, ready, generation);
    let all: Vec<Desired> = std::iter::once(ready.clone())
        .chain(extra.iter().cloned())
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now();
    let conditions = update(existing, &all, generation, now).unwrap_or_else(|| existing.to_vec());
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

    fn ready_no(reason: &'static str) -> Desired {
        Desired::no("Ready", reason, format!("{reason} message"))
    }

    /// One row: (conditions, seconds since Ready turned False, expected type and reason).
    type ProgressRow = (
        Vec<Desired>,
        Option<i64>,
        Option<(&'static str, &'static str)>,
    );

    /// The kstatus condition per computed set.
    #[test]
    fn progress_table() {
        let table: Vec<ProgressRow> = vec![
            (vec![Desired::yes("Ready", "Alive", "ok")], None, None),
            // A camera without frames, a node down, switched off: the world, not the spec.
            (vec![ready_no("NotAlive")], Some(600), None),
            (vec![ready_no("Unreachable")], Some(600), None),
            (vec![ready_no("Disabled")], None, None),
            (vec![ready_no("Unschedulable")], Some(600), None),
            // Conflicts and refusals stall at once.
            (
                vec![ready_no("NameConflict")],
                None,
                Some(("Stalled", "NameConflict")),
            ),
            (
                vec![ready_no("IdConflict")],
                None,
                Some(("Stalled", "IdConflict")),
            ),
            (
                vec![
                    Desired::no("Reachable", "CredentialsRejected", "401"),
                    Desired::no("ConfigApplied", "Unreachable", "unknown"),
                    ready_no("Unreachable"),
                ],
                None,
                Some(("Stalled", "CredentialsRejected")),
            ),
            (
                vec![
                    Desired::no("ConfigApplied", "ConfigRejected", "400"),
                    ready_no("ConfigNotApplied"),
                ],
                None,
                Some(("Stalled", "ConfigRejected")),
            ),
            // A missing reference: on its way for a minute, then a mistake.
            (
                vec![ready_no("SecretUnavailable")],
                None,
                Some(("Reconciling", "SecretUnavailable")),
            ),
            (
                vec![ready_no("SecretUnavailable")],
                Some(59),
                Some(("Reconciling", "SecretUnavailable")),
            ),
            (
                vec![ready_no("SecretUnavailable")],
                Some(60),
                Some(("Stalled", "SecretUnavailable")),
            ),
            (
                vec![
                    Desired::no("Scheduled", "MissingReference", "Preset p not found"),
                    ready_no("MissingReference"),
                ],
                Some(3600),
                Some(("Stalled", "MissingReference")),
            ),
            // Work in flight.
            (
                vec![ready_no("NotSynced")],
                Some(600),
                Some(("Reconciling", "NotSynced")),
            ),
            (
                vec![ready_no("Deleting")],
                None,
                Some(("Reconciling", "Deleting")),
            ),
        ];
        for (desired, waited, want) in table {
            let since = waited.map(|w| t(1000 - w));
            let got = progress(&desired, since, t(1000), MISSING_GRACE);
            assert_eq!(
                got.as_ref().map(|d| (d.type_, d.reason)),
                want,
                "{desired:?} after {waited:?} s"
            );
            if let Some(d) = got {
                assert!(d.status, "kstatus conditions are written True");
                let cause = desired.iter().find(|c| c.reason == d.reason).unwrap();
                assert_eq!(d.message, cause.message, "the cause's message is carried");
            }
        }
    }

    #[test]
    fn update_adds_the_kstatus_condition_and_a_grace_turns_it_stalled() {
        let d = [ready_no("SecretUnavailable")];
        let first = update(&[], &d, Some(1), t(10)).unwrap();
        let reconciling = first.iter().find(|c| c.type_ == "Reconciling").unwrap();
        assert_eq!(reconciling.status, "True");
        assert_eq!(recheck(&d), Some(missing_grace()));
        assert_eq!(
            update(&first, &d, Some(1), t(30)),
            None,
            "nothing new within the grace"
        );
        let later = update(&first, &d, Some(1), t(70)).unwrap();
        assert!(
            later
                .iter()
                .any(|c| c.type_ == "Stalled" && c.reason == "SecretUnavailable")
        );
        assert!(later.iter().all(|c| c.type_ != "Reconciling"));
        assert_eq!(recheck(&[Desired::no("Ready", "NotAlive", "x")]), None);
        let fixed = update(
            &later,
            &[Desired::yes("Ready", "Alive", "ok")],
            Some(1),
            t(80),
        )
        .unwrap();
        assert_eq!(
            fixed.len(),
            1,
            "Stalled goes once the cause is fixed: {fixed:?}"
        );
    }

    #[test]
    fn generation_change_is_a_change() {
        let d = [Desired::yes("Ready", "Alive", "ok")];
        let once = update(&[], &d, Some(1), t(10)).unwrap();
        assert!(update(&once, &d, Some(2), t(10)).is_some());
    }
}
