//! `Streamer`: one Flussonic Media Server node Panoptes places streams on.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::CommonStatus;
use super::wire::{NodeRole, ServerConfig};

/// A streamer node: where it is, how to authenticate, what it may run, and the partial server
/// config to push to it.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "panoptes.dev",
    doc = "A Streamer is one Flussonic streamer node: its hostname and API URL, the credentials Panoptes uses to reach it, what it may run (role, labels, cordon, drain, channel limit) and the partial server config pushed to it. status.conditions say whether it answers its probes (Reachable), took its config (ConfigApplied) and serves streams (Ready).",
    version = "v1alpha1",
    kind = "Streamer",
    namespaced,
    status = "StreamerStatus",
    shortname = "str",
    category = "panoptes",
    printcolumn = r#"{"name":"Hostname","type":"string","jsonPath":".spec.hostname"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.apiUrl"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Streams","type":"integer","jsonPath":".status.assignedStreams"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.config) || !has(self.config.cluster_key)", "message": "spec.config.cluster_key must not be set: put the cluster key in the Secret named by spec.credentials (key clusterKey)"},
    {"rule": "!has(self.config) || (!has(self.config.edit_auth) && !has(self.config.view_auth))", "message": "spec.config.edit_auth/view_auth must not be set: node credentials live in the Secret named by spec.credentials"},
    {"rule": "!has(self.drain) || !self.drain || (has(self.cordon) && self.cordon)", "message": "drain requires cordon: set spec.cordon to true to drain a streamer"}
]))]
pub struct StreamerSpec {
    /// Identity of the node in the cluster (its server name). Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "hostname is immutable; create a new Streamer instead"}]))]
    pub hostname: String,
    /// Base URL of the node's HTTP API. Defaults to `http://<hostname>`.
    #[schemars(length(max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.matches('^https?://')", "message": "apiUrl must start with http:// or https://"}]))]
    pub api_url: Option<String>,
    /// Public address clients are redirected to for streams captured on this node.
    pub public_payload_url: Option<String>,
    /// Internal (LAN) address for intra-cluster traffic; defaults to the API URL.
    pub private_payload_url: Option<String>,
    /// Secret holding the node's API credentials: keys `login` + `password` (Basic),
    /// `token` (Bearer) or `clusterKey` (Cluster scheme, also pushed as the node's cluster key).
    pub credentials: Option<StreamerCredentials>,
    /// Set by the Watcher API (never in a manifest): the facade-owned per-Streamer Secret
    /// holding node credentials changed through the API (`cluster_key`, `config.edit_auth`).
    /// When set, Panoptes authenticates with it instead of `credentials.secretName` (the scheme
    /// falls back to `credentials.scheme`), so a shared Secret is never written by the API and
    /// re-applying a manifest keeps the change; remove this field to go back to `credentials`.
    /// The Secret is created by Panoptes, owned by this Streamer and deleted with it.
    pub facade_credentials: Option<StreamerCredentials>,
    /// Kind of node: streamer, inference or identification.
    pub role: Option<NodeRole>,
    /// Maximum number of streams that may be placed on this node (unset = unlimited).
    #[schemars(range(min = 0))]
    pub channel_limit: Option<i64>,
    /// CPU usage limit in percent above which no new streams are placed.
    #[schemars(range(min = 0, max = 100))]
    pub cpu_limit: Option<i64>,
    /// Network bandwidth of the node in kbit/s, used to compute load.
    #[schemars(range(min = 0))]
    pub total_bandwidth: Option<i64>,
    /// Placement labels of the node, matched against streams' required node labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Labels a stream must carry to be placed on this node.
    pub required_stream_labels: Option<BTreeMap<String, String>>,
    /// Zones this node serves (names of `Zone` objects). Streams requiring a zone run only on
    /// its streamers; a node in a dedicated zone takes only streams requiring that zone.
    pub zones: Option<Vec<String>>,
    /// Namespaces besides its own whose Streams this node may hold (exact names, or `*` for
    /// every namespace). Empty by default: a Streamer serves the Streams of its own namespace
    /// only, so in cluster mode whoever may create a Stream in one namespace cannot have
    /// another namespace's nodes ingest it. A Stream already placed here moves off
    /// (`namespace_mismatch`) when its namespace is no longer admitted.
    #[schemars(length(max = 256))]
    pub admit_namespaces: Option<Vec<AdmittedNamespace>>,
    /// Cordoned nodes keep their streams but receive no new ones.
    pub cordon: Option<bool>,
    /// Draining (requires cordon) moves every stream away from the node.
    pub drain: Option<bool>,
    /// Partial server configuration to push (`PUT /streamer/api/v3/config`); only the members
    /// set here are managed. Credentials are not allowed here.
    pub config: Option<ServerConfig>,
    /// Allow sending credentials (the node's `Authorization` header, camera passwords in
    /// stream configs) over plain `http://`. Default false: a node reached over `http://` gets
    /// no credentials, and a Streamer with credentials is not managed until its `apiUrl` is
    /// `https://` or this is set (for a lab, a simulator, or a node on a trusted link).
    pub allow_insecure: Option<bool>,
    /// PEM bundle of the CA certificate(s) that sign this node's HTTPS certificate. When set,
    /// only these CAs are trusted for this node (the system roots are not); when unset, the
    /// system roots are.
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
}

/// A namespace name (RFC 1123 label) or `*` (every namespace).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct AdmittedNamespace(
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$")
    )]
    pub String,
);

/// Where the node's API credentials are.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamerCredentials {
    /// Name of a Secret in the Streamer's namespace with keys `login`/`password`, `token` or `clusterKey`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Authentication scheme to use: basic, bearer or cluster. Defaults to the first that the Secret supports.
    pub scheme: Option<AuthScheme>,
}

/// How Panoptes authenticates to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// `Authorization: Basic` with the node's edit_auth login and password.
    Basic,
    /// `Authorization: Bearer` with an API token.
    Bearer,
    /// `Authorization: Cluster ts:sha1(ts:key)` with the cluster key.
    Cluster,
}

impl StreamerSpec {
    /// The node API base URL in effect: `apiUrl`, else `http://<hostname>`. The controller
    /// probes and pushes there; the facade records credentials as entered for it.
    pub fn effective_api_url(&self) -> String {
        self.api_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.hostname))
    }
}

/// Observed state of a node. Written on transitions only; live metrics are in the stats cache.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamerStatus {
    /// Conditions (`Reachable`, `ConfigApplied`, `Ready`) and the observed generation.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The API URL in use.
    pub api_url: Option<String>,
    /// Software version the node reports.
    pub version: Option<String>,
    /// Persistent node id the node reports.
    pub server_id: Option<String>,
    /// Boot time of the node (UTC seconds); uptime follows from it without status writes.
    pub started_at: Option<i64>,
    /// Number of streams placed on the node (ingest). While placements change in bulk it
    /// is written at most once per period (the node resync up to 50 nodes, then nodes / 10
    /// seconds), and within two resyncs of the count settling.
    pub assigned_streams: Option<i64>,
    /// Number of DVR backup copies placed on the node (written as `assignedStreams` is).
    pub dvr_backup_streams: Option<i64>,
    /// Time of the last probe that changed the status (RFC 3339).
    pub last_probe_time: Option<String>,
    /// Where the credentials Secret was first sent (a Secret without the
    /// `panoptes.dev/destinations` annotation is bound to the node URL of its first use; a
    /// new `apiUrl` gets no credentials until the Secret is written again).
    pub credential_binding: Option<CredentialBinding>,
}

/// The destinations a credentials Secret (one version of it) was first sent to. Holds no
/// secret value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialBinding {
    /// Secret name.
    pub secret_name: String,
    /// Secret uid (a Secret deleted and created again is a new one).
    pub secret_uid: String,
    /// Secret resourceVersion the binding was made at; writing the Secret again rebinds.
    pub resource_version: String,
    /// Origins (`scheme://host:port`) the credentials may go to.
    #[serde(default)]
    pub destinations: Vec<String>,
}
