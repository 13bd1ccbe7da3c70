//! Streamers: list, get, save (create or update by hostname, partial), layout preview.
//! `cluster_key` and `config.edit_auth` go to a facade-created per-Streamer Secret (keys
//! `clusterKey`, `login`, `password`) referenced from `spec.facadeCredentials`, and are never
//! returned.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use kube::ResourceExt;
use kube::api::Api;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{envelope, live_nodes, pairs, whole};
use crate::api::ApiState;
use crate::api::body::{JsonBody, decode, merge};
use crate::api::deleted;
use crate::api::error::{ApiError, ApiResult};
use crate::api::names::free_object_name;
use crate::api::query::{CollectionSpec, Field};
use crate::api::views::{self, to_json};
use crate::api::write::{
    CredentialsOwner, adopt_credentials, create_credentials, delete_credentials, dry_run_apply,
    save_with, secret_text,
};
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::decommission;
use crate::domain::world::{Edit, Preview};
use crate::layout::preview_counts;
use crate::resources::streamer::StreamerCredentials;
use crate::resources::wire::{NodeRole, ServerConfig};
use crate::resources::{Streamer, StreamerSpec};

/// `GET /streamers`: by hostname.
pub const STREAMERS: CollectionSpec<'static> = CollectionSpec {
    default_sort: "hostname",
    tiebreak: "hostname",
    default_limit: 100,
    max_limit: 1000,
    search: &["hostname", "api_url"],
    filters: &[
        Field::new("hostname"),
        Field::new("role"),
        Field::integer("channel_limit"),
        Field::boolean("stats.reachable"),
        Field::boolean("stats.ready"),
    ],
    passthrough: &[],
    // Ours and the reference's, so a client selecting a reference member is not refused.
    members: &[
        "api_url",
        "channel_limit",
        "cluster_key",
        "config",
        "dvrs",
        "hostname",
        "labels",
        "private_payload_url",
        "public_payload_url",
        "role",
        "stats",
        "total_bandwidth",
        "zones",
    ],
};

/// Streamer members a save may set (wire names).
#[derive(Debug, Default, Deserialize)]
struct StreamerWrite {
    role: Option<NodeRole>,
    channel_limit: Option<i64>,
    total_bandwidth: Option<i64>,
    labels: Option<LabelsIn>,
    api_url: Option<String>,
    private_payload_url: Option<String>,
    public_payload_url: Option<String>,
    zones: Option<Vec<String>>,
    config: Option<ServerConfig>,
}

/// Labels as the schema says (a map) or as the seed sample shows them (a list of `k=v` or
/// bare keys, which become `k: ""`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LabelsIn {
    Map(BTreeMap<String, String>),
    List(Vec<String>),
}

impl LabelsIn {
    fn into_map(self) -> BTreeMap<String, String> {
        match self {
            LabelsIn::Map(m) => m,
            LabelsIn::List(l) => l
                .into_iter()
                .map(|s| match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (s, String::new()),
                })
                .collect(),
        }
    }
}

fn find(state: &ApiState, hostname: &str) -> Option<std::sync::Arc<Streamer>> {
    let mut found: Vec<_> = deleted::objects(&state.stores.streamers)
        .into_iter()
        .filter(|s| s.spec.hostname == hostname)
        .collect();
    found.sort_by_key(|s| s.namespace().as_deref() != Some(state.config.namespace.as_str()));
    found.into_iter().next()
}

fn render(state: &ApiState, s: &Streamer) -> Value {
    let live = state.live.node(&s.spec.hostname);
    to_json(&views::streamer(s, live.as_deref()))
}

/// `GET /streamers`.
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<crate::api::query::Envelope>> {
    let started = Instant::now();
    let nodes = live_nodes(&state);
    let items: Vec<Value> = deleted::objects(&state.stores.streamers)
        .iter()
        .map(|s| {
            to_json(&views::streamer(
                s,
                nodes.get(&s.spec.hostname).map(|n| n.as_ref()),
            ))
        })
        .collect();
    envelope(&items, &pairs(&raw), &STREAMERS, "streamers", started)
}

/// `GET /streamers/{hostname}`.
pub async fn get(
    State(state): State<ApiState>,
    Path(hostname): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = find(&state, &hostname).ok_or_else(|| ApiError::not_found("streamer", &hostname))?;
    Ok(Json(render(&state, &s)))
}

struct Saved {
    ns: String,
    object: String,
    spec: StreamerSpec,
    cluster_key: Option<String>,
    admin: Option<(String, String)>,
}

/// The spec a save body leads to. `current`: the object as read from the API server (a save
/// merges onto that); `None` merges onto what the store has (a preview).
fn saved_spec(
    state: &ApiState,
    hostname: &str,
    body: Option<Value>,
    current: Option<Option<&Streamer>>,
) -> ApiResult<Saved> {
    if hostname.is_empty() || hostname.len() > 253 {
        return Err(ApiError::invalid_parameter(
            "hostname",
            "hostname must be 1-253 characters",
        ));
    }
    let mut body = JsonBody(body).object()?;
    // What the facade renders for this streamer now is accepted back (node stats included).
    let seen = find(state, hostname).map(|s| render(state, &s));
    crate::api::members::reject_unknown(&body, "streamer_save", &[], seen.as_ref())?;
    crate::api::body::take_identity(&mut body, "hostname", hostname)?;
    for ro in ["stats", "dvrs"] {
        body.remove(ro);
    }
    let (cluster_key, admin) = take_node_credentials(&mut body)?;
    let existing = find(state, hostname);
    let ns = existing
        .as_ref()
        .and_then(|s| s.namespace())
        .unwrap_or_else(|| state.config.namespace.clone());
    let object = match &existing {
        Some(s) => s.name_any(),
        // A new object, under a name no other object holds (GitOps may hold the plain one).
        None => {
            let all = state.stores.streamers.state();
            let here = || {
                all.iter()
                    .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
            };
            if here().any(|s| s.spec.hostname == hostname) {
                return Err(deleted::still_deleting("streamer", hostname));
            }
            free_object_name("", hostname, |o| {
                here().any(|s| s.metadata.name.as_deref() == Some(o))
            })
        }
    };
    if let Some(Some(c)) = current {
        // The store had not seen the delete yet, or the object holds another streamer.
        if !deleted::shown(c) {
            return Err(deleted::still_deleting("streamer", hostname));
        }
        if c.spec.hostname != hostname {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "exists",
                format!(
                    "streamer {hostname} cannot be stored: its object {object} holds streamer {}",
                    c.spec.hostname
                ),
            ));
        }
    }
    let base = current.unwrap_or(existing.as_deref());
    let spec = spec_from(
        base.map(|s| s.spec.clone()).unwrap_or_default(),
        hostname,
        body,
    )?;
    Ok(Saved {
        ns,
        object,
        spec,
        cluster_key,
        admin,
    })
}

/// Takes the node credentials out of a streamer body (`cluster_key`, or `config.cluster_key`,
/// and `config.edit_auth`); `config.view_auth` is dropped: read-only node credentials have no
/// place in Panoptes' node Secret. Also what `panoptes import` does with a source's streamers.
pub(crate) fn take_node_credentials(body: &mut Map<String, Value>) -> ApiResult<NodeCredentials> {
    let mut cluster_key = match body.remove("cluster_key") {
        Some(Value::String(k)) if !k.is_empty() => Some(k),
        None | Some(Value::Null) | Some(Value::String(_)) => None,
        Some(_) => {
            return Err(ApiError::invalid_body(
                "/cluster_key",
                "`cluster_key` must be a string",
            ));
        }
    };
    let mut admin = None;
    if let Some(Value::Object(config)) = body.get_mut("config") {
        if let Some(Value::String(k)) = config.remove("cluster_key") {
            cluster_key.get_or_insert(k);
        }
        if let Some(auth) = config.remove("edit_auth") {
            let login = auth.get("login").and_then(Value::as_str);
            let password = auth.get("password").and_then(Value::as_str);
            if let (Some(l), Some(p)) = (login, password) {
                admin = Some((l.to_string(), p.to_string()));
            }
        }
        // Read-only node credentials have no place in Panoptes' node Secret; dropped.
        config.remove("view_auth");
    }
    Ok((cluster_key, admin))
}

/// `cluster_key` and the `edit_auth` login and password of a streamer body.
pub(crate) type NodeCredentials = (Option<String>, Option<(String, String)>);

/// `spec` with the members of a streamer body (wire names, credentials already taken out)
/// merged on: pure, shared by saves and `panoptes import`.
pub(crate) fn spec_from(
    mut spec: StreamerSpec,
    hostname: &str,
    body: Map<String, Value>,
) -> ApiResult<StreamerSpec> {
    let mut current = json!({
        "role": spec.role,
        "channel_limit": spec.channel_limit,
        "total_bandwidth": spec.total_bandwidth,
        "labels": spec.labels,
        "api_url": spec.api_url,
        "private_payload_url": spec.private_payload_url,
        "public_payload_url": spec.public_payload_url,
        "zones": spec.zones,
        "config": spec.config,
    });
    if let Value::Object(m) = &mut current {
        m.retain(|_, v| !v.is_null());
    }
    merge(&mut current, Value::Object(body));
    let w: StreamerWrite = decode(current, "")?;
    spec.hostname = hostname.to_string();
    spec.role = w.role;
    spec.channel_limit = w.channel_limit;
    spec.total_bandwidth = w.total_bandwidth;
    spec.labels = w.labels.map(LabelsIn::into_map);
    spec.api_url = w.api_url;
    spec.private_payload_url = w.private_payload_url;
    spec.public_payload_url = w.public_payload_url;
    spec.zones = w.zones;
    spec.config = w.config.filter(|c| *c != ServerConfig::default());
    Ok(spec)
}

/// `PUT /streamers/{hostname}`.
pub async fn save(
    State(state): State<ApiState>,
    Path(hostname): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let Saved {
        ns,
        object,
        spec,
        cluster_key,
        admin,
    } = saved_spec(&state, &hostname, body.0.clone(), None)?;
    // Re-derived from the live object on every attempt, so a concurrent write is never reverted.
    let rebuild = |current: Option<&Streamer>| {
        saved_spec(&state, &hostname, body.0.clone(), Some(current)).map(|s| s.spec)
    };
    if cluster_key.is_none() && admin.is_none() {
        let stored = save_with(&state, &ns, &object, |current: Option<&Streamer>| {
            Ok(Streamer::new(&object, rebuild(current)?))
        })
        .await?;
        return Ok(Json(render(&state, &stored)));
    }
    let mut entered = BTreeMap::new();
    if let Some(k) = cluster_key {
        entered.insert("clusterKey".to_string(), k);
    }
    if let Some((l, p)) = admin {
        entered.insert("login".to_string(), l);
        entered.insert("password".to_string(), p);
    }
    let stored = save_with_credentials(&state, &ns, &object, spec, entered, rebuild).await?;
    Ok(Json(render(&state, &stored)))
}

/// Node credentials entered through the API go to a new facade-created Secret owned by the
/// Streamer, referenced from `spec.facadeCredentials` (never from `spec.credentials`, which a
/// manifest may own, and never written into a Secret the facade did not create: it may be
/// shared by several Streamers). The keys the save does not set are copied from the
/// credentials in effect, with the destination they were recorded for (or the node URL they
/// were being sent to); the entered keys are recorded for the URL this save leaves in effect.
async fn save_with_credentials(
    state: &ApiState,
    ns: &str,
    object: &str,
    mut spec: StreamerSpec,
    entered: BTreeMap<String, String>,
    mut rebuild: impl FnMut(Option<&Streamer>) -> ApiResult<StreamerSpec>,
) -> ApiResult<Streamer> {
    let mut probe = spec.clone();
    probe.facade_credentials = Some(StreamerCredentials {
        secret_name: credentials::generate_name(object, "credentials")
            .trim_end_matches('-')
            .to_string(),
        scheme: None,
    });
    dry_run_apply(state, ns, &Streamer::new(object, probe)).await?;
    let current = Api::<Streamer>::namespaced(state.client.clone(), ns)
        .get_opt(object)
        .await
        .map_err(|e| ApiError::internal("reading the current object", e))?;
    let uid = current.as_ref().and_then(|c| c.uid());
    // The credentials in effect, and where they were being sent.
    let (mut data, mut destinations) = match current.as_ref().and_then(|c| {
        c.spec
            .facade_credentials
            .as_ref()
            .or(c.spec.credentials.as_ref())
    }) {
        Some(c) => secret_text(state, ns, &c.secret_name).await?,
        None => Default::default(),
    };
    data.retain(|k, _| NODE_KEYS.contains(&k.as_str()));
    if let Some(old) = current
        .as_ref()
        .and_then(|c| credentials::origin(&c.spec.effective_api_url()))
    {
        for k in data.keys() {
            destinations.entry(k.clone()).or_insert_with(|| old.clone());
        }
    }
    destinations.retain(|k, _| data.contains_key(k) || entered.contains_key(k));
    let now = credentials::origin(&spec.effective_api_url());
    for (k, v) in entered {
        match &now {
            Some(o) => destinations.insert(k.clone(), o.clone()),
            None => destinations.remove(&k),
        };
        data.insert(k, v);
    }
    let owner = CredentialsOwner {
        kind: OwnerKind::Streamer,
        name: object,
        uid: uid.as_deref(),
    };
    let name = create_credentials(state, ns, &owner, "credentials", data, &destinations).await?;
    // What the live object references (the store may lag behind a previous save).
    let replaced = current
        .as_ref()
        .and_then(|c| c.spec.facade_credentials.clone())
        .or(spec.facade_credentials.take())
        .map(|c| c.secret_name);
    let new_ref = StreamerCredentials {
        secret_name: name.clone(),
        scheme: None,
    };
    let mut replaced_live = None;
    let saved = save_with(state, ns, object, |current: Option<&Streamer>| {
        let mut again = rebuild(current)?;
        replaced_live = current.and_then(|c| c.spec.facade_credentials.clone());
        again.facade_credentials = Some(new_ref.clone());
        Ok(Streamer::new(object, again))
    })
    .await;
    match saved {
        Ok(stored) => {
            let replaced = replaced_live.map(|c| c.secret_name).or(replaced);
            match uid.as_deref() {
                Some(uid) => {
                    if let Some(old) = replaced.filter(|r| *r != name) {
                        delete_credentials(state, ns, &old, OwnerKind::Streamer, Some(uid)).await;
                    }
                }
                None => {
                    if let Some(new_uid) = stored.uid() {
                        adopt_credentials(state, ns, &name, &owner, &new_uid).await;
                    }
                }
            }
            Ok(stored)
        }
        Err(e) => {
            delete_credentials(state, ns, &name, OwnerKind::Streamer, uid.as_deref()).await;
            Err(e)
        }
    }
}

/// Keys of node credentials (see `StreamerSpec::credentials`).
const NODE_KEYS: &[&str] = &["login", "password", "token", "clusterKey"];

/// `POST /streamers/{hostname}/preview_layout_change`: per-node count changes.
pub async fn preview(
    State(state): State<ApiState>,
    Path(hostname): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let saved = saved_spec(&state, &hostname, body.0, None)?;
    let edit = Edit::Node {
        spec: &saved.spec,
        namespace: &state.config.namespace,
    };
    let Preview { before, after, .. } = Preview::of(&state.stores, &state.live, edit);
    let changes = preview_counts(&before.counts, &after.counts)
        .iter()
        .map(to_json)
        .collect();
    Ok(whole(changes, "changes"))
}

/// How long `DELETE /streamers/{hostname}` waits for a draining node's streams to move: well
/// under a client's request timeout (schemathesis': 10 s); a longer drain is finished by
/// retrying the delete.
const DRAIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// `DELETE /streamers/{hostname}`, make-before-break: 409 naming the streams the layouter
/// could not place elsewhere ([`decommission::stranded`]), before anything is written;
/// otherwise the node is cordoned and drained, the delete waits (bounded) until no stream's
/// recorded layout names it, and then deletes the Streamer. Past the bound: 409 naming the
/// streams still there, the node left draining (a retry continues where this one stopped).
pub async fn delete(
    State(state): State<ApiState>,
    Path(hostname): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    let s = find(&state, &hostname).ok_or_else(|| ApiError::not_found("streamer", &hostname))?;
    let mut draining = s.spec.clone();
    draining.cordon = Some(true);
    draining.drain = Some(true);
    let edit = Edit::Node {
        spec: &draining,
        namespace: &state.config.namespace,
    };
    let Preview { before, after, .. } = Preview::of(&state.stores, &state.live, edit);
    let stranded = decommission::stranded(&hostname, &before, &after);
    if !stranded.is_empty() {
        return Err(cannot_move("no other node can take", &stranded));
    }
    let ns = s.namespace().unwrap_or_default();
    let api = Api::<Streamer>::namespaced(state.client.clone(), &ns);
    if s.spec.drain != Some(true) || s.spec.cordon != Some(true) {
        let patch = json!({"spec": {"cordon": true, "drain": true}});
        api.patch(
            &s.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|e| ApiError::from_kube("draining the streamer", e))?;
    }
    let started = tokio::time::Instant::now();
    let still = loop {
        let still = on_node(&state, &hostname);
        if still.is_empty() || started.elapsed() >= DRAIN_WITHIN {
            break still;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    if !still.is_empty() {
        return Err(cannot_move(
            "the node is draining, but these streams have not moved yet (retry the delete)",
            &still,
        ));
    }
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: s.uid(),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    api.delete(&s.name_any(), &params)
        .await
        .map_err(|e| ApiError::from_kube("deleting the streamer", e))?;
    deleted::until_seen(&state.stores.streamers, s.as_ref()).await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The streams whose recorded layout (ingest or DVR backup) names `host`.
fn on_node(state: &ApiState, host: &str) -> Vec<std::sync::Arc<str>> {
    let mut names: Vec<std::sync::Arc<str>> = state
        .stores
        .streams
        .state()
        .iter()
        .filter(|s| {
            s.status
                .as_ref()
                .and_then(|st| st.layout.as_ref())
                .is_some_and(|l| decommission::holds(&l.into(), host))
        })
        .map(|s| s.watcher_name().into())
        .collect();
    names.sort();
    names
}

fn cannot_move(why: &str, streams: &[std::sync::Arc<str>]) -> ApiError {
    const SHOWN: usize = 20;
    let mut list: Vec<&str> = streams.iter().take(SHOWN).map(|s| &**s).collect();
    if streams.len() > SHOWN {
        list.push("…");
    }
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "streams_cannot_move",
        format!("{why}: {}", list.join(", ")),
    )
}
