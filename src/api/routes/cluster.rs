//! `GET /cluster/stats`: cluster health from the stores and the live cache, as JSON or
//! (`format=openmetrics`) OpenMetrics text.
//!
//! How statuses are judged (the reference names the values, not the rules):
//! - streamer: cordoned or draining → `disabled`; no report or unreachable → `outage`;
//!   reachable but not ready → `partial_outage`; last probe or list failed, or CPU or
//!   memory above 90 % → `degradated`; else `operational`;
//! - stream (`domain::stream_health`, the rule behind its `Ready` condition): disabled →
//!   `disabled`; alive with a source error → `degradated`; alive, or on demand and listed
//!   idle by its ingest node → `operational`; not placed, not listed or not alive →
//!   `outage`;
//! - agent (`domain::agents` reads its id, as `GET /agents` does): any of its streams
//!   receiving frames → `operational`, else `outage`;
//! - a group (per streamer): empty or all operational → `operational`; none operational →
//!   `outage`; otherwise `partial_outage`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use super::{pairs, param};
use crate::api::error::{ApiError, ApiResult};
use crate::api::{ApiState, deleted};
use crate::domain::agents::agents_of;
use crate::domain::stream_health::{self, Facts, StreamHealth};
use crate::resources::Stream;
use crate::state::NodeLive;

/// A health status (spelling as in the reference, `degradated` included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Working.
    Operational,
    /// Working with problems.
    Degradated,
    /// Partly down.
    PartialOutage,
    /// Down.
    Outage,
    /// Switched off.
    Disabled,
}

/// Counts by status (`ClusterHealthMetricsTotal`).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Totals {
    /// Operational.
    pub operational: i64,
    /// Degradated.
    pub degradated: i64,
    /// Partial outage.
    pub partial_outage: i64,
    /// Outage.
    pub outage: i64,
    /// Disabled.
    pub disabled: i64,
    /// All.
    pub total: i64,
}

impl Totals {
    fn add(&mut self, h: Health) {
        self.total += 1;
        match h {
            Health::Operational => self.operational += 1,
            Health::Degradated => self.degradated += 1,
            Health::PartialOutage => self.partial_outage += 1,
            Health::Outage => self.outage += 1,
            Health::Disabled => self.disabled += 1,
        }
    }

    fn status(&self) -> Health {
        let active = self.total - self.disabled;
        if active == 0 || self.operational == active {
            Health::Operational
        } else if self.operational == 0 && self.degradated == 0 {
            Health::Outage
        } else {
            Health::PartialOutage
        }
    }

    fn counts(&self) -> [(&'static str, i64); 6] {
        [
            ("operational", self.operational),
            ("degradated", self.degradated),
            ("partial_outage", self.partial_outage),
            ("outage", self.outage),
            ("disabled", self.disabled),
            ("total", self.total),
        ]
    }
}

/// Counts with the group's status.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct GroupMetrics {
    /// Counts.
    #[serde(flatten)]
    pub totals: Totals,
    /// Aggregated status.
    pub status: Health,
}

/// A usage figure with its status.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Usage {
    /// Usage (percent, or kbit/s for network).
    pub usage: i64,
    /// Status.
    pub status: Health,
}

/// Status only.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StatusOnly {
    /// Status.
    pub status: Health,
}

/// Network usage.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Network {
    /// Inbound.
    pub in_kbit: Usage,
    /// Outbound.
    pub out_kbit: Usage,
}

/// One streamer's health.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StreamerMetrics {
    /// Hostname.
    pub hostname: String,
    /// Uptime, seconds.
    pub uptime: i64,
    /// Configuration health.
    pub config: StatusOnly,
    /// Overall health.
    pub status: Health,
    /// Streams ingested here.
    pub stream_metrics: GroupMetrics,
    /// Agents whose streams are ingested here.
    pub agent_metrics: GroupMetrics,
    /// CPU.
    pub cpu: Usage,
    /// Memory.
    pub memory: Usage,
    /// Storage (not reported by nodes yet: 0).
    pub storage: Usage,
    /// Network.
    pub network: Network,
}

/// Total bitrate.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Bitrate {
    /// Inbound, kbit/s.
    pub input_kbit: i64,
    /// Outbound, kbit/s.
    pub output_kbit: i64,
}

/// `ClusterHealthStats`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ClusterHealthStats {
    /// Panoptes version as an integer (major·10⁶ + minor·10³ + patch).
    pub version: i64,
    /// Installation id.
    pub server_id: String,
    /// When collected (UTC ms).
    pub collected_at: i64,
    /// Streams by status.
    pub stream_metrics_total: Totals,
    /// Agents by status.
    pub agent_metrics_total: Totals,
    /// Streamers by status.
    pub streamer_metrics_total: Totals,
    /// Total bitrate.
    pub streamer_bitrate_metrics_total: Bitrate,
    /// Per streamer.
    pub streamer_metrics: Vec<StreamerMetrics>,
}

fn version() -> i64 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<i64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    a * 1_000_000 + b * 1_000 + c
}

/// A stream's status: [`stream_health::judge`], the verdict behind its `Ready` condition, so
/// the two never disagree (an idle on-demand stream is `operational` and `Ready=True`).
/// Also whether the stream receives frames: an agent is up when one of its streams does, as
/// `GET /agents` says (an idle on-demand stream shows nothing about its agent).
fn stream_status(s: &Stream, nodes: &HashMap<String, Arc<NodeLive>>) -> (Health, bool) {
    let ingest = s
        .status
        .as_ref()
        .and_then(|st| st.layout.as_ref()?.ingest.as_deref());
    let live = ingest
        .and_then(|h| nodes.get(h))
        .and_then(|n| n.streams.get(s.watcher_name()));
    let verdict = stream_health::judge(&Facts {
        disabled: s.spec.config.disabled == Some(true),
        ingest,
        // The facade pushes nothing: a stream its ingest node lists is on it.
        synced: true,
        live,
        on_demand: stream_health::on_demand(&s.spec.config),
    });
    let health = match &verdict {
        StreamHealth::Disabled => Health::Disabled,
        StreamHealth::Alive {
            source_error: Some(_),
        } => Health::Degradated,
        v if v.ready() => Health::Operational,
        _ => Health::Outage,
    };
    (health, verdict.alive() == Some(true))
}

fn usage_status(pct: i64) -> Health {
    if pct > 90 {
        Health::Degradated
    } else {
        Health::Operational
    }
}

/// Computes the cluster health.
pub fn collect(state: &ApiState) -> ClusterHealthStats {
    let nodes = super::live_nodes(state);
    let mut by_node: BTreeMap<String, (Totals, Totals)> = BTreeMap::new();
    let mut stream_total = Totals::default();
    let mut agent_total = Totals::default();
    let mut agents: BTreeMap<String, (bool, Option<String>)> = BTreeMap::new();
    // Counted as lists show them: a stream or streamer being deleted is gone for an API user
    // (its finalizer may still be cleaning the nodes), so it is gone from the totals too.
    for s in deleted::objects(&state.stores.streams) {
        let (h, alive) = stream_status(&s, &nodes);
        stream_total.add(h);
        let ingest = s
            .status
            .as_ref()
            .and_then(|st| st.layout.as_ref()?.ingest.clone());
        if let Some(node) = &ingest {
            by_node.entry(node.to_string()).or_default().0.add(h);
        }
        let urls = s
            .spec
            .config
            .inputs
            .iter()
            .flatten()
            .flat_map(|i| {
                [
                    Some(i.url.as_str()),
                    i.options.get().and_then(|o| o.via.as_deref()),
                ]
            })
            .flatten();
        for id in agents_of(urls) {
            let e = agents
                .entry(id.to_string())
                .or_insert((false, ingest.as_deref().map(str::to_string)));
            e.0 |= alive;
        }
    }
    for (alive, node) in agents.values() {
        let h = if *alive {
            Health::Operational
        } else {
            Health::Outage
        };
        agent_total.add(h);
        if let Some(n) = node {
            by_node.entry(n.clone()).or_default().1.add(h);
        }
    }
    let mut streamer_total = Totals::default();
    let mut bitrate = Bitrate::default();
    let mut per = Vec::new();
    let mut streamers = deleted::objects(&state.stores.streamers);
    streamers.sort_by(|a, b| a.spec.hostname.cmp(&b.spec.hostname));
    for st in streamers {
        let host = st.spec.hostname.clone();
        let live = state.live.node(&host);
        let server = live
            .as_ref()
            .and_then(|l| l.server.clone())
            .unwrap_or_default();
        let cpu = server.cpu_usage.unwrap_or(0);
        let mem = server.memory_usage.unwrap_or(0);
        let status = if st.spec.cordon.unwrap_or(false) || st.spec.drain.unwrap_or(false) {
            Health::Disabled
        } else {
            match &live {
                None => Health::Outage,
                Some(l) if !l.reachable => Health::Outage,
                Some(l) if !l.ready => Health::PartialOutage,
                Some(l) if l.last_error.is_some() || cpu > 90 || mem > 90 => Health::Degradated,
                Some(_) => Health::Operational,
            }
        };
        streamer_total.add(status);
        let input = server.input_kbit.unwrap_or(0);
        let output = server.output_kbit.unwrap_or(0);
        bitrate.input_kbit += input;
        bitrate.output_kbit += output;
        let (streams_here, agents_here) = by_node.remove(&host).unwrap_or_default();
        let config = match &live {
            Some(l) if l.reachable && l.last_error.is_none() => Health::Operational,
            Some(l) if l.reachable => Health::Degradated,
            _ => Health::Outage,
        };
        per.push(StreamerMetrics {
            hostname: host,
            uptime: server.uptime.unwrap_or(0),
            config: StatusOnly { status: config },
            status,
            stream_metrics: GroupMetrics {
                status: streams_here.status(),
                totals: streams_here,
            },
            agent_metrics: GroupMetrics {
                status: agents_here.status(),
                totals: agents_here,
            },
            cpu: Usage {
                usage: cpu,
                status: usage_status(cpu),
            },
            memory: Usage {
                usage: mem,
                status: usage_status(mem),
            },
            storage: Usage {
                usage: 0,
                status: Health::Operational,
            },
            network: Network {
                in_kbit: Usage {
                    usage: input,
                    status: Health::Operational,
                },
                out_kbit: Usage {
                    usage: output,
                    status: Health::Operational,
                },
            },
        });
    }
    ClusterHealthStats {
        version: version(),
        server_id: state.auth.server_id().to_string(),
        collected_at: chrono::Utc::now().timestamp_millis(),
        stream_metrics_total: stream_total,
        agent_metrics_total: agent_total,
        streamer_metrics_total: streamer_total,
        streamer_bitrate_metrics_total: bitrate,
        streamer_metrics: per,
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The OpenMetrics exposition of the health (metric names per reference §2.9, prefixed
/// `watcher_`).
pub fn openmetrics(h: &ClusterHealthStats) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(
            out,
            "# TYPE watcher_{name} gauge\n# HELP watcher_{name} {help}"
        );
    };
    gauge(&mut out, "version", "Panoptes version.");
    let _ = writeln!(
        out,
        "watcher_version{{server_id=\"{}\"}} {}",
        escape(&h.server_id),
        h.version
    );
    for (seg, totals) in [
        ("stream", &h.stream_metrics_total),
        ("agent", &h.agent_metrics_total),
        ("streamer", &h.streamer_metrics_total),
    ] {
        for (status, n) in totals.counts() {
            let name = format!("{seg}_{status}_count");
            gauge(&mut out, &name, &format!("{seg}s in status {status}."));
            let _ = writeln!(out, "watcher_{name} {n}");
        }
    }
    gauge(
        &mut out,
        "streamer_inbound_kbit_total",
        "Inbound bitrate of all streamers, kbit/s.",
    );
    let _ = writeln!(
        out,
        "watcher_streamer_inbound_kbit_total {}",
        h.streamer_bitrate_metrics_total.input_kbit
    );
    gauge(
        &mut out,
        "streamer_outbound_kbit_total",
        "Outbound bitrate of all streamers, kbit/s.",
    );
    let _ = writeln!(
        out,
        "watcher_streamer_outbound_kbit_total {}",
        h.streamer_bitrate_metrics_total.output_kbit
    );
    type Pick = fn(&StreamerMetrics) -> i64;
    let per: [(&str, &str, Pick); 5] = [
        ("streamer_cpu_usage", "CPU usage, percent.", |m| m.cpu.usage),
        ("streamer_memory_usage", "Memory usage, percent.", |m| {
            m.memory.usage
        }),
        ("streamer_storage_usage", "Storage usage, percent.", |m| {
            m.storage.usage
        }),
        (
            "streamer_network_usage_in",
            "Inbound traffic, kbit/s.",
            |m| m.network.in_kbit.usage,
        ),
        (
            "streamer_network_usage_out",
            "Outbound traffic, kbit/s.",
            |m| m.network.out_kbit.usage,
        ),
    ];
    for (name, help, f) in per {
        gauge(&mut out, name, help);
        for m in &h.streamer_metrics {
            let _ = writeln!(
                out,
                "watcher_{name}{{hostname=\"{}\"}} {}",
                escape(&m.hostname),
                f(m)
            );
        }
    }
    for (seg, pick) in [
        (
            "streamer_stream",
            (|m: &StreamerMetrics| &m.stream_metrics.totals) as fn(&StreamerMetrics) -> &Totals,
        ),
        ("streamer_agent", |m: &StreamerMetrics| {
            &m.agent_metrics.totals
        }),
    ] {
        for (i, status) in [
            "operational",
            "degradated",
            "partial_outage",
            "outage",
            "disabled",
            "total",
        ]
        .iter()
        .enumerate()
        {
            let name = format!("{seg}_{status}_count");
            gauge(
                &mut out,
                &name,
                &format!("per streamer, in status {status}."),
            );
            for m in &h.streamer_metrics {
                let _ = writeln!(
                    out,
                    "watcher_{name}{{hostname=\"{}\"}} {}",
                    escape(&m.hostname),
                    pick(m).counts()[i].1
                );
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// `GET /cluster/stats[?format=openmetrics]`.
pub async fn stats(State(state): State<ApiState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let pairs = pairs(&raw);
    let health = collect(&state);
    match param(&pairs, "format") {
        None => Ok(Json(health).into_response()),
        Some("openmetrics") => Ok((
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            openmetrics(&health),
        )
            .into_response()),
        Some(_) => Err(ApiError::invalid_parameter(
            "format",
            "the only format is openmetrics",
        )),
    }
}
