//! Errors of node calls, sorted so a reconciler can decide: retry (transient), wait for new
//! credentials, record a validation failure, or report a misconfigured node.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// What was being done, where: the identifiers a person needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Node hostname.
    pub node: String,
    /// Operation id (`stream_save`, `config_stats`, …).
    pub op: &'static str,
    /// Stream name, for stream operations.
    pub stream: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stream {
            Some(s) => write!(f, "{} of stream {s} on node {}", self.op, self.node),
            None => write!(f, "{} on node {}", self.op, self.node),
        }
    }
}

fn pointer_suffix(pointer: &Option<String>, parameter: &Option<String>) -> String {
    match (pointer, parameter) {
        (Some(p), _) => format!(" at {p}"),
        (None, Some(q)) => format!(" (query parameter {q})"),
        _ => String::new(),
    }
}

/// A failed node call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect, or the connection broke (transient).
    #[error("{target}: node unreachable: {message}")]
    Unreachable {
        /// Where.
        target: Box<Target>,
        /// Transport error text.
        message: String,
    },
    /// No complete answer within the request timeout (transient).
    #[error("{target}: no answer within {after:?}")]
    Timeout {
        /// Where.
        target: Box<Target>,
        /// The timeout.
        after: Duration,
    },
    /// 401: credentials missing or wrong. Retrying without new credentials is pointless.
    #[error("{target}: credentials rejected (HTTP {status}): {message}")]
    Unauthorized {
        /// Where.
        target: Box<Target>,
        /// HTTP status.
        status: u16,
        /// The node's message.
        message: String,
    },
    /// 403: read-only credentials, or the caller is outside `api_allowed_from`.
    #[error("{target}: forbidden (HTTP {status}): {message}")]
    Forbidden {
        /// Where.
        target: Box<Target>,
        /// HTTP status.
        status: u16,
        /// The node's message.
        message: String,
    },
    /// 404: the stream (peer, source…) does not exist.
    #[error("{target}: not found: {message}")]
    NotFound {
        /// Where.
        target: Box<Target>,
        /// The node's message.
        message: String,
    },
    /// Another 4xx, usually 400 validation: terminal until the input changes.
    #[error("{target}: rejected (HTTP {status}){}: {message}", pointer_suffix(.pointer, .parameter))]
    Rejected {
        /// Where.
        target: Box<Target>,
        /// HTTP status.
        status: u16,
        /// The node's error code, when it sent one.
        code: Option<String>,
        /// The node's validation message (or its raw body).
        message: String,
        /// JSON pointer into the request body (`errors[].source.pointer`).
        pointer: Option<String>,
        /// Offending query parameter (`errors[].source.parameter`).
        parameter: Option<String>,
    },
    /// The node has `config_external` set and refuses stream writes: a misconfigured node.
    #[error("{target}: the node has config_external set and refuses API changes: {message}")]
    ConfigExternal {
        /// Where.
        target: Box<Target>,
        /// The node's message.
        message: String,
    },
    /// 5xx (transient).
    #[error("{target}: server error (HTTP {status}): {message}")]
    ServerError {
        /// Where.
        target: Box<Target>,
        /// HTTP status.
        status: u16,
        /// The node's message (or its raw body).
        message: String,
    },
    /// A success status with a body that is not what the API promises.
    #[error("{target}: cannot decode the answer: {message}")]
    Decode {
        /// Where.
        target: Box<Target>,
        /// Decoder message.
        message: String,
    },
}

impl Error {
    /// Bounded label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::ConfigExternal { .. } => "config_external",
            Self::ServerError { .. } => "server_error",
            Self::Decode { .. } => "decode",
        }
    }

    /// Worth retrying with backoff: transport failures, timeouts and 5xx. Never 4xx.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::ServerError { .. }
        )
    }

    /// Where it happened.
    pub fn target(&self) -> &Target {
        match self {
            Self::Unreachable { target, .. }
            | Self::Timeout { target, .. }
            | Self::Unauthorized { target, .. }
            | Self::Forbidden { target, .. }
            | Self::NotFound { target, .. }
            | Self::Rejected { target, .. }
            | Self::ConfigExternal { target, .. }
            | Self::ServerError { target, .. }
            | Self::Decode { target, .. } => target,
        }
    }

    /// HTTP status, when the node answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status, .. }
            | Self::Forbidden { status, .. }
            | Self::Rejected { status, .. }
            | Self::ServerError { status, .. } => Some(*status),
            Self::NotFound { .. } => Some(404),
            Self::ConfigExternal { .. } => Some(400),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize, Default)]
struct ErrorItem {
    code: Option<String>,
    title: Option<String>,
    source: Option<ErrorSource>,
}

#[derive(Deserialize, Default)]
struct ErrorSource {
    pointer: Option<String>,
    parameter: Option<String>,
}

/// What an error body says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// First error's code.
    pub code: Option<String>,
    /// Titles joined, or the raw body text.
    pub message: String,
    /// First `source.pointer`.
    pub pointer: Option<String>,
    /// First `source.parameter`.
    pub parameter: Option<String>,
}

/// Parses `{"errors":[…]}`; falls back to the raw text (trimmed, at most 512 characters).
pub fn parse_error_body(body: &[u8]) -> ErrorBody {
    if let Ok(env) = serde_json::from_slice::<Envelope>(body)
        && let Some(first) = env.errors.first()
    {
        let titles: Vec<String> = env
            .errors
            .iter()
            .filter_map(|e| e.title.clone().or_else(|| e.code.clone()))
            .collect();
        let source = first.source.as_ref();
        return ErrorBody {
            code: first.code.clone(),
            message: titles.join("; "),
            pointer: source.and_then(|s| s.pointer.clone()),
            parameter: source.and_then(|s| s.parameter.clone()),
        };
    }
    // Second shape used by config validation: {"error": "...", "detail": ..., "path": [...]}.
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body)
        && let Some(e) = m.get("error").and_then(Value::as_str)
    {
        let detail = m.get("detail").map(|d| {
            d.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| d.to_string())
        });
        return ErrorBody {
            code: Some(e.to_string()),
            message: detail
                .map(|d| format!("{e}: {d}"))
                .unwrap_or_else(|| e.to_string()),
            ..ErrorBody::default()
        };
    }
    let text = String::from_utf8_lossy(body);
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    ErrorBody {
        message: collapsed.chars().take(512).collect(),
        ..ErrorBody::default()
    }
}

/// Maps a non-success status and its body to an error.
pub fn from_status(target: Target, status: u16, body: &[u8]) -> Error {
    let target = Box::new(target);
    let b = parse_error_body(body);
    let message = if b.message.is_empty() {
        format!("HTTP {status}")
    } else {
        b.message.clone()
    };
    let mentions_external = |s: &str| s.to_ascii_lowercase().contains("config_external");
    match status {
        401 => Error::Unauthorized {
            target,
            status,
            message,
        },
        403 => Error::Forbidden {
            target,
            status,
            message,
        },
        404 => Error::NotFound { target, message },
        400 if b.code.as_deref().is_some_and(mentions_external) || mentions_external(&message) => {
            Error::ConfigExternal { target, message }
        }
        s if s >= 500 => Error::ServerError {
            target,
            status,
            message,
        },
        _ => Error::Rejected {
            target,
            status,
            code: b.code,
            message,
            pointer: b.pointer,
            parameter: b.parameter,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Target {
        Target {
            node: "n1".into(),
            op: "stream_save",
            stream: Some("cam".into()),
        }
    }

    #[test]
    fn envelope_and_fallbacks() {
        let b = parse_error_body(br#"{"errors":[{"status":"400","code":"validation_error","title":"url is required","source":{"pointer":"/inputs/0/url"}}]}"#);
        assert_eq!(b.pointer.as_deref(), Some("/inputs/0/url"));
        assert_eq!(b.message, "url is required");
        let b = parse_error_body(b"<html><body><h1>502 Bad Gateway</h1></body></html>");
        assert!(b.message.contains("502 Bad Gateway"));
        let b = parse_error_body(br#"{"errors":[]}"#);
        assert_eq!(b.message, r#"{"errors":[]}"#);
    }

    #[test]
    fn statuses_map_to_categories() {
        let cat = |s, body: &[u8]| from_status(t(), s, body).category();
        assert_eq!(cat(401, b""), "unauthorized");
        assert_eq!(cat(403, b""), "forbidden");
        assert_eq!(cat(404, b""), "not_found");
        assert_eq!(cat(400, b"bad"), "rejected");
        assert_eq!(cat(409, b""), "rejected");
        assert_eq!(
            cat(
                400,
                br#"{"errors":[{"code":"config_external","title":"x"}]}"#
            ),
            "config_external"
        );
        assert_eq!(
            cat(400, b"streams are managed by config_external"),
            "config_external"
        );
        assert_eq!(cat(503, b""), "server_error");
        assert!(from_status(t(), 502, b"").is_transient());
        assert!(!from_status(t(), 400, b"").is_transient());
        let e = from_status(
            t(),
            400,
            br#"{"errors":[{"title":"bad","source":{"pointer":"/dvr"}}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "stream_save of stream cam on node n1: rejected (HTTP 400) at /dvr: bad"
        );
    }
}
