//! Metrics of the reconcilers and the live node figures, exported on `/metrics`. Node gauges
//! are refreshed from each node's list, so `/metrics` serves the stats cache without a
//! status write per stream.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::flussonic::NodeLabels;

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReconcileLabels {
    /// Kind reconciled.
    pub kind: String,
    /// `ok` or an error category.
    pub outcome: String,
}

/// Labels of the per-kind series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    /// Kind reconciled.
    pub kind: String,
}

/// Labels of the status writer's counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WriteLabels {
    /// Kind written.
    pub kind: String,
    /// `ok`, `retried` (a failure that will be tried again) or `dropped` (given up: the API
    /// server refuses the status as invalid, retrying cannot help).
    pub outcome: String,
}

/// Labels of the status changes counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ChangeLabels {
    /// Kind written.
    pub kind: String,
    /// What the write changes (`stream::status_writer::changed_parts`).
    pub part: String,
}

/// Reconciler metrics (clones share the series).
#[derive(Clone, Debug)]
pub(crate) struct ControllerMetrics {
    /// Reconciles by kind and outcome.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Duration of reconciles by kind, seconds.
    pub(crate) reconcile_seconds: Family<KindLabels, Histogram>,
    /// Status writes off the reconcile path, by kind and outcome.
    pub(crate) status_writes: Family<WriteLabels, Counter>,
    /// Status writes queued, by what each changes (one write can count under several parts).
    pub(crate) status_changes: Family<ChangeLabels, Counter>,
    /// Time between two successful lists of the same node, seconds: how far the lists lag
    /// behind their interval (a freshly pushed camera's `Ready=Starting` waits for them).
    pub(crate) node_list_period: Histogram,
    /// Layouter runs.
    pub(crate) layout_runs: Counter,
    /// Duration of one layouter computation, seconds.
    pub(crate) layout_seconds: Histogram,
    /// Layouter runs over every stream (the first, and each after a node, Preset or Zone
    /// changed); the others lay out only the streams that changed.
    pub(crate) layout_full_runs: Counter,
    /// Streams the layouter laid out, summed over runs: what its work grows with.
    pub(crate) layout_streams: Counter,
    /// Enabled streams without a full placement.
    pub(crate) streams_unplaced: Gauge,
    /// Streams pushed to a node (writes, not no-op checks).
    pub(crate) stream_pushes: Family<NodeLabels, Counter>,
    /// Stream copies removed from a node (moves, deletions, leftovers).
    pub(crate) stream_removals: Family<NodeLabels, Counter>,
    /// Stream copies written back after a hand edit or deletion on the node.
    pub(crate) stream_drift_repairs: Family<NodeLabels, Counter>,
    /// 1 when the node answered its last probe and is running.
    pub(crate) node_up: Family<NodeLabels, Gauge>,
    /// Probes that found a node unreachable that answered its previous probe (or at its first
    /// probe): one per outage, so a node falsely taken for dead shows here (issue 21 counts
    /// them over a 100k run, where a starved probe loop once did). A node that answers but is
    /// still starting is not counted: it is not taken for dead.
    pub(crate) node_unreachable_marks: Counter,
    /// Streams the node reported on its last list.
    pub(crate) node_streams: Family<NodeLabels, Gauge>,
    /// Streams the node reported alive.
    pub(crate) node_streams_alive: Family<NodeLabels, Gauge>,
    /// Inbound traffic the node reported, bytes/s (the node says kbit/s; Prometheus wants
    /// base units).
    pub(crate) node_input_bytes: Family<NodeLabels, Gauge>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            reconcile_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            status_writes: Family::default(),
            status_changes: Family::default(),
            node_list_period: Histogram::new([
                2.5, 5.0, 10.0, 20.0, 30.0, 40.0, 60.0, 80.0, 120.0, 160.0, 240.0,
            ]),
            layout_runs: Counter::default(),
            layout_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            layout_full_runs: Counter::default(),
            layout_streams: Counter::default(),
            streams_unplaced: Gauge::default(),
            stream_pushes: Family::default(),
            stream_removals: Family::default(),
            stream_drift_repairs: Family::default(),
            node_up: Family::default(),
            node_unreachable_marks: Counter::default(),
            node_streams: Family::default(),
            node_streams_alive: Family::default(),
            node_input_bytes: Family::default(),
        }
    }
}

/// Labels of one node.
pub fn node(hostname: &str) -> NodeLabels {
    NodeLabels {
        node: hostname.to_string(),
    }
}

impl ControllerMetrics {
    /// Registers every series (the registry adds the `panoptes_` prefix).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "reconciles",
            "Reconciles by kind and outcome",
            self.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time of one reconcile, by kind",
            self.reconcile_seconds.clone(),
        );
        r.register(
            "status_writes",
            "Status writes off the reconcile path, by kind and outcome",
            self.status_writes.clone(),
        );
        r.register(
            "status_changes",
            "Status writes queued, by kind and by what each changes",
            self.status_changes.clone(),
        );
        r.register(
            "node_list_period_seconds",
            "Time between two successful lists of the same node",
            self.node_list_period.clone(),
        );
        r.register("layout_runs", "Layouter runs", self.layout_runs.clone());
        r.register(
            "layout_duration_seconds",
            "Time to compute one layout",
            self.layout_seconds.clone(),
        );
        r.register(
            "layout_full_runs",
            "Layouter runs over every stream (the others lay out only the changed ones)",
            self.layout_full_runs.clone(),
        );
        r.register(
            "layout_streams",
            "Streams laid out, summed over layouter runs",
            self.layout_streams.clone(),
        );
        r.register(
            "streams_unplaced",
            "Enabled streams without a full placement",
            self.streams_unplaced.clone(),
        );
        r.register(
            "stream_pushes",
            "Stream configs written to nodes",
            self.stream_pushes.clone(),
        );
        r.register(
            "stream_removals",
            "Stream copies removed from nodes",
            self.stream_removals.clone(),
        );
        r.register(
            "stream_drift_repairs",
            "Stream configs written back after they were edited or deleted on the node",
            self.stream_drift_repairs.clone(),
        );
        r.register(
            "node_up",
            "Node answered its last probe and runs",
            self.node_up.clone(),
        );
        r.register(
            "node_unreachable_marks",
            "Probes that found a node unreachable that answered before (or at its first probe)",
            self.node_unreachable_marks.clone(),
        );
        r.register(
            "node_streams",
            "Streams a node reported",
            self.node_streams.clone(),
        );
        r.register(
            "node_streams_alive",
            "Streams a node reported alive",
            self.node_streams_alive.clone(),
        );
        r.register(
            "node_input_bytes_per_second",
            "Inbound traffic a node reported, bytes per second",
            self.node_input_bytes.clone(),
        );
    }

    /// Counts one reconcile by its result (`ok`, or the error's category) and records how
    /// long it took: the one reporting path of every kind.
    pub(crate) fn reconciled<T>(
        &self,
        kind: &str,
        started: std::time::Instant,
        result: &Result<T, super::kit::Error>,
    ) {
        let outcome = result
            .as_ref()
            .map_or_else(super::kit::Error::category, |_| "ok");
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.reconcile_seconds
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts one status write of the status writer.
    pub(crate) fn status_written(&self, kind: &str, outcome: &str) {
        self.status_writes
            .get_or_create(&WriteLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one status write queued by what it changes.
    pub(crate) fn status_changed(&self, kind: &str, parts: &[&str]) {
        for part in parts {
            self.status_changes
                .get_or_create(&ChangeLabels {
                    kind: kind.to_string(),
                    part: (*part).to_string(),
                })
                .inc();
        }
    }

    /// Drops the series of a node that is gone.
    pub(crate) fn forget_node(&self, hostname: &str) {
        let l = node(hostname);
        for f in [
            &self.node_up,
            &self.node_streams,
            &self.node_streams_alive,
            &self.node_input_bytes,
        ] {
            f.remove(&l);
        }
    }
}
