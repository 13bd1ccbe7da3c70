//! `Preset`: a DVR and analytics template cameras use.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::CommonStatus;
use super::wire::stream::{LayoutRules, StreamDvrSpec, VisionAlg};

/// A camera settings template. Deleting a preset that cameras still use is soft: it is marked
/// deleted (`status.deletedAt`) and goes away once no stream references it.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "panoptes.dev",
    doc = "A Preset is a camera settings template (Watcher preset): Streams that reference it get its settings under their own. It has a Watcher id; deleting one that Streams still use only marks it deleted until the last one leaves.",
    version = "v1alpha1",
    kind = "Preset",
    namespaced,
    status = "PresetStatus",
    shortname = "pst",
    category = "panoptes",
    printcolumn = r#"{"name":"ID","type":"integer","jsonPath":".status.id"}"#,
    printcolumn = r#"{"name":"Title","type":"string","jsonPath":".spec.title"}"#,
    printcolumn = r#"{"name":"Streams","type":"integer","jsonPath":".status.streamsCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(oldSelf.id) || (has(self.id) && self.id == oldSelf.id)", "message": "spec.id is immutable once pinned"}
]))]
pub struct PresetSpec {
    /// Pinned Watcher id (positive integer). Leave unset to have Panoptes assign one.
    #[schemars(range(min = 1, max = 2147483647))]
    pub id: Option<i64>,
    /// Preset name shown to users.
    #[schemars(length(min = 1, max = 256))]
    pub title: String,
    /// `true`: cameras using the preset may change its settings; `false`: settings are locked.
    pub is_adjustable: Option<bool>,
    /// Available to every organization.
    pub is_default: Option<bool>,
    /// DVR settings copied to cameras that use the preset.
    pub dvr: Option<StreamDvrSpec>,
    /// Analytics settings of the preset.
    pub vision: Option<PresetVision>,
    /// Zone rules applied to new cameras created with this preset.
    pub layout_rules: Option<LayoutRules>,
    /// How a change of this preset reaches the cameras already running with it.
    pub rollout: Option<PresetRollout>,
}

/// The pace of a preset change over running cameras: each camera restarts on its node when
/// its config changes, so a change that reaches 10,000 cameras restarts them a few per node at
/// a time instead of all at once.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetRollout {
    /// Cameras of this preset restarting at once on one node (default: the operator's
    /// `--rollout-per-node`, 10).
    #[schemars(range(min = 1, max = 10000))]
    pub max_restarting_per_node: Option<i32>,
    /// `true` holds the change: cameras not reached yet keep their previous config until it
    /// is `false` again (cameras already restarted keep the new one).
    pub paused: Option<bool>,
}

/// Analytics settings of a preset.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PresetVision {
    /// faces or plates.
    pub alg: Option<VisionAlg>,
}

/// Observed state of a preset.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetStatus {
    /// Conditions and the observed generation.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Watcher id in effect (pinned or assigned).
    pub id: Option<i64>,
    /// Set (UTC ms) once the preset is marked deleted while streams still use it.
    pub deleted_at: Option<i64>,
    /// Streams using the preset.
    pub streams_count: Option<i64>,
    /// Organizations offering the preset.
    pub organizations_count: Option<i64>,
}
