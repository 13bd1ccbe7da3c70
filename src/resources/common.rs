//! Types shared by every custom resource: Secret references, conditions, schema helpers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// API group of every Panoptes kind.
pub const GROUP: &str = "panoptes.dev";
/// API version of every Panoptes kind.
pub const VERSION: &str = "v1alpha1";
/// Finalizer guarding state that lives outside Kubernetes (streams on nodes).
pub const FINALIZER: &str = "panoptes.dev/cleanup";
/// Field manager of the controllers' server-side applies.
pub const CONTROLLER_MANAGER: &str = "panoptes";
/// Field manager of the facade's server-side applies.
pub const API_MANAGER: &str = "panoptes-api";
/// Field manager of `panoptes import --apply`.
pub const IMPORT_MANAGER: &str = "panoptes-import";
/// Label Panoptes puts on every stream it pushes to a node, so it never touches foreign streams.
pub const MANAGED_LABEL: &str = "managed-by";
/// Value of [`MANAGED_LABEL`].
pub const MANAGED_VALUE: &str = "panoptes";

/// A reference to one key of a Secret in the resource's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as the resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Status fields every Panoptes kind carries, so kubectl wait, kstatus and Argo CD read them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// Latest observations of the resource's state (`Ready` plus kind-specific types).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Schema for a free-form JSON value (object, scalar or list) the API server must keep as is.
pub fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema for a free-form JSON object the API server must keep as is.
pub fn any_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema for a list of free-form JSON objects.
pub fn any_object_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// Schema for a value that is a port number or a `host:port` string.
pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-int-or-string": true })
}

/// Finds a condition by type.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
