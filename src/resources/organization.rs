//! `Organization`: a tenant that owns cameras and users.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::CommonStatus;

/// An organization: title, owner, and the presets its cameras may use.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "panoptes.dev",
    version = "v1alpha1",
    kind = "Organization",
    namespaced,
    status = "OrganizationStatus",
    shortname = "org",
    category = "panoptes",
    printcolumn = r#"{"name":"ID","type":"integer","jsonPath":".status.id"}"#,
    printcolumn = r#"{"name":"Title","type":"string","jsonPath":".spec.title"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(oldSelf.id) || (has(self.id) && self.id == oldSelf.id)", "message": "spec.id is immutable once pinned"},
    {"rule": "!has(self.defaultPresetRef) || (has(self.presetRefs) && self.defaultPresetRef in self.presetRefs)", "message": "defaultPresetRef must be one of presetRefs"}
]))]
pub struct OrganizationSpec {
    /// Pinned Watcher id (positive integer). Leave unset to have Panoptes assign one.
    #[schemars(range(min = 1, max = 2147483647))]
    pub id: Option<i64>,
    /// Organization name.
    #[schemars(length(min = 1, max = 256))]
    pub title: String,
    /// Name of the User (same namespace) who owns the organization.
    #[schemars(length(max = 253))]
    pub owner_ref: Option<String>,
    /// Names of the Presets (same namespace) offered to the organization's cameras.
    #[schemars(length(max = 256))]
    pub preset_refs: Option<Vec<String>>,
    /// Preset used for new cameras when none is named; must be in presetRefs.
    pub default_preset_ref: Option<String>,
}

/// Observed state of an organization.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// Conditions and the observed generation.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Watcher id in effect (pinned or assigned).
    pub id: Option<i64>,
    /// Streams owned by the organization.
    pub streams_count: Option<i64>,
}
