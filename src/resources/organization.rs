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
    doc = "An Organization is a Watcher tenant: a title, an owner and the Presets its cameras may use. Streams and Users belong to organizations by reference; it has a Watcher id.",
    version = "v1alpha1",
    kind = "Organization",
    namespaced,
    status = "OrganizationStatus",
    shortname = "org",
    category = "panoptes",
    printcolumn = r#"{"name":"ID","type":"integer","jsonPath":".status.id"}"#,
    printcolumn = r#"{"name":"Title","type":"string","jsonPath":".spec.title"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
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

impl Organization {
    /// Presets the organization offers (its `presetRefs` and `defaultPresetRef`; empty refs
    /// are ignored, duplicates kept). The Preset and Organization controllers requeue by it,
    /// the facade lists only these to the organization's users.
    pub fn offered_presets(&self) -> Vec<String> {
        self.spec
            .preset_refs
            .iter()
            .flatten()
            .chain(self.spec.default_preset_ref.iter())
            .filter(|r| !r.is_empty())
            .cloned()
            .collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_presets_include_the_default_once_listed() {
        let org = Organization::new(
            "o",
            OrganizationSpec {
                title: "o".into(),
                preset_refs: Some(vec!["a".into(), "".into(), "b".into()]),
                default_preset_ref: Some("a".into()),
                ..Default::default()
            },
        );
        let mut p = org.offered_presets();
        p.sort();
        p.dedup();
        assert_eq!(p, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn an_organization_without_refs_offers_nothing() {
        let org = Organization::new("o", OrganizationSpec::default());
        assert!(org.offered_presets().is_empty());
    }
}
