//! The `/_sim` control endpoint: fault switches, behaviour switches, counters, restart,
//! hand edits ("drift"), foreign streams, viewers, silence, credentials and the clock.
//! Served on every node's port under `/_sim/...` and, for the CLI, on a separate control port
//! under `/_sim/nodes/{index|hostname}/...` (the only way to bring a node that is down back).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::faults::{Counters, Faults};
use crate::node::Node;
use crate::options::ArrayMerge;
use crate::store::merge;

/// State of the control routes.
#[derive(Clone)]
pub struct Ctl {
    /// The node controlled.
    pub node: Arc<Node>,
    /// Served on the node's own port: actions that drop connections run just after replying.
    pub local: bool,
}

fn body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::new(400, "malformed_json", e.to_string()))
}

/// Applies a JSON merge patch to a serializable value.
pub fn patched<T: Serialize + DeserializeOwned>(current: &T, patch: &Value) -> Result<T, ApiError> {
    let mut v =
        serde_json::to_value(current).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
    merge(&mut v, patch, ArrayMerge::Replace);
    serde_json::from_value(v).map_err(|e| ApiError::new(400, "validation_error", e.to_string()))
}

fn reply(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A JSON description of the node (faults, behaviour, counters, identity).
pub fn state_of(node: &Node) -> Value {
    let now = node.now();
    let st = node.lock();
    let stats = node.server_stats(&st, now);
    json!({
        "simulator": crate::SERVER_HEADER,
        "hostname": node.hostname,
        "base_url": format!("http://{}", node.addr),
        "up": node.is_up(),
        "server_id": node.server_id,
        "id": st.rt.id,
        "streamer_status": stats["streamer_status"],
        "config_version": stats["config_version"],
        "streams": st.disk.count(),
        "foreign_streams": st.rt.foreign.len(),
        "faults": *node.faults.lock().expect("faults"),
        "behaviour": st.beh,
        "counters": *node.counters.lock().expect("counters"),
    })
}

async fn get_state(State(c): State<Ctl>) -> Response {
    Json(state_of(&c.node)).into_response()
}

async fn get_faults(State(c): State<Ctl>) -> Response {
    Json(c.node.faults.lock().expect("faults").clone()).into_response()
}

async fn put_faults(State(c): State<Ctl>, b: Bytes) -> Response {
    reply(body(&b).and_then(|p| {
        let mut f = c.node.faults.lock().expect("faults");
        *f = patched(&*f, &p)?;
        Ok(serde_json::to_value(&*f).unwrap_or_default())
    }))
}

async fn clear_faults(State(c): State<Ctl>) -> Response {
    *c.node.faults.lock().expect("faults") = Faults::default();
    Json(json!({})).into_response()
}

async fn get_behaviour(State(c): State<Ctl>) -> Response {
    Json(c.node.lock().beh.clone()).into_response()
}

async fn put_behaviour(State(c): State<Ctl>, b: Bytes) -> Response {
    reply(body(&b).and_then(|p| {
        let mut st = c.node.lock();
        st.beh = patched(&st.beh, &p)?;
        Ok(serde_json::to_value(&st.beh).unwrap_or_default())
    }))
}

async fn get_counters(State(c): State<Ctl>) -> Response {
    Json(c.node.counters.lock().expect("counters").clone()).into_response()
}

async fn reset_counters(State(c): State<Ctl>) -> Response {
    let mut cs = c.node.counters.lock().expect("counters");
    let in_flight = cs.in_flight;
    *cs = Counters {
        in_flight,
        ..Counters::default()
    };
    Json(json!({})).into_response()
}

/// Runs a connection-dropping action now, or (on the node's own port) just after replying.
async fn act<F, Fut>(c: &Ctl, f: F) -> Response
where
    F: FnOnce(Arc<Node>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    if c.local {
        let node = c.node.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = f(node).await;
        });
        return (StatusCode::ACCEPTED, Json(json!({"scheduled": true}))).into_response();
    }
    match f(c.node.clone()).await {
        Ok(()) => Json(state_of(&c.node)).into_response(),
        Err(e) => ApiError::new(500, "io", e.to_string()).into_response(),
    }
}

async fn down(State(c): State<Ctl>) -> Response {
    act(&c, |n| async move {
        n.go_down().await;
        Ok(())
    })
    .await
}

async fn up(State(c): State<Ctl>) -> Response {
    act(&c, |n| async move { n.go_up().await }).await
}

async fn restart(State(c): State<Ctl>, b: Bytes) -> Response {
    let broken = match body(&b) {
        Ok(v) => v.get("broken_config").cloned().map(|e| if e.is_object() { e } else { json!({"error": "syntax_error", "line": 1, "col": 1, "path": [], "detail": "broken config"}) }),
        Err(e) => return e.into_response(),
    };
    act(&c, move |n| async move { n.restart(broken).await }).await
}

async fn fix_config(State(c): State<Ctl>) -> Response {
    act(&c, |n| async move { n.restart(None).await }).await
}

async fn drift_config(State(c): State<Ctl>, b: Bytes) -> Response {
    reply(body(&b).map(|p| {
        c.node.drift_config(&p);
        json!({})
    }))
}

async fn drift_stream(State(c): State<Ctl>, Path(name): Path<String>, b: Bytes) -> Response {
    reply(
        body(&b)
            .and_then(|p| c.node.drift_stream(&name, &p))
            .and_then(|_| c.node.stream_get(&name)),
    )
}

async fn drift_delete(State(c): State<Ctl>, Path(name): Path<String>) -> Response {
    if c.node.drift_delete_stream(&name) {
        Json(json!({})).into_response()
    } else {
        ApiError::not_found(format!("stream {name}")).into_response()
    }
}

async fn foreign(State(c): State<Ctl>, Path(name): Path<String>, b: Bytes) -> Response {
    reply(body(&b).and_then(|mut p| {
        let named_by = p
            .get("named_by")
            .and_then(Value::as_str)
            .unwrap_or("user")
            .to_string();
        if named_by != "user" && named_by != "remote" {
            return Err(ApiError::new(
                400,
                "validation_error",
                "named_by must be user or remote",
            ));
        }
        if let Some(m) = p.as_object_mut() {
            m.remove("named_by");
        }
        c.node.add_foreign(&name, &named_by, &p)?;
        c.node.stream_get(&name)
    }))
}

async fn play(State(c): State<Ctl>, Path(name): Path<String>, b: Bytes) -> Response {
    reply(body(&b).and_then(|p| {
        c.node
            .play(&name, p.get("clients").and_then(Value::as_i64).unwrap_or(1))?;
        c.node.stream_get(&name)
    }))
}

async fn silence(State(c): State<Ctl>, Path(name): Path<String>, b: Bytes) -> Response {
    reply(body(&b).and_then(|p| {
        c.node.silence(
            &name,
            p.get("silent").and_then(Value::as_bool).unwrap_or(true),
        )?;
        c.node.stream_get(&name)
    }))
}

async fn auth(State(c): State<Ctl>, b: Bytes) -> Response {
    reply(body(&b).map(|mut p| {
        if let Some(tokens) = p.as_object_mut().and_then(|m| m.remove("tokens")) {
            c.node.lock().tokens = tokens
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
        }
        let patch: serde_json::Map<String, Value> = p
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| {
                        matches!(
                            k.as_str(),
                            "edit_auth" | "view_auth" | "cluster_key" | "api_allowed_from"
                        )
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if !patch.is_empty() {
            c.node.drift_config(&Value::Object(patch));
        }
        json!({})
    }))
}

async fn advance(State(c): State<Ctl>, b: Bytes) -> Response {
    reply(body(&b).map(|p| {
        let ms = p.get("ms").and_then(Value::as_u64).unwrap_or(0);
        c.node.clock.advance(Duration::from_millis(ms));
        json!({"offset_ms": c.node.clock.offset().as_millis() as u64})
    }))
}

async fn disk(State(c): State<Ctl>) -> Response {
    let st = c.node.lock();
    let streams: serde_json::Map<String, Value> = st
        .disk
        .streams()
        .map(|(n, s)| (n.clone(), s.config.clone()))
        .collect();
    Json(json!({"server": st.disk.server, "streams": streams})).into_response()
}

/// Control routes of one node (relative; nest them under `/_sim` or `/_sim/nodes/{id}`).
pub fn router(ctl: Ctl) -> Router {
    Router::new()
        .route("/state", get(get_state))
        .route(
            "/faults",
            get(get_faults).put(put_faults).delete(clear_faults),
        )
        .route("/behaviour", get(get_behaviour).put(put_behaviour))
        .route("/counters", get(get_counters).delete(reset_counters))
        .route("/down", post(down))
        .route("/up", post(up))
        .route("/restart", post(restart))
        .route("/fix_config", post(fix_config))
        .route("/drift/config", put(drift_config))
        .route(
            "/drift/streams/{*name}",
            put(drift_stream).delete(drift_delete),
        )
        .route("/foreign/{*name}", post(foreign))
        .route("/play/{*name}", post(play))
        .route("/silence/{*name}", post(silence))
        .route("/auth", put(auth))
        .route("/clock/advance", post(advance))
        .route("/disk", get(disk))
        .with_state(ctl)
}
