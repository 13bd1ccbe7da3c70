//! Fault switches (§5.2) and the middleware that applies them to node API requests, plus the
//! request counters tests read. Faults never apply to `/_sim` control requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::node::Node;

/// Shape of error bodies (the Go SDK shows clients must survive non-JSON errors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorBody {
    /// The JSON error envelope (default).
    #[default]
    Json,
    /// `text/plain` with the message.
    Text,
    /// An HTML error page, as a proxy in front of a node would send.
    Html,
}

/// Fault switches of one node. Changing them takes effect on the next request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added delay per request, ms.
    pub latency_ms: u64,
    /// Extra random delay 0..=jitter per request, ms.
    pub latency_jitter_ms: u64,
    /// Never answer (until the client gives up, or the node goes down or restarts).
    pub hang: bool,
    /// Fraction (0..1) of requests answered with a 5xx.
    pub error_rate: f64,
    /// Status of `error_rate` failures; 0 = pick 500, 502 or 503 at random.
    pub error_status: u16,
    /// Answer the next N requests with `fail_next_status`.
    pub fail_next: u32,
    /// Status of `fail_next` failures (default 503 when 0).
    pub fail_next_status: u16,
    /// Slow accept: at most this many node API requests are served at once; others queue.
    pub max_concurrency: Option<usize>,
    /// Shape of error bodies.
    pub error_body: ErrorBody,
    /// Cut the body of the next N successful responses mid-way and reset the connection.
    pub truncate_next: u32,
    /// Apply latency, hang, 5xx and truncation only to API paths starting with this (relative
    /// to `/streamer/api/v3`, e.g. `/streams`).
    pub path_prefix: Option<String>,
    /// Added to every `now` the node reports, ms (clock skew).
    pub clock_skew_ms: i64,
}

/// Request counters of one node (node API only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests received.
    pub total: u64,
    /// Responses by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests by `METHOD /route/{template}`.
    pub by_route: BTreeMap<String, u64>,
    /// Requests on one stream by `METHOD name` (`/streams/{name}` only), so a test can tell
    /// which cameras were deleted or re-pushed.
    #[serde(default)]
    pub by_stream: BTreeMap<String, u64>,
    /// Restarts by stream name: a save that changed a stored stream beyond its metadata
    /// (`labels`, `comment`: Flussonic restarts a stream on any other change), or a
    /// `POST /streams/{name}/stop`. Creating or deleting a stream is not a restart.
    #[serde(default)]
    pub restarts: BTreeMap<String, u64>,
    /// Saves that changed only the metadata of a stored stream (no restart), by stream name.
    #[serde(default)]
    pub metadata_writes: BTreeMap<String, u64>,
    /// 5xx answers injected by faults.
    pub injected: u64,
    /// Running streams a config change restarted: (name, restarted at, running again at), ms
    /// of the node clock, so a test can tell how many were down at once.
    #[serde(default)]
    pub restart_log: Vec<(String, i64, i64)>,
    /// Requests being served now.
    pub in_flight: u64,
    /// Highest `in_flight` seen.
    pub peak_in_flight: u64,
    /// `X-Originator` of the last request.
    pub last_originator: Option<String>,
    /// `X-Trace-Id` of the last request.
    pub last_trace_id: Option<String>,
    /// Authorization scheme of the last request (`basic`, `bearer`, `cluster`), never the secret.
    pub last_auth_scheme: Option<String>,
}

/// `METHOD /template` of a node API path (relative to the API prefix).
pub fn route_of(method: &str, path: &str) -> String {
    let template = if let Some(rest) = path.strip_prefix("/streams/") {
        if method == "POST" && rest.ends_with("/stop") {
            "/streams/{name}/stop"
        } else {
            "/streams/{name}"
        }
    } else if path.starts_with("/cluster/peers/") {
        "/cluster/peers/{hostname}"
    } else if path.starts_with("/cluster/sources/") {
        "/cluster/sources/{url}"
    } else {
        path
    };
    format!("{method} {template}")
}

struct InFlight(Arc<Node>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.counters.lock().expect("counters").in_flight -= 1;
    }
}

fn transform(resp: Response, mode: ErrorBody, bytes: Bytes) -> Response {
    let status = resp.status();
    let title = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/errors/0/title")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let (ctype, body) = match mode {
        ErrorBody::Json => return resp,
        ErrorBody::Text => (
            "text/plain; charset=utf-8",
            format!("{} {}\n", status.as_u16(), title),
        ),
        ErrorBody::Html => (
            "text/html",
            format!(
                "<html><head><title>{0} {1}</title></head><body><center><h1>{0} {1}</h1></center><hr><center>{2}</center></body></html>\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                title
            ),
        ),
    };
    let mut out = (status, body).into_response();
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    out
}

/// Applies faults and counts requests.
pub async fn middleware(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let route = route_of(req.method().as_str(), req.uri().path());
    let on_stream = req
        .uri()
        .path()
        .strip_prefix("/streams/")
        .filter(|rest| !rest.contains('/'))
        .map(|name| format!("{} {name}", req.method()));
    let (originator, trace_id, scheme) = {
        let h = req.headers();
        let header = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let scheme = header("authorization")
            .and_then(|a| a.split_whitespace().next().map(str::to_ascii_lowercase));
        (header("x-originator"), header("x-trace-id"), scheme)
    };
    {
        let mut c = node.counters.lock().expect("counters");
        c.last_originator = originator;
        c.last_trace_id = trace_id;
        c.last_auth_scheme = scheme;
        c.total += 1;
        *c.by_route.entry(route).or_default() += 1;
        if let Some(s) = on_stream {
            *c.by_stream.entry(s).or_default() += 1;
        }
        c.in_flight += 1;
        c.peak_in_flight = c.peak_in_flight.max(c.in_flight);
    }
    let _in_flight = InFlight(node.clone());
    let gate = node.gate();
    let _permit = match &gate {
        Some(sem) => sem.clone().acquire_owned().await.ok(),
        None => None,
    };
    let faults = node.faults.lock().expect("faults").clone();
    let applies = faults
        .path_prefix
        .as_deref()
        .is_none_or(|p| req.uri().path().starts_with(p));
    let mut injected: Option<u16> = None;
    let mut truncate = false;
    if applies {
        let delay = faults.latency_ms
            + if faults.latency_jitter_ms > 0 {
                rand::rng().random_range(0..=faults.latency_jitter_ms)
            } else {
                0
            };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if faults.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let mut f = node.faults.lock().expect("faults");
        if f.fail_next > 0 {
            f.fail_next -= 1;
            injected = Some(if f.fail_next_status == 0 {
                503
            } else {
                f.fail_next_status
            });
        } else if f.error_rate > 0.0 && rand::rng().random_bool(f.error_rate.clamp(0.0, 1.0)) {
            injected = Some(match f.error_status {
                0 => [500, 502, 503][rand::rng().random_range(0..3)],
                s => s,
            });
        }
        if injected.is_none() && f.truncate_next > 0 {
            f.truncate_next -= 1;
            truncate = true;
        }
    }
    let mut resp = match injected {
        Some(status) => {
            node.counters.lock().expect("counters").injected += 1;
            ApiError::new(
                status,
                "simulated_fault",
                "simulated server error (streamer-sim fault switch)",
            )
            .into_response()
        }
        None => next.run(req).await,
    };
    let status = resp.status();
    if truncate && status.is_success() {
        let (mut parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let half = bytes.slice(..bytes.len() / 2);
        parts.headers.remove(header::CONTENT_LENGTH);
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::other("simulated connection reset")),
        ];
        resp = Response::from_parts(parts, Body::from_stream(futures::stream::iter(chunks)));
    } else if status.as_u16() >= 400 && faults.error_body != ErrorBody::Json {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        resp = transform(
            Response::from_parts(parts, Body::empty()),
            faults.error_body,
            bytes,
        );
    }
    *node
        .counters
        .lock()
        .expect("counters")
        .by_status
        .entry(status.as_u16())
        .or_default() += 1;
    resp
}

/// Marks every response as coming from the simulator.
pub async fn server_header(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static(crate::SERVER_HEADER),
    );
    resp
}

/// A plain 404 for paths outside the API.
pub async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND.as_u16(),
        "not_found",
        "no such endpoint",
    )
    .into_response()
}
