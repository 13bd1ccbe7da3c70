//! Handlers, one module per resource.

pub mod access;
pub mod agents;
pub mod bulk;
pub mod cluster;
pub mod events;
pub mod organizations;
pub mod presets;
pub mod settings;
pub mod streamers;
pub mod streams;
pub mod users;
pub mod zones;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use super::ApiState;
use super::error::{ApiError, ApiResult};
use super::query::{CollectionSpec, Envelope, Index, Query};
use crate::state::NodeLive;

/// Percent-decoded query pairs in request order.
pub fn pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The value of query parameter `name`, if given (and not empty).
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// Runs a list query and wraps the page in the collection envelope.
pub fn envelope<V: std::borrow::Borrow<Value>>(
    items: &[V],
    pairs: &[(String, String)],
    spec: &CollectionSpec<'_>,
    key: &str,
    started: Instant,
) -> ApiResult<Json<Envelope>> {
    timed_page(pairs, spec, key, started, |q| q.execute(items))
}

/// Like [`envelope`], over an [`Index`].
pub fn indexed_envelope(
    index: &Index,
    pairs: &[(String, String)],
    spec: &CollectionSpec<'_>,
    key: &str,
    started: Instant,
) -> ApiResult<Json<Envelope>> {
    timed_page(pairs, spec, key, started, |q| q.execute_indexed(index))
}

/// Parses the query, runs it with `run` and reports how long collecting and querying took.
fn timed_page(
    pairs: &[(String, String)],
    spec: &CollectionSpec<'_>,
    key: &str,
    started: Instant,
    run: impl FnOnce(&Query) -> crate::api::query::Page,
) -> ApiResult<Json<Envelope>> {
    let query = Query::parse(pairs.iter().map(|(k, v)| (k, v)), spec)?;
    let before_query = started.elapsed();
    let page = run(&query);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let timing = json!({
        "collect_ms": ms(before_query),
        "query_ms": ms(started.elapsed() - before_query),
    });
    Ok(Json(page.into_envelope(key, timing)))
}

/// A whole (small) collection in the envelope, without a cursor: what previews return,
/// since the SDK's preview iterators never send one back.
pub fn whole(items: Vec<Value>, key: &str) -> Json<Value> {
    Json(json!({
        "estimated_count": items.len(),
        "timing": {},
        key: items,
    }))
}

/// The live cache's node table, taken once per request.
pub fn live_nodes(state: &ApiState) -> HashMap<String, Arc<NodeLive>> {
    state.live.nodes().into_iter().collect()
}

/// Parses an integer path parameter.
pub fn int_param(name: &str, raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::invalid_parameter(name, format!("`{name}` must be a positive integer"))
    })
}

/// `GET /monitoring/liveness` and `/monitoring/readiness` (`ServerStatsWhoami`, reference §10).
#[derive(Serialize, JsonSchema)]
pub struct ServerStatsWhoami {
    /// Build number: the version as one integer (`major * 1_000_000 + minor * 1_000 + patch`),
    /// since the SDK types it an integer and Panoptes has no build counter.
    pub build: i64,
    /// The Panoptes version.
    pub server_version: String,
    /// When this facade started (UTC seconds).
    pub started_at: i64,
    /// Now (UTC milliseconds).
    pub now: i64,
}

/// `GET /monitoring/liveness`: the process answers.
pub async fn liveness(State(state): State<ApiState>) -> Json<ServerStatsWhoami> {
    Json(whoami(&state))
}

/// `GET /monitoring/readiness`: 503 until the stores have synced.
pub async fn readiness(State(state): State<ApiState>) -> ApiResult<Json<ServerStatsWhoami>> {
    if state.stores.is_ready() {
        Ok(Json(whoami(&state)))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "caches are still syncing",
        ))
    }
}

fn whoami(state: &ApiState) -> ServerStatsWhoami {
    ServerStatsWhoami {
        build: build_number(env!("CARGO_PKG_VERSION")),
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: state.started_at,
        now: chrono::Utc::now().timestamp_millis(),
    }
}

/// `1.2.3` (pre-release or build suffixes ignored) as `1_002_003`.
fn build_number(version: &str) -> i64 {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    core.split('.')
        .take(3)
        .map(|p| p.parse::<i64>().unwrap_or(0))
        .chain(std::iter::repeat(0))
        .take(3)
        .fold(0, |acc, p| acc * 1_000 + p.min(999))
}

/// Operations whose job, in a Kubernetes deployment, belongs to something else: 501 with a
/// stable code, so a client learns where to look instead of reading a faked success.
pub fn not_here(code: &'static str, title: &'static str) -> ApiError {
    ApiError::new(StatusCode::NOT_IMPLEMENTED, code, title)
}

/// `GET`/`POST /tls/letsencrypt`.
pub async fn tls() -> ApiError {
    not_here(
        "tls_managed_by_cluster",
        "TLS is terminated by the Kubernetes Ingress or Gateway and its certificates are issued by cert-manager; Panoptes does not manage certificates",
    )
}

/// `GET /peeklio/check_watcher_status` and `POST /peeklio/create_operator_id`.
pub async fn peeklio() -> ApiError {
    not_here(
        "peeklio_not_supported",
        "Panoptes runs no Peeklio agent server integration: there is no operator id to provision or check",
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_numbers_order_like_versions() {
        assert_eq!(super::build_number("1.2.3"), 1_002_003);
        assert_eq!(super::build_number("0.1.0-rc.1"), 1_000);
        assert_eq!(super::build_number("2"), 2_000_000);
        assert!(super::build_number("1.10.0") > super::build_number("1.9.9"));
    }
}
