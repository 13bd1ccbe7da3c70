//! The audit trail behind `GET /events`: one Watcher `Event` (`event: api_call`) per facade
//! request, kept in memory (newest [`CAPACITY`] per replica; lost on restart). Payloads are
//! not recorded: request bodies may carry passwords. Operator events (Kubernetes Events) are
//! not merged in yet.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use serde_with::skip_serializing_none;

use super::ApiState;
use super::auth::Caller;

/// Events kept per replica.
pub const CAPACITY: usize = 10_000;

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

/// In-memory ring of events.
pub struct EventLog {
    ring: Mutex<VecDeque<Value>>,
    next_id: AtomicI64,
    capacity: usize,
    server: Option<String>,
}

impl EventLog {
    /// An empty log.
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            next_id: AtomicI64::new(1),
            capacity,
            server: std::env::var("HOSTNAME").ok(),
        }
    }

    fn push(&self, event: Event) {
        let value = serde_json::to_value(&event).unwrap_or(Value::Null);
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(value);
    }

    /// Every event (oldest first).
    pub fn all(&self) -> Vec<Value> {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Middleware recording every facade request.
pub async fn record(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let now = chrono::Utc::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let qs = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let resp = next.run(req).await;
    let operation_id = super::openapi::operation_id(&method, &path);
    state.metrics.observe(
        operation_id,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    // Reading the audit trail is not itself audited (it would fill the log with itself).
    if path.ends_with("/events") && method == axum::http::Method::GET {
        return resp;
    }
    let event = Event {
        event: "api_call".into(),
        operation_id: operation_id.map(str::to_string),
        path,
        qs,
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ip,
        user_agent: header(&headers, "user-agent"),
        originator: header(&headers, "x-originator"),
        user: resp.extensions().get::<Caller>().map(|c| c.login.clone()),
        status: resp.status().as_u16(),
        duration: started.elapsed().as_millis() as i64,
        request_id: random_id(),
        utc_ms: now.timestamp_millis(),
        event_id: state.events.next_id.fetch_add(1, Ordering::Relaxed),
        trace_id: header(&headers, "x-trace-id").unwrap_or_else(random_id),
        server: state.events.server.clone(),
    };
    state.events.push(event);
    resp
}
