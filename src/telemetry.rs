//! Logging and the Prometheus registry shared by every component.

use std::sync::{Arc, Mutex};

use clap::ValueEnum;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests, embedded use) keeps the first subscriber instead of panicking.
    let _ = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init(),
    };
}

/// The version this build reports unless told otherwise.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The process-wide metrics registry; components register their families at start-up.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    /// A registry whose component series carry the `panoptes_` prefix, plus the standard
    /// unprefixed `process_*` series and `panoptes_build_info`.
    pub fn new() -> Self {
        Self::reporting(VERSION)
    }

    /// [`Metrics::new`] with `panoptes_build_info` reporting `version` (what `panoptes run
    /// --reported-version` sets, for a rolling-upgrade test of one build).
    pub fn reporting(version: &str) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: version.into(),
            })
            .set(1);
        root.sub_registry_with_prefix("panoptes").register(
            "build_info",
            "Always 1; the version label tells which Panoptes runs",
            build,
        );
        Self {
            registry: Arc::new(Mutex::new(root)),
        }
    }

    /// Runs `f` with the `panoptes`-prefixed registry, to register metric families.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        let mut root = self.registry.lock().expect("metrics registry poisoned");
        f(root.sub_registry_with_prefix("panoptes"));
    }

    /// The OpenMetrics text exposition of every registered family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry poisoned");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Labels of `panoptes_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The client_golang process series, read from a fresh [`metrics_process`] snapshot at each
/// scrape (a few procfs reads; scrapes are seconds apart). A value the platform cannot give
/// is left out rather than exported as 0.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = metrics_process::collector::collect();
        if let Some(v) = m.cpu_seconds_total {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                m.open_fds,
                "process_open_fds",
                "Number of open file descriptors",
            ),
            (
                m.max_fds,
                "process_max_fds",
                "Maximum number of open file descriptors",
            ),
            (
                m.virtual_memory_bytes,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
            ),
            (
                m.virtual_memory_max_bytes,
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes",
            ),
            (
                m.resident_memory_bytes,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            (
                m.start_time_seconds,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
            ),
            (
                m.threads,
                "process_threads",
                "Number of OS threads in the process",
            ),
            (
                crate::heap::live_bytes(),
                "panoptes_heap_live_bytes",
                "Bytes live on the heap as the allocator counts them (PANOPTES_HEAP_COUNT=1 only); resident memory minus this is what the allocator retains",
            ),
        ];
        for (value, name, help) in gauges {
            let Some(v) = value else { continue };
            // Gauges are i64 in prometheus-client; no process value comes near i64::MAX.
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_process_series_unprefixed_and_build_info() {
        let m = Metrics::new();
        m.register(|r| r.register("probe", "a component series", Gauge::<i64>::default()));
        let out = m.encode();
        for series in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
            "panoptes_probe ",
        ] {
            assert!(
                out.contains(&format!("\n{series}")),
                "{series} missing:\n{out}"
            );
        }
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            out.contains(&format!("panoptes_build_info{{version=\"{version}\"}} 1")),
            "{out}"
        );
    }
}
