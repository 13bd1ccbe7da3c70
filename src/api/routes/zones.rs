//! Zones (reference §10): list, get, save (create or update by name, partial), delete.
//!
//! A zone is a `Zone` object ([`crate::resources::zone`]); its `stats` are computed from the
//! Streamers and Streams of its namespace on every read ([`zones::usage`]), and `created` is
//! the object's creation time and the API user who created it.
//!
//! Deleting a zone that a stream or preset still names (required or preferred) answers 409
//! naming them: the stream would keep a rule no save could repeat (every writer of
//! `layout_rules` checks that its zones exist), and a dedicated zone would silently stop
//! guarding its nodes. Streamers may keep listing a deleted zone's name: membership is a name,
//! and a streamer serving a zone nobody requires harms nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::{Resource, ResourceExt};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::{envelope, pairs};
use crate::api::ApiState;
use crate::api::auth::Caller;
use crate::api::body::{JsonBody, take_identity};
use crate::api::deleted;
use crate::api::error::{ApiError, ApiResult};
use crate::api::members::reject_unknown;
use crate::api::names::free_object_name;
use crate::api::query::{CollectionSpec, Field};
use crate::api::views::to_json;
use crate::api::write::save_with;
use crate::domain::zones::{self, Usage, ZONE_NAME_RULE, is_zone_name};
use crate::resources::{Zone, ZoneSpec};

/// `GET /zones`: by name.
pub const ZONES: CollectionSpec<'static> = CollectionSpec {
    default_sort: "name",
    tiebreak: "name",
    default_limit: 100,
    max_limit: 1000,
    search: &["name"],
    filters: &[
        Field::new("name"),
        Field::boolean("is_dedicated"),
        Field::integer("stats.streamers_count"),
        Field::integer("stats.required_streams_count"),
        Field::integer("stats.preferred_streams_count"),
    ],
    passthrough: &[],
    members: &["created", "is_dedicated", "name", "stats"],
};

/// A zone (Watcher's `Zone`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ZoneView {
    /// Zone name (`unix_name`).
    pub name: String,
    /// Streamers in the zone take only streams that require it.
    pub is_dedicated: bool,
    /// When and by whom the zone was created.
    pub created: CreationInfo,
    /// Who uses the zone, computed from the cluster.
    pub stats: ZoneStats,
}

/// When and by whom an object was created (Watcher's `CreationInfo`).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct CreationInfo {
    /// Creation time (UTC ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    /// The API user who created it (absent for objects created with kubectl).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<CreationUser>,
}

/// The creator of an object.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct CreationUser {
    /// Login name.
    pub login: String,
}

/// Who uses a zone (Watcher's `ZoneStats`).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ZoneStats {
    /// Hostnames of the streamers serving the zone.
    pub streamers: Vec<String>,
    /// Number of streamers serving the zone.
    pub streamers_count: i64,
    /// Streams requiring the zone.
    pub required_streams_count: i64,
    /// Streams preferring the zone.
    pub preferred_streams_count: i64,
}

/// The usage of every zone named in namespace `ns`.
fn usage_in(state: &ApiState, ns: &str) -> BTreeMap<String, Usage> {
    let streamers = deleted::objects(&state.stores.streamers);
    let streams = deleted::objects(&state.stores.streams);
    zones::usage(
        streamers
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .map(|s| &s.spec),
        streams
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .map(|s| &s.spec),
    )
}

fn view(z: &Zone, usage: Option<&Usage>) -> ZoneView {
    let u = usage.cloned().unwrap_or_default();
    ZoneView {
        name: z.zone_name().to_string(),
        is_dedicated: z.is_dedicated(),
        created: CreationInfo {
            created_at: z
                .meta()
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond()),
            user: z
                .spec
                .created_by
                .clone()
                .map(|login| CreationUser { login }),
        },
        stats: ZoneStats {
            streamers_count: u.streamers.len() as i64,
            streamers: u.streamers,
            required_streams_count: i64::from(u.required_streams),
            preferred_streams_count: i64::from(u.preferred_streams),
        },
    }
}

fn render(state: &ApiState, z: &Zone) -> Value {
    let usage = usage_in(state, &z.namespace().unwrap_or_default());
    to_json(&view(z, usage.get(z.zone_name())))
}

/// The zone called `name`, preferring the facade's namespace.
fn find(state: &ApiState, name: &str) -> Option<Arc<Zone>> {
    let mut found: Vec<_> = deleted::objects(&state.stores.zones)
        .into_iter()
        .filter(|z| z.zone_name() == name)
        .collect();
    found.sort_by_key(|z| z.namespace().as_deref() != Some(state.config.namespace.as_str()));
    found.into_iter().next()
}

/// Whether a zone called `name` exists in namespace `ns` (what stream and preset saves check
/// their `layout_rules` against, with [`zones::check_rules`]).
pub fn exists(state: &ApiState, ns: &str, name: &str) -> bool {
    deleted::objects(&state.stores.zones)
        .iter()
        .any(|z| z.namespace().as_deref() == Some(ns) && z.zone_name() == name)
}

/// The answer to `layout_rules` naming a zone that does not exist in namespace `ns` (or an
/// invalid zone name): 422 `unknown_zone`, pointing at `layout_rules` (reference §5 item 10).
pub fn check_rules(
    state: &ApiState,
    ns: &str,
    rules: Option<&crate::resources::wire::stream::LayoutRules>,
) -> ApiResult<()> {
    let Some(rules) = rules else { return Ok(()) };
    zones::check_rules(rules, |z| exists(state, ns, z)).map_err(|why| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_zone", why)
            .pointer("/layout_rules")
    })
}

/// `GET /zones`.
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<crate::api::query::Envelope>> {
    let started = Instant::now();
    let zones = deleted::objects(&state.stores.zones);
    let mut by_ns: BTreeMap<String, BTreeMap<String, Usage>> = BTreeMap::new();
    let items: Vec<Value> = zones
        .iter()
        .map(|z| {
            let ns = z.namespace().unwrap_or_default();
            let usage = by_ns
                .entry(ns.clone())
                .or_insert_with(|| usage_in(&state, &ns));
            to_json(&view(z, usage.get(z.zone_name())))
        })
        .collect();
    envelope(&items, &pairs(&raw), &ZONES, "zones", started)
}

/// `GET /zones/{name}`.
pub async fn get(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let z = find(&state, &name).ok_or_else(|| ApiError::not_found("zone", &name))?;
    Ok(Json(render(&state, &z)))
}

/// `PUT /zones/{name}`: creates the zone, or updates `is_dedicated` (the only writable
/// member besides the name; `created` and `stats` are read-only and ignored when echoed).
pub async fn save(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    if !is_zone_name(&name) {
        return Err(ApiError::invalid_parameter("name", ZONE_NAME_RULE));
    }
    let mut body = body.object()?;
    reject_unknown(&body, "zone_save", &[], None)?;
    take_identity(&mut body, "name", &name)?;
    let dedicated = match body.remove("is_dedicated") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => {
            return Err(ApiError::invalid_body(
                "/is_dedicated",
                "`is_dedicated` must be a boolean",
            ));
        }
    };
    let existing = find(&state, &name);
    let ns = existing
        .as_ref()
        .and_then(|z| z.namespace())
        .unwrap_or_else(|| state.config.namespace.clone());
    let object = match &existing {
        Some(z) => z.name_any(),
        None => {
            let all = state.stores.zones.state();
            let here = || {
                all.iter()
                    .filter(|z| z.metadata.namespace.as_deref() == Some(ns.as_str()))
            };
            if here().any(|z| z.zone_name() == name) {
                return Err(deleted::still_deleting("zone", &name));
            }
            free_object_name("", &name, |o| {
                here().any(|z| z.metadata.name.as_deref() == Some(o))
            })
        }
    };
    let stored = save_with(&state, &ns, &object, |current: Option<&Zone>| {
        let spec = match current {
            Some(c) if !deleted::shown(c) => return Err(deleted::still_deleting("zone", &name)),
            Some(c) if c.zone_name() != name => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "exists",
                    format!(
                        "zone {name} cannot be stored: its object {object} holds zone {}",
                        c.zone_name()
                    ),
                ));
            }
            Some(c) => ZoneSpec {
                is_dedicated: dedicated.or(c.spec.is_dedicated),
                ..c.spec.clone()
            },
            None => ZoneSpec {
                // Only when the object name cannot say it (capitals, `_`, a taken name).
                name: (object != name).then(|| name.clone()),
                is_dedicated: dedicated,
                created_by: Some(caller.login.clone()),
            },
        };
        Ok(Zone::new(&object, spec))
    })
    .await?;
    Ok(Json(render(&state, &stored)))
}

/// `DELETE /zones/{name}`: 409 naming the streams and presets that still use the zone.
pub async fn delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let z = find(&state, &name).ok_or_else(|| ApiError::not_found("zone", &name))?;
    let ns = z.namespace().unwrap_or_default();
    let in_ns = |o: Option<String>| o.as_deref() == Some(ns.as_str());
    let mut users: Vec<String> = deleted::objects(&state.stores.streams)
        .iter()
        .filter(|s| in_ns(s.namespace()))
        .filter(|s| zones::names(s.spec.config.layout_rules.as_deref(), &name))
        .map(|s| format!("stream {}", s.watcher_name()))
        .collect();
    users.sort();
    let mut presets: Vec<String> = deleted::objects(&state.stores.presets)
        .iter()
        .filter(|p| in_ns(p.namespace()))
        .filter(|p| zones::names(p.spec.layout_rules.as_ref(), &name))
        .map(|p| format!("preset {}", p.spec.title))
        .collect();
    presets.sort();
    users.extend(presets);
    if !users.is_empty() {
        const SHOWN: usize = 20;
        let more = users.len().saturating_sub(SHOWN);
        users.truncate(SHOWN);
        if more > 0 {
            users.push(format!("and {more} more"));
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "zone_in_use",
            format!(
                "zone {name} is still named in layout_rules of: {}; change those first",
                users.join(", ")
            ),
        ));
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: z.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    Api::<Zone>::namespaced(state.client.clone(), &ns)
        .delete(&z.name_any(), &params)
        .await
        .map_err(|e| ApiError::from_kube("deleting the zone", e))?;
    deleted::until_seen(&state.stores.zones, z.as_ref()).await;
    Ok(StatusCode::NO_CONTENT)
}
