//! Stream objects as they travel to a node and through the Watcher API (wire names, snake_case).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::skip_serializing_none;

use crate::resources::common::{Rare, any_value};
use crate::resources::text::Text;

/// The writable part of a stream's configuration, shared by `Stream.spec`, the node client and
/// the Watcher facade. Watcher-only members (vision, onvif, coordinates…) are ignored by nodes.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamConfigSpec {
    /// Human-readable title of the camera.
    #[schemars(length(max = 1024))]
    pub title: Option<String>,
    /// Free-text description.
    #[schemars(length(max = 4096))]
    pub comment: Option<String>,
    /// Keep the stream running permanently (restart on errors) rather than on demand.
    #[serde(rename = "static")]
    pub static_: Option<bool>,
    /// A disabled stream keeps its configuration but does not run (and needs no input).
    pub disabled: Option<bool>,
    /// Ordered list of sources (first = highest priority unless `priority` is set).
    #[schemars(length(max = 16))]
    pub inputs: Option<Vec<StreamInput>>,
    /// Recording (archive) settings.
    // Boxed (152 bytes inline): most cameras take their recording settings from a Preset.
    pub dvr: Option<Box<StreamDvrSpec>>,
    /// Outgoing re-streams to other servers.
    #[schemars(length(max = 32))]
    pub pushes: Option<Vec<StreamPush>>,
    /// Key/value labels of the stream (values 1–40 characters), matched by nodes' required stream labels.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(k, size(self[k]) >= 1 && size(self[k]) <= 40)",
        "message": "stream label values must be 1 to 40 characters long"
    }]))]
    #[schemars(extend("maxProperties" = 64))]
    pub labels: Option<BTreeMap<String, String>>,
    /// Zone placement rules (required and preferred zones).
    pub layout_rules: Option<Box<LayoutRules>>,
    /// Watcher-only settings few cameras set (map position, ONVIF, analytics…): 8 bytes when
    /// none is.
    #[serde(flatten)]
    pub extras: Rare<StreamExtras>,
}

/// The settings of a stream few cameras set (wire members of the stream config, flattened).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamExtras {
    /// Video-analytics settings.
    pub vision: Option<VisionSpec>,
    /// Camera position on a map or floor plan.
    pub coordinates: Option<Coordinates>,
    /// Older duplicate of `coordinates` (deprecated by Watcher; kept for old clients).
    pub map_coordinates: Option<Coordinates>,
    /// Postal address of the camera.
    #[schemars(length(max = 1024))]
    pub postal_address: Option<String>,
    /// ONVIF access to the camera (URL, PTZ).
    pub onvif: Option<OnvifSpec>,
    /// Folder the camera is placed in.
    pub folder_id: Option<i64>,
    /// Audio capture and transcoding settings.
    pub audio: Option<AudioSpec>,
    /// Whether the stream accepts publishing.
    pub can_publish: Option<bool>,
}

/// One element of `inputs[]`: a source the node captures from.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.url.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*:[^/@]*@')",
    "message": "input URLs must not carry a password: reference a Secret in spec.credentials instead"
}]))]
pub struct StreamInput {
    /// Source URL; its scheme selects the input kind (fake://, file://, publish://, rtsp://, …).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Everything else an input may set: few cameras set any of it (8 bytes when none is).
    #[serde(flatten)]
    pub options: Rare<InputOptions>,
}

/// The settings of an input other than its URL (wire members of `inputs[]`, flattened).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InputOptions {
    /// Failover priority (1 = first); by default list order decides.
    pub priority: Option<i64>,
    /// Free-text description of the input.
    pub comment: Option<String>,
    /// Seconds without any frames before the source counts as lost, or `false` to never give up.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub source_timeout: Option<Value>,
    /// Seconds to wait for new audio frames before the source counts as lost.
    pub audio_timeout: Option<i64>,
    /// Seconds to wait for new video frames before the source counts as lost.
    pub video_timeout: Option<i64>,
    /// Longest wait between reconnection attempts, in seconds.
    #[schemars(range(min = 1))]
    pub max_retry_timeout: Option<i64>,
    /// Seconds before switching to the fallback source while the main one sends no frames.
    pub timeout: Option<i64>,
    /// Seconds without frames before the `frames_timed_out` event is raised.
    pub frames_timeout: Option<i64>,
    /// User agent sent to the source, where the protocol allows it.
    pub user_agent: Option<String>,
    /// Agent to tunnel the connection through, written as `agent://ID`.
    pub via: Option<String>,
    /// Transcoding of the published audio: keep, aac, add_aac, aac_silence, keep_silence.
    pub output_audio: Option<OutputAudio>,
    /// Request headers sent to the source (do not put credentials here; use spec.credentials).
    pub headers: Option<BTreeMap<String, String>>,
    /// Skip input start while the stream has no clients (seconds).
    pub no_clients_reconnect_delay: Option<i64>,
    /// File path: the input is allowed while the file holds `1`.
    pub allow_if: Option<String>,
    /// File path: the input is denied while the file holds `1`.
    pub deny_if: Option<String>,
    /// fake:// inputs: width of the generated picture.
    pub width: Option<i64>,
    /// fake:// inputs: height of the generated picture.
    pub height: Option<i64>,
    /// fake:// inputs: bitrate of the generated stream (kbit/s).
    pub bitrate: Option<i64>,
    /// rtsp inputs: force UDP transport for RTP.
    pub rtp: Option<String>,
    /// rtsp inputs: wait for full RTP time synchronization before processing frames.
    pub wait_rtcp: Option<bool>,
    /// file inputs: MPEG-TS PIDs to ingest.
    pub pids: Option<Vec<i64>>,
    /// file inputs: MPEG-TS programs to ingest.
    pub programs: Option<Vec<i64>>,
    /// file inputs: closed-caption handling rules.
    pub closed_captions: Option<BTreeMap<String, String>>,
    /// file inputs: MPEG-TS language descriptors (track → language).
    pub languages: Option<BTreeMap<String, String>>,
    /// file/publish inputs: disable SCTE-35 processing (deprecated).
    pub scte35: Option<bool>,
    /// file/publish inputs: subtitle handling (deprecated; use the stream's dvbocr).
    pub subtitles: Option<String>,
    /// publish inputs: preferred WebRTC transport (udp or tcp).
    pub transport: Option<String>,
    /// publish inputs: use adaptive bitrate for WebRTC publications.
    pub webrtc_abr: Option<bool>,
    /// publish inputs: preferred video codec at WebRTC publication start.
    pub prefer_video_codec: Option<String>,
    /// publish inputs: preferred codec (deprecated).
    pub prefer_codec: Option<String>,
    /// publish inputs: minimum bitrate threshold, kbit/s.
    pub min_bitrate: Option<i64>,
    /// publish inputs: ABR correction between target and browser bitrate, kbit/s.
    pub abr_correction: Option<i64>,
    /// publish inputs: number of ABR adjustment cycles.
    pub abr_cycles: Option<i64>,
    /// publish inputs: log the ABR process.
    pub abr_debug: Option<i64>,
    /// publish inputs: lower packet-loss limit at which the bitrate is raised.
    pub abr_loss_lower: Option<f64>,
    /// publish inputs: upper packet-loss limit at which the bitrate is reduced.
    pub abr_loss_upper: Option<f64>,
    /// publish inputs: maximum ABR bitrate, kbit/s.
    pub abr_max_bitrate: Option<i64>,
    /// publish inputs: ABR algorithm.
    pub abr_mode: Option<i64>,
    /// publish inputs: ABR step down.
    pub abr_stepdown: Option<f64>,
    /// publish inputs: ABR step up, percent.
    pub abr_stepup: Option<i64>,
}

/// Audio codec handling of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputAudio {
    /// Keep the audio as it arrives.
    Keep,
    /// Transcode to AAC.
    Aac,
    /// Add an AAC track.
    AddAac,
    /// AAC silence.
    AacSilence,
    /// Keep, filling gaps with silence.
    KeepSilence,
}

/// One element of `pushes[]`: an outgoing re-stream.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.url.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*:[^/@]*@')",
    "message": "push URLs must not carry a password: reference a Secret in spec.pushCredentials instead"
}]))]
pub struct StreamPush {
    /// Destination URL (rtmp://, srt://, udp://, …).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Free-text description.
    pub comment: Option<String>,
    /// Maximum number of push retries.
    pub retry_limit: Option<i64>,
    /// Seconds between retries.
    pub retry_timeout: Option<i64>,
    /// Seconds after which the pusher stops if the source stops.
    pub timeout: Option<i64>,
    /// Seconds to wait for the connection.
    pub connect_timeout: Option<i64>,
    /// Pause the push without removing it.
    pub disabled: Option<bool>,
}

/// Recording settings of a stream or preset.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamDvrSpec {
    /// Number of additional nodes that keep a copy of the archive (Watcher placement; not sent to nodes).
    #[schemars(range(min = 0, max = 5))]
    pub redundancy_factor: Option<i64>,
    /// Storage path or URL of the archive on the node.
    pub root: Option<String>,
    /// Use a DVR storage declared in the node's server config.
    pub reference: Option<String>,
    /// Archive size cap in bytes; the oldest data is overwritten when reached.
    #[schemars(range(min = 0))]
    pub storage_limit: Option<i64>,
    /// Archive depth in seconds.
    #[schemars(range(min = 0))]
    pub expiration: Option<i64>,
    /// Extra retention in seconds for footage that belongs to episodes.
    #[schemars(range(min = 0))]
    pub episodes_expiration: Option<i64>,
    /// Disk usage cap in percent.
    #[schemars(range(min = 0, max = 100))]
    pub disk_usage_limit: Option<i64>,
    /// UTC recording windows as [[hhmm, hhmm], …].
    pub schedule: Option<Vec<Vec<i64>>>,
}

/// Video-analytics settings.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VisionSpec {
    /// Analytics algorithm: faces or plates.
    pub alg: Option<VisionAlg>,
    /// Polygons restricting detection, as comma-separated vertex coordinates; empty = whole frame.
    pub areas: Option<String>,
    /// Per-region detectors; when set they supersede `alg` and `areas`.
    #[schemars(length(max = 64))]
    pub detectors: Option<Vec<VisionDetector>>,
}

/// Analytics algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VisionAlg {
    /// Face detection.
    Faces,
    /// Licence-plate recognition.
    Plates,
}

/// One detector over one region of the frame.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VisionDetector {
    /// Detector kind: faces, vehicles, motion, qr-codes or humans.
    #[schemars(regex(pattern = r"^(faces|vehicles|motion|qr-codes|humans)$"))]
    pub detector_type: String,
    /// Region identifier, telling episodes of different regions apart.
    pub region_id: String,
    /// Human-readable region name.
    pub region_title: Option<String>,
    /// Polygon of the region as a list of frame-relative points.
    pub region_coordinates: Option<Vec<Point>>,
}

/// A frame-relative point (0–1 on both axes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Point {
    /// Horizontal coordinate, 0–1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub x: f64,
    /// Vertical coordinate, 0–1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub y: f64,
}

/// Geographic position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Coordinates {
    /// Latitude in degrees.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub latitude: f64,
    /// Longitude in degrees.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub longitude: f64,
}

/// ONVIF access to a camera.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.url) || !self.url.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*:[^/@]*@')",
    "message": "ONVIF URLs must not carry a password: reference a Secret in spec.credentials instead"
}]))]
pub struct OnvifSpec {
    /// ONVIF endpoint of the camera (credentials come from spec.credentials).
    pub url: Option<String>,
    /// Enable PTZ control through ONVIF.
    pub ptz: Option<bool>,
}

/// Audio capture settings.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AudioSpec {
    /// Codec to transcode audio to (only `aac`).
    #[schemars(regex(pattern = "^aac$"))]
    pub transcode_audio_codec: Option<String>,
    /// Do not capture audio.
    pub disabled: Option<bool>,
}

/// Zone placement rules. Zones are `Zone` objects; streamers join them with `spec.zones`.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LayoutRules {
    /// Streamers in one of these zones win over all others (before preferred labels and
    /// load) when they have room; otherwise the stream goes elsewhere. A placed stream is not
    /// moved to a preferred zone unless the layout is rebalanced.
    pub preferred_zones: Option<Vec<String>>,
    /// The stream runs only on streamers in one of these zones (empty = any); with none
    /// serving them it is not scheduled (`Scheduled=False`, reason `ZoneUnavailable`).
    pub required_zones: Option<Vec<String>>,
}

/// Role of a node in the cluster.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Flussonic Media Server: ingest and DVR.
    #[default]
    Streamer,
    /// Vision inference node.
    Inference,
    /// Vision identification node.
    Identification,
}

/// Why a stream's placement changed (Watcher's `change_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeReason {
    /// The stream lacks labels the node requires.
    StreamMissesNodeRequiredLabels,
    /// The node lacks labels the stream requires.
    NodeMissesStreamRequiredLabels,
    /// The node went offline.
    NodeBecomeOffline,
    /// The stream was disabled.
    StreamDisabled,
    /// The node was deleted.
    NodeDeleted,
    /// The node reached its channel limit.
    NodeChannelLimitExceeded,
    /// Several agent streams conflict on one ingest.
    MultistreamAgentIngestConflict,
    /// The node's DVR is full.
    StreamerDvrSizeExceeded,
    /// The node's bandwidth is exhausted.
    StreamerTotalBandwidthExceeded,
    /// Another node matches the preferred labels better.
    PreferredLabelsBetterMatch,
    /// The stream had no placement yet.
    NotDistributed,
    /// The number of DVR copies was adjusted.
    DvrRedundancyAdjust,
    /// The node is under CPU pressure.
    NodeCpuPressure,
    /// A re-layout was requested through the API.
    RelayoutByApi,
    /// Stream and node are in different namespaces.
    NamespaceMismatch,
}

/// Why a node cannot take a stream (Watcher's `node_layout_decisions[].reasons`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DecisionReason {
    /// The stream lacks labels the node requires.
    StreamMissesNodeRequiredLabels,
    /// The node lacks labels the stream requires.
    NodeMissesStreamRequiredLabels,
    /// The node reached its channel limit.
    NodeChannelLimitExceeded,
    /// The node's DVR is full.
    StreamerDvrSizeExceeded,
    /// The node cannot transcode.
    NodeNotAvailableForTranscoding,
    /// The node is offline (or cordoned).
    NodeOffline,
    /// The node's bandwidth is exhausted.
    StreamerTotalBandwidthExceeded,
    /// Stream and node are in different namespaces.
    NamespaceMismatch,
}

/// Who changed a placement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Originator {
    /// The layouter.
    #[default]
    Layouter,
    /// Someone else (an API call).
    Other,
}

/// The layouter's verdict for one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeLayoutDecision {
    /// Role of the node.
    pub role: NodeRole,
    /// Node hostname.
    pub hostname: Text,
    /// `true` if the stream can be placed on this node.
    pub node_decision: bool,
    /// Why the node is unsuitable (empty when `node_decision` is true).
    #[serde(default)]
    pub reasons: Vec<DecisionReason>,
}

/// One earlier ingest placement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngestHistoryItem {
    /// When the placement was made (UTC ms).
    pub created_at: i64,
    /// Ingest node.
    pub ingest: Text,
    /// Who made the placement.
    pub originator: Originator,
}

/// Placement of a stream in the cluster (Watcher's `CentralStreamLayout`).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamLayout {
    /// Node that captures the stream.
    pub ingest: Option<Text>,
    /// Nodes holding DVR backup copies.
    #[serde(default)]
    pub dvr_backups: Vec<Text>,
    /// Node running analytics for the stream.
    pub inference: Option<Text>,
    /// Node the stream failed over from, if the last change was a failover.
    pub failover_from: Option<Text>,
    /// Why the placement last changed.
    pub change_reason: Option<ChangeReason>,
    /// When this placement was made (UTC ms).
    pub created_at: Option<i64>,
    /// Who made the placement.
    pub originator: Option<Originator>,
    /// Per-node verdicts explaining the placement.
    #[serde(default)]
    pub node_layout_decisions: Vec<NodeLayoutDecision>,
    /// The last five ingest placements.
    #[serde(default)]
    pub ingest_history: Vec<IngestHistoryItem>,
}

/// The node's view of a stream (GET /streams/{name}): the effective config plus read-only
/// runtime members. Unknown members from newer nodes are kept in `extra` and never sent back.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStream {
    /// Stream name (absent only when a list's `select` leaves it out).
    #[serde(default)]
    pub name: String,
    /// Where the stream came from: config, user, remote or external.
    pub named_by: Option<String>,
    /// Position in the node's config file.
    pub position: Option<i64>,
    /// The part of the config stored on the node's disk (what drift is judged against).
    pub config_on_disk: Option<Value>,
    /// Runtime statistics.
    pub stats: Option<super::stats::StreamStats>,
    /// Labels of the effective config.
    pub labels: Option<BTreeMap<String, String>>,
    /// Everything else the node returned.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}
