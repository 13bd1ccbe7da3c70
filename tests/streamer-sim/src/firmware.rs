//! `PUT /streamer/api/v3/streams/{name}/firmware_update?proto=…` — **SIMULATOR ASSUMPTION**:
//! the node API reference has no firmware endpoint; Panoptes' node client forwards the
//! Watcher `stream_firmware_update` here (raw image, `application/octet-stream`). The
//! simulator checks that the stream exists and the protocol is known, records the upload
//! for tests, and answers 204.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::percent_decode;
use crate::error::ApiError;
use crate::node::Node;

/// One firmware image a node received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareUpload {
    /// Stream (camera) name.
    pub stream: String,
    /// Protocol (`iris`, `isapi`, `xm`, `sputnik`).
    pub proto: String,
    /// The image.
    pub image: Vec<u8>,
}

pub(crate) fn upload(node: &Node, raw: &str, query: Option<&str>, body: &Bytes) -> Response {
    let name = match percent_decode(raw) {
        Ok(n) if !n.is_empty() => n,
        Ok(_) => return ApiError::not_found("stream").into_response(),
        Err(e) => return e.into_response(),
    };
    if node.stream_get(&name).is_err() {
        return ApiError::not_found(format!("stream {name}")).into_response();
    }
    let proto = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("proto="))
        .unwrap_or("iris")
        .to_string();
    if !["iris", "isapi", "xm", "sputnik"].contains(&proto.as_str()) {
        return ApiError::new(400, "invalid_proto", "unknown firmware protocol").into_response();
    }
    if body.is_empty() {
        return ApiError::new(400, "empty_image", "firmware image is empty").into_response();
    }
    node.firmware
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(FirmwareUpload {
            stream: name,
            proto,
            image: body.to_vec(),
        });
    StatusCode::NO_CONTENT.into_response()
}
