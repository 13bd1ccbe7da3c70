//! Handlers, one module per resource.

pub mod agents;
pub mod cluster;
pub mod events;
pub mod organizations;
pub mod presets;
pub mod settings;
pub mod streamers;
pub mod streams;
pub mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::ApiState;
use super::error::{ApiError, ApiResult};
use super::query::{CollectionSpec, Index, Query};
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
) -> ApiResult<Json<Value>> {
    timed_page(pairs, spec, key, started, |q| q.execute(items))
}

/// Like [`envelope`], over an [`Index`].
pub fn indexed_envelope(
    index: &Index,
    pairs: &[(String, String)],
    spec: &CollectionSpec<'_>,
    key: &str,
    started: Instant,
) -> ApiResult<Json<Value>> {
    timed_page(pairs, spec, key, started, |q| q.execute_indexed(index))
}

/// Parses the query, runs it with `run` and reports how long collecting and querying took.
fn timed_page(
    pairs: &[(String, String)],
    spec: &CollectionSpec<'_>,
    key: &str,
    started: Instant,
    run: impl FnOnce(&Query) -> crate::api::query::Page,
) -> ApiResult<Json<Value>> {
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

/// `GET /monitoring/liveness`.
pub async fn probe() -> impl IntoResponse {
    Json(whoami())
}

/// `GET /monitoring/readiness`: 503 until the stores have synced.
pub async fn readiness(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    if state.stores.is_ready() {
        Ok(Json(whoami()))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "caches are still syncing",
        ))
    }
}

fn whoami() -> Value {
    json!({
        "server_version": env!("CARGO_PKG_VERSION"),
        "now": chrono::Utc::now().timestamp_millis(),
    })
}
