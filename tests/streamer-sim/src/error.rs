//! The node's error envelope: `{"errors":[{status, code, title, source:{pointer|parameter}}]}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::schema::Invalid;

/// An API error as the node reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub title: String,
    /// JSON pointer into the request body.
    pub pointer: Option<String>,
    /// Offending query parameter.
    pub parameter: Option<String>,
}

impl ApiError {
    /// Any error.
    pub fn new(status: u16, code: &'static str, title: impl Into<String>) -> Self {
        Self {
            status,
            code,
            title: title.into(),
            pointer: None,
            parameter: None,
        }
    }

    /// 404.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(404, "not_found", format!("{what} not found"))
    }

    /// 400 on a body member.
    pub fn invalid(inv: Invalid) -> Self {
        Self {
            pointer: Some(inv.pointer),
            ..Self::new(400, "validation_error", inv.title)
        }
    }

    /// 400 on a query parameter.
    pub fn bad_parameter(name: &str, title: impl Into<String>) -> Self {
        Self {
            parameter: Some(name.into()),
            ..Self::new(400, "invalid_parameter", title)
        }
    }

    /// The envelope.
    pub fn body(&self) -> Value {
        let mut err =
            json!({"status": self.status.to_string(), "code": self.code, "title": self.title});
        if let Some(p) = &self.pointer {
            err["source"] = json!({"pointer": p});
        } else if let Some(p) = &self.parameter {
            err["source"] = json!({"parameter": p});
        }
        json!({"errors": [err]})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}
