//! Names: Watcher names (stream names with `/`, hostnames, logins) versus Kubernetes object
//! names (DNS-1123 subdomains), and stream paths with `/` in them.

use percent_encoding::percent_decode_str;

/// A Kubernetes object name for a Watcher name: lower-cased, characters outside `[a-z0-9.-]`
/// replaced by `-`; when that changed anything (or the name is too long), a digest of the
/// exact name is appended, so `Cam/1` and `cam-1` never collide.
pub fn object_name(prefix: &str, watcher: &str) -> String {
    let mut base: String = watcher
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let exact = base == watcher && !watcher.is_empty() && watcher.len() + prefix.len() <= 200;
    base.truncate(180);
    let base = base.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut out = format!("{prefix}{base}");
    if !exact || base.is_empty() {
        out = format!("{}-{:08x}", out.trim_end_matches('-'), fnv32(watcher));
    }
    out.trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Whether `name` is a valid Watcher stream name (the Stream CRD's `spec.name` rule).
pub fn valid_stream_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~/-".contains(&b))
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
}

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
    fn object_names_are_dns_and_distinct() {
        assert_eq!(object_name("", "cam1"), "cam1");
        let a = object_name("", "Cam/1");
        let b = object_name("", "cam-1");
        assert_ne!(a, b);
        assert!(a.starts_with("cam-1-"));
        assert!(
            object_name("", "/")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        );
        assert!(object_name("", &"x".repeat(300)).len() < 200);
    }

    #[test]
    fn stream_paths_split_on_known_suffixes() {
        use StreamPath::*;
        assert_eq!(split_stream_path("a"), Some(("a".into(), Stream)));
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
