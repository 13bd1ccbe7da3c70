//! Facade latency with `oha` (a load generator from crates.io, built by `make bench` into
//! `target/tools`). Skipped, with the reason, when the operator has no facade yet.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// Base path of the Watcher admin API.
pub const BASE: &str = "/watcher/admin-api/v3";

/// The documented list queries (and one single-stream GET) measured at scale.
pub fn queries(one_stream: &str) -> Vec<(&'static str, String)> {
    vec![
        ("list limit=100", "/streams?limit=100".into()),
        (
            "list select",
            "/streams?limit=100&select=name,title,stats.alive".into(),
        ),
        (
            "list sort=-stats.bitrate",
            "/streams?limit=100&sort=-stats.bitrate".into(),
        ),
        ("list q=", "/streams?limit=100&q=cam-0012".into()),
        ("get one", format!("/streams/{one_stream}")),
    ]
}

/// One query's figures.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Label of the query.
    pub label: &'static str,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Requests per second.
    pub rps: f64,
    /// Share of 2xx answers (0 when nothing answered).
    pub success: f64,
}

/// Declares an admin User `login.0` with password `login.1` for the facade's login.
pub async fn create_login(ns: &crate::support::TestNamespace, login: (&str, &str)) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let pp = PatchParams::apply("panoptes-bench").force();
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "bench-login" },
        "stringData": { "password": login.1 },
    });
    ns.api::<Secret>()
        .patch("bench-login", &pp, &Patch::Apply(&secret))
        .await
        .expect("creating the login Secret");
    let user = serde_json::json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "User",
        "metadata": { "name": login.0 },
        "spec": {
            "name": login.0,
            "accessLevel": "admin",
            "passwordSecretRef": { "name": "bench-login", "key": "password" },
        },
    });
    ns.api::<panoptes::resources::User>()
        .patch(login.0, &pp, &Patch::Apply(&user))
        .await
        .expect("creating the login User");
}

/// Why the facade was not measured, or a bearer token (None: no auth needed).
pub async fn probe(api: &str, login: (&str, &str)) -> Result<Option<String>, String> {
    let http = reqwest::Client::new();
    let url = format!("http://{api}{BASE}/streams?limit=1");
    let r = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("the facade does not answer at {api} ({e}); skipped"))?;
    match r.status().as_u16() {
        200 => Ok(None),
        404 => Err(format!(
            "GET {BASE}/streams answers 404: this build has no facade yet; skipped"
        )),
        401 | 403 => {
            let r = http
                .post(format!("http://{api}{BASE}/login"))
                .basic_auth(login.0, Some(login.1))
                .send()
                .await
                .map_err(|e| format!("login failed: {e}"))?;
            if !r.status().is_success() {
                return Err(format!("login answered {}; skipped", r.status()));
            }
            let body: Value = r.json().await.map_err(|e| format!("login body: {e}"))?;
            let token = ["jwt", "token", "access_token", "session"]
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_str))
                .ok_or_else(|| format!("no token in the login answer {body}; skipped"))?;
            Ok(Some(token.to_string()))
        }
        other => Err(format!("GET {BASE}/streams answered {other}; skipped")),
    }
}

/// Runs `oha` against one path for `duration` with `connections` connections.
pub fn measure(
    oha: &Path,
    api: &str,
    token: Option<&str>,
    label: &'static str,
    path: &str,
    duration: Duration,
    connections: usize,
) -> Result<Latency, String> {
    let mut cmd = Command::new(oha);
    cmd.args(["--no-tui", "--output-format", "json", "-z"])
        .arg(format!("{}s", duration.as_secs()))
        .arg("-c")
        .arg(connections.to_string());
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    cmd.arg(format!("http://{api}{BASE}{path}"));
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", oha.display()))?;
    if !out.status.success() {
        return Err(format!(
            "oha failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("oha output: {e}"))?;
    let ms = |p: &str| {
        v["latencyPercentiles"][p]
            .as_f64()
            .map(|s| s * 1000.0)
            .unwrap_or(f64::NAN)
    };
    Ok(Latency {
        label,
        p50_ms: ms("p50"),
        p99_ms: ms("p99"),
        rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(f64::NAN),
        success: {
            // successRate counts answered requests; what matters is the share of 2xx.
            let codes = v["statusCodeDistribution"].as_object();
            let all: f64 = codes.map_or(0.0, |c| c.values().filter_map(Value::as_f64).sum());
            let ok: f64 = codes.map_or(0.0, |c| {
                c.iter()
                    .filter(|(k, _)| k.starts_with('2'))
                    .filter_map(|(_, v)| v.as_f64())
                    .sum()
            });
            if all > 0.0 { ok / all } else { 0.0 }
        },
    })
}
