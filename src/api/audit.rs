//! The audit trail behind `GET /events`: one Watcher `Event` (`event: api_call`) per
//! authenticated facade request (a successful `POST /login` included), kept in memory per
//! replica and lost on restart. Payloads are not recorded: request bodies may carry passwords.
//! Operator events (Kubernetes Events) are not merged in yet.
//!
//! Unauthenticated requests are never recorded: anyone could otherwise flood the ring and
//! evict the record of an admin's writes, or fill memory with their headers. What is kept is
//! bounded twice: by entries and by bytes (the oldest go first), and client-supplied texts are
//! cut to [`MAX_FIELD_BYTES`]. The gauges `panoptes_api_audit_entries` and
//! `panoptes_api_audit_bytes` show the fill.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::gauge::Gauge;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use serde_with::skip_serializing_none;

use super::ApiState;
use super::auth::Caller;

/// Default cap on the events kept per replica.
pub const CAPACITY: usize = 10_000;
/// Default cap on the bytes (serialized JSON) of the events kept per replica.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest header value, path or query string kept in an event (longer ones are cut).
pub const MAX_FIELD_BYTES: usize = 512;

/// One API call (Watcher's `Event`).
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
    /// Duration, ms.
    pub duration: i64,
    /// Request id.
    pub request_id: String,
    /// When (UTC ms).
    pub utc_ms: i64,
    /// Increasing id.
    pub event_id: i64,
    /// Trace id (`X-Trace-Id`, generated when absent).
    pub trace_id: String,
    /// Server that handled the call.
    pub server: Option<String>,
}

/// In-memory ring of events, bounded by entries and bytes.
pub struct AuditLog {
    ring: Mutex<Ring>,
    next_id: AtomicI64,
    max_entries: usize,
    max_bytes: usize,
    server: Option<String>,
    entries_gauge: Gauge,
    bytes_gauge: Gauge,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<(Value, usize)>,
    bytes: usize,
}

impl AuditLog {
    /// An empty log keeping at most `max_entries` events and `max_bytes` bytes of them,
    /// reporting its fill on the two gauges.
    pub fn new(max_entries: usize, max_bytes: usize, entries: Gauge, bytes: Gauge) -> Self {
        Self {
            ring: Mutex::new(Ring::default()),
            next_id: AtomicI64::new(1),
            max_entries,
            max_bytes,
            server: std::env::var("HOSTNAME").ok(),
            entries_gauge: entries,
            bytes_gauge: bytes,
        }
    }

    fn push(&self, event: Event) {
        let value = serde_json::to_value(&event).unwrap_or(Value::Null);
        let size = serde_json::to_vec(&value).map_or(0, |v| v.len());
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        while ring.events.len() >= self.max_entries || ring.bytes + size > self.max_bytes {
            let Some((_, freed)) = ring.events.pop_front() else {
                break;
            };
            ring.bytes -= freed;
        }
        ring.events.push_back((value, size));
        ring.bytes += size;
        self.entries_gauge.set(ring.events.len() as i64);
        self.bytes_gauge.set(ring.bytes as i64);
    }

    /// Every event (oldest first).
    pub fn all(&self) -> Vec<Value> {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .iter()
            .map(|(v, _)| v.clone())
            .collect()
    }
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

/// Middleware recording every authenticated facade request (and observing every request's
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
    // Reading the audit trail is not itself audited (it would fill the log with itself).
    if path.ends_with("/events") && method == axum::http::Method::GET {
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
        duration: started.elapsed().as_millis() as i64,
        request_id: random_id(),
        utc_ms: now.timestamp_millis(),
        event_id: state.audit.next_id.fetch_add(1, Ordering::Relaxed),
        trace_id: trace_id.unwrap_or_else(random_id),
        server: state.audit.server.clone(),
    };
    state.audit.push(event);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ua: &str) -> Event {
        Event {
            event: "api_call".into(),
            path: "/p".into(),
            qs: None,
            created_at: String::new(),
            ip: None,
            user_agent: Some(bounded(ua)),
            originator: None,
            operation_id: None,
            user: Some("root".into()),
            status: 200,
            duration: 0,
            request_id: String::new(),
            utc_ms: 0,
            event_id: 0,
            trace_id: String::new(),
            server: None,
        }
    }

    #[test]
    fn the_ring_stays_within_entries_and_bytes() {
        let log = AuditLog::new(5, 2_000, Gauge::default(), Gauge::default());
        for i in 0..50 {
            log.push(event(&"é".repeat(i * 100)));
            let ring = log.ring.lock().unwrap();
            assert!(ring.events.len() <= 5 && ring.bytes <= 2_000, "{i}");
        }
        assert!(log.entries_gauge.get() <= 5 && log.bytes_gauge.get() <= 2_000);
        assert!(bounded(&"é".repeat(1000)).len() <= MAX_FIELD_BYTES + "…".len());
    }
}
