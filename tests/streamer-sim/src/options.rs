//! Behaviour switches: every place where the reference (§7) is unsure is a switch here, with
//! the default the simulator assumes. Changeable at run time (`PUT /_sim/behaviour`).

use serde::{Deserialize, Serialize};

/// How `PUT /streams/{name}` (without `$reset`) merges arrays (§7 Q2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrayMerge {
    /// RFC 7386: an array in the body replaces the stored one (default).
    #[default]
    Replace,
    /// Element-wise merge by index (the body's length wins).
    ByIndex,
}

/// What `PUT /config` does with the stored server config (§7 Q6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigPut {
    /// Deep merge, `null` deletes (default).
    #[default]
    Merge,
    /// The body replaces the stored server config.
    Replace,
}

/// Per-node behaviour switches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behaviour {
    /// Accept a raw `/` inside `{name}` (the Go SDK sends names unescaped); `%2F` is always accepted (§7 Q3).
    pub raw_slash_names: bool,
    /// Array merge rule of stream PUTs (§7 Q2).
    pub array_merge: ArrayMerge,
    /// `PUT /config` semantics (§7 Q6).
    pub config_put: ConfigPut,
    /// Status of `DELETE` on an unknown stream: 404 (default) or 200 (§7 Q8).
    pub delete_unknown_status: u16,
    /// Status for missing or unknown credentials (§7 Q1).
    pub unauthorized_status: u16,
    /// Status for read-only credentials on a write, or a caller outside `api_allowed_from` (§7 Q1).
    pub forbidden_status: u16,
    /// Accepted clock difference of the `Cluster ts:sha1` scheme, seconds; `None` = any (§7 Q4).
    pub cluster_auth_window_s: Option<u64>,
    /// Accept the cluster key itself as a Bearer token (§7 Q4).
    pub bearer_accepts_cluster_key: bool,
    /// The probes require credentials (§7 Q7).
    pub probes_require_auth: bool,
    /// Readiness answers 503 while `streamer_status` is `starting` or `broken_config` (§7 Q7).
    pub readiness_fails_while_starting: bool,
    /// Body `name` different from the path name is a 400 (otherwise the path wins) (§7 Q11).
    pub reject_name_mismatch: bool,
    /// How long a (re)started node reports `streamer_status: starting`, ms.
    pub starting_ms: u64,
    /// A reachable static stream turns `running` after a delay in this range, ms.
    pub start_delay_min_ms: u64,
    /// Upper bound of the start delay, ms.
    pub start_delay_max_ms: u64,
    /// Interval between reconnection attempts of an unreachable input, ms.
    pub retry_interval_ms: u64,
    /// Input URL patterns the simulator "can reach" (`*` matches any run of characters).
    pub healthy_urls: Vec<String>,
    /// Reject creating streams beyond this count with 400 (a capacity limit; real behaviour unknown).
    pub max_streams: Option<usize>,
    /// Any change of a running stream's disk config restarts it (by default only inputs,
    /// `static`, `disabled` and `template` do; a DVR change may restart one on a real node).
    pub restart_on_any_change: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            raw_slash_names: true,
            array_merge: ArrayMerge::Replace,
            config_put: ConfigPut::Merge,
            delete_unknown_status: 404,
            unauthorized_status: 401,
            forbidden_status: 403,
            cluster_auth_window_s: Some(300),
            bearer_accepts_cluster_key: false,
            probes_require_auth: false,
            readiness_fails_while_starting: true,
            reject_name_mismatch: true,
            starting_ms: 500,
            start_delay_min_ms: 1000,
            start_delay_max_ms: 2000,
            retry_interval_ms: 1000,
            healthy_urls: vec!["fake://*".into()],
            max_streams: None,
            restart_on_any_change: false,
        }
    }
}

impl Behaviour {
    /// Whether an input URL matches one of the healthy patterns.
    pub fn reachable(&self, url: &str) -> bool {
        self.healthy_urls.iter().any(|p| glob(p, url))
    }
}

/// `*`-only glob matching.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Credentials and identity a node starts with (they live in its server config, like on a
/// real node: `edit_auth`, `view_auth`, `cluster_key`).
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// `edit_auth` login and password; `None` = no admin credentials (open API).
    pub edit_auth: Option<(String, String)>,
    /// `view_auth` login and password.
    pub view_auth: Option<(String, String)>,
    /// `cluster_key`.
    pub cluster_key: Option<String>,
    /// API tokens accepted as `Bearer <token>` with full rights.
    pub tokens: Vec<String>,
    /// `server_version` reported.
    pub server_version: String,
    /// Behaviour switches.
    pub behaviour: Behaviour,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            edit_auth: Some(("flussonic".into(), "letmein!".into())),
            view_auth: Some(("viewer".into(), "viewonly".into())),
            cluster_key: Some("sim-cluster-key".into()),
            tokens: Vec::new(),
            server_version: "25.03-sim".into(),
            behaviour: Behaviour::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("fake://*", "fake://x"));
        assert!(glob("rtsp://*.ok/*", "rtsp://cam.ok/1"));
        assert!(!glob("rtsp://*.ok/*", "rtsp://cam.bad/1"));
        assert!(glob("a", "a"));
        assert!(!glob("a*b", "ab-c"));
    }
}
