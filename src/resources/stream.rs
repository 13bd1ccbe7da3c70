//! `Stream`: one camera or channel, placed by the layouter and pushed to nodes.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::{CommonStatus, SecretKeyRef};
use super::text::Text;
use super::wire::{CameraConfig, StreamConfigSpec, StreamLayout};

/// A camera: its Watcher identity, references, placement requirements and the Flussonic stream
/// config (wire names, e.g. `inputs`, `dvr`, `static`) side by side with Panoptes' own fields.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "panoptes.dev",
    doc = "A Stream is one camera: its Watcher name and ids, the Preset and Organization it references, where it may run, and the Flussonic stream config (inputs, dvr, ...) Panoptes pushes to the streamer node the layouter picks. status.conditions say whether it is placed (Scheduled), configured on its node (Synced) and receiving frames (Ready).",
    version = "v1alpha1",
    kind = "Stream",
    namespaced,
    status = "StreamStatus",
    shortname = "cam",
    category = "panoptes",
    printcolumn = r#"{"name":"Watcher Name","type":"string","jsonPath":".status.watcherName","priority":1}"#,
    printcolumn = r#"{"name":"Streamer","type":"string","jsonPath":".status.layout.ingest"}"#,
    printcolumn = r#"{"name":"Backups","type":"string","jsonPath":".status.layout.dvr_backups","priority":1}"#,
    printcolumn = r#"{"name":"Alive","type":"boolean","jsonPath":".status.alive"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.disabled) && self.disabled) || (has(self.inputs) && size(self.inputs) > 0)", "message": "an enabled stream needs at least one input (or set disabled: true)"},
    {"rule": "has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)", "message": "spec.name (the Watcher stream name) is immutable once the stream exists"},
    {"rule": "!has(self.name) || !self.name.matches('(^|/)([.][.]?)?(/|$)')", "message": "spec.name must not have an empty, '.' or '..' segment (a node would resolve it to another path)"},
    {"rule": "!has(self.title) || !self.title.matches('[\\x00-\\x1f\\x7f]')", "message": "spec.title must not contain control characters"},
    {"rule": "!has(self.postal_address) || !self.postal_address.matches('[\\x00-\\x1f\\x7f]')", "message": "spec.postal_address must not contain control characters"},
    {"rule": "!has(self.comment) || !self.comment.matches('[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]')", "message": "spec.comment must not contain control characters other than line breaks and tabs"}
]))]
pub struct StreamSpec {
    /// Watcher stream name (defaults to metadata.name); may hold characters Kubernetes names
    /// do not, such as `/`. Immutable.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9._~/-]+$"))]
    pub name: Option<String>,
    /// Name of the Organization (same namespace) that owns the camera.
    #[schemars(length(max = 253))]
    pub organization_ref: Option<String>,
    /// Name of the Preset (same namespace) whose DVR and analytics settings apply.
    #[schemars(length(max = 253))]
    pub preset_ref: Option<String>,
    /// Placement requirements for the layouter.
    pub placement: Option<Box<Placement>>,
    /// Camera credentials, injected into input and ONVIF URLs at push time.
    // This, `facade_credentials` and `camera_config` are boxed: set on few cameras, their
    // inline size was paid by every cached Stream (384 bytes of 1,880, `make heap`).
    pub credentials: Option<Box<CameraCredentials>>,
    /// Set by the Watcher API (never in a manifest): the facade-owned per-Stream Secret
    /// holding camera credentials entered through the API (`user:password@` in an input or
    /// ONVIF URL). When set, Panoptes injects it instead of `credentials`, so re-applying a
    /// manifest that sets `credentials` keeps the change; remove this field to go back to
    /// `credentials`. The Secret is created by Panoptes, owned by this Stream and deleted with
    /// it; it records the camera origin it was entered for, and goes to no other host.
    pub facade_credentials: Option<Box<CameraCredentials>>,
    /// Credentials of the `pushes` destinations, injected into push URLs at push time. The
    /// Secret holds keys `push-<digest of the push URL>-username` / `-password`, so a push
    /// whose URL changes gets no credentials until they are entered again for the new URL.
    /// Written by the Watcher API when a push URL carries `user:password@`.
    pub push_credentials: Option<PushCredentials>,
    /// Secret key holding the publish password of the stream.
    pub publish_password: Option<Box<SecretKeyRef>>,
    /// Camera device settings (sensor, media quality).
    pub camera_config: Option<Box<CameraConfig>>,
    /// The Flussonic stream configuration (wire names).
    #[serde(flatten)]
    pub config: StreamConfigSpec,
}

/// Placement requirements of a stream.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Labels a node must carry to take this stream.
    pub required_node_labels: Option<BTreeMap<String, String>>,
    /// Labels that make a node preferred when several qualify.
    pub preferred_node_labels: Option<BTreeMap<String, String>>,
}

/// Where a camera's login and password are.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CameraCredentials {
    /// Name of a Secret in the Stream's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the login in the Secret (default `username`).
    pub username_key: Option<String>,
    /// Key of the password in the Secret (default `password`).
    pub password_key: Option<String>,
}

/// Where the credentials of a stream's pushes are.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushCredentials {
    /// Name of a Secret in the Stream's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

impl Stream {
    /// The Watcher name: `spec.name`, else the object's name (a Watcher name may hold `/`, a
    /// Kubernetes name may not, so a camera named `mylive/bunny` sets `spec.name`). The one
    /// rule the layouter, the Stream and Streamer controllers and the facade use.
    pub fn watcher_name(&self) -> &str {
        let m = &self.metadata;
        self.spec
            .name
            .as_deref()
            .or(m.name.as_deref())
            .or(m.generate_name.as_deref())
            .unwrap_or("")
    }
}

/// Observed state of a stream. Written on transitions only.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// Conditions (`Scheduled`, `Synced`, `Ready`) and the observed generation.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The Watcher stream name in effect.
    pub watcher_name: Option<String>,
    /// Current placement as decided by the layouter (Watcher wire shape).
    pub layout: Option<StreamLayout>,
    /// Earlier placements, newest first (at most four: with `layout`, the five records of
    /// `GET /streams/{name}/layouts`). Extended only when the placement changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layout_history: Vec<LayoutRecord>,
    /// Coarse liveness on the ingest node (changes rarely; live numbers are in the stats cache).
    pub alive: Option<bool>,
    /// Nodes that hold the stream's current config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synced_nodes: Vec<Text>,
    /// Where the camera credentials Secret was first sent (a Secret without the
    /// `panoptes.dev/destinations` annotation is bound to the input hosts of its first use; a
    /// new host gets no credentials until the Secret is written again).
    // Boxed: 96 bytes inline in every cached Stream, set on cameras with credentials only.
    pub credential_binding: Option<Box<super::streamer::CredentialBinding>>,
}

/// One earlier placement of a stream: which node, since when, why it moved there.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LayoutRecord {
    /// Node that captured the stream.
    pub ingest: Option<Text>,
    /// Nodes that held DVR backup copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dvr_backups: Vec<Text>,
    /// Why the placement changed to this one.
    pub change_reason: Option<super::wire::stream::ChangeReason>,
    /// Since when (UTC ms).
    pub created_at: Option<i64>,
    /// Who made the placement.
    pub originator: Option<super::wire::stream::Originator>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::wire::StreamInput;

    #[test]
    fn a_cached_stream_keeps_settings_few_cameras_set_out_of_line() {
        // Every cached Stream pays its inline size (100,000 of them at 100k cameras): 1,880
        // bytes before boxing camera_config and the credentials, 1,432 before the rare wire
        // options of the spec went out of line; an input was 768 bytes before its own did.
        let size = std::mem::size_of::<Stream>();
        assert!(size <= 1_000, "a Stream is {size} bytes inline");
        let input = std::mem::size_of::<StreamInput>();
        assert!(input <= 32, "an input is {input} bytes inline");
    }

    /// Streams as a client may write them: every rarely set option at once, none, and each
    /// out-of-line part alone (with an explicit null, which reads as unset).
    fn wire_table() -> Vec<serde_json::Value> {
        use serde_json::json;
        let input_options = json!({
            "url": "rtsp://cam/1", "priority": 2, "comment": "main", "source_timeout": false,
            "audio_timeout": 5, "video_timeout": 6, "max_retry_timeout": 7, "timeout": 8,
            "frames_timeout": 9, "user_agent": "ua", "via": "agent://a1", "output_audio": "add_aac",
            "headers": {"x-a": "b"}, "no_clients_reconnect_delay": 10, "allow_if": "/a",
            "deny_if": "/d", "width": 640, "height": 480, "bitrate": 900, "rtp": "udp",
            "wait_rtcp": true, "pids": [1, 2], "programs": [3], "closed_captions": {"a": "b"},
            "languages": {"1": "eng"}, "scte35": false, "subtitles": "s", "transport": "tcp",
            "webrtc_abr": true, "prefer_video_codec": "h264", "prefer_codec": "h264",
            "min_bitrate": 100, "abr_correction": 1, "abr_cycles": 2, "abr_debug": 0,
            "abr_loss_lower": 0.5, "abr_loss_upper": 1.5, "abr_max_bitrate": 4000, "abr_mode": 1,
            "abr_stepdown": 0.25, "abr_stepup": 10,
        });
        let extras = json!({
            "vision": {"alg": "faces", "areas": "0,0,1,1"},
            "coordinates": {"latitude": 52.5, "longitude": 13.4},
            "map_coordinates": {"latitude": 1.0, "longitude": 2.0},
            "postal_address": "Main St 1", "onvif": {"url": "http://cam/onvif", "ptz": true},
            "folder_id": 7, "audio": {"disabled": true}, "can_publish": false,
        });
        let stream = |spec: serde_json::Value| {
            json!({
                "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
                "metadata": {"name": "cam-1", "namespace": "ns"}, "spec": spec,
            })
        };
        let mut full = json!({
            "name": "north/cam-1", "organizationRef": "org", "presetRef": "p",
            "placement": {"requiredNodeLabels": {"site": "a"}},
            "credentials": {"secretName": "c"}, "pushCredentials": {"secretName": "pc"},
            "publishPassword": {"name": "pp", "key": "k"},
            "title": "North", "comment": "c", "static": true, "disabled": false,
            "inputs": [input_options, {"url": "fake://b"}],
            "dvr": {"root": "/dvr", "expiration": 3600},
            "pushes": [{"url": "rtmp://h/live", "retry_limit": 3}],
            "labels": {"a": "b"}, "layout_rules": {"required_zones": ["west"]},
        });
        full.as_object_mut()
            .unwrap()
            .extend(extras.as_object().unwrap().clone());
        let mut settled = stream(json!({"inputs": [{"url": "fake://cam-1"}]}));
        settled["status"] = json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "Alive",
                "message": "receiving frames on n1", "lastTransitionTime": "2026-12-06T12:00:00Z",
                "observedGeneration": 1}],
            "observedGeneration": 1, "watcherName": "cam-1", "alive": true,
            "layout": {"ingest": "n1", "dvr_backups": ["n2"], "created_at": 1,
                "originator": "layouter", "node_layout_decisions": [{"role": "streamer",
                "hostname": "n1", "node_decision": true, "reasons": []}],
                "ingest_history": [{"created_at": 1, "ingest": "n1", "originator": "layouter"}]},
            "layoutHistory": [{"ingest": "n0", "created_at": 0}], "syncedNodes": ["n1", "n2"],
        });
        vec![
            stream(full),
            stream(json!({})),
            stream(json!({"inputs": [{"url": "fake://a", "via": "agent://x", "width": 1}]})),
            stream(json!({"disabled": true, "postal_address": "Main St 1"})),
            settled,
        ]
    }

    #[test]
    fn a_stream_reads_and_writes_back_identically() {
        for doc in wire_table() {
            let s: Stream = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(serde_json::to_value(&s).unwrap(), doc);
            // From text too: the watch's path.
            let t: Stream = serde_json::from_str(&doc.to_string()).unwrap();
            assert_eq!((&t.spec, &t.status), (&s.spec, &s.status));
        }
        // An explicit null is an unset option, as before it moved out of line.
        let nulls = serde_json::json!({"url": "fake://a", "via": null, "source_timeout": null});
        let input: StreamInput = serde_json::from_value(nulls).unwrap();
        assert!(input.options.get().is_none());
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            serde_json::json!({"url": "fake://a"})
        );
    }

    #[test]
    fn a_plain_camera_allocates_no_out_of_line_part() {
        let table = wire_table();
        let settled: Stream = serde_json::from_str(&table[4].to_string()).unwrap();
        let input = &settled.spec.config.inputs.as_ref().unwrap()[0];
        assert!(input.options.get().is_none());
        assert!(settled.spec.config.extras.get().is_none());
        let full: Stream = serde_json::from_value(table[0].clone()).unwrap();
        let options = full.spec.config.inputs.as_ref().unwrap()[0].options.get();
        assert_eq!(options.and_then(|o| o.via.as_deref()), Some("agent://a1"));
        let extras = full.spec.config.extras.get().unwrap();
        assert_eq!(extras.folder_id, Some(7));
    }

    #[test]
    fn an_out_of_line_part_left_empty_equals_none() {
        use crate::resources::common::Rare;
        use crate::resources::wire::stream::StreamExtras;
        let mut edited: Rare<StreamExtras> = Rare::default();
        edited.make_mut().folder_id = None;
        assert_eq!(edited, Rare::default());
        edited.compact();
        assert!(edited.get().is_none());
        assert!(Rare::from(StreamExtras::default()).get().is_none());
    }

    #[test]
    fn the_watcher_name_is_spec_name_else_the_object_name() {
        let mut s = Stream::new("cam-1", StreamSpec::default());
        assert_eq!(s.watcher_name(), "cam-1");
        s.spec.name = Some("mylive/bunny".into());
        assert_eq!(s.watcher_name(), "mylive/bunny");
        let mut unnamed = Stream::new("x", StreamSpec::default());
        unnamed.metadata.name = None;
        assert_eq!(unnamed.watcher_name(), "");
        unnamed.metadata.generate_name = Some("cam-".into());
        assert_eq!(unnamed.watcher_name(), "cam-");
    }

    /// The size of a typical Stream as the API server stores it, for the 1,000,000-camera
    /// plan in docs/scale.md (printed, not asserted: `cargo test --lib
    /// resources::stream::tests::stored_size -- --ignored --nocapture`). The first sample
    /// camera with the metadata the API server adds (managedFields aside: the API server
    /// adds those, the operator's cache strips them) and a settled status: three
    /// conditions, a layout on one of 100 nodes, and the full layout history.
    #[test]
    #[ignore]
    fn stored_size() {
        use crate::resources::common::Condition;
        use crate::resources::wire::stream::{
            ChangeReason, IngestHistoryItem, NodeLayoutDecision, NodeRole, Originator,
        };
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let sample = include_str!("../../manifests/samples/06-streams.yaml");
        let doc = sample.split("\n---\n").next().unwrap();
        let mut s: Stream = serde_yaml::from_str(doc).unwrap();
        let spec_only = serde_json::to_vec(&s).unwrap().len();
        let at = Time(k8s_openapi::jiff::Timestamp::from_second(1_790_000_000).unwrap());
        s.metadata.namespace = Some("cameras".into());
        s.metadata.uid = Some("0b7f1c9e-8d3a-4c6e-9f21-5a7d3e2b1c4f".into());
        s.metadata.resource_version = Some("123456789".into());
        s.metadata.generation = Some(3);
        s.metadata.creation_timestamp = Some(at.clone());
        s.metadata.finalizers = Some(vec!["panoptes.dev/cleanup".into()]);
        let condition = |t: &str, reason: &str| Condition {
            type_: t.into(),
            status: "True".into(),
            reason: reason.into(),
            message: format!("{t}: {reason}").into(),
            last_transition_time: at.clone(),
            observed_generation: Some(3),
        };
        let history = |i: i64| IngestHistoryItem {
            created_at: 1_790_000_000_000 + i,
            ingest: format!("streamer-{i:03}.example.net").into(),
            originator: Originator::Layouter,
        };
        let layout = StreamLayout {
            ingest: Some("streamer-004.example.net".into()),
            change_reason: Some(ChangeReason::NodeBecomeOffline),
            failover_from: Some("streamer-003.example.net".into()),
            created_at: Some(1_790_000_000_004),
            originator: Some(Originator::Layouter),
            node_layout_decisions: vec![NodeLayoutDecision {
                role: NodeRole::Streamer,
                hostname: "streamer-004.example.net".into(),
                node_decision: true,
                reasons: vec![],
            }],
            ingest_history: (0..5).map(history).collect(),
            ..Default::default()
        };
        let record = |i: i64| LayoutRecord {
            ingest: Some(format!("streamer-{i:03}.example.net").into()),
            dvr_backups: vec![],
            change_reason: Some(ChangeReason::NodeBecomeOffline),
            created_at: Some(1_790_000_000_000 + i),
            originator: Some(Originator::Layouter),
        };
        s.status = Some(StreamStatus {
            common: CommonStatus {
                conditions: vec![
                    condition("Scheduled", "Placed"),
                    condition("Synced", "Pushed"),
                    condition("Ready", "Running"),
                ],
                observed_generation: Some(3),
            },
            watcher_name: Some("north-cam-01".into()),
            layout: Some(layout),
            layout_history: (0..4).map(record).collect(),
            alive: Some(true),
            synced_nodes: vec!["streamer-004.example.net".into()],
            ..Default::default()
        });
        let full = serde_json::to_vec(&s).unwrap().len();
        let history_only = serde_json::to_vec(&s.status.as_ref().unwrap().layout_history)
            .unwrap()
            .len();
        println!(
            "Stream as JSON: spec only {spec_only} B, with metadata and a settled status {full} B \
             (layoutHistory {history_only} B)"
        );
    }
}
