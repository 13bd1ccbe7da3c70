//! Custom resources rendered as Watcher objects. Each view is a plain struct (also the
//! OpenAPI schema of the response), built from the stores and the live stats cache only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::skip_serializing_none;

use super::ApiState;
use crate::domain::ids::Identified;
use crate::resources::preset::PresetVision;
use crate::resources::user::{AccessLevel, Permissions};
use crate::resources::wire::stream::LayoutRules;
use crate::resources::wire::{
    NodeRole, ServerConfig, ServerStats, StreamConfigSpec, StreamDvrSpec, StreamLayout, StreamStats,
};
use crate::resources::{Preset, Stream, Streamer, User};
use crate::state::NodeLive;

/// `{id, title}` of an organization or preset referenced by a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IdTitle {
    /// Watcher id.
    pub id: Option<i64>,
    /// Title.
    pub title: String,
}

/// A stream (Watcher's `StreamConfig`): the Flussonic config plus Watcher members.
#[skip_serializing_none]
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StreamView {
    /// Stream name.
    pub name: String,
    /// The stream configuration.
    #[serde(flatten)]
    pub config: StreamConfigSpec,
    /// Always `config`: every Panoptes stream is persistent.
    pub named_by: String,
    /// Owning organization id (deprecated by Watcher in favour of `organization`).
    pub organization_id: Option<i64>,
    /// Owning organization.
    pub organization: Option<IdTitle>,
    /// Preset id (deprecated by Watcher in favour of `preset`).
    pub preset_id: Option<i64>,
    /// Preset.
    pub preset: Option<IdTitle>,
    /// Current placement.
    pub layout: Option<StreamLayout>,
    /// Runtime statistics reported by the ingest node (a node's `StreamStats`, verbatim).
    #[schemars(with = "Option<StreamStats>")]
    pub stats: Option<Value>,
    /// Creation time (UTC ms).
    pub created_at: Option<i64>,
}

/// A streamer (Watcher's `Streamer`). `cluster_key` is write-only here: it lives in a Secret.
#[skip_serializing_none]
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StreamerView {
    /// Identity of the node.
    pub hostname: String,
    /// Kind of node.
    pub role: NodeRole,
    /// Maximum number of streams.
    pub channel_limit: Option<i64>,
    /// Bandwidth, kbit/s.
    pub total_bandwidth: Option<i64>,
    /// Placement labels.
    pub labels: BTreeMap<String, String>,
    /// API URL.
    pub api_url: Option<String>,
    /// LAN address.
    pub private_payload_url: Option<String>,
    /// Public address.
    pub public_payload_url: Option<String>,
    /// Zones.
    pub zones: Option<Vec<String>>,
    /// Server configuration pushed to the node.
    pub config: Option<ServerConfig>,
    /// DVR storages from the config.
    #[schemars(with = "Option<Vec<BTreeMap<String, Value>>>")]
    pub dvrs: Option<Value>,
    /// Live metrics from the last probe.
    pub stats: Option<PeerStatsView>,
}

/// A streamer's `stats`: what the node reported, and how its last probe went.
#[skip_serializing_none]
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PeerStatsView {
    /// The node's own statistics.
    #[serde(flatten)]
    pub server: ServerStats,
    /// The last probe reached the node.
    pub reachable: bool,
    /// The node reported itself ready.
    pub ready: bool,
    /// When the node was last probed (UTC ms).
    pub last_probe_at: i64,
    /// Why the last probe failed.
    pub error: Option<String>,
}

/// Owner of an organization.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct OwnerView {
    /// User id.
    pub id: Option<i64>,
    /// Login.
    pub name: String,
}

/// An organization membership of a user.
#[skip_serializing_none]
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct UserOrganization {
    /// Organization id.
    pub id: Option<i64>,
    /// Organization title.
    pub title: String,
    /// Organization owner.
    pub owner: Option<OwnerView>,
    /// What the user may do there.
    pub permissions: Option<Permissions>,
}

/// A user (Watcher's `User`); `password` is never returned.
#[skip_serializing_none]
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct UserView {
    /// User id.
    pub id: Option<i64>,
    /// Login.
    pub name: String,
    /// Display name.
    pub fullname: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// UI language.
    pub locale: Option<String>,
    /// Note.
    pub note: Option<String>,
    /// Simultaneous sessions.
    pub max_sessions: Option<i64>,
    /// Blocked.
    pub disabled: bool,
    /// May not edit own profile.
    pub readonly: bool,
    /// Access level.
    pub access_level: AccessLevel,
    /// Memberships.
    pub organizations: Vec<UserOrganization>,
    /// Creation time (UTC ms).
    pub created_at: Option<i64>,
}

/// A preset (Watcher's `Preset`).
#[skip_serializing_none]
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PresetView {
    /// Preset id.
    pub id: Option<i64>,
    /// Title.
    pub title: String,
    /// Cameras may change the preset's settings.
    pub is_adjustable: Option<bool>,
    /// Available to every organization.
    pub is_default: Option<bool>,
    /// DVR settings.
    pub dvr: Option<StreamDvrSpec>,
    /// Analytics settings.
    pub vision: Option<PresetVision>,
    /// Zone rules.
    pub layout_rules: Option<LayoutRules>,
    /// When it was marked deleted (UTC ms).
    pub deleted_at: Option<i64>,
}

fn created_ms<K: ResourceExt>(obj: &K) -> Option<i64> {
    obj.meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
}

fn in_ns<K: kube::Resource<DynamicType = ()> + Clone>(
    store: &kube::runtime::reflector::Store<K>,
    ns: Option<String>,
    name: &str,
) -> Option<Arc<K>> {
    let mut r = ObjectRef::<K>::new(name);
    if let Some(ns) = ns {
        r = r.within(&ns);
    }
    store.get(&r)
}

/// Renders a stream; `nodes` is the live cache's node table of this request.
pub fn stream(state: &ApiState, s: &Stream, nodes: &HashMap<String, Arc<NodeLive>>) -> StreamView {
    let name = s.watcher_name().to_string();
    let org = s
        .spec
        .organization_ref
        .as_deref()
        .and_then(|r| in_ns(&state.stores.organizations, s.namespace(), r));
    let preset = s
        .spec
        .preset_ref
        .as_deref()
        .and_then(|r| in_ns(&state.stores.presets, s.namespace(), r));
    let layout = s.status.as_ref().and_then(|st| st.layout.clone());
    let stats = stream_stats(s, &name, nodes);
    StreamView {
        config: redacted(&s.spec.config),
        named_by: "config".into(),
        organization_id: org.as_deref().and_then(Identified::watcher_id),
        organization: org.as_deref().map(|o| IdTitle {
            id: o.watcher_id(),
            title: o.spec.title.clone(),
        }),
        preset_id: preset.as_deref().and_then(Identified::watcher_id),
        preset: preset.as_deref().map(|p| IdTitle {
            id: p.watcher_id(),
            title: p.spec.title.clone(),
        }),
        layout,
        stats,
        created_at: created_ms(s),
        name,
    }
}

/// A stream's `stats` member: what its ingest node's live report says of it (`name` is its
/// Watcher name).
pub fn stream_stats(
    s: &Stream,
    name: &str,
    nodes: &HashMap<String, Arc<NodeLive>>,
) -> Option<Value> {
    s.status
        .as_ref()
        .and_then(|st| st.layout.as_ref()?.ingest.as_deref())
        .and_then(|h| nodes.get(h))
        .and_then(|n| n.streams.get(name))
        .and_then(|l| l.stats.as_ref())
        .and_then(|st| serde_json::to_value(st).ok())
}

/// The config without passwords in URLs (the CRD refuses them in inputs and pushes, but an
/// object stored before that rule, or an ONVIF URL, may still carry one): never returned.
fn redacted(
    config: &crate::resources::wire::StreamConfigSpec,
) -> crate::resources::wire::StreamConfigSpec {
    let mut config = config.clone();
    // Most URLs carry no user info at all: the cheap check keeps list rebuilds fast.
    let strip = |url: &mut String| {
        if !url.contains('@') {
            return;
        }
        if let Some((_, rest)) = crate::domain::credentials::split_userinfo(url) {
            *url = rest;
        }
    };
    config
        .inputs
        .iter_mut()
        .flatten()
        .for_each(|i| strip(&mut i.url));
    config
        .pushes
        .iter_mut()
        .flatten()
        .for_each(|p| strip(&mut p.url));
    if let Some(url) = config
        .extras
        .get_mut()
        .and_then(|e| e.onvif.as_mut())
        .and_then(|o| o.url.as_mut())
    {
        strip(url);
    }
    config
}

/// Renders a streamer with its live metrics.
pub fn streamer(s: &Streamer, live: Option<&NodeLive>) -> StreamerView {
    let mut config = s.spec.config.clone();
    if let Some(c) = config.as_mut() {
        // Credentials never leave through the API (the CRD forbids them anyway).
        c.cluster_key = None;
        c.edit_auth = None;
        c.view_auth = None;
    }
    let stats = live.map(|n| PeerStatsView {
        server: n.server.clone().unwrap_or_default(),
        reachable: n.reachable,
        ready: n.ready,
        last_probe_at: n.last_probe_ms,
        error: n.last_error.clone(),
    });
    StreamerView {
        hostname: s.spec.hostname.clone(),
        role: s.spec.role.unwrap_or_default(),
        channel_limit: s.spec.channel_limit,
        total_bandwidth: s.spec.total_bandwidth,
        labels: s.spec.labels.clone().unwrap_or_default(),
        api_url: s.spec.api_url.clone(),
        private_payload_url: s.spec.private_payload_url.clone(),
        public_payload_url: s.spec.public_payload_url.clone(),
        zones: s.spec.zones.clone(),
        dvrs: config.as_ref().and_then(|c| c.dvrs.clone()),
        config,
        stats,
    }
}

/// Renders a user with its memberships.
pub fn user(state: &ApiState, u: &User) -> UserView {
    let organizations = u
        .spec
        .organizations
        .iter()
        .flatten()
        .filter_map(|m| {
            let org = in_ns(
                &state.stores.organizations,
                u.namespace(),
                &m.organization_ref,
            )?;
            let owner = org
                .spec
                .owner_ref
                .as_deref()
                .and_then(|r| in_ns(&state.stores.users, org.namespace(), r))
                .map(|o| OwnerView {
                    id: o.watcher_id(),
                    name: o.spec.name.clone(),
                });
            Some(UserOrganization {
                id: org.watcher_id(),
                title: org.spec.title.clone(),
                owner,
                permissions: m.permissions.clone(),
            })
        })
        .collect();
    UserView {
        id: u.watcher_id(),
        name: u.spec.name.clone(),
        fullname: u.spec.fullname.clone(),
        email: u.spec.email.clone(),
        phone: u.spec.phone.clone(),
        locale: u.spec.locale.clone(),
        note: u.spec.note.clone(),
        max_sessions: u.spec.max_sessions,
        disabled: u.spec.disabled.unwrap_or(false),
        readonly: u.spec.readonly.unwrap_or(false),
        access_level: u.spec.access_level.unwrap_or_default(),
        organizations,
        created_at: created_ms(u),
    }
}

/// Renders a preset.
pub fn preset(p: &Preset) -> PresetView {
    PresetView {
        id: p.watcher_id(),
        title: p.spec.title.clone(),
        is_adjustable: p.spec.is_adjustable,
        is_default: p.spec.is_default,
        dvr: p.spec.dvr.clone(),
        vision: p.spec.vision.clone(),
        layout_rules: p.spec.layout_rules.clone(),
        deleted_at: p.status.as_ref().and_then(|s| s.deleted_at),
    }
}

/// Serializes a view (views are plain data; serialization cannot fail).
pub fn to_json<T: Serialize>(view: &T) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::wire::stream::{OnvifSpec, StreamExtras};
    use crate::resources::wire::{StreamConfigSpec, StreamInput, StreamPush};

    #[test]
    fn passwords_in_urls_are_never_rendered() {
        let config = StreamConfigSpec {
            inputs: Some(vec![StreamInput {
                url: "rtsp://u:in-pw@cam/x".into(),
                ..Default::default()
            }]),
            pushes: Some(vec![StreamPush {
                url: "rtmp://u:push-pw@h/live".into(),
                ..Default::default()
            }]),
            extras: StreamExtras {
                onvif: Some(OnvifSpec {
                    url: Some("http://u:onvif-pw@cam/onvif".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .into(),
            ..Default::default()
        };
        let text = serde_json::to_string(&redacted(&config)).unwrap();
        for pw in ["in-pw", "push-pw", "onvif-pw"] {
            assert!(!text.contains(pw), "{text}");
        }
        assert!(text.contains("rtmp://h/live"), "{text}");
    }
}
