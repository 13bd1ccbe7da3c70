//! Runtime statistics nodes report. Read-only: never sent back. Parsed leniently, because
//! newer nodes add members; anything unknown is kept in `extra` so the facade can pass it on.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use serde_with::skip_serializing_none;

use crate::resources::common::{Rare, Text};

/// A percent as the Watcher API types it (an integer 0–100). Read leniently: a node that
/// reports `12.5` is rounded rather than refused, since the whole stats object would
/// otherwise be lost; written as an integer, since a float breaks strictly typed clients.
fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.map(|p| p.round().clamp(0.0, 100.0) as i64))
}

// What a poll list asks for (status, aliveness, bitrate, timings, viewers) is inline; the
// rest, absent from those lists, is one out-of-line part (`StatsExtras`): the live stats hold
// one of these per stream, 100,000 at 100k cameras (issue 21).
/// `stream.stats` as a node reports it.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StreamStats {
    /// running | waiting | error.
    pub status: Option<Text>,
    /// False once no frame arrived for 12 s.
    pub alive: Option<bool>,
    /// Milliseconds since capture started.
    pub lifetime: Option<f64>,
    /// Current bitrate, kbit/s.
    pub bitrate: Option<i64>,
    /// Ticks since the last frame from the input.
    pub ts_delay: Option<f64>,
    /// Viewers (deprecated by nodes, still reported).
    pub online_clients: Option<i64>,
    /// Error code while capture has problems.
    pub source_error: Option<String>,
    /// Members a poll list does not ask for. Before `extra`: serde hands each flattened
    /// member its own keys first, and `extra` takes what is left.
    #[serde(flatten)]
    pub more: Rare<StatsExtras>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The members of [`StreamStats`] a node reports on a full read, not on a poll list.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StatsExtras {
    /// When the stream was opened (UTC ms).
    pub opened_at: Option<i64>,
    /// When the stream started running (UTC ms).
    pub start_running_at: Option<i64>,
    /// Wall-clock time of the last frame (UTC ms).
    pub last_dts_at: Option<i64>,
    /// Bytes sent to clients.
    pub bytes_out: Option<i64>,
    /// Per-input statistics.
    pub inputs: Option<Vec<Value>>,
    /// Output media description.
    pub media_info: Option<Value>,
}

/// `GET /config/stats` (and `ServerConfig.stats`).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ServerStats {
    /// starting | running | no_config | broken_config | config_external_error | license_failure | no_license.
    pub streamer_status: Option<String>,
    /// Software version.
    pub server_version: Option<String>,
    /// Build number.
    pub build: Option<i64>,
    /// Hostname the node reports.
    pub hostname: Option<String>,
    /// Per-boot instance id; a change means the node restarted.
    pub id: Option<String>,
    /// Boot time (UTC seconds).
    pub started_at: Option<i64>,
    /// Uptime in seconds.
    pub uptime: Option<i64>,
    /// Node clock (UTC ms).
    pub now: Option<i64>,
    /// `[server start time, config revision]`; comparable and increasing.
    pub config_version: Option<Vec<i64>>,
    /// CPU usage, percent.
    #[serde(deserialize_with = "percent")]
    #[schemars(range(min = 0, max = 100))]
    pub cpu_usage: Option<i64>,
    /// Memory usage, percent.
    #[serde(deserialize_with = "percent")]
    #[schemars(range(min = 0, max = 100))]
    pub memory_usage: Option<i64>,
    /// Bandwidth usage, percent.
    #[serde(deserialize_with = "percent")]
    #[schemars(range(min = 0, max = 100))]
    pub bandwidth_usage: Option<i64>,
    /// Inbound traffic, kbit/s.
    pub input_kbit: Option<i64>,
    /// Outbound traffic, kbit/s.
    pub output_kbit: Option<i64>,
    /// Connected clients.
    pub total_clients: Option<i64>,
    /// Streams configured or running.
    pub total_streams: Option<i64>,
    /// Streams alive.
    pub online_streams: Option<i64>,
    /// Human-readable problems to fix.
    pub text_alerts: Option<Map<String, Value>>,
    /// Config parse error details.
    pub config_error: Option<Value>,
    /// Health of the config_external backend.
    pub config_external_status: Option<Value>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of the liveness and readiness probes.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerWhoami {
    /// Software version.
    pub server_version: Option<String>,
    /// Build number.
    pub build: Option<i64>,
    /// Boot time (UTC seconds).
    pub started_at: Option<i64>,
    /// Node clock (UTC ms).
    pub now: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_read_and_write_back_identically_and_a_poll_lists_allocate_no_extras() {
        let full = json!({
            "status": "running", "alive": true, "lifetime": 600000.0, "bitrate": 2000,
            "ts_delay": 40.0, "online_clients": 3, "source_error": "eof", "opened_at": 1,
            "start_running_at": 2, "last_dts_at": 3, "bytes_out": 4,
            "inputs": [{"url": "rtsp://cam/1"}], "media_info": {"tracks": []},
            "newer_member": {"x": 1},
        });
        let polled = json!({"status": "running", "alive": true, "bitrate": 2000,
                            "lifetime": 600000.0, "ts_delay": 40.0, "online_clients": 0});
        for wire in [full.clone(), polled.clone(), json!({})] {
            let stats: StreamStats = serde_json::from_value(wire.clone()).unwrap();
            assert_eq!(serde_json::to_value(&stats).unwrap(), wire);
        }
        let full: StreamStats = serde_json::from_value(full).unwrap();
        assert_eq!(full.more.get().and_then(|m| m.bytes_out), Some(4));
        assert_eq!(full.extra.keys().collect::<Vec<_>>(), ["newer_member"]);
        let polled: StreamStats = serde_json::from_value(polled).unwrap();
        assert!(
            polled.more.get().is_none(),
            "a poll list's stats boxed members it lacks"
        );
        assert!(polled.extra.is_empty());
    }
}
