//! The node API routes (`/streamer/api/v3`, also served under `/flussonic/api/v3`), the
//! authentication middleware, and the top-level router with the `/_sim` control routes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

use crate::auth;
use crate::control::{self, Ctl};
use crate::error::ApiError;
use crate::faults;
use crate::node::Node;

/// Address of the client of a connection (set by the accept loop).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

type Params = Query<Vec<(String, String)>>;

/// Decodes `%XX` escapes.
pub fn percent_decode(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(ApiError::new(
                    400,
                    "invalid_path",
                    "bad percent-encoding in the path",
                ));
            };
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::new(400, "invalid_path", "path is not UTF-8"))
}

fn parse_body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            400,
            "malformed_json",
            format!("request body is not valid JSON: {e}"),
        )
    })
}

fn reply(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn auth_mw(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let probe = req.uri().path().starts_with("/monitoring/");
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let now_s = node.now() / 1000;
    let verdict = {
        let st = node.lock();
        if probe && !st.beh.probes_require_auth {
            Ok(())
        } else {
            auth::check(&st, req.headers(), peer, write, now_s)
        }
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn streams_list(State(node): State<Arc<Node>>, Query(params): Params) -> Response {
    reply(node.streams_list(&params))
}

async fn stream_any(
    State(node): State<Arc<Node>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let raw = uri.path().strip_prefix("/streams/").unwrap_or("");
    if let (Some(stream), true) = (raw.strip_suffix("/firmware_update"), method == Method::PUT) {
        return crate::firmware::upload(&node, stream, uri.query(), &body);
    }
    let (raw, stop) = match raw.strip_suffix("/stop") {
        Some(r) if method == Method::POST => (r, true),
        _ => (raw, false),
    };
    let raw_slash = node.lock().beh.raw_slash_names;
    if raw.is_empty() || (raw.contains('/') && !raw_slash) {
        return ApiError::not_found(format!("stream {raw}")).into_response();
    }
    let name = match percent_decode(raw) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    reply(match (method, stop) {
        (Method::GET, _) => node.stream_get(&name),
        (Method::PUT, _) => parse_body(&body).and_then(|b| node.stream_save(&name, &b)),
        (Method::DELETE, _) => node.stream_delete(&name),
        (Method::POST, true) => node.stream_stop(&name),
        _ => Err(ApiError::new(
            405,
            "method_not_allowed",
            "method not allowed",
        )),
    })
}

async fn config_get(State(node): State<Arc<Node>>) -> Response {
    Json(node.config_get()).into_response()
}

async fn config_put(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    reply(parse_body(&body).and_then(|b| node.config_put(&b)))
}

async fn config_validate(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    reply(parse_body(&body).map(|b| node.config_validate(&b)))
}

async fn config_stats(State(node): State<Arc<Node>>) -> Response {
    let now = node.now();
    let st = node.lock();
    Json(node.server_stats(&st, now)).into_response()
}

async fn liveness(State(node): State<Arc<Node>>) -> Response {
    Json(node.whoami()).into_response()
}

async fn readiness(State(node): State<Arc<Node>>) -> Response {
    reply(node.readiness())
}

async fn tokens(State(node): State<Arc<Node>>) -> Response {
    Json(node.tokens_list()).into_response()
}

async fn collection_list(State(node): State<Arc<Node>>, uri: Uri) -> Response {
    let kind = uri.path().rsplit('/').next().unwrap_or("").to_string();
    reply(node.collection_list(&kind))
}

async fn collection_item(
    State(node): State<Arc<Node>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix("/cluster/").unwrap_or("");
    let Some((kind, raw)) = path.split_once('/') else {
        return faults::not_found().await;
    };
    let key = match percent_decode(raw) {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => return faults::not_found().await,
        Err(e) => return e.into_response(),
    };
    reply(match method {
        Method::GET => node.collection_get(kind, &key),
        Method::PUT => parse_body(&body).and_then(|b| node.collection_put(kind, &key, &b)),
        Method::DELETE => node.collection_delete(kind, &key),
        _ => Err(ApiError::new(
            405,
            "method_not_allowed",
            "method not allowed",
        )),
    })
}

fn api_routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/streams", get(streams_list))
        .route("/streams/{*rest}", any(stream_any))
        .route(
            "/config",
            get(config_get).put(config_put).post(config_validate),
        )
        .route("/config/stats", get(config_stats))
        .route("/monitoring/liveness", get(liveness))
        .route("/monitoring/readiness", get(readiness))
        .route("/api_tokens", get(tokens))
        .route("/cluster/peers", get(collection_list))
        .route("/cluster/sources", get(collection_list))
        .route("/cluster/peers/{*key}", any(collection_item))
        .route("/cluster/sources/{*key}", any(collection_item))
        .fallback(faults::not_found)
        .layer(middleware::from_fn_with_state(node.clone(), auth_mw))
        .layer(middleware::from_fn_with_state(
            node.clone(),
            faults::middleware,
        ))
        .with_state(node)
}

/// Everything one node serves on its port.
pub fn router(node: Arc<Node>) -> Router {
    let api = api_routes(node.clone());
    Router::new()
        .nest("/streamer/api/v3", api.clone())
        .nest("/flussonic/api/v3", api)
        .nest("/_sim", control::router(Ctl { node, local: true }))
        .fallback(faults::not_found)
        .layer(middleware::map_response(faults::server_header))
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes() {
        assert_eq!(percent_decode("a%2Fb").unwrap(), "a/b");
        assert_eq!(percent_decode("m4f%3A%2F%2Fh%3A1").unwrap(), "m4f://h:1");
        assert_eq!(percent_decode("plain").unwrap(), "plain");
        assert!(percent_decode("bad%2").is_err());
        assert!(percent_decode("bad%zz").is_err());
    }
}
