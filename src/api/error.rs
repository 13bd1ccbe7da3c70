//! The Watcher error envelope (`{"errors":[{status, code, title, source, meta}]}`, reference
//! §2.7) for every failure the facade reports, 404s of unknown routes and oversize bodies
//! included, so SDK clients always find the shape they parse.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde_with::skip_serializing_none;

use super::query::QueryError;

/// Where in the request a problem is.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct ErrorSource {
    /// JSON Pointer (RFC 6901) into the request body.
    pub pointer: Option<String>,
    /// Name of the query (or path) parameter.
    pub parameter: Option<String>,
}

/// One problem.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ErrorObject {
    /// HTTP status as a string (`"404"`).
    pub status: String,
    /// Stable application error code.
    pub code: String,
    /// Human-readable summary.
    pub title: String,
    /// What in the request caused it.
    pub source: Option<ErrorSource>,
    /// Extra information.
    pub meta: Option<std::collections::BTreeMap<String, String>>,
}

/// The error envelope.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ErrorResponse {
    /// One or more problems.
    pub errors: Vec<ErrorObject>,
}

/// A facade error: becomes the envelope with its status.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The problem (boxed: handlers' `Result`s stay small).
    pub object: Box<ErrorObject>,
    /// Seconds the client should wait (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and title.
    pub fn new(status: StatusCode, code: &str, title: impl Into<String>) -> Self {
        Self {
            status,
            object: Box::new(ErrorObject {
                status: status.as_u16().to_string(),
                code: code.to_string(),
                title: title.into(),
                source: None,
                meta: None,
            }),
            retry_after: None,
        }
    }

    /// 400 about a body member (`pointer` is a JSON Pointer such as `/name`).
    pub fn invalid_body(pointer: &str, title: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_body", title).pointer(pointer)
    }

    /// 400 about a query or path parameter.
    pub fn invalid_parameter(parameter: &str, title: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", title).parameter(parameter)
    }

    /// 404 of a named thing.
    pub fn not_found(what: &str, key: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} {key} not found"),
        )
    }

    /// 401.
    pub fn unauthorized(title: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", title)
    }

    /// 403.
    pub fn forbidden(title: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", title)
    }

    /// 500 whose details go to the log, not to the client.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("{context} failed"),
        )
    }

    /// Sets `source.pointer`.
    pub fn pointer(mut self, pointer: &str) -> Self {
        self.object
            .source
            .get_or_insert_with(Default::default)
            .pointer = Some(pointer.into());
        self
    }

    /// Sets `source.parameter`.
    pub fn parameter(mut self, parameter: &str) -> Self {
        self.object
            .source
            .get_or_insert_with(Default::default)
            .parameter = Some(parameter.into());
        self
    }

    /// Maps an API-server error of a write. Validation messages (CEL, schema) are the
    /// client's to read; anything else is logged and reported without details.
    /// An object over the API server's (or etcd's) size limit is the client's 413.
    pub fn from_kube(context: &str, error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) => {
                let code = status.code;
                let message = status.message.clone();
                if code == 413 || too_large(&message) {
                    return Self::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        "the object is too large to store; shorten the longest fields",
                    );
                }
                match code {
                    400 | 422 => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
                    404 => Self::new(StatusCode::NOT_FOUND, "not_found", message),
                    409 => Self::new(StatusCode::CONFLICT, "conflict", message),
                    _ => Self::internal(context, error),
                }
            }
            _ => Self::internal(context, error),
        }
    }

    /// The envelope body.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            errors: vec![(*self.object).clone()],
        }
    }
}

/// Whether an API-server message says the request or object exceeded a size limit
/// (kube-apiserver: "Request entity too large"; etcd: "request is too large").
fn too_large(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("request entity too large") || m.contains("request is too large")
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.object.title)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, e.code(), e.to_string()).parameter(&e.parameter)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(v) = self
            .retry_after
            .and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Handlers' result type.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn size_limits_are_413() {
        for e in [
            api(413, "Request entity too large: limit is 3145728"),
            api(500, "etcdserver: request is too large"),
        ] {
            assert_eq!(
                ApiError::from_kube("x", e).status,
                StatusCode::PAYLOAD_TOO_LARGE
            );
        }
        assert_eq!(
            ApiError::from_kube("x", api(422, "bad")).status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
