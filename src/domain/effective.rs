//! The effective node config of a stream: preset ⊕ stream, then secrets. Pure, so the merge
//! rules are unit-tested without a cluster.
//!
//! Watcher's preset semantics: a preset contributes `dvr` (and `vision`, which never reaches a
//! node). With an adjustable preset (`is_adjustable` absent or true) the stream's own members
//! win member by member; with a locked preset (`is_adjustable: false`) the preset's members win,
//! so a camera cannot deviate from what was sold to it.
//!
//! A stream without `static` is pushed as `static: true`: a Watcher camera records and is
//! watched live, so it runs permanently; `static: false` must be asked for explicitly.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::domain::credentials;
use crate::domain::destinations::{AllowList, Origin};
use crate::flussonic::{StreamBody, node_stream_body};
use crate::resources::streamer::CredentialBinding;
use crate::resources::wire::{StreamConfigSpec, StreamDvrSpec, VisionSpec};
use crate::resources::{Preset, PresetSpec, Stream};

/// The stream config with its preset merged in.
pub fn merge_preset(stream: &StreamConfigSpec, preset: Option<&PresetSpec>) -> StreamConfigSpec {
    let mut own = stream.clone();
    own.static_ = Some(stream.static_.unwrap_or(true));
    let stream = &own;
    let Some(preset) = preset else {
        return own;
    };
    let locked = preset.is_adjustable == Some(false);
    let mut out = stream.clone();
    out.dvr = merge_members::<StreamDvrSpec>(stream.dvr.as_deref(), preset.dvr.as_ref(), locked)
        .map(Box::new);
    let preset_vision = preset.vision.as_ref().map(|v| VisionSpec {
        alg: v.alg,
        ..VisionSpec::default()
    });
    let own_vision = stream.extras.get().and_then(|e| e.vision.as_ref());
    let vision = merge_members::<VisionSpec>(own_vision, preset_vision.as_ref(), locked);
    // A plain camera under a preset without analytics allocates no extras for this.
    if vision.is_some() || own_vision.is_some() {
        out.extras.make_mut().vision = vision;
        out.extras.compact();
    }
    if out.layout_rules.is_none() {
        out.layout_rules = preset.layout_rules.clone().map(Box::new);
    }
    out
}

/// Member-wise merge of two optional objects; `preset_wins` picks the side that wins a tie.
fn merge_members<T>(own: Option<&T>, preset: Option<&T>, preset_wins: bool) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone,
{
    match (own, preset) {
        (None, None) => None,
        (Some(o), None) => Some(o.clone()),
        (None, Some(p)) => Some(p.clone()),
        (Some(o), Some(p)) => {
            let (base, top) = if preset_wins { (o, p) } else { (p, o) };
            let mut merged = to_map(base);
            merged.extend(to_map(top));
            serde_json::from_value(Value::Object(merged))
                .ok()
                .or_else(|| Some(top.clone()))
        }
    }
}

fn to_map<T: serde::Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// DVR backups the stream asks for once its preset is merged.
pub fn dvr_redundancy(stream: &StreamConfigSpec, preset: Option<&PresetSpec>) -> u32 {
    merge_preset(stream, preset)
        .dvr
        .and_then(|d| d.redundancy_factor)
        .map_or(0, |r| u32::try_from(r.max(0)).unwrap_or(u32::MAX))
}

/// Secret values injected at push time (never stored anywhere else).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Injected {
    /// Camera login and password, put into input URLs that carry no user info.
    pub camera: Option<(String, String)>,
    /// Input origins the camera credentials were not entered for: their inputs get none.
    pub camera_withheld: BTreeSet<Origin>,
    /// Password publishers must present.
    pub publish_password: Option<String>,
    /// Login and password per push URL (as in the spec, without user info).
    pub pushes: std::collections::BTreeMap<String, (String, String)>,
}

impl Injected {
    /// Whether the body built with these carries any secret for `config`.
    pub fn carried_in(&self, config: &StreamConfigSpec) -> bool {
        self.publish_password.is_some()
            || !self.pushes.is_empty()
            || (self.camera.is_some()
                && camera_origins(config)
                    .iter()
                    .any(|o| !self.camera_withheld.contains(o)))
    }
}

/// Origins of the inputs camera credentials would be put into (network URLs without their own
/// user info).
pub fn camera_origins(config: &StreamConfigSpec) -> BTreeSet<Origin> {
    config
        .inputs
        .iter()
        .flatten()
        .filter(|i| with_userinfo(&i.url, "u", "p") != i.url)
        .filter_map(|i| Origin::of(&i.url))
        .collect()
}

impl std::fmt::Debug for Injected {
    // Redacted: these are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injected")
            .field("camera", &self.camera.as_ref().map(|_| "<redacted>"))
            .field("camera_withheld", &self.camera_withheld)
            .field(
                "publish_password",
                &self.publish_password.as_ref().map(|_| "<redacted>"),
            )
            .field("pushes", &self.pushes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The body Panoptes pushes for `name`: the merged config, the ownership label, secrets.
pub fn node_body(name: &str, config: &StreamConfigSpec, secrets: &Injected) -> StreamBody {
    let mut config = config.clone();
    if let Some((user, pass)) = &secrets.camera
        && let Some(inputs) = config.inputs.as_mut()
    {
        for input in inputs {
            // Default deny for destinations: a host the credentials were not entered for
            // gets the URL as written, without them.
            if Origin::of(&input.url).is_some_and(|o| !secrets.camera_withheld.contains(&o)) {
                input.url = with_userinfo(&input.url, user, pass);
            }
        }
    }
    for push in config.pushes.iter_mut().flatten() {
        if let Some((user, pass)) = secrets.pushes.get(&push.url) {
            push.url = with_userinfo(&push.url, user, pass);
        }
    }
    let body = node_stream_body(name, &config);
    match &secrets.publish_password {
        None => body,
        Some(p) => {
            let mut fields = body.as_json().clone();
            fields.insert("password".into(), Value::String(p.clone()));
            StreamBody::replace(name, fields)
        }
    }
}

/// `body` with `on_play` pointing at the play authorization backend (`url`, the facade's
/// `/play_auth`), which honours the stream's shared tokens; `None` leaves the body as it is.
pub fn with_on_play(body: StreamBody, url: Option<&str>) -> StreamBody {
    let Some(url) = url else {
        return body;
    };
    let mut fields = body.as_json().clone();
    fields.insert("on_play".into(), serde_json::json!({ "url": url }));
    StreamBody::replace(body.name(), fields)
}

/// The Secrets whose values go into a stream's node body (camera, publish and push
/// credentials), sorted: a change of one of them is a new body.
pub fn secret_refs(stream: &Stream) -> Vec<String> {
    let spec = &stream.spec;
    let mut names: Vec<String> = credentials::camera_credentials(spec)
        .map(|c| c.secret_name.clone())
        .into_iter()
        .chain(spec.publish_password.iter().map(|r| r.name.clone()))
        .chain(spec.push_credentials.iter().map(|c| c.secret_name.clone()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Everything a stream's effective node body is computed from, so a body computed once is
/// reused until one of them changes (at 100,000 streams, rebuilding the body on every
/// reconcile was most of a push's CPU). The spec is in the stream's generation, the preset's
/// in its generation, secret values in each referenced Secret's resourceVersion (a rotated
/// camera password is a new key, so it is pushed), and the destinations decision in the
/// recorded binding and the allow-list. Status, labels, annotations and resourceVersions of
/// the Stream and Preset are not in it: a status write changes no body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BodyKey {
    stream: (String, Option<i64>),
    preset: Option<(String, Option<i64>)>,
    /// Referenced Secret → its resourceVersion as the watch shows it (`None`: absent).
    secrets: Vec<(String, Option<String>)>,
    binding: Option<CredentialBinding>,
    /// Only for a stream with camera credentials (nothing else reads it).
    allow: Option<AllowList>,
}

impl BodyKey {
    /// The key of `stream` with `preset` (its `presetRef`, if any), the camera credentials
    /// binding recorded now, the destinations allow-list and the watched Secret versions.
    pub fn of(
        stream: &Stream,
        preset: Option<&Preset>,
        binding: Option<&CredentialBinding>,
        allow: &AllowList,
        secret_version: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let identity =
            |m: &kube::api::ObjectMeta| (m.uid.clone().unwrap_or_default(), m.generation);
        let camera = credentials::camera_credentials(&stream.spec);
        Self {
            stream: identity(&stream.metadata),
            preset: preset.map(|p| identity(&p.metadata)),
            secrets: secret_refs(stream)
                .into_iter()
                .map(|n| {
                    let v = secret_version(&n);
                    (n, v)
                })
                .collect(),
            binding: binding.cloned(),
            allow: camera.map(|_| allow.clone()),
        }
    }
}

/// `url` with `user:pass@` inserted after the scheme, unless it has user info already or is
/// not a network URL (`publish://`, `file://`, …) that could carry one.
pub fn with_userinfo(url: &str, user: &str, pass: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "rtsp" | "rtsps" | "http" | "https" | "rtmp" | "rtmps" | "srt" | "onvif" | "hls" | "tshttp"
    ) {
        return url.to_string();
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return url.to_string();
    }
    format!("{scheme}://{}:{}@{rest}", encode(user), encode(pass))
}

/// Percent-encodes what may not appear raw in URL user info.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::wire::{StreamInput, StreamPush};

    fn dvr(root: Option<&str>, expiration: Option<i64>, rf: Option<i64>) -> StreamDvrSpec {
        StreamDvrSpec {
            root: root.map(Into::into),
            expiration,
            redundancy_factor: rf,
            ..Default::default()
        }
    }

    fn preset(adjustable: Option<bool>, d: StreamDvrSpec) -> PresetSpec {
        PresetSpec {
            title: "p".into(),
            is_adjustable: adjustable,
            dvr: Some(d),
            ..Default::default()
        }
    }

    #[test]
    fn adjustable_preset_fills_gaps_and_the_stream_wins() {
        let stream = StreamConfigSpec {
            dvr: Some(Box::new(dvr(None, Some(3600), None))),
            ..Default::default()
        };
        let p = preset(None, dvr(Some("/storage"), Some(86400), Some(1)));
        let out = merge_preset(&stream, Some(&p)).dvr.unwrap();
        assert_eq!(out.root.as_deref(), Some("/storage"));
        assert_eq!(out.expiration, Some(3600));
        assert_eq!(out.redundancy_factor, Some(1));
        assert_eq!(dvr_redundancy(&stream, Some(&p)), 1);
    }

    #[test]
    fn locked_preset_wins_over_the_stream() {
        let stream = StreamConfigSpec {
            dvr: Some(Box::new(dvr(Some("/mine"), Some(3600), Some(3)))),
            ..Default::default()
        };
        let p = preset(Some(false), dvr(Some("/storage"), Some(86400), None));
        let out = merge_preset(&stream, Some(&p)).dvr.unwrap();
        assert_eq!(out.root.as_deref(), Some("/storage"));
        assert_eq!(out.expiration, Some(86400));
        // Members the preset leaves out stay the stream's.
        assert_eq!(out.redundancy_factor, Some(3));
    }

    #[test]
    fn no_preset_is_the_stream_itself() {
        let stream = StreamConfigSpec {
            title: Some("x".into()),
            ..Default::default()
        };
        let merged = merge_preset(&stream, None);
        assert_eq!(
            merged.static_,
            Some(true),
            "cameras run permanently unless told otherwise"
        );
        assert_eq!(merged.title, stream.title);
        let on_demand = StreamConfigSpec {
            static_: Some(false),
            ..Default::default()
        };
        assert_eq!(merge_preset(&on_demand, None).static_, Some(false));
        assert_eq!(dvr_redundancy(&stream, None), 0);
    }

    #[test]
    fn credentials_go_into_network_urls_only() {
        assert_eq!(
            with_userinfo("rtsp://cam/h264", "admin", "p@ss:w/rd"),
            "rtsp://admin:p%40ss%3Aw%2Frd@cam/h264"
        );
        assert_eq!(with_userinfo("rtsp://u@cam/x", "a", "b"), "rtsp://u@cam/x");
        assert_eq!(with_userinfo("publish://", "a", "b"), "publish://");
        assert_eq!(
            with_userinfo("file://vod/x.mp4", "a", "b"),
            "file://vod/x.mp4"
        );
        assert_eq!(with_userinfo("garbage", "a", "b"), "garbage");
    }

    #[test]
    fn node_body_carries_secrets_and_label() {
        let config = StreamConfigSpec {
            inputs: Some(vec![StreamInput {
                url: "rtsp://cam/1".into(),
                ..Default::default()
            }]),
            pushes: Some(vec![
                StreamPush {
                    url: "rtmp://push/live".into(),
                    ..Default::default()
                },
                StreamPush {
                    url: "rtmp://other/live".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let secrets = Injected {
            camera: Some(("u".into(), "pw".into())),
            publish_password: Some("pub".into()),
            pushes: [("rtmp://push/live".to_string(), ("pu".into(), "ppw".into()))].into(),
            ..Injected::default()
        };
        let body = node_body("cam1", &config, &secrets);
        let json = body.as_json();
        assert_eq!(json["inputs"][0]["url"], "rtsp://u:pw@cam/1");
        assert_eq!(json["password"], "pub");
        assert_eq!(json["pushes"][0]["url"], "rtmp://pu:ppw@push/live");
        assert_eq!(json["pushes"][1]["url"], "rtmp://other/live");
        assert!(!format!("{secrets:?}").contains("ppw"));
        assert_eq!(json["labels"]["managed-by"], "panoptes");
        assert!(body.is_reset());
        assert!(!format!("{secrets:?}").contains("pw"));
    }

    #[test]
    fn on_play_points_at_the_backend_only_when_configured() {
        let config = StreamConfigSpec::default();
        let plain = node_body("cam", &config, &Injected::default());
        assert_eq!(with_on_play(plain.clone(), None), plain);
        let url = "http://panoptes:8081/watcher/admin-api/v3/play_auth";
        let body = with_on_play(plain, Some(url));
        assert_eq!(body.as_json()["on_play"]["url"], url);
        assert!(body.is_reset());
        assert_eq!(body.as_json()["labels"]["managed-by"], "panoptes");
    }

    #[test]
    fn withheld_hosts_get_no_camera_credentials() {
        let input = |url: &str| StreamInput {
            url: url.into(),
            ..Default::default()
        };
        let config = StreamConfigSpec {
            inputs: Some(vec![
                input("rtsp://cam-a/1"),
                input("rtsp://cam-b:8554/1"),
                input("publish://"),
            ]),
            ..Default::default()
        };
        assert_eq!(camera_origins(&config).len(), 2);
        let mut secrets = Injected {
            camera: Some(("u".into(), "pw".into())),
            ..Injected::default()
        };
        secrets
            .camera_withheld
            .insert(Origin::of("rtsp://cam-b:8554").unwrap());
        let json = node_body("c", &config, &secrets).as_json().clone();
        assert_eq!(json["inputs"][0]["url"], "rtsp://u:pw@cam-a/1");
        assert_eq!(json["inputs"][1]["url"], "rtsp://cam-b:8554/1");
        assert!(secrets.carried_in(&config));
        secrets
            .camera_withheld
            .insert(Origin::of("rtsp://cam-a").unwrap());
        assert!(!secrets.carried_in(&config));
        let body = Value::Object(node_body("c", &config, &secrets).as_json().clone());
        assert!(!body.to_string().contains("pw"));
    }

    mod body_key {
        use super::super::*;
        use crate::resources::common::SecretKeyRef;
        use crate::resources::stream::{CameraCredentials, PushCredentials, StreamSpec};
        use crate::resources::{StreamStatus, streamer::CredentialBinding};

        fn stream() -> Stream {
            let mut s = Stream::new(
                "cam",
                StreamSpec {
                    preset_ref: Some("p".into()),
                    credentials: Some(Box::new(CameraCredentials {
                        secret_name: "cam-creds".into(),
                        username_key: None,
                        password_key: None,
                    })),
                    publish_password: Some(Box::new(SecretKeyRef {
                        name: "pub".into(),
                        key: "k".into(),
                    })),
                    push_credentials: Some(PushCredentials {
                        secret_name: "push".into(),
                    }),
                    ..StreamSpec::default()
                },
            );
            s.metadata.uid = Some("u1".into());
            s.metadata.generation = Some(3);
            s.metadata.resource_version = Some("100".into());
            s
        }

        fn preset() -> Preset {
            let mut p = Preset::new("p", PresetSpec::default());
            p.metadata.uid = Some("pu".into());
            p.metadata.generation = Some(7);
            p.metadata.resource_version = Some("200".into());
            p
        }

        struct Inputs {
            stream: Stream,
            preset: Option<Preset>,
            binding: Option<CredentialBinding>,
            allow: AllowList,
            versions: Vec<(&'static str, &'static str)>,
        }

        fn base() -> Inputs {
            Inputs {
                stream: stream(),
                preset: Some(preset()),
                binding: None,
                allow: AllowList::default(),
                versions: vec![("cam-creds", "1"), ("pub", "2"), ("push", "3")],
            }
        }

        fn key(i: &Inputs) -> BodyKey {
            BodyKey::of(
                &i.stream,
                i.preset.as_ref(),
                i.binding.as_ref(),
                &i.allow,
                |n| {
                    i.versions
                        .iter()
                        .find(|(k, _)| *k == n)
                        .map(|(_, v)| v.to_string())
                },
            )
        }

        /// What was changed, and the change.
        type Change = (&'static str, Box<dyn Fn(&mut Inputs)>);

        fn rv(i: &mut Inputs, secret: &str, v: &'static str) {
            for e in i.versions.iter_mut().filter(|e| e.0 == secret) {
                e.1 = v;
            }
        }

        #[test]
        fn each_input_of_the_body_changes_the_key() {
            let before = key(&base());
            let changes: Vec<Change> = vec![
                (
                    "stream spec (generation)",
                    Box::new(|i| i.stream.metadata.generation = Some(4)),
                ),
                (
                    "stream recreated (uid)",
                    Box::new(|i| i.stream.metadata.uid = Some("u2".into())),
                ),
                (
                    "preset spec (generation)",
                    Box::new(|i| i.preset.as_mut().unwrap().metadata.generation = Some(8)),
                ),
                (
                    "preset recreated (uid)",
                    Box::new(|i| i.preset.as_mut().unwrap().metadata.uid = Some("pu2".into())),
                ),
                ("preset gone", Box::new(|i| i.preset = None)),
                (
                    "camera password rotated",
                    Box::new(|i| rv(i, "cam-creds", "9")),
                ),
                ("publish password rotated", Box::new(|i| rv(i, "pub", "9"))),
                ("push credentials rotated", Box::new(|i| rv(i, "push", "9"))),
                (
                    "camera Secret deleted",
                    Box::new(|i| i.versions.retain(|e| e.0 != "cam-creds")),
                ),
                (
                    "binding recorded",
                    Box::new(|i| i.binding = Some(CredentialBinding::default())),
                ),
                (
                    "allow-list",
                    Box::new(|i| i.allow = AllowList::parse("rtsp://cam:554").0),
                ),
            ];
            for (what, change) in changes {
                let mut i = base();
                change(&mut i);
                assert_ne!(key(&i), before, "{what} must invalidate the cached body");
            }
        }

        #[test]
        fn nothing_else_changes_the_key() {
            let before = key(&base());
            let changes: Vec<Change> = vec![
                (
                    "stream status written",
                    Box::new(|i| {
                        i.stream.status = Some(StreamStatus {
                            alive: Some(true),
                            ..StreamStatus::default()
                        });
                        i.stream.metadata.resource_version = Some("101".into());
                    }),
                ),
                (
                    "stream labels and annotations",
                    Box::new(|i| {
                        i.stream.metadata.labels =
                            Some([("a".to_string(), "b".to_string())].into());
                        i.stream.metadata.annotations =
                            Some([("a".to_string(), "b".to_string())].into());
                    }),
                ),
                (
                    "stream finalizer",
                    Box::new(|i| i.stream.metadata.finalizers = Some(vec!["f".into()])),
                ),
                (
                    "preset status written",
                    Box::new(|i| {
                        i.preset.as_mut().unwrap().metadata.resource_version = Some("201".into());
                    }),
                ),
                (
                    "an unreferenced Secret",
                    Box::new(|i| i.versions.push(("other", "5"))),
                ),
            ];
            for (what, change) in changes {
                let mut i = base();
                change(&mut i);
                assert_eq!(key(&i), before, "{what} must keep the cached body");
            }
            // The allow-list only matters to camera credentials.
            let mut i = base();
            i.stream.spec.credentials = None;
            let without = key(&i);
            i.allow = AllowList::parse("rtsp://cam:554").0;
            assert_eq!(key(&i), without, "allow-list without camera credentials");
        }
    }
}
