//! Facade request metrics. Labels are bounded: the operationId (30 values, or `unknown`)
//! and the status class. Plus the fill of every store an unauthenticated request reaches
//! (the audit ring, the failed-login table), so a flood shows on a dashboard before it
//! matters, and the count of password verifications.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// operationId, or `unknown`.
    pub operation: String,
    /// `2xx`, `4xx`, `5xx`, …
    pub status: String,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// operationId, or `unknown`.
    pub operation: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 15))
}

/// The facade's series (clones share them).
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    /// Requests by operation and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Latency by operation, seconds.
    pub latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// Events in the audit ring.
    pub audit_entries: Gauge,
    /// Bytes (serialized JSON) of the events in the audit ring.
    pub audit_bytes: Gauge,
    /// Entries of the failed-login table.
    pub login_failures_entries: Gauge,
    /// Bytes of the failed-login table.
    pub login_failures_bytes: Gauge,
    /// Argon2 verifications run for logins.
    pub password_verifications: Counter,
    /// Audit Events by outcome (`written`, `failed`).
    pub audit_events: Family<OutcomeLabels, Counter>,
    /// Streams rendered in full for the facade's lists and reads (a store change renders
    /// the stream again; live stats alone only replace its `stats` member).
    pub stream_renders: Counter,
}

/// Labels of the audit Event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `written` or `failed`.
    pub outcome: String,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            audit_entries: Gauge::default(),
            audit_bytes: Gauge::default(),
            login_failures_entries: Gauge::default(),
            login_failures_bytes: Gauge::default(),
            password_verifications: Counter::default(),
            audit_events: Family::default(),
            stream_renders: Counter::default(),
        }
    }
}

impl ApiMetrics {
    /// Registers `panoptes_api_requests_total`, `panoptes_api_request_duration_seconds`, the
    /// store gauges `panoptes_api_{audit,login_failures}_{entries,bytes}` and
    /// `panoptes_api_password_verifications_total` and `panoptes_api_stream_renders_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "api_requests",
            "Watcher admin API requests by operation and status class",
            self.requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Latency of Watcher admin API requests",
            self.latency.clone(),
        );
        registry.register(
            "api_audit_entries",
            "Events held in memory for GET /events (operator Events and the audit)",
            self.audit_entries.clone(),
        );
        registry.register(
            "api_audit_bytes",
            "Bytes of the events held in memory for GET /events",
            self.audit_bytes.clone(),
        );
        registry.register(
            "api_login_failures_entries",
            "Entries of the facade's failed-login table (login and client address)",
            self.login_failures_entries.clone(),
        );
        registry.register(
            "api_login_failures_bytes",
            "Bytes of the facade's failed-login table",
            self.login_failures_bytes.clone(),
        );
        registry.register(
            "api_audit_events",
            "Audit Events of facade writes by outcome (written, failed)",
            self.audit_events.clone(),
        );
        registry.register(
            "api_password_verifications",
            "Password verifications run by POST /login (one per Basic login attempt)",
            self.password_verifications.clone(),
        );
        registry.register(
            "api_stream_renders",
            "Streams rendered in full for facade lists (live stats alone do not re-render)",
            self.stream_renders.clone(),
        );
    }

    pub(crate) fn audit_event(&self, outcome: &str) {
        self.audit_events
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub(crate) fn observe(&self, operation: Option<&str>, status: u16, seconds: f64) {
        let operation = operation.unwrap_or("unknown").to_string();
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.clone(),
                status: format!("{}xx", status / 100),
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }
}
