//! Names: Watcher names (stream names with `/`, hostnames, logins) versus Kubernetes object
//! names (DNS-1123 subdomains), and stream paths with `/` in them.

use percent_encoding::percent_decode_str;

pub use crate::domain::names::free_object_name;

/// Whether `name` is a valid Watcher stream name (see [`crate::domain::validate::stream_name`]).
pub fn valid_stream_name(name: &str) -> bool {
    crate::domain::validate::stream_name(name)
}

pub use crate::domain::validate::STREAM_NAME_RULE;

/// Sub-resources of a stream, by their last path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamPath {
    /// `/streams/{name}`.
    Stream,
    /// `/streams/{name}/layouts`.
    Layouts,
    /// `/streams/{name}/preview_layout_change`.
    Preview,
    /// `/streams/{name}/camera_config`.
    CameraConfig,
    /// `/streams/{name}/firmware_update`.
    Firmware,
    /// `/streams/{name}/reboot`.
    Reboot,
    /// `/streams/{name}/auth`.
    Auth,
}

/// Splits the raw (still percent-encoded) path after `/streams/` into the stream name and
/// the sub-resource. The SDK inserts names verbatim, so `mylive/bunny/layouts` arrives as
/// three segments: a known last segment is the sub-resource, the rest is the name. A `/`
/// sent as `%2F` is part of the name whatever follows.
pub fn split_stream_path(raw: &str) -> Option<(String, StreamPath)> {
    let raw = raw.trim_end_matches('/');
    let (name, sub) = match raw.rsplit_once('/') {
        Some((head, last)) => match last {
            "layouts" => (head, StreamPath::Layouts),
            "preview_layout_change" => (head, StreamPath::Preview),
            "camera_config" => (head, StreamPath::CameraConfig),
            "firmware_update" => (head, StreamPath::Firmware),
            "reboot" => (head, StreamPath::Reboot),
            "auth" => (head, StreamPath::Auth),
            _ => (raw, StreamPath::Stream),
        },
        None => (raw, StreamPath::Stream),
    };
    let decoded = percent_decode_str(name).decode_utf8().ok()?.into_owned();
    (!decoded.is_empty()).then_some((decoded, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_paths_split_on_known_suffixes() {
        use StreamPath::*;
        assert_eq!(split_stream_path("a"), Some(("a".into(), Stream)));
        assert_eq!(split_stream_path("a/b/auth"), Some(("a/b".into(), Auth)));
        assert_eq!(
            split_stream_path("mylive/bunny/layouts"),
            Some(("mylive/bunny".into(), Layouts))
        );
        assert_eq!(
            split_stream_path("mylive%2Fbunny"),
            Some(("mylive/bunny".into(), Stream))
        );
        assert_eq!(
            split_stream_path("x%2Flayouts"),
            Some(("x/layouts".into(), Stream))
        );
        assert_eq!(
            split_stream_path("a/b/camera_config"),
            Some(("a/b".into(), CameraConfig))
        );
        assert_eq!(
            split_stream_path("layouts"),
            Some(("layouts".into(), Stream))
        );
    }

    #[test]
    fn stream_name_rules() {
        assert!(valid_stream_name("mylive/bunny"));
        assert!(!valid_stream_name("a b"));
        assert!(!valid_stream_name(""));
        assert!(!valid_stream_name("/a"));
    }
}
