//! The installation's event log, stored as Kubernetes Events (`events.k8s.io/v1`): what the
//! operator observes and does (cameras offline/online, moves, configs applied or refused,
//! nodes unreachable and back) and the audit of authenticated facade writes. Stored in the
//! API server, so it survives restarts and every replica's `/events` reads the same log
//! ([`log::EventLog`], a watch-backed, bounded cache). Retention is the API server's
//! `--event-ttl` (1 h by default).
//!
//! Writers: [`EventWriter::publish`] for the controllers (the [`policy`] table decides type,
//! whether to write, and aggregation; per-object and per-type global token buckets
//! ([`limit`]) keep 100,000 flapping cameras from flooding the API server), and [`write_audit`] for the facade
//! (one Event per audited write, never aggregated nor rate-limited: each follows an
//! authenticated write that already cost the API server more).

pub mod limit;
pub mod log;
pub mod policy;

use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use policy::Aggregate;

/// `reportingController` of every Event Panoptes writes (and the log's field selector).
pub const CONTROLLER: &str = "panoptes";
/// Annotation of an audit Event holding the Watcher `Event` as JSON.
pub const WATCHER_EVENT_ANNOTATION: &str = "panoptes.dev/watcher-event";
/// Longest note the API server accepts (events.k8s.io/v1: 1 kB).
const MAX_NOTE_BYTES: usize = 1024;

/// Labels of the Event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// Event reason (bounded: the reasons of the policy table and the condition reasons).
    pub reason: String,
    /// `written`, `suppressed` (policy says no), `rate_limited`, `failed`.
    pub outcome: String,
}

/// Counts every Event decision (`panoptes_events_total{reason,outcome}`): the writes at rest
/// of the scale budget, and how many a storm had held back.
#[derive(Clone, Debug, Default)]
pub struct EventMetrics {
    /// By reason and outcome.
    pub events: Family<EventLabels, Counter>,
}

impl EventMetrics {
    /// Registers the family.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "events",
            "Kubernetes Events by reason and outcome (written, suppressed, rate_limited, failed)",
            self.events.clone(),
        );
    }

    fn count(&self, reason: &str, outcome: &str) {
        self.events
            .get_or_create(&EventLabels {
                reason: reason.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Events of `reason` with `outcome` so far.
    pub fn get(&self, reason: &str, outcome: &str) -> u64 {
        self.events
            .get_or_create(&EventLabels {
                reason: reason.into(),
                outcome: outcome.into(),
            })
            .get()
    }
}

/// The controllers' Event writer: policy, aggregation (kube's recorder keeps series) and
/// rate limits in one place.
pub struct EventWriter {
    recorder: Recorder,
    limits: limit::Limits,
    limiter: Mutex<limit::Limiter>,
    /// Counters (register them with [`EventMetrics::register`]).
    pub metrics: EventMetrics,
}

impl EventWriter {
    /// A writer reporting as `panoptes` (instance `instance`, the pod name) with `limits`.
    pub fn new(client: Client, instance: Option<String>, limits: limit::Limits) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
            limits,
            limiter: Mutex::new(limit::Limiter::new(limits, Instant::now())),
            metrics: EventMetrics::default(),
        }
    }

    /// The same writer reporting as `instance` (the pod's name), counting into the same
    /// (already registered) metrics.
    pub fn reporting_as(&self, client: Client, instance: Option<String>) -> Self {
        Self {
            metrics: self.metrics.clone(),
            ..Self::new(client, instance, self.limits)
        }
    }

    /// Publishes an Event about `regarding` as the policy says; failures are logged and
    /// counted, never fatal.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        note: impl Into<String>,
    ) {
        let rule = policy::rule_of(reason);
        if !rule.written {
            self.metrics.count(reason, "suppressed");
            return;
        }
        let object = regarding
            .uid
            .clone()
            .unwrap_or_else(|| format!("{:?}/{:?}", regarding.namespace, regarding.name));
        let admitted = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(&object, rule.type_ == EventType::Warning, Instant::now());
        if !admitted {
            self.metrics.count(reason, "rate_limited");
            return;
        }
        let note = bounded_note(note.into());
        let action = match rule.aggregate {
            Aggregate::Reason => "Reconcile".to_string(),
            Aggregate::Note => format!("Reconcile-{:016x}", stable_hash(&note)),
        };
        let event = Event {
            type_: rule.type_,
            reason: reason.into(),
            note: Some(note),
            action,
            secondary: None,
        };
        match self.recorder.publish(&event, regarding).await {
            Ok(()) => self.metrics.count(reason, "written"),
            Err(error) => {
                self.metrics.count(reason, "failed");
                tracing::warn!(%error, reason, "publishing an Event failed");
            }
        }
    }
}

/// Writes one audit Event in `namespace` carrying `watcher` (the Watcher `Event` JSON) in an
/// annotation, named after its request id so a retried write cannot double it.
pub async fn write_audit(
    client: &Client,
    namespace: &str,
    request_id: &str,
    instance: &str,
    action: &str,
    note: String,
    watcher: &serde_json::Value,
) -> Result<(), kube::Error> {
    let event = K8sEvent {
        metadata: ObjectMeta {
            name: Some(format!("panoptes-audit.{request_id}")),
            namespace: Some(namespace.into()),
            annotations: Some(
                [(WATCHER_EVENT_ANNOTATION.to_string(), watcher.to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        action: Some(action.into()),
        reason: Some(policy::API_CALL.into()),
        note: Some(bounded_note(note)),
        // The facade is not an object: audit Events regard a virtual one, in the namespace
        // they are written to.
        regarding: Some(ObjectReference {
            api_version: Some("panoptes.dev/v1".into()),
            kind: Some("WatcherAdminApi".into()),
            namespace: Some(namespace.into()),
            name: Some("facade".into()),
            ..Default::default()
        }),
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(instance.into()),
        type_: Some("Normal".into()),
        ..Default::default()
    };
    Api::<K8sEvent>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
}

fn bounded_note(mut note: String) -> String {
    if note.len() > MAX_NOTE_BYTES {
        let mut end = MAX_NOTE_BYTES - "…".len();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// A hash that is the same in every process (series keys, event ids).
pub(crate) fn stable_hash(s: &str) -> u64 {
    // FNV-1a: std's `DefaultHasher` is not promised stable across releases.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_fit_the_api_servers_limit() {
        let n = bounded_note("é".repeat(2000));
        assert!(n.len() <= MAX_NOTE_BYTES);
        assert_eq!(bounded_note("short".into()), "short");
    }
}
