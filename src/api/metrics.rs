//! Facade request metrics. Labels are bounded: the operationId (30 values, or `unknown`)
//! and the status class.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl ApiMetrics {
    /// Registers `panoptes_api_requests_total` and `panoptes_api_request_duration_seconds`.
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
