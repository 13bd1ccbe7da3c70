//! `Zone`: a named group of streamers that placement rules refer to.
//!
//! Why a kind of its own rather than streamer labels under a reserved key: a Watcher zone
//! exists without members (it is created first, then streamers join it, and a stream may
//! require it before any streamer serves it), it carries its own attributes (`is_dedicated`,
//! who created it and when), and deleting it is an act of its own. Labels would make a zone
//! appear and vanish with its last streamer, and leave `is_dedicated` nowhere to live.
//! Membership stays on the Streamer (`spec.zones`, the reference's `Streamer.zones`), so a
//! node's manifest says everything about the node.
//!
//! A zone has no controller and no status: nothing about it needs observing. Its statistics
//! (members, streams requiring or preferring it) are computed from the cluster when read.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// A zone: a name streams' `layout_rules` and streamers' `zones` refer to.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "panoptes.dev",
    version = "v1alpha1",
    kind = "Zone",
    namespaced,
    shortname = "zn",
    category = "panoptes",
    printcolumn = r#"{"name":"Zone","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Dedicated","type":"boolean","jsonPath":".spec.isDedicated"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)", "message": "spec.name (the Watcher zone name) is immutable once the zone exists"}
]))]
pub struct ZoneSpec {
    /// The Watcher zone name (`unix_name`: A-Z a-z 0-9 _ - .), when it differs from
    /// `metadata.name` (which allows no capitals or `_`). Streamers' `zones` and streams'
    /// `layout_rules` name zones by it. Immutable.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.matches('^[A-Za-z0-9_.-]+$')", "message": "a zone name is a unix_name: only A-Z a-z 0-9 _ - ."}]))]
    pub name: Option<String>,
    /// A streamer in a dedicated zone takes only streams that require that zone.
    pub is_dedicated: Option<bool>,
    /// Login of the Watcher API user who created the zone (set by the facade).
    #[schemars(length(max = 256))]
    pub created_by: Option<String>,
}

impl Zone {
    /// The Watcher zone name: `spec.name`, else the object name.
    pub fn zone_name(&self) -> &str {
        self.spec
            .name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or("")
    }

    /// Whether streamers in this zone take only the streams that require it.
    pub fn is_dedicated(&self) -> bool {
        self.spec.is_dedicated.unwrap_or(false)
    }
}
