//! Request bodies: size-limited (axum's body limit, reported as 413 in the error envelope),
//! nesting-limited (a deeply nested document costs stack and time before any validation
//! runs), and decoded into `serde_json` values that handlers check member by member so that
//! errors can name a JSON Pointer.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Largest accepted request body (firmware images included).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Deepest accepted JSON nesting (the deepest Watcher object is about 8 levels).
pub const MAX_JSON_DEPTH: usize = 32;

/// The raw body, with the limit rejection turned into the envelope.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {MAX_BODY_BYTES} bytes"),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                e.body_text(),
            )),
        }
    }
}

/// A JSON body: `None` when empty or the literal `null` (what the SDK sends on body-less
/// POSTs), else the parsed value.
pub struct JsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl JsonBody {
    /// The body as an object; a missing body is an error here.
    pub fn object(self) -> Result<Map<String, Value>, ApiError> {
        match self.0 {
            Some(Value::Object(m)) => Ok(m),
            None => Err(ApiError::invalid_body("", "a JSON object body is required")),
            Some(_) => Err(ApiError::invalid_body("", "the body must be a JSON object")),
        }
    }
}

/// Parses a JSON body after checking its nesting depth.
pub fn parse_json(bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if depth(bytes) > MAX_JSON_DEPTH {
        return Err(ApiError::invalid_body(
            "",
            format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Null) => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(ApiError::invalid_body("", format!("malformed JSON: {e}"))),
    }
}

/// Maximum bracket nesting outside strings (a cheap pre-scan, no allocation).
fn depth(bytes: &[u8]) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match b {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                d += 1;
                max = max.max(d);
            }
            b']' | b'}' => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Decodes a whole object as `T`, naming the member that failed when serde says which.
pub fn decode<T: serde::de::DeserializeOwned>(
    value: Value,
    pointer_prefix: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        // serde_json names unknown variants and type mismatches but not their path; the
        // message is precise enough for a person, the pointer names the object.
        ApiError::invalid_body(pointer_prefix, msg)
    })
}

/// Takes an identity member (a stream's `name`, a streamer's `hostname`, an `id`, …) out of
/// a save body. Generated clients always send their schema's required members, so on a
/// partial save the identity arrives empty (`""`, `0`) or null: that means the object the
/// path names, like an absent member. Only a different, non-empty identity is refused,
/// since a save never renames.
pub fn take_identity(
    obj: &mut Map<String, Value>,
    key: &str,
    path_value: &str,
) -> Result<(), ApiError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() || s == path_value => Ok(()),
        Some(Value::Number(n)) if n.as_i64() == Some(0) || n.to_string() == path_value => Ok(()),
        Some(_) => Err(ApiError::invalid_body(
            &format!("/{key}"),
            format!("`{key}` must be empty or equal the {key} in the path"),
        )),
    }
}

/// Drops a required member that a generated client sends empty on a partial save
/// (`""`, `0`), so the stored value stays; a non-empty value is left for the handler.
pub fn drop_empty(obj: &mut Map<String, Value>, key: &str) {
    let empty = match obj.get(key) {
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        _ => false,
    };
    if empty {
        obj.remove(key);
    }
}

pub use crate::domain::merge_patch::merge;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(depth(br#"{"a":"[[[[{{{","b":[1,[2]]}"#), 3);
        assert_eq!(depth(br#""\"[""#), 0);
    }

    #[test]
    fn null_and_empty_bodies_are_absent() {
        assert_eq!(parse_json(b"").unwrap(), None);
        assert_eq!(parse_json(b" null ").unwrap(), None);
        assert!(parse_json(b"{").is_err());
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(parse_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn empty_identities_mean_the_path() {
        let body = |v: Value| v.as_object().unwrap().clone();
        for ok in [
            json!({}),
            json!({"name": null}),
            json!({"name": ""}),
            json!({"name": "cam"}),
        ] {
            let mut b = body(ok.clone());
            assert!(take_identity(&mut b, "name", "cam").is_ok(), "{ok}");
            assert!(b.is_empty());
        }
        for ok in [json!({"id": 0}), json!({"id": 7})] {
            assert!(
                take_identity(&mut body(ok.clone()), "id", "7").is_ok(),
                "{ok}"
            );
        }
        for bad in [
            json!({"name": "other"}),
            json!({"name": 3}),
            json!({"id": 8}),
        ] {
            let mut b = body(bad.clone());
            assert!(
                take_identity(&mut b, bad.as_object().unwrap().keys().next().unwrap(), "7")
                    .is_err(),
                "{bad}"
            );
        }
        let mut b = body(json!({"title": "", "x": 1}));
        drop_empty(&mut b, "title");
        assert_eq!(Value::Object(b), json!({"x": 1}));
    }
}
