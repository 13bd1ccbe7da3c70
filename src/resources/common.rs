//! Types shared by every custom resource: Secret references, conditions, schema helpers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

pub use super::text::Text;

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

/// One aspect of a resource's state: Kubernetes' `Condition` (the same members, wire and
/// schema), with its texts held as [`Text`]s. Every cached object carries a few; at 100,000
/// Streams their four strings each were ~100 bytes per condition repeated 300,000 times (the
/// types, statuses and reasons are a handful of words, the messages name one of the nodes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// When the condition last changed status.
    pub last_transition_time: Time,
    /// Human-readable details.
    #[serde(default)]
    pub message: Text,
    /// The `metadata.generation` the condition was set from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// CamelCase reason of the last transition.
    #[serde(default)]
    pub reason: Text,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: Text,
    /// CamelCase condition type.
    #[serde(default, rename = "type")]
    pub type_: Text,
}

impl JsonSchema for Condition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as JsonSchema>::schema_name()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        <k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as JsonSchema>::json_schema(
            generator,
        )
    }
}

/// Finds a condition by type.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Settings few objects set, kept behind one pointer: a cached object pays 8 bytes for all of
/// them when none is set (issue 21: at 100,000 Streams every inline `None` is paid 100,000
/// times). Only for `#[serde(flatten)]` fields: the wire and the schema are `T`'s own
/// members, as if they were declared in place.
#[derive(Clone, Debug, Default)]
pub struct Rare<T>(Option<Box<T>>);

impl<T: Default + PartialEq> Rare<T> {
    /// The settings, if any is set.
    pub fn get(&self) -> Option<&T> {
        self.0.as_deref()
    }

    /// The settings to edit, if any is set.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }

    /// The settings to edit, made on first use.
    pub fn make_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }

    /// Drops the box again when an edit left every setting unset.
    pub fn compact(&mut self) {
        if self.0.as_deref().is_some_and(|t| *t == T::default()) {
            self.0 = None;
        }
    }
}

impl<T: Default + PartialEq> From<T> for Rare<T> {
    fn from(t: T) -> Self {
        Rare((t != T::default()).then(|| Box::new(t)))
    }
}

/// Equal when the settings are, a box of unset settings included.
impl<T: Default + PartialEq> PartialEq for Rare<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self.get(), other.get()) {
            (None, None) => true,
            (Some(a), Some(b)) => a == b,
            (Some(t), None) | (None, Some(t)) => *t == T::default(),
        }
    }
}

impl<T: Serialize + Default> Serialize for Rare<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(t) => t.serialize(s),
            // T's members are all optional and skipped when unset: nothing is written.
            None => T::default().serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de> + Default + PartialEq> Deserialize<'de> for Rare<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Rare::from)
    }
}

/// `T`'s schema: flattened, its members read as declared in the outer type.
impl<T: JsonSchema> JsonSchema for Rare<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}
