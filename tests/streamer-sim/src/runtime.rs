//! Runtime state that a restart wipes: the instance (id, boot time, config revision) and the
//! per-stream runtime. Stream stats are computed from timestamps at read time, so advancing
//! the [`crate::SimClock`] moves every stream through its life-cycle without background tasks.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::options::Behaviour;

/// One boot of a node.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// Per-boot instance id (`ServerStats.id`).
    pub id: String,
    /// Boot time, ms.
    pub started_at: i64,
    /// `streamer_status` is `starting` until this time, ms.
    pub ready_at: i64,
    /// Second element of `config_version`.
    pub rev: i64,
    /// `config_error` while the node booted into a broken config.
    pub broken: Option<Value>,
    /// Runtime of configured streams.
    pub streams: HashMap<String, StreamRt>,
    /// Streams that exist only at run time (published or pulled from a source).
    pub foreign: BTreeMap<String, Foreign>,
}

impl Runtime {
    /// A fresh boot at `now`.
    pub fn boot(now: i64, starting_ms: u64) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            started_at: now,
            ready_at: now + starting_ms as i64,
            rev: 0,
            broken: None,
            streams: HashMap::new(),
            foreign: BTreeMap::new(),
        }
    }
}

/// Runtime of one stream.
#[derive(Clone, Debug)]
pub struct StreamRt {
    /// When the stream was (re)opened, ms.
    pub opened_at: i64,
    /// Viewers (test hook).
    pub clients: i64,
    /// When the last viewer left, ms (on-demand streams stop `clients_timeout` later).
    pub last_left: Option<i64>,
    /// Input went silent at this time (test hook).
    pub silent_since: Option<i64>,
}

impl StreamRt {
    /// Opened at `at`.
    pub fn open(at: i64) -> Self {
        Self {
            opened_at: at,
            clients: 0,
            last_left: None,
            silent_since: None,
        }
    }
}

/// A runtime-only stream (`named_by` user or remote).
#[derive(Clone, Debug)]
pub struct Foreign {
    /// `user` or `remote`.
    pub named_by: String,
    /// Its effective config.
    pub config: Value,
    /// Its runtime.
    pub rt: StreamRt,
}

/// What stats are computed against.
pub struct Ctx<'a> {
    /// Simulated now, ms.
    pub now: i64,
    /// Node hostname (`running_on`).
    pub hostname: &'a str,
    /// Switches.
    pub beh: &'a Behaviour,
}

/// FNV-1a, for stable per-stream pseudo-random values.
pub fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

pub(crate) fn start_delay(name: &str, opened_at: i64, beh: &Behaviour) -> i64 {
    let (lo, hi) = (
        beh.start_delay_min_ms,
        beh.start_delay_max_ms.max(beh.start_delay_min_ms),
    );
    (lo + (hash(name) ^ opened_at as u64) % (hi - lo + 1)) as i64
}

fn flag(cfg: &Value, key: &str) -> bool {
    cfg.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Whether a configured stream runs by itself (static and not disabled).
pub fn runs_by_itself(cfg: &Value) -> bool {
    flag(cfg, "static") && !flag(cfg, "disabled")
}

/// Whether an on-demand stream's runtime has ended (no viewers for `clients_timeout`).
pub fn on_demand_expired(cfg: &Value, rt: &StreamRt, now: i64) -> bool {
    if rt.clients > 0 {
        return false;
    }
    let timeout_ms = cfg
        .get("clients_timeout")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        * 1000;
    rt.last_left.is_none_or(|left| now - left > timeout_ms)
}

fn scheme(url: &str) -> &str {
    url.split_once("://").map(|(s, _)| s).unwrap_or("")
}

fn waiting() -> Value {
    json!({"status": "waiting", "alive": false, "online_clients": 0})
}

/// `stream.stats` of a stream with this effective config and runtime; `None` = no stats.
/// `published` streams (named_by user) run without a start delay.
pub fn stream_stats(
    name: &str,
    cfg: &Value,
    rt: Option<&StreamRt>,
    published: bool,
    ctx: &Ctx,
) -> Option<Value> {
    if flag(cfg, "disabled") {
        return None;
    }
    let on_demand = !flag(cfg, "static") && !published;
    let rt = match rt {
        None if on_demand => return Some(waiting()),
        None => return None,
        Some(rt) if on_demand && on_demand_expired(cfg, rt, ctx.now) => return Some(waiting()),
        Some(rt) => rt,
    };
    let now = ctx.now;
    if now < rt.opened_at {
        return Some(waiting());
    }
    let inputs: Vec<&Value> = cfg
        .get("inputs")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let url = |i: &Value| {
        i.get("url")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let active = if published {
        Some(0)
    } else {
        inputs.iter().position(|i| ctx.beh.reachable(&url(i)))
    };
    let delay = if published {
        0
    } else {
        start_delay(name, rt.opened_at, ctx.beh)
    };
    let since = now - rt.opened_at;
    let h = hash(name);
    let Some(active) = active.filter(|_| published || !inputs.is_empty()) else {
        if inputs.is_empty() {
            return Some(
                json!({"status": "waiting", "alive": false, "opened_at": rt.opened_at, "lifetime": 0, "online_clients": rt.clients}),
            );
        }
        // Unreachable inputs: retries and ts_delay grow, never alive.
        let retries = since / ctx.beh.retry_interval_ms.max(1) as i64;
        let per_input: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, inp)| {
                let r = (retries - i as i64 + inputs.len() as i64 - 1) / inputs.len() as i64;
                json!({"url": url(inp), "proto": scheme(&url(inp)), "active": false, "retries": r.max(0), "errors": r.max(0), "ts_delay": since})
            })
            .collect();
        let mut s = json!({
            "status": if since < delay { "waiting" } else { "error" },
            "alive": false, "ts_delay": since, "opened_at": rt.opened_at, "lifetime": 0,
            "bitrate": 0, "online_clients": rt.clients, "inputs": per_input,
            "input": {"retries": retries, "ts_delay": since}, "running_on": [ctx.hostname],
        });
        if retries > 0 {
            s["source_error"] = json!("econnrefused");
        }
        return Some(s);
    };
    if since < delay {
        let per_input: Vec<Value> = inputs
            .iter()
            .map(
                |i| json!({"url": url(i), "proto": scheme(&url(i)), "active": false, "retries": 0}),
            )
            .collect();
        return Some(json!({
            "status": "waiting", "alive": false, "ts_delay": since, "opened_at": rt.opened_at, "lifetime": since,
            "bitrate": 0, "online_clients": rt.clients, "inputs": per_input, "running_on": [ctx.hostname],
        }));
    }
    let running_at = rt.opened_at + delay;
    let base_delay = 20 + (h % 80) as i64;
    let ts_delay = match rt.silent_since {
        Some(s) if s <= now => now - s + base_delay,
        _ => base_delay,
    };
    let alive = ts_delay <= 12_000;
    let input = inputs
        .get(active)
        .copied()
        .cloned()
        .unwrap_or_else(|| json!({}));
    let nominal = input
        .get("bitrate")
        .and_then(Value::as_i64)
        .filter(|b| *b > 0)
        .unwrap_or(800 + (h % 3200) as i64);
    let vary = ((now / 1000) as u64).wrapping_add(h) % 7;
    let bitrate = if alive {
        (nominal * (97 + vary as i64) / 100).max(1)
    } else {
        0
    };
    let running_for = now - running_at;
    let bytes_in = nominal * 125 * running_for / 1000;
    let (w, hgt) = (
        input.get("width").and_then(Value::as_i64).unwrap_or(1920),
        input.get("height").and_then(Value::as_i64).unwrap_or(1080),
    );
    let per_input: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, inp)| {
            if i == active {
                json!({"url": url(inp), "proto": scheme(&url(inp)), "active": true, "opened_at": running_at, "retries": 0, "ts_delay": ts_delay, "bytes": bytes_in, "frames": running_for * 25 / 1000})
            } else {
                json!({"url": url(inp), "proto": scheme(&url(inp)), "active": false, "retries": 0})
            }
        })
        .collect();
    Some(json!({
        "status": "running",
        "alive": alive,
        "ts_delay": ts_delay,
        "opened_at": rt.opened_at,
        "start_running_at": running_at,
        "lifetime": since,
        "last_dts_at": now - ts_delay,
        "bitrate": bitrate,
        "input_bitrate": bitrate,
        "online_clients": rt.clients,
        "bytes_out": nominal * 125 * rt.clients * running_for / 1000,
        "output_bandwidth": bitrate * 1000 * rt.clients,
        "play": {"play_opened_sessions": rt.clients},
        "running_on": [ctx.hostname],
        "dvr_enabled": cfg.get("dvr").is_some(),
        "input": {"bytes": bytes_in, "retries": 0, "ts_delay": ts_delay},
        "inputs": per_input,
        "media_info": {
            "flow_type": "stream",
            "tracks": [
                {"track_id": "v1", "content": "video", "codec": "h264", "width": w, "height": hgt, "fps": 25, "bitrate": nominal * 9 / 10},
                {"track_id": "a1", "content": "audio", "codec": "aac", "channels": 2, "sample_rate": 48000, "bitrate": nominal / 10}
            ]
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(now: i64, beh: &Behaviour) -> Ctx<'_> {
        Ctx {
            now,
            hostname: "h",
            beh,
        }
    }

    #[test]
    fn reachable_static_stream_runs_after_the_delay() {
        let beh = Behaviour::default();
        let cfg = json!({"static": true, "inputs": [{"url": "fake://a"}]});
        let rt = StreamRt::open(1_000_000);
        let s = stream_stats("a", &cfg, Some(&rt), false, &ctx(1_000_000, &beh)).unwrap();
        assert_eq!(s["status"], "waiting");
        let s = stream_stats("a", &cfg, Some(&rt), false, &ctx(1_002_001, &beh)).unwrap();
        assert_eq!(s["status"], "running");
        assert_eq!(s["alive"], true);
        assert!(s["bitrate"].as_i64().unwrap() > 0);
        assert_eq!(s["inputs"][0]["active"], true);
    }

    #[test]
    fn unreachable_input_retries_forever() {
        let beh = Behaviour::default();
        let cfg = json!({"static": true, "inputs": [{"url": "rtsp://10.0.0.1/x"}]});
        let rt = StreamRt::open(0);
        let s = stream_stats("a", &cfg, Some(&rt), false, &ctx(10_500, &beh)).unwrap();
        assert_eq!(s["alive"], false);
        assert_eq!(s["inputs"][0]["retries"], 10);
        assert_eq!(s["status"], "error");
    }

    #[test]
    fn silence_kills_alive_after_12s() {
        let beh = Behaviour::default();
        let cfg = json!({"static": true, "inputs": [{"url": "fake://a"}]});
        let mut rt = StreamRt::open(0);
        rt.silent_since = Some(10_000);
        assert_eq!(
            stream_stats("a", &cfg, Some(&rt), false, &ctx(15_000, &beh)).unwrap()["alive"],
            true
        );
        assert_eq!(
            stream_stats("a", &cfg, Some(&rt), false, &ctx(23_000, &beh)).unwrap()["alive"],
            false
        );
    }

    #[test]
    fn disabled_has_no_stats_and_on_demand_waits() {
        let beh = Behaviour::default();
        assert!(
            stream_stats("a", &json!({"disabled": true}), None, false, &ctx(0, &beh)).is_none()
        );
        let s = stream_stats(
            "a",
            &json!({"inputs": [{"url": "fake://a"}]}),
            None,
            false,
            &ctx(0, &beh),
        )
        .unwrap();
        assert_eq!(s["status"], "waiting");
    }
}
