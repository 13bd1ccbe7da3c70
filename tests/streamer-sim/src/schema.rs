//! The node's schema, reduced to what validation needs: known members (unknown ones are
//! dropped, never stored or echoed), read-only members (ignored in requests), JSON types,
//! enums and bounds from §4 of the reference. `clean` validates and prunes in one pass.

use serde_json::{Map, Value};

/// Type of one member.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// Anything.
    Any,
    /// Any object.
    AnyObj,
    /// A string.
    Str,
    /// A string with a length range (characters).
    Len(usize, usize),
    /// An integer.
    Int,
    /// An integer within bounds.
    Range(i64, i64),
    /// Any number.
    Num,
    /// A boolean.
    Bool,
    /// One of the strings.
    Enum(&'static [&'static str]),
    /// One of the strings, or `false`.
    EnumOrFalse(&'static [&'static str]),
    /// Port number or `host:port`.
    IntOrStr,
    /// Seconds, or `false`.
    IntOrFalse,
    /// A string, or `false`.
    StrOrFalse,
    /// An object with these members.
    Obj(&'static [F]),
    /// A list.
    Arr(&'static Ty),
    /// A string-keyed map.
    Map(&'static Ty),
}

/// A member of an object.
#[derive(Clone, Copy, Debug)]
pub struct F {
    /// Wire name.
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// Required (inside its object).
    pub req: bool,
    /// Read-only: dropped from requests.
    pub ro: bool,
}

const fn f(name: &'static str, ty: Ty) -> F {
    F {
        name,
        ty,
        req: false,
        ro: false,
    }
}
const fn req(name: &'static str, ty: Ty) -> F {
    F {
        name,
        ty,
        req: true,
        ro: false,
    }
}
const fn ro(name: &'static str) -> F {
    F {
        name,
        ty: Ty::Any,
        req: false,
        ro: true,
    }
}

const PERCENT: Ty = Ty::Range(0, 100);
const OUTPUT_AUDIO: &[&str] = &["keep", "aac", "add_aac", "aac_silence", "keep_silence"];
const LOGLEVEL: &[&str] = &[
    "none", "debug", "info", "notice", "warning", "error", "alert", "critical",
];

const SRT: &[F] = &[
    f("port", Ty::IntOrStr),
    f("passphrase", Ty::Len(10, 79)),
    f("latency", Ty::Num),
    f("streamid", Ty::Len(0, 512)),
    f("version", Ty::Any),
    f("minversion", Ty::Any),
    f("enforcedencryption", Ty::Bool),
    f("linger", Ty::Int),
    f("timeout", Ty::IntOrFalse),
];

/// `StreamInput`.
pub const INPUT: &[F] = &[
    req("url", Ty::Len(1, 4096)),
    f("priority", Ty::Int),
    f("comment", Ty::Str),
    f("source_timeout", Ty::IntOrFalse),
    f("video_timeout", Ty::Int),
    f("audio_timeout", Ty::Int),
    f("frames_timeout", Ty::Int),
    f("timeout", Ty::Int),
    f("max_retry_timeout", Ty::Range(1, i64::MAX)),
    f("headers", Ty::Map(&Ty::Str)),
    f("user_agent", Ty::Str),
    f("via", Ty::Str),
    f("cluster_key", Ty::Str),
    f("remote_dvr", Ty::Str),
    f("allow_if", Ty::Str),
    f("deny_if", Ty::Str),
    f("output_audio", Ty::Enum(OUTPUT_AUDIO)),
    f("no_clients_reconnect_delay", Ty::Int),
    f("max_bitrate", Ty::Int),
    ro("stats"),
    f("passphrase", Ty::Len(10, 79)),
    f("streamid", Ty::Len(0, 512)),
    f("latency", Ty::Num),
    f("pids", Ty::Arr(&Ty::Int)),
    f("programs", Ty::Arr(&Ty::Int)),
    f("teletext_page", Ty::Range(100, 899)),
    f("width", Ty::Int),
    f("height", Ty::Int),
    f("bitrate", Ty::Int),
    f("rtp", Ty::Str),
    f("wait_rtcp", Ty::Bool),
    f("closed_captions", Ty::Any),
    f("languages", Ty::Any),
    f("scte35", Ty::Bool),
    f("subtitles", Ty::Str),
    f("transport", Ty::Str),
    f("webrtc_abr", Ty::Bool),
    f("prefer_video_codec", Ty::Str),
    f("prefer_codec", Ty::Str),
    f("min_bitrate", Ty::Int),
    f("abr_correction", Ty::Int),
    f("abr_cycles", Ty::Int),
    f("abr_debug", Ty::Int),
    f("abr_loss_lower", Ty::Num),
    f("abr_loss_upper", Ty::Num),
    f("abr_max_bitrate", Ty::Int),
    f("abr_mode", Ty::Int),
    f("abr_stepdown", Ty::Num),
    f("abr_stepup", Ty::Int),
];

/// `StreamPush`.
pub const PUSH: &[F] = &[
    req("url", Ty::Len(1, 4096)),
    f("comment", Ty::Str),
    f("disabled", Ty::Bool),
    f("retry_timeout", Ty::Int),
    f("retry_limit", Ty::Int),
    f("connect_timeout", Ty::Int),
    f("timeout", Ty::Int),
    ro("stats"),
    f("service", Ty::Str),
    f("provider", Ty::Str),
    f("pnr", Ty::Int),
    f("pids", Ty::Any),
    f("bitrate", Ty::Int),
    f("vb", Ty::Any),
    f("prebuffer", Ty::Any),
    f("standby", Ty::Any),
    f("multicast_loop", Ty::Bool),
    f("passphrase", Ty::Len(10, 79)),
    f("latency", Ty::Num),
    f("streamid", Ty::Len(0, 512)),
    f("encoder", Ty::Str),
    f("domain", Ty::Str),
];

/// The node's `StreamDvrSpec` (no `redundancy_factor`: that is a Central/Watcher concept).
pub const DVR: &[F] = &[
    f("root", Ty::Str),
    f("reference", Ty::Str),
    f("expiration", Ty::Int),
    f("storage_limit", Ty::Int),
    f("disk_usage_limit", PERCENT),
    f("schedule", Ty::Arr(&Ty::Arr(&Ty::Int))),
    f("episodes_expiration", Ty::Int),
    f("episodes_url", Ty::Str),
    f("keep_locks", Ty::Bool),
    f("copy", Ty::Str),
    f("remotes", Ty::Arr(&Ty::Str)),
    f("dvr_offline", Ty::Bool),
    f("dvr_replicate", Ty::Bool),
    f("replication_port", Ty::Int),
];

/// `StreamConfig`. `name` is checked by the handler (it comes from the path).
pub const STREAM: &[F] = &[
    f("name", Ty::Len(1, 1024)),
    f("title", Ty::Str),
    f("comment", Ty::Str),
    f("static", Ty::Bool),
    f("disabled", Ty::Bool),
    f("template", Ty::Str),
    f("labels", Ty::Map(&Ty::Len(1, 40))),
    ro("position"),
    f("meta", Ty::Map(&Ty::Str)),
    ro("named_by"),
    ro("config_on_disk"),
    ro("stats"),
    ro("srt_port_resolve"),
    f("inputs", Ty::Arr(&Ty::Obj(INPUT))),
    f("source_timeout", Ty::IntOrFalse),
    f("video_timeout", Ty::Int),
    f("audio_timeout", Ty::Int),
    f("frames_timeout", Ty::Int),
    f("max_retry_timeout", Ty::Range(1, i64::MAX)),
    f("retry_limit", Ty::Int),
    f("clients_timeout", Ty::IntOrFalse),
    f("recheck_secondary_inputs_interval", Ty::Int),
    f("backup", Ty::AnyObj),
    f("input_media_info", Ty::AnyObj),
    f("cluster_ingest", Ty::AnyObj),
    f("provider", Ty::Str),
    f("transcoder", Ty::AnyObj),
    f("dvr", Ty::Obj(DVR)),
    f("cache", Ty::AnyObj),
    f("pushes", Ty::Arr(&Ty::Obj(PUSH))),
    f("on_play", Ty::AnyObj),
    f("on_publish", Ty::AnyObj),
    f("drm", Ty::AnyObj),
    f("protocols", Ty::AnyObj),
    f("playback_headers", Ty::Arr(&Ty::AnyObj)),
    f("segment_duration", Ty::Num),
    f("segment_count", Ty::Int),
    f("chunk_duration", Ty::Num),
    f("prepush", Ty::IntOrFalse),
    f("url_prefix", Ty::StrOrFalse),
    f("add_audio_only", Ty::Bool),
    f("hls_scte35", Ty::EnumOrFalse(&["aws", "scte35", "rfc8216"])),
    f("output_audio", Ty::Enum(OUTPUT_AUDIO)),
    f("dvbocr", Ty::Enum(&["replace", "add"])),
    f("epg_enabled", Ty::Bool),
    f("mpegts_ac3", Ty::Enum(&["system_a", "system_b", "keep"])),
    f("mpegts_pids", Ty::AnyObj),
    f("thumbnails", Ty::AnyObj),
    f("vision", Ty::AnyObj),
    f("track_filter", Ty::AnyObj),
    f("srt", Ty::IntOrStr),
    f("srt2", Ty::IntOrStr),
    f("srt_play", Ty::Obj(SRT)),
    f("srt_publish", Ty::Obj(SRT)),
    f("srt2_play", Ty::Obj(SRT)),
    f("srt2_publish", Ty::Obj(SRT)),
    f("webrtc_abr", Ty::Any),
    f("transport", Ty::Str),
    f("prefer_codec", Ty::Str),
    f("max_bitrate", Ty::Int),
    f("min_bitrate", Ty::Int),
    f("jpeg_snapshot_sign_key", Ty::Str),
    f("password", Ty::Str),
];

const CREDS: &[F] = &[
    req("login", Ty::Len(1, 256)),
    req("password", Ty::Len(1, 256)),
    f("hash", Ty::Bool),
];

/// `PeerConfig`.
pub const PEER: &[F] = &[
    f("hostname", Ty::Len(1, 253)),
    f("api_url", Ty::Str),
    f("public_payload_url", Ty::Str),
    f("private_payload_url", Ty::Str),
    f("cluster_key", Ty::Str),
    f("fetch_timeout", Ty::Num),
    f("stale_timeout", Ty::Num),
    f("channel_limit", Ty::Int),
    f("cpu_limit", PERCENT),
    f("max_bitrate", Ty::Int),
    ro("stats"),
];

/// `SourceConfig`.
pub const SOURCE: &[F] = &[
    f("url", Ty::Len(1, 4096)),
    f("only", Ty::Arr(&Ty::Str)),
    f("except", Ty::Arr(&Ty::Str)),
    f("prefix", Ty::Str),
    f("cluster_key", Ty::Str),
    f("cluster_ingest", Ty::AnyObj),
    f("group_config", Ty::AnyObj),
    f("dvr", Ty::Any),
    f("cache", Ty::Any),
    f("pushes", Ty::Any),
    f("labels", Ty::Any),
    f("on_play", Ty::Any),
    f("on_publish", Ty::Any),
    f("drm", Ty::Any),
    f("protocols", Ty::Any),
    f("playback_headers", Ty::Any),
    f("segment_duration", Ty::Num),
    f("segment_count", Ty::Int),
    f("chunk_duration", Ty::Num),
    f("clients_timeout", Ty::IntOrFalse),
    f("prepush", Ty::IntOrFalse),
    f("retry_limit", Ty::Int),
    f("transcoder", Ty::Any),
    f("thumbnails", Ty::Any),
    f("track_filter", Ty::Any),
    f("url_prefix", Ty::StrOrFalse),
    f("vision", Ty::Any),
    f("webrtc_abr", Ty::Any),
    f("meta", Ty::Any),
    f("mpegts_pids", Ty::Any),
    f("hls_scte35", Ty::Any),
    f("jpeg_snapshot_sign_key", Ty::Str),
    f("add_audio_only", Ty::Bool),
    ro("stats"),
];

/// `ServerConfig`. `streams` is not accepted here (managed through `/streams`): it is dropped.
pub const SERVER: &[F] = &[
    f("cluster_key", Ty::Str),
    f("edit_auth", Ty::Obj(CREDS)),
    f("view_auth", Ty::Obj(CREDS)),
    f("api_allowed_from", Ty::Arr(&Ty::Str)),
    f("auth_token", Ty::Str),
    f("listeners", Ty::AnyObj),
    f("server_names", Ty::Arr(&Ty::AnyObj)),
    f("config_external", Ty::Str),
    f("peers", Ty::Arr(&Ty::Obj(PEER))),
    f("sources", Ty::Arr(&Ty::Obj(SOURCE))),
    f("dvrs", Ty::Arr(&Ty::AnyObj)),
    f("templates", Ty::Arr(&Ty::AnyObj)),
    f("event_sinks", Ty::Arr(&Ty::AnyObj)),
    f("auth_backends", Ty::Arr(&Ty::AnyObj)),
    f("loglevel", Ty::Enum(LOGLEVEL)),
    f("log_requests", Ty::Bool),
    f("total_bandwidth", Ty::Int),
    f("url_prefix", Ty::StrOrFalse),
    f("streaming_prefix", Ty::Str),
    f("meta", Ty::Str),
    f("geoip", Ty::Str),
    f("pulsedb", Ty::Str),
    f("session_log", Ty::Str),
    f("srt", Ty::IntOrStr),
    f("srt_play", Ty::Obj(SRT)),
    f("srt_publish", Ty::Obj(SRT)),
    f("srt2_play", Ty::Obj(SRT)),
    f("srt2_publish", Ty::Obj(SRT)),
    f("webrtc_play", Ty::AnyObj),
    f("webrtc_publish", Ty::AnyObj),
    f("balancers", Ty::Any),
    f("caches", Ty::Any),
    f("camera_alarm", Ty::Any),
    f("chassis", Ty::Any),
    f("decklinks", Ty::Any),
    f("dvb_cards", Ty::Any),
    f("file_processor", Ty::Any),
    f("http_proxies", Ty::Any),
    f("iptv", Ty::Any),
    f("rproxy", Ty::Any),
    f("transponders", Ty::Any),
    f("vods", Ty::Any),
    f("vsaas", Ty::Any),
    f("nvidia_monitor", Ty::Bool),
    ro("server_id"),
    ro("stats"),
];

/// A validation failure: where (JSON pointer into the request) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    /// JSON pointer to the offending member, e.g. `/inputs/0/url`.
    pub pointer: String,
    /// Human-readable reason.
    pub title: String,
}

fn bad(ptr: &str, title: impl Into<String>) -> Invalid {
    Invalid {
        pointer: if ptr.is_empty() {
            "/".into()
        } else {
            ptr.into()
        },
        title: title.into(),
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// Validates `v` against `ty` and returns it without unknown and read-only members. `null`
/// is kept (it means "delete" in a merge) except where a member is required.
pub fn clean(ty: &Ty, v: &Value, ptr: &str) -> Result<Value, Invalid> {
    clean_with(ty, v, ptr, true)
}

/// [`clean`] that can skip required-member checks (for patches merged element-wise, whose
/// merged result is checked again).
pub fn clean_with(ty: &Ty, v: &Value, ptr: &str, required: bool) -> Result<Value, Invalid> {
    let clean = |ty: &Ty, v: &Value, ptr: &str| clean_with(ty, v, ptr, required);
    if v.is_null() {
        return Ok(Value::Null);
    }
    match ty {
        Ty::Any => Ok(v.clone()),
        Ty::AnyObj if v.is_object() => Ok(v.clone()),
        Ty::AnyObj => Err(bad(ptr, "expected an object")),
        Ty::Str if v.is_string() => Ok(v.clone()),
        Ty::Str => Err(bad(ptr, "expected a string")),
        Ty::Len(min, max) => match v.as_str() {
            Some(s) if (*min..=*max).contains(&s.chars().count()) => Ok(v.clone()),
            Some(_) => Err(bad(ptr, format!("string length must be {min}..{max}"))),
            None => Err(bad(ptr, "expected a string")),
        },
        Ty::Int => as_int(v)
            .map(Value::from)
            .ok_or_else(|| bad(ptr, "expected an integer")),
        Ty::Range(min, max) => match as_int(v) {
            Some(i) if (*min..=*max).contains(&i) => Ok(Value::from(i)),
            Some(_) if *max == i64::MAX => Err(bad(ptr, format!("must be >= {min}"))),
            Some(_) => Err(bad(ptr, format!("must be within {min}..{max}"))),
            None => Err(bad(ptr, "expected an integer")),
        },
        Ty::Num if v.is_number() => Ok(v.clone()),
        Ty::Num => Err(bad(ptr, "expected a number")),
        Ty::Bool if v.is_boolean() => Ok(v.clone()),
        Ty::Bool => Err(bad(ptr, "expected a boolean")),
        Ty::Enum(vals) | Ty::EnumOrFalse(vals) => match v {
            Value::Bool(false) if matches!(ty, Ty::EnumOrFalse(_)) => Ok(v.clone()),
            Value::String(s) if vals.contains(&s.as_str()) => Ok(v.clone()),
            _ => Err(bad(ptr, format!("must be one of {}", vals.join(", ")))),
        },
        Ty::IntOrStr if v.is_string() || as_int(v).is_some() => Ok(v.clone()),
        Ty::IntOrStr => Err(bad(ptr, "expected a port number or host:port")),
        Ty::IntOrFalse if v == &Value::Bool(false) || as_int(v).is_some() => Ok(v.clone()),
        Ty::IntOrFalse => Err(bad(ptr, "expected an integer or false")),
        Ty::StrOrFalse if v == &Value::Bool(false) || v.is_string() => Ok(v.clone()),
        Ty::StrOrFalse => Err(bad(ptr, "expected a string or false")),
        Ty::Arr(item) => {
            let list = v.as_array().ok_or_else(|| bad(ptr, "expected a list"))?;
            let mut out = Vec::with_capacity(list.len());
            for (i, el) in list.iter().enumerate() {
                let p = format!("{ptr}/{i}");
                if el.is_null() {
                    return Err(bad(&p, "null is not allowed in a list"));
                }
                out.push(clean(item, el, &p)?);
            }
            Ok(Value::Array(out))
        }
        Ty::Map(item) => {
            let map = v
                .as_object()
                .ok_or_else(|| bad(ptr, "expected an object"))?;
            let mut out = Map::new();
            for (k, el) in map {
                out.insert(k.clone(), clean(item, el, &format!("{ptr}/{}", escape(k)))?);
            }
            Ok(Value::Object(out))
        }
        Ty::Obj(fields) => {
            let map = v
                .as_object()
                .ok_or_else(|| bad(ptr, "expected an object"))?;
            let mut out = Map::new();
            for (k, el) in map {
                let Some(field) = fields.iter().find(|f| f.name == k) else {
                    continue;
                };
                if field.ro {
                    continue;
                }
                let p = format!("{ptr}/{}", escape(k));
                if required && field.req && el.is_null() {
                    return Err(bad(&p, format!("{k} is required")));
                }
                out.insert(k.clone(), clean(&field.ty, el, &p)?);
            }
            if let Some(missing) = fields
                .iter()
                .find(|f| required && f.req && !out.contains_key(f.name))
            {
                return Err(bad(
                    &format!("{ptr}/{}", missing.name),
                    format!("{} is required", missing.name),
                ));
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_unknown_and_read_only() {
        let v = json!({"title": "t", "bogus": 1, "stats": {}, "inputs": [{"url": "fake://x", "zz": 1, "stats": {}}]});
        let out = clean(&Ty::Obj(STREAM), &v, "").unwrap();
        assert_eq!(out, json!({"title": "t", "inputs": [{"url": "fake://x"}]}));
    }

    #[test]
    fn pointers_at_the_bad_member() {
        let e = clean(
            &Ty::Obj(STREAM),
            &json!({"inputs": [{"url": "a"}, {"priority": 1}]}),
            "",
        )
        .unwrap_err();
        assert_eq!(e.pointer, "/inputs/1/url");
        let e = clean(&Ty::Obj(STREAM), &json!({"labels": {"a/b": ""}}), "").unwrap_err();
        assert_eq!(e.pointer, "/labels/a~1b");
        let e = clean(&Ty::Obj(STREAM), &json!({"dvr": {"expiration": "1d"}}), "").unwrap_err();
        assert_eq!(e.pointer, "/dvr/expiration");
        let e = clean(&Ty::Obj(STREAM), &json!({"dvbocr": "x"}), "").unwrap_err();
        assert_eq!(e.pointer, "/dvbocr");
        assert!(clean(&Ty::Obj(STREAM), &json!({"max_retry_timeout": 0}), "").is_err());
        assert!(
            clean(
                &Ty::Obj(STREAM),
                &json!({"dvr": {"disk_usage_limit": 101}}),
                ""
            )
            .is_err()
        );
        assert!(
            clean(
                &Ty::Obj(STREAM),
                &json!({"srt_play": {"passphrase": "short"}}),
                ""
            )
            .is_err()
        );
    }

    #[test]
    fn nulls_survive_for_merge() {
        let out = clean(&Ty::Obj(STREAM), &json!({"dvr": null, "title": null}), "").unwrap();
        assert_eq!(out, json!({"dvr": null, "title": null}));
    }
}
