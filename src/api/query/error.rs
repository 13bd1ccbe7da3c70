//! Query errors: always a client mistake (HTTP 400), always naming the query parameter so
//! the facade can fill `source.parameter` of the Watcher error envelope.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{parameter}`: {kind}")]
pub struct QueryError {
    /// The query parameter exactly as the client spelled it (e.g. `title_likee`).
    pub parameter: String,
    pub kind: QueryErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryErrorKind {
    #[error("unknown query parameter")]
    UnknownParameter,
    #[error("given more than once")]
    Repeated,
    #[error("invalid value: {0}")]
    InvalidValue(String),
    #[error("malformed cursor")]
    MalformedCursor,
    #[error("cursor was issued for a different sort order")]
    CursorSortMismatch,
}

impl QueryError {
    pub(crate) fn new(parameter: impl Into<String>, kind: QueryErrorKind) -> Self {
        Self {
            parameter: parameter.into(),
            kind,
        }
    }

    pub(crate) fn invalid(parameter: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(parameter, QueryErrorKind::InvalidValue(why.into()))
    }

    /// Every query error is the client's fault.
    pub fn status(&self) -> u16 {
        400
    }

    /// Stable application error code for the envelope's `code` member.
    pub fn code(&self) -> &'static str {
        match self.kind {
            QueryErrorKind::UnknownParameter => "unknown_parameter",
            QueryErrorKind::Repeated => "repeated_parameter",
            QueryErrorKind::InvalidValue(_) => "invalid_parameter",
            QueryErrorKind::MalformedCursor | QueryErrorKind::CursorSortMismatch => {
                "invalid_cursor"
            }
        }
    }

    /// The Watcher error envelope (reference §2.7); `status` is a string there.
    pub fn to_watcher_error(&self) -> Value {
        json!({
            "errors": [{
                "status": self.status().to_string(),
                "code": self.code(),
                "title": self.to_string(),
                "source": { "parameter": self.parameter },
            }]
        })
    }
}
