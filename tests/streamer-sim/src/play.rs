//! Play authorization (SIMULATOR): what a Flussonic node does when a viewer opens a stream
//! whose config has `on_play: {url}` — it asks that backend with the session's parameters
//! (`name`, `token`, `ip`, `proto`/`type`, `request_type`, `media_request`, `session_id`,
//! `request_number`) and serves the play only on a 200. `media_request` follows Flussonic's
//! documented mapping of request paths (DVR and authorization page): `index.m3u8` is
//! `hls_live-hls_mbr_playlist`, `index-<from>-<duration>.m3u8` is
//! `dvr_session-hls_mbr_playlist-<from>-<duration>`, `archive-<from>-<duration>.mp4` is
//! `dvr_handler-mp4-<from>-<duration>`, and so on. A stream without `on_play` plays freely.
//! The backend is called over plain HTTP (the simulator speaks nothing else).

use std::time::Duration;

/// What a play request led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlayOutcome {
    /// The node has no such stream (404 to the viewer).
    NoStream,
    /// Served: no `on_play`, or the backend answered 200.
    Allowed,
    /// Refused (403 to the viewer): the backend's status, or None when it could not be asked.
    Denied(Option<u16>),
}

/// `(stream name, media_request, proto)` of a play path such as `cam/index.m3u8`.
pub fn media_request(path: &str) -> Option<(String, String, &'static str)> {
    let (name, file) = path.trim_start_matches('/').rsplit_once('/')?;
    let nums = |s: &str| -> Option<Vec<i64>> { s.split('-').map(|n| n.parse().ok()).collect() };
    let (mr, proto) = if file == "index.m3u8" {
        ("hls_live-hls_mbr_playlist".to_string(), "hls")
    } else if file == "mono.m3u8" {
        ("hls_live-hls_playlist".to_string(), "hls")
    } else if file == "mpegts" {
        ("mpegts_handler-request".to_string(), "mpegts")
    } else if let Some(rest) = file
        .strip_prefix("timeshift_rel-")
        .and_then(|r| r.strip_suffix(".m3u8"))
    {
        (
            format!("hls_timeshift_playlist-hls_timeshift_rel-{rest}"),
            "hls",
        )
    } else if let Some(rest) = file
        .strip_prefix("timeshift_abs-")
        .and_then(|r| r.strip_suffix(".m3u8"))
    {
        (
            format!("hls_timeshift_playlist-hls_timeshift_abs-{rest}"),
            "hls",
        )
    } else if let Some(r) = file
        .strip_prefix("index-")
        .and_then(|r| r.strip_suffix(".m3u8"))
    {
        nums(r).filter(|n| n.len() == 2)?;
        (format!("dvr_session-hls_mbr_playlist-{r}"), "hls")
    } else if let Some(r) = file
        .strip_prefix("archive-")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        nums(r).filter(|n| n.len() == 2)?;
        (format!("dvr_handler-mp4-{r}"), "mp4")
    } else if let Some(r) = file
        .strip_prefix("archive-")
        .and_then(|r| r.strip_suffix(".ts"))
    {
        nums(r).filter(|n| n.len() == 2)?;
        (format!("dvr_stream_handler-ts_file-{r}"), "mpegts")
    } else {
        return None;
    };
    Some((name.to_string(), mr, proto))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The backend URL with the session's parameters appended.
pub fn backend_url(base: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", query.join("&"))
}

/// `GET url` over plain HTTP/1.1: the status code, or None when the backend cannot be reached.
pub async fn http_get_status(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: streamer-sim\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        // Readiness plus try_read/try_write: the workspace's tokio has no io-util.
        let conn = tokio::net::TcpStream::connect(authority).await.ok()?;
        let mut out = request.as_bytes();
        while !out.is_empty() {
            conn.writable().await.ok()?;
            match conn.try_write(out) {
                Ok(n) => out = &out[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            conn.readable().await.ok()?;
            match conn.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        let line = String::from_utf8_lossy(&head);
        line.split_whitespace().nth(1)?.parse::<u16>().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_flussonic_media_requests() {
        let m = |p: &str| media_request(p).map(|(n, mr, _)| (n, mr));
        assert_eq!(
            m("cam/index.m3u8"),
            Some(("cam".into(), "hls_live-hls_mbr_playlist".into()))
        );
        assert_eq!(
            m("a/b/index-1362504585-3600.m3u8"),
            Some((
                "a/b".into(),
                "dvr_session-hls_mbr_playlist-1362504585-3600".into()
            ))
        );
        assert_eq!(
            m("cam/archive-1362504585-3600.mp4"),
            Some(("cam".into(), "dvr_handler-mp4-1362504585-3600".into()))
        );
        assert_eq!(
            m("cam/timeshift_rel-360.m3u8"),
            Some((
                "cam".into(),
                "hls_timeshift_playlist-hls_timeshift_rel-360".into()
            ))
        );
        assert_eq!(m("cam/whatever"), None);
        assert_eq!(
            backend_url("http://h/auth", &[("name", "a/b"), ("token", "x y")]),
            "http://h/auth?name=a%2Fb&token=x%20y"
        );
    }
}
