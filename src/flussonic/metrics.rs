//! Per-node metrics of node calls (prometheus-client). Labels are bounded: the node hostname
//! and an outcome that is `ok` or an [`super::Error::category`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Node hostname.
    pub node: String,
    /// `ok` or the error category.
    pub outcome: String,
}

/// Labels of per-node series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// Node hostname.
    pub node: String,
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~10 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// Metrics shared by every [`super::NodeClient`] (clones share the series).
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    /// HTTP attempts by node and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Attempt latency by node, seconds.
    pub latency: Family<NodeLabels, Histogram, fn() -> Histogram>,
    /// Retries by node.
    pub retries: Family<NodeLabels, Counter>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
        }
    }
}

impl NodeMetrics {
    /// Fresh, unregistered metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the series (`panoptes_node_requests_total`, `panoptes_node_request_duration_seconds`,
    /// `panoptes_node_retries_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "node_requests",
            "HTTP requests to streamer nodes by outcome",
            self.requests.clone(),
        );
        registry.register(
            "node_request_duration_seconds",
            "Latency of HTTP requests to streamer nodes",
            self.latency.clone(),
        );
        registry.register(
            "node_retries",
            "Retried requests to streamer nodes",
            self.retries.clone(),
        );
    }

    pub(crate) fn observe(&self, node: &str, outcome: &str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                node: node.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&NodeLabels {
                node: node.to_string(),
            })
            .observe(seconds);
    }

    pub(crate) fn retried(&self, node: &str) {
        self.retries
            .get_or_create(&NodeLabels {
                node: node.to_string(),
            })
            .inc();
    }

    /// Requests counted for a node and outcome (for tests and diagnostics).
    pub fn count(&self, node: &str, outcome: &str) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                node: node.to_string(),
                outcome: outcome.to_string(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_encodes() {
        let m = NodeMetrics::new();
        let mut reg = Registry::with_prefix("panoptes");
        m.register(&mut reg);
        m.observe("n1", "ok", 0.01);
        m.observe("n1", "timeout", 1.0);
        m.retried("n1");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains(r#"panoptes_node_requests_total{node="n1",outcome="timeout"} 1"#),
            "{out}"
        );
        assert!(out.contains("panoptes_node_request_duration_seconds_bucket"));
        assert!(out.contains(r#"panoptes_node_retries_total{node="n1"} 1"#));
        assert_eq!(m.count("n1", "ok"), 1);
    }
}
