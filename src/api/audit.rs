//! The audit of the facade: one Watcher `Event` (`event: api_call`) per authenticated write
//! (a successful `POST /login` included), stored as a Kubernetes Event in the facade's
//! namespace ([`crate::events::write_audit`]) so that it survives restarts and every
//! replica's `GET /events` lists it ([`crate::events::log::EventLog`]), and written as a
//! structured log line with target `audit` for log pipelines. Reads are not audited (they
//! change nothing, and the log would fill with itself). Payloads are not recorded: request
//! bodies may carry passwords.
//!
//! Unauthenticated requests are never recorded: anyone could otherwise flood the log and
//! evict the record of an admin's writes, or fill memory with their headers. Client-supplied
//! texts are cut to [`MAX_FIELD_BYTES`]. What `/events` keeps in memory is bounded twice, by
//! entries ([`CAPACITY`]) and by bytes ([`MAX_BYTES`]); the gauges
//! `panoptes_api_audit_entries` and `panoptes_api_audit_bytes` show the fill.

use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use schemars::JsonSchema;
use serde::Serialize;
use serde_with::skip_serializing_none;

use super::ApiState;
use super::auth::Caller;

/// Default cap on the events `/events` keeps in memory.
pub const CAPACITY: usize = 10_000;
/// Default cap on the bytes (serialized JSON) of the events `/events` keeps in memory.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest header value, path or query string kept in an event (longer ones are cut).
pub const MAX_FIELD_BYTES: usize = 512;
/// How long a write's answer waits for its audit Event (then it is logged and counted as
/// failed; the `audit` log line is written either way).
const AUDIT_WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// One event of the log (Watcher's `Event`): an API call, or what the operator observed and
/// did (then `reason`, `type`, `note`, `object` and `count` say what).
#[skip_serializing_none]
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Event {
    /// Always `api_call`.
    pub event: String,
    /// Request path.
    pub path: String,
    /// Query string.
    pub qs: Option<String>,
    /// When (RFC 3339, UTC).
    pub created_at: String,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Calling program (`X-Originator`).
    pub originator: Option<String>,
    /// Operation id.
    pub operation_id: Option<String>,
    /// Login of the caller, when authenticated.
    pub user: Option<String>,
    /// HTTP status.
    pub status: u16,
    /// Duration, microseconds.
    pub duration: i64,
    /// Request id.
    pub request_id: String,
    /// When (UTC ms).
    pub utc_ms: i64,
    /// Increasing id.
    pub event_id: i64,
    /// Trace id (`X-Trace-Id`, generated when absent).
    pub trace_id: String,
    /// Server that handled the call (or produced the event).
    pub server: Option<String>,
    /// Kubernetes Event reason of an operator event (`NotAlive`, `Moved`, …).
    pub reason: Option<String>,
    /// `Normal` or `Warning`, for an operator event.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// What happened, for an operator event.
    pub note: Option<String>,
    /// The object concerned (`Kind/namespace/name`), for an operator event.
    pub object: Option<String>,
    /// Occurrences folded into this event (a flapping camera is one event with a count).
    pub count: Option<i64>,
}

/// `s` cut to at most [`MAX_FIELD_BYTES`] bytes (on a character boundary).
fn bounded(s: &str) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_string();
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(bounded)
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Middleware auditing every authenticated facade write (and observing every request's
/// metrics).
pub async fn record(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let now = chrono::Utc::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let qs = req.uri().query().map(bounded);
    // Only the few headers kept, already cut: nothing of an unauthenticated request outlives it.
    let user_agent = header(req.headers(), "user-agent");
    let originator = header(req.headers(), "x-originator");
    let trace_id = header(req.headers(), "x-trace-id");
    // The client as the login throttle sees it (X-Forwarded-For from trusted proxies only).
    let peer = req
        .extensions()
        .get::<ConnectInfo<super::conn::Peer>>()
        .map(|c| c.0.0.ip());
    let ip = state
        .auth
        .client_addr(peer, req.headers())
        .map(|ip| ip.to_string());
    let resp = next.run(req).await;
    let operation_id = super::operations::operation_id(&method, &path);
    state.metrics.observe(
        operation_id,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    if method.is_safe() {
        return resp;
    }
    let Some(caller) = resp.extensions().get::<Caller>() else {
        return resp;
    };
    // `DELETE /shares/{key}` carries a shared token's key in its path: never kept or logged.
    let path = match operation_id {
        Some("shared_token_delete") => format!("{}/shares/<redacted>", super::BASE),
        _ => path,
    };
    let request_id = random_id();
    let event = Event {
        event: "api_call".into(),
        operation_id: operation_id.map(str::to_string),
        path: bounded(&path),
        qs,
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ip,
        user_agent,
        originator,
        user: Some(caller.login.clone()),
        status: resp.status().as_u16(),
        duration: started.elapsed().as_micros() as i64,
        event_id: crate::events::log::event_id(now.timestamp_millis(), &request_id),
        request_id,
        utc_ms: now.timestamp_millis(),
        trace_id: trace_id.unwrap_or_else(random_id),
        server: Some(state.replica.clone()),
        reason: None,
        type_: None,
        note: None,
        object: None,
        count: None,
    };
    tracing::info!(
        target: "audit",
        user = %caller.login,
        method = %method,
        path = %event.path,
        operation_id = event.operation_id.as_deref().unwrap_or("unknown"),
        status = event.status,
        duration_us = event.duration,
        ip = event.ip.as_deref().unwrap_or(""),
        request_id = %event.request_id,
        trace_id = %event.trace_id,
        "facade write"
    );
    let note = format!(
        "{} {} {} -> {}",
        caller.login, method, event.path, event.status
    );
    let action = event.operation_id.as_deref().unwrap_or("unknown");
    let json = serde_json::to_value(&event).unwrap_or_default();
    let write = crate::events::write_audit(
        &state.client,
        &state.config.namespace,
        &event.request_id,
        &state.replica,
        action,
        note,
        &json,
    );
    let outcome = match tokio::time::timeout(AUDIT_WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => "written",
        Ok(Err(error)) => {
            tracing::warn!(%error, request_id = %event.request_id, "writing the audit Event failed");
            "failed"
        }
        Err(_) => {
            tracing::warn!(request_id = %event.request_id, "writing the audit Event timed out");
            "failed"
        }
    };
    state.metrics.audit_event(outcome);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_texts_are_cut() {
        assert!(bounded(&"é".repeat(1000)).len() <= MAX_FIELD_BYTES + "…".len());
        assert_eq!(bounded("short"), "short");
    }
}
