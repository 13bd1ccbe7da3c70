//! A node's server configuration (`PUT /streamer/api/v3/config`, Watcher's `StreamerConfig`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::skip_serializing_none;

use crate::resources::common::{any_object, any_object_list, any_value, int_or_string};

/// The partial server configuration Panoptes pushes to a node. Only members that are set are
/// sent, so keys Panoptes does not manage stay as they are on the node. Deeply nested
/// collections (DVRs, templates, event sinks…) travel as free-form objects validated by the node.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerConfig {
    /// Network listeners (http, https, rtmp, rtsp, srt…).
    pub listeners: Option<Listeners>,
    /// Global SRT listening port (port or host:port).
    #[serde(default)]
    #[schemars(schema_with = "int_or_string")]
    pub srt: Option<Value>,
    /// SRT play configuration in single-port mode.
    pub srt_play: Option<SrtConfig>,
    /// SRT2 play configuration in single-port mode (deprecated).
    pub srt2_play: Option<SrtConfig>,
    /// SRT publish configuration in single-port mode.
    pub srt_publish: Option<SrtConfig>,
    /// SRT2 publish configuration in single-port mode (deprecated).
    pub srt2_publish: Option<SrtConfig>,
    /// Path of a custom GeoIP database.
    pub geoip: Option<String>,
    /// Free-form additional server options (a JSON string).
    pub meta: Option<String>,
    /// Log verbosity of the node.
    pub loglevel: Option<LogLevel>,
    /// Save statistics on Nvidia performance (deprecated).
    pub nvidia_monitor: Option<bool>,
    /// Total server bandwidth, kbit/s, used to compute load.
    #[schemars(range(min = 0))]
    pub total_bandwidth: Option<i64>,
    /// Log requests for streams (manifests, segments) and API calls.
    pub log_requests: Option<bool>,
    /// Directory for Pulse statistics.
    pub pulsedb: Option<String>,
    /// Directory for the session log (deprecated).
    pub session_log: Option<String>,
    /// URL prefix for HLS and DASH (string, or false).
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub url_prefix: Option<Value>,
    /// Subnets (CIDR) allowed to call the node's API.
    pub api_allowed_from: Option<Vec<String>>,
    /// Query-string key name used for token authorization.
    pub auth_token: Option<String>,
    /// Cluster key. Never set it here: Panoptes takes it from the Streamer's credentials Secret.
    pub cluster_key: Option<String>,
    /// Administrator credentials. Never set them here: they come from the credentials Secret.
    pub edit_auth: Option<AdminCredentials>,
    /// Read-only API credentials. Never set them here: they come from the credentials Secret.
    pub view_auth: Option<AdminCredentials>,
    /// Chassis configuration.
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub chassis: Option<Value>,
    /// Event notification sinks.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub event_sinks: Option<Value>,
    /// Authorization backends.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub auth_backends: Option<Value>,
    /// VOD locations.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub vods: Option<Value>,
    /// Global DVR storages.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub dvrs: Option<Value>,
    /// Peers in the cluster.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub peers: Option<Value>,
    /// Video sources to pull streams from.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub sources: Option<Value>,
    /// Transponders.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub transponders: Option<Value>,
    /// Stream templates.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub templates: Option<Value>,
    /// Caches.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub caches: Option<Value>,
    /// DVB cards.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub dvb_cards: Option<Value>,
    /// Balancers.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub balancers: Option<Value>,
    /// Camera alarm configuration.
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub camera_alarm: Option<Value>,
    /// Port forwarding configuration.
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub rproxy: Option<Value>,
    /// Video surveillance subsystem configuration.
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub vsaas: Option<Value>,
    /// File processor configuration.
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub file_processor: Option<Value>,
    /// IPTV configuration.
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub iptv: Option<Value>,
    /// Decklink SDI capture cards.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub decklinks: Option<Value>,
    /// HTTP prefixes served through a remote HTTP server.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub http_proxies: Option<Value>,
    /// Server domain names and aliases.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub server_names: Option<Value>,
    /// Global WebRTC playback ports.
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub webrtc_play: Option<Value>,
    /// Global WebRTC publishing ports.
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub webrtc_publish: Option<Value>,
}

/// Network listeners of a node.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Listeners {
    /// HTTP listeners.
    pub http: Option<Vec<HttpListener>>,
    /// HTTPS listeners.
    pub https: Option<Vec<HttpListener>>,
    /// RTMP listeners.
    pub rtmp: Option<Vec<PortListener>>,
    /// RTMPS listeners.
    pub rtmps: Option<Vec<PortListener>>,
    /// RTSP listeners.
    pub rtsp: Option<Vec<PortListener>>,
    /// RTSPS listeners.
    pub rtsps: Option<Vec<PortListener>>,
    /// SRT listeners.
    #[serde(default)]
    #[schemars(schema_with = "any_object_list")]
    pub srt: Option<Value>,
}

/// An HTTP(S) listener.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpListener {
    /// TCP port.
    // "uint16" (schemars' format for u16) is unknown to the API server, which warns on every
    // apply; int32 with the range says the same.
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub port: u16,
    /// Bind address.
    pub address: Option<String>,
    /// `false` = this listener serves no API calls.
    pub api: Option<bool>,
}

/// A plain port listener.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PortListener {
    /// TCP port.
    // "uint16" (schemars' format for u16) is unknown to the API server, which warns on every
    // apply; int32 with the range says the same.
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub port: u16,
    /// Bind address.
    pub address: Option<String>,
}

/// SRT single-port configuration.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SrtConfig {
    /// Listening port or host:port.
    #[serde(default)]
    #[schemars(schema_with = "int_or_string")]
    pub port: Option<Value>,
    /// Data transmission timeout in seconds, or false for unlimited.
    #[serde(default)]
    #[schemars(schema_with = "any_value")]
    pub timeout: Option<Value>,
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// No logging.
    None,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Notice.
    Notice,
    /// Warning.
    Warning,
    /// Error.
    Error,
    /// Alert.
    Alert,
    /// Critical.
    Critical,
}

/// API credentials of a node (only ever built from a Secret at push time).
#[skip_serializing_none]
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AdminCredentials {
    /// Login.
    pub login: String,
    /// Password.
    pub password: String,
    /// The node stores a hash of the password.
    pub hash: Option<bool>,
}

impl std::fmt::Debug for AdminCredentials {
    // Credentials reach logs only through Debug; never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}
