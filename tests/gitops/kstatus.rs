//! Our statuses read the way kstatus (sigs.k8s.io/cli-utils, used by Flux and kpt) reads
//! them, plus the rule Flux adds for custom resources (the Ready condition), and a check of
//! the conventions both rely on.

use serde_json::Value;

/// kstatus' result for one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Reconciled: the controller has seen the latest spec and says Ready.
    Current,
    /// Not yet: a newer generation, no Ready yet, or Ready is not True.
    InProgress,
    /// Stalled=True: the controller gave up until the spec changes.
    Failed,
    /// deletionTimestamp set.
    Terminating,
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// kstatus `Compute` for a custom resource.
pub fn compute(obj: &Value) -> (Status, String) {
    // checkGenericProperties: deletion first.
    if obj["metadata"]["deletionTimestamp"].is_string() {
        return (Status::Terminating, "scheduled for deletion".into());
    }
    // checkGeneration: a missing observedGeneration counts as observed (kstatus' default).
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(-1);
    let observed = obj["status"]["observedGeneration"]
        .as_i64()
        .unwrap_or(generation);
    if observed != generation {
        return (
            Status::InProgress,
            format!("generation is {generation}, observed {observed}"),
        );
    }
    // The standard abnormal-true conditions.
    if let Some(c) = condition(obj, "Reconciling").filter(|c| c["status"] == "True") {
        return (
            Status::InProgress,
            c["message"].as_str().unwrap_or("").into(),
        );
    }
    if let Some(c) = condition(obj, "Stalled").filter(|c| c["status"] == "True") {
        return (Status::Failed, c["message"].as_str().unwrap_or("").into());
    }
    // Flux's reading of custom resources: Ready decides; without Ready nothing is reconciled.
    match condition(obj, "Ready") {
        Some(c) if c["status"] == "True" => {
            (Status::Current, c["message"].as_str().unwrap_or("").into())
        }
        Some(c) => (
            Status::InProgress,
            c["message"].as_str().unwrap_or("").into(),
        ),
        None => (Status::InProgress, "no Ready condition".into()),
    }
}

/// What kstatus, `kubectl wait --for=condition=Ready` and Argo CD need from a status that a
/// controller has written, as a list of violations (empty = follows the conventions).
pub fn convention_violations(obj: &Value) -> Vec<String> {
    let mut out = vec![];
    let generation = obj["metadata"]["generation"].as_i64();
    let status = &obj["status"];
    if !status["observedGeneration"].is_i64() {
        out.push("status.observedGeneration missing".into());
    }
    let Some(conditions) = status["conditions"].as_array() else {
        out.push("status.conditions missing".into());
        return out;
    };
    if condition(obj, "Ready").is_none() {
        out.push("no Ready condition".into());
    }
    for c in conditions {
        let t = c["type"].as_str().unwrap_or("?");
        if !matches!(c["status"].as_str(), Some("True" | "False" | "Unknown")) {
            out.push(format!(
                "{t}: status {} is not True/False/Unknown",
                c["status"]
            ));
        }
        let reason = c["reason"].as_str().unwrap_or("");
        if reason.is_empty() || !reason.starts_with(|ch: char| ch.is_ascii_uppercase()) {
            out.push(format!("{t}: reason `{reason}` is not CamelCase"));
        }
        if !c["lastTransitionTime"].is_string() {
            out.push(format!("{t}: lastTransitionTime missing"));
        }
        if c["observedGeneration"].as_i64() != generation {
            out.push(format!(
                "{t}: observedGeneration {} is not metadata.generation {generation:?}",
                c["observedGeneration"]
            ));
        }
        if c["status"] == "False" && c["message"].as_str().unwrap_or("").is_empty() {
            out.push(format!("{t}: False without a message"));
        }
    }
    out
}
