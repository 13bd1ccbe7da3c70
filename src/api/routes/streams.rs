//! Streams: list, get, save (merge or `$reset`), delete (`part`), layouts, layout preview,
//! camera config, firmware upload. `/streams/{*rest}` is one route: stream names may
//! contain `/` (see [`crate::api::names::split_stream_path`]).

use std::collections::HashMap;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::future::BoxFuture;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::{Map, Value};

use super::{envelope, indexed_envelope, live_nodes, pairs, param, whole};
use crate::api::body::{JsonBody, RawBody, decode, merge, parse_json};
use crate::api::deleted;
use crate::api::error::{ApiError, ApiResult};
use crate::api::names::{STREAM_NAME_RULE, free_object_name, split_stream_path, valid_stream_name};
use crate::api::operations::on_stream;
use crate::api::query::{CollectionSpec, Field};
use crate::api::rendered_streams::RenderedStreams;
use crate::api::views::{self, to_json};
use crate::api::write::{
    CredentialsOwner, adopt_credentials, create_credentials, delete_credentials, dry_run_apply,
    save_with, secret_text,
};
use crate::api::{ApiState, BASE};
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::ids::Identified;
use crate::domain::key::ObjectKey;
use crate::domain::validate;
use crate::domain::world::{Edit, Preview};
use crate::resources::stream::{CameraCredentials, PushCredentials};
use crate::resources::text::Text;
use crate::resources::wire::{CameraConfig, StreamConfigSpec};
use crate::resources::{Stream, StreamSpec};

/// `GET /streams`: sorted by `name` by default (Central's order).
pub const STREAMS: CollectionSpec<'static> = CollectionSpec {
    default_sort: "name",
    tiebreak: "name",
    default_limit: 100,
    max_limit: 1000,
    search: &["name", "title", "comment", "inputs.url", "postal_address"],
    filters: &[
        Field::new("name"),
        Field::new("title"),
        Field::new("comment"),
        Field::boolean("disabled"),
        Field::boolean("static"),
        Field::integer("organization_id"),
        Field::integer("preset_id"),
        Field::integer("organization.id"),
        Field::integer("preset.id"),
        Field::integer("created_at"),
        Field::boolean("stats.alive"),
        Field::new("stats.status"),
        Field::integer("stats.bitrate"),
        Field::new("layout.ingest"),
        Field::new("inputs.url"),
    ],
    passthrough: &["preferred_zones", "required_zones"],
    // Ours and the reference's, so a client selecting a reference member is not refused.
    members: &[
        "audio",
        "can_publish",
        "comment",
        "coordinates",
        "created_at",
        "disabled",
        "domain",
        "dvr",
        "firmware_update_duration",
        "folder_id",
        "inputs",
        "labels",
        "last_change",
        "last_episode_at",
        "layout",
        "layout_rules",
        "map_coordinates",
        "name",
        "named_by",
        "onvif",
        "organization",
        "organization_id",
        "path",
        "postal_address",
        "preset",
        "preset_id",
        "pushes",
        "static",
        "stats",
        "title",
        "vision",
    ],
};

/// `GET /streams/{name}/layouts`.
pub const LAYOUTS: CollectionSpec<'static> = CollectionSpec {
    default_sort: "-created_at",
    tiebreak: "created_at",
    default_limit: 100,
    max_limit: 1000,
    search: &[],
    filters: &[Field::integer("created_at"), Field::new("ingest")],
    passthrough: &["include_ingest_history"],
    // Ours and the reference's, so a client selecting a reference member is not refused.
    members: &[
        "change_reason",
        "created_at",
        "dvr_backups",
        "failover_from",
        "inference",
        "ingest",
        "ingest_history",
        "node_layout_decisions",
        "originator",
    ],
};

/// Members of a stream the server computes; ignored in request bodies.
pub(crate) const READ_ONLY: &[&str] = &[
    "stats",
    "path",
    "firmware_update_duration",
    "last_episode_at",
    "last_change",
    "layout",
    "named_by",
    "created_at",
    "position",
    "config_on_disk",
    "config_override",
    "runtime_override",
    "domain",
];

/// `GET /streams`.
pub async fn list(
    State(state): State<ApiState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> ApiResult<Json<crate::api::query::Envelope>> {
    let started = Instant::now();
    let pairs = pairs(&raw);
    let rendered = RenderedStreams::current(&state);
    let index = &rendered.index;
    let zones: Vec<(&str, Vec<&str>)> = ["preferred_zones", "required_zones"]
        .into_iter()
        .filter_map(|p| Some((p, param(&pairs, p)?.split(',').map(str::trim).collect())))
        .collect();
    if zones.is_empty() {
        return indexed_envelope(index, &pairs, &STREAMS, "streams", started);
    }
    // Zone filters are rare: filter a copy, then run the plain engine.
    let mut items: Vec<Arc<Value>> = index.items().cloned().collect();
    for (member, wanted) in zones {
        items.retain(|s| {
            s.pointer(&format!("/layout_rules/{member}"))
                .and_then(Value::as_array)
                .is_some_and(|zs| {
                    zs.iter()
                        .any(|z| z.as_str().is_some_and(|z| wanted.contains(&z)))
                })
        });
    }
    envelope(&items, &pairs, &STREAMS, "streams", started)
}

/// The Stream whose Watcher name is `name` (the facade namespace's first).
pub fn find(state: &ApiState, name: &str) -> Option<Arc<Stream>> {
    let mut found: Vec<Arc<Stream>> = deleted::objects(&state.stores.streams)
        .into_iter()
        // Borrowed: allocating every stream's name made a single GET cost a list's worth.
        .filter(|s| s.watcher_name() == name)
        .collect();
    found.sort_by_key(|s| s.namespace().as_deref() != Some(state.config.namespace.as_str()));
    found.into_iter().next()
}

fn require(state: &ApiState, name: &str) -> ApiResult<Arc<Stream>> {
    find(state, name).ok_or_else(|| ApiError::not_found("stream", name))
}

fn render(state: &ApiState, s: &Stream) -> Json<Value> {
    Json(to_json(&views::stream(state, s, &live_nodes(state))))
}

/// Every method on `/streams/{*rest}`: the operations of the route table on the
/// sub-resource the path ends in ([`crate::api::operations::on_stream`]).
pub async fn dispatch(
    State(state): State<ApiState>,
    OriginalUri(uri): OriginalUri,
    req: Request,
) -> Response {
    let prefix = format!("{BASE}/streams/");
    let raw = uri.path().strip_prefix(&prefix).unwrap_or("");
    let Some((name, sub)) = split_stream_path(raw) else {
        return ApiError::invalid_parameter("name", "malformed stream name").into_response();
    };
    let Some(handler) = on_stream(sub)
        .find(|(o, _)| req.method().as_str().eq_ignore_ascii_case(o.method))
        .map(|(_, h)| h)
    else {
        let mut allow: Vec<String> = on_stream(sub)
            .map(|(o, _)| o.method.to_uppercase())
            .collect();
        // The bulk edits' fixed paths (`/streams/multiedit`) fall through here for every
        // method but their own `POST`, which the path also allows.
        if crate::api::operations::operation(&axum::http::Method::POST, uri.path())
            .is_some_and(|o| matches!(o.serve, crate::api::operations::Serve::Route(_)))
        {
            allow.push("POST".into());
        }
        let mut resp = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
        .into_response();
        if let Ok(allow) = header::HeaderValue::from_str(&allow.join(",")) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        return resp;
    };
    let pairs = pairs(&uri.query().map(str::to_string));
    handler(Call {
        state,
        name,
        pairs,
        req,
    })
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// A request on a stream path, once the stream name is split off.
pub(crate) struct Call {
    state: ApiState,
    name: String,
    pairs: Vec<(String, String)>,
    req: Request,
}

/// The handler of an operation on a stream path, as the route table holds it.
pub(crate) type Handler = fn(Call) -> BoxFuture<'static, ApiResult<Response>>;

/// The handlers of the stream operations, as the route table names them.
pub(crate) mod call {
    use super::*;

    pub(crate) fn get(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move { super::get(&c.state, &c.name).map(IntoResponse::into_response) })
    }

    pub(crate) fn save(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move {
            let body = body_of(c.req).await?;
            super::save(&c.state, &c.name, &c.pairs, body)
                .await
                .map(IntoResponse::into_response)
        })
    }

    pub(crate) fn delete(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move { super::delete(&c.state, &c.name, &c.pairs).await })
    }

    pub(crate) fn layouts(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move { super::layouts(&c.state, &c.name, &c.pairs) })
    }

    pub(crate) fn preview(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move {
            let body = body_of(c.req).await?;
            super::preview(&c.state, &c.name, body).map(IntoResponse::into_response)
        })
    }

    pub(crate) fn camera_get(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move { super::camera_get(&c.state, &c.name) })
    }

    pub(crate) fn camera_save(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move {
            let body = body_of(c.req).await?;
            super::camera_save(&c.state, &c.name, body).await
        })
    }

    pub(crate) fn auth_get(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(
            async move { crate::api::routes::access::camera_auth_get(&c.state, &c.name).await },
        )
    }

    pub(crate) fn auth_save(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move {
            let body = body_of(c.req).await?;
            crate::api::routes::access::camera_auth_save(&c.state, &c.name, body).await
        })
    }

    pub(crate) fn reboot(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move { super::reboot(&c.state, &c.name) })
    }

    pub(crate) fn firmware(c: Call) -> BoxFuture<'static, ApiResult<Response>> {
        Box::pin(async move { super::firmware(&c.state, &c.name, &c.pairs, c.req).await })
    }
}

async fn body_of(req: Request) -> ApiResult<Option<Value>> {
    use axum::extract::FromRequest;
    JsonBody::from_request(req, &()).await.map(|b| b.0)
}

fn object(body: Option<Value>) -> ApiResult<Map<String, Value>> {
    JsonBody(body).object()
}

/// From the rendered streams: walking the store for one name costs as much as a list page.
fn get(state: &ApiState, name: &str) -> ApiResult<Json<Value>> {
    let streams = RenderedStreams::current(state);
    let v = streams
        .get(name)
        .ok_or_else(|| ApiError::not_found("stream", name))?;
    Ok(Json(Value::clone(v)))
}

/// A reference edit: `None` = unchanged, `Some(None)` = cleared, `Some(Some(name))` = set.
type RefChange = Option<Option<String>>;

/// What a save body leads to.
struct Saved {
    ns: String,
    object: String,
    spec: StreamSpec,
    /// Camera login and password found in URLs, with the origin of the URL they were in.
    creds: Option<Found>,
}

/// Resolves `organization_id`/`organization` and `preset_id`/`preset` of a body into
/// resource names (`Some(None)` clears the reference).
fn references(
    state: &ApiState,
    ns: &str,
    body: &mut Map<String, Value>,
) -> ApiResult<(RefChange, RefChange)> {
    fn id_of(
        body: &mut Map<String, Value>,
        flat: &str,
        nested: &str,
    ) -> ApiResult<Option<Option<i64>>> {
        let nested_id = body
            .remove(nested)
            .map(|v| v.get("id").cloned().unwrap_or(Value::Null));
        let flat_id = body.remove(flat);
        let (v, pointer) = match (flat_id, nested_id) {
            (Some(v), _) => (v, format!("/{flat}")),
            (None, Some(v)) => (v, format!("/{nested}/id")),
            (None, None) => return Ok(None),
        };
        match v {
            Value::Null => Ok(Some(None)),
            // Ids start at 1; the seed's samples send 0 as "none".
            Value::Number(n) if n.as_i64() == Some(0) => Ok(Some(None)),
            Value::Number(n) if n.as_i64().is_some_and(|i| i > 0) => Ok(Some(n.as_i64())),
            _ => Err(ApiError::invalid_body(
                &pointer,
                "expected a positive integer id",
            )),
        }
    }
    let org = match id_of(body, "organization_id", "organization")? {
        None => None,
        Some(None) => Some(None),
        Some(Some(id)) => {
            let o = state
                .stores
                .organizations
                .state()
                .into_iter()
                .find(|o| o.namespace().as_deref() == Some(ns) && o.watcher_id() == Some(id))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_organization",
                        format!("organization {id} not found"),
                    )
                    .pointer("/organization_id")
                })?;
            Some(Some(o.name_any()))
        }
    };
    let preset = match id_of(body, "preset_id", "preset")? {
        None => None,
        Some(None) => Some(None),
        Some(Some(id)) => {
            let p = preset_in(state, ns, id).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_preset",
                    format!("preset {id} not found"),
                )
                .pointer("/preset_id")
            })?;
            Some(Some(p.name_any()))
        }
    };
    Ok((org, preset))
}

/// The Preset with Watcher id `id` in namespace `ns` (a stream references presets of its own
/// namespace only).
pub(crate) fn preset_in(
    state: &ApiState,
    ns: &str,
    id: i64,
) -> Option<Arc<crate::resources::Preset>> {
    state
        .stores
        .presets
        .state()
        .into_iter()
        .find(|p| p.namespace().as_deref() == Some(ns) && p.watcher_id() == Some(id))
}

/// Credentials found in a URL, and the origin (`scheme://host:port`) of that URL.
pub(crate) type Found = ((String, String), Option<String>);

/// Moves `user:password@` out of input and ONVIF URLs (the CRD refuses passwords in URLs;
/// the Stream controller injects them from `spec.facadeCredentials` at push time).
pub(crate) fn extract_credentials(config: &mut StreamConfigSpec) -> Option<Found> {
    let mut found = None;
    let mut strip = |url: &mut String| {
        let Some((creds, rest)) = credentials::split_userinfo(url) else {
            return;
        };
        found.get_or_insert((creds, credentials::origin(&rest)));
        *url = rest;
    };
    for input in config.inputs.iter_mut().flatten() {
        strip(&mut input.url);
    }
    if let Some(url) = config
        .extras
        .get_mut()
        .and_then(|e| e.onvif.as_mut())
        .and_then(|o| o.url.as_mut())
    {
        strip(url);
    }
    found
}

/// The free-text rules of [`validate`] (the CRD has the same limits), worded for Watcher.
pub(crate) fn check_text(config: &StreamConfigSpec) -> ApiResult<()> {
    let bad = |e: validate::Invalid| ApiError::invalid_body(e.pointer, e.message);
    if let Some(t) = &config.title {
        validate::line("/title", t, validate::LINE_MAX).map_err(bad)?;
    }
    if let Some(a) = config.extras.get().and_then(|e| e.postal_address.as_ref()) {
        validate::line("/postal_address", a, validate::LINE_MAX).map_err(bad)?;
    }
    if let Some(c) = &config.comment {
        validate::text("/comment", c, validate::TEXT_MAX).map_err(bad)?;
    }
    Ok(())
}

/// The namespace and object name a save of `name` writes: the existing stream's, else the
/// mapped name in the facade namespace.
/// The object a save of `name` writes: the one holding `name`, else a new one under a name
/// no other object holds. A name whose previous object is still being deleted answers 409.
fn target(state: &ApiState, name: &str) -> ApiResult<(String, String)> {
    if let Some(s) = find(state, name) {
        return Ok((
            s.namespace()
                .unwrap_or_else(|| state.config.namespace.clone()),
            s.name_any(),
        ));
    }
    let ns = state.config.namespace.clone();
    let all = state.stores.streams.state();
    let here = || {
        all.iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
    };
    if here().any(|s| s.watcher_name() == name) {
        return Err(deleted::still_deleting("stream", name));
    }
    let object = free_object_name("", name, |o| {
        here().any(|s| s.metadata.name.as_deref() == Some(o))
    });
    Ok((ns, object))
}

/// Moves `user:password@` out of push URLs: per push URL (as stored), its credentials.
pub(crate) fn extract_push_credentials(
    config: &mut StreamConfigSpec,
) -> BTreeMap<String, (String, String)> {
    let mut found = BTreeMap::new();
    for push in config.pushes.iter_mut().flatten() {
        if let Some((creds, rest)) = credentials::split_userinfo(&push.url) {
            push.url = rest;
            found.insert(push.url.clone(), creds);
        }
    }
    found
}

/// A valid stand-in for a Secret name the API server will generate, for the dry run.
fn placeholder(object: &str, what: &str) -> String {
    credentials::generate_name(object, what)
        .trim_end_matches('-')
        .to_string()
}

/// Stores the camera and push credentials of a save in new facade-created Secrets owned by
/// the Stream, then applies the Stream. Camera credentials are referenced from
/// `spec.facadeCredentials`, never from `spec.credentials` (a manifest may own that field, and
/// re-applying it must not take back a password entered here). Nothing is written for a save
/// the API server would refuse (a dry run comes first); a failed apply deletes what was
/// written; credentials the save replaced are deleted if the facade created them for this
/// Stream.
async fn save_with_credentials(
    state: &ApiState,
    ns: &str,
    object: &str,
    mut spec: StreamSpec,
    creds: Option<Found>,
    pushes: BTreeMap<String, (String, String)>,
    mut rebuild: impl FnMut(Option<&Stream>) -> ApiResult<StreamSpec>,
) -> ApiResult<Stream> {
    let current = Api::<Stream>::namespaced(state.client.clone(), ns)
        .get_opt(object)
        .await
        .map_err(|e| ApiError::internal("reading the current object", e))?;
    // The dry run checks the spec the save will write: derived from the live object, not the
    // store, which may not hold the object yet (a kubectl create just before).
    if current.is_some() {
        spec = rebuild(current.as_ref())?;
    }
    let mut probe = spec.clone();
    if creds.is_some() {
        probe.facade_credentials = Some(Box::new(CameraCredentials {
            secret_name: placeholder(object, "camera-credentials"),
            username_key: None,
            password_key: None,
        }));
    }
    if !pushes.is_empty() {
        probe.push_credentials = Some(PushCredentials {
            secret_name: placeholder(object, "push-credentials"),
        });
    }
    dry_run_apply(state, ns, &Stream::new(object, probe)).await?;
    let uid = current.as_ref().and_then(|c| c.uid());
    // What the live object references (the store may lag behind a previous save).
    // (A save body cannot set these references; only the live object knows them.)
    if let Some(c) = &current {
        spec.facade_credentials = c.spec.facade_credentials.clone();
        spec.push_credentials = c.spec.push_credentials.clone();
    }
    let owner = CredentialsOwner {
        kind: OwnerKind::Stream,
        name: object,
        uid: uid.as_deref(),
    };
    let mut written: Vec<String> = Vec::new();
    let mut replaced: Vec<String> = Vec::new();
    let result = async {
        if let Some(((user, password), origin)) = creds {
            let destinations = origin
                .map(|o| BTreeMap::from([("username".into(), o.clone()), ("password".into(), o)]))
                .unwrap_or_default();
            let data = BTreeMap::from([("username".into(), user), ("password".into(), password)]);
            let name =
                create_credentials(state, ns, &owner, "camera-credentials", data, &destinations)
                    .await?;
            written.push(name.clone());
            replaced.extend(spec.facade_credentials.take().map(|c| c.secret_name));
            spec.facade_credentials = Some(Box::new(CameraCredentials {
                secret_name: name,
                username_key: None,
                password_key: None,
            }));
        }
        if !pushes.is_empty() {
            // Pushes whose URL is unchanged keep the credentials stored for it.
            let (mut data, mut destinations) = match &spec.push_credentials {
                Some(c) => secret_text(state, ns, &c.secret_name).await?,
                None => Default::default(),
            };
            let keep: HashSet<String> = spec
                .config
                .pushes
                .iter()
                .flatten()
                .flat_map(|p| {
                    [
                        credentials::push_username_key(&p.url),
                        credentials::push_password_key(&p.url),
                    ]
                })
                .collect();
            data.retain(|k, _| keep.contains(k));
            destinations.retain(|k, _| data.contains_key(k));
            for (url, (user, password)) in pushes {
                let (uk, pk) = (
                    credentials::push_username_key(&url),
                    credentials::push_password_key(&url),
                );
                destinations.remove(&uk);
                destinations.remove(&pk);
                if let Some(o) = credentials::origin(&url) {
                    destinations.insert(uk.clone(), o.clone());
                    destinations.insert(pk.clone(), o);
                }
                data.insert(uk, user);
                data.insert(pk, password);
            }
            let name =
                create_credentials(state, ns, &owner, "push-credentials", data, &destinations)
                    .await?;
            written.push(name.clone());
            replaced.extend(spec.push_credentials.take().map(|c| c.secret_name));
            spec.push_credentials = Some(PushCredentials { secret_name: name });
        }
        let (camera, push) = (
            spec.facade_credentials.clone(),
            spec.push_credentials.clone(),
        );
        // `spec.credentials` stays as the live object has it (the manifest's).
        save_with(state, ns, object, |current: Option<&Stream>| {
            let mut again = rebuild(current)?;
            again.facade_credentials = camera.clone();
            again.push_credentials = push.clone();
            Ok(Stream::new(object, again))
        })
        .await
    }
    .await;
    match result {
        Ok(stored) => {
            match uid.as_deref() {
                Some(uid) => {
                    for old in replaced.iter().filter(|r| !written.contains(r)) {
                        delete_credentials(state, ns, old, OwnerKind::Stream, Some(uid)).await;
                    }
                }
                None => {
                    if let Some(new_uid) = stored.uid() {
                        for name in &written {
                            adopt_credentials(state, ns, name, &owner, &new_uid).await;
                        }
                    }
                }
            }
            Ok(stored)
        }
        Err(e) => {
            for name in &written {
                delete_credentials(state, ns, name, OwnerKind::Stream, uid.as_deref()).await;
            }
            Err(e)
        }
    }
}

/// Zone rules of a save (reference §5 item 10): a new camera without rules of its own takes
/// its preset's `layout_rules` (a copy: changing the preset later moves no camera), and rules
/// the save sets or changes must name existing zones (422 otherwise). Rules left as they were
/// are not checked again, so a zone deleted with kubectl does not lock the rest of a stream.
fn zone_rules(
    state: &ApiState,
    ns: &str,
    spec: &mut StreamSpec,
    existing: Option<&Stream>,
) -> ApiResult<()> {
    if existing.is_none() && spec.config.layout_rules.is_none() {
        let preset = spec.preset_ref.as_ref().and_then(|p| {
            state
                .stores
                .presets
                .get(&kube::runtime::reflector::ObjectRef::new(p).within(ns))
        });
        spec.config.layout_rules = preset.and_then(|p| p.spec.layout_rules.clone().map(Box::new));
    }
    let before = existing.and_then(|s| s.spec.config.layout_rules.as_ref());
    if spec.config.layout_rules.as_ref() != before {
        super::zones::check_rules(state, ns, spec.config.layout_rules.as_deref())?;
    }
    Ok(())
}

/// The spec a save body leads to when applied to `existing` (shared by save and preview).
/// Returns the namespace, the object name, the spec and any camera credentials found in URLs.
fn saved_spec(
    state: &ApiState,
    name: &str,
    body: Option<Value>,
    (ns, target_object): (String, String),
    existing: Option<&Stream>,
) -> ApiResult<Saved> {
    if !valid_stream_name(name) {
        return Err(ApiError::invalid_parameter("name", STREAM_NAME_RULE));
    }
    let mut body = object(body)?;
    // What the facade renders for this stream now is accepted back (node stats included).
    let rendered = RenderedStreams::current(state);
    let seen = rendered.get(name).map(|v| Value::clone(v));
    crate::api::members::reject_unknown(&body, "stream_save", &["$reset"], seen.as_ref())?;
    crate::api::body::take_identity(&mut body, "name", name)?;
    let reset = match body.remove("$reset") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            return Err(ApiError::invalid_body(
                "/$reset",
                "`$reset` must be a boolean",
            ));
        }
    };
    for ro in READ_ONLY {
        body.remove(*ro);
    }
    let (org, preset) = references(state, &ns, &mut body)?;
    let mut spec = existing.map(|s| s.spec.clone()).unwrap_or_default();
    let mut config = if reset {
        Value::Object(Map::new())
    } else {
        serde_json::to_value(&spec.config).unwrap_or_default()
    };
    merge(&mut config, Value::Object(body));
    spec.config = decode(config, "")?;
    check_text(&spec.config)?;
    // A stream created without `spec.name` (kubectl, GitOps, the samples) is named by its
    // object name, and the CRD refuses adding the field later: keep it as it is.
    if existing.is_none() || spec.name.is_some() {
        spec.name = Some(name.to_string());
    }
    if let Some(o) = org {
        spec.organization_ref = o;
    }
    if let Some(p) = preset {
        spec.preset_ref = p;
    }
    zone_rules(state, &ns, &mut spec, existing)?;
    let creds = extract_credentials(&mut spec.config);
    Ok(Saved {
        ns,
        object: target_object,
        spec,
        creds,
    })
}

async fn save(
    state: &ApiState,
    name: &str,
    pairs: &[(String, String)],
    body: Option<Value>,
) -> ApiResult<Json<Value>> {
    match param(pairs, "part") {
        None | Some("config_on_disk") => {}
        Some("config_override") => {
            return Err(ApiError::invalid_parameter(
                "part",
                "Panoptes keeps no runtime override layer; save the stream itself",
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                "part",
                "expected config_on_disk or config_override",
            ));
        }
    }
    let (ns, object) = target(state, name)?;
    // Validated against what the store knows first, so a bad body writes nothing.
    let Saved {
        mut spec, creds, ..
    } = saved_spec(
        state,
        name,
        body.clone(),
        (ns.clone(), object.clone()),
        find(state, name).as_deref(),
    )?;
    let pushes = extract_push_credentials(&mut spec.config);
    // Re-derived from the live object on every attempt, so a concurrent write is never reverted.
    let rebuild = |current: Option<&Stream>| -> ApiResult<StreamSpec> {
        // The store had not seen the delete yet: the finalizer is still cleaning the nodes.
        if current.is_some_and(|c| !deleted::shown(c)) {
            return Err(deleted::still_deleting("stream", name));
        }
        // The object this name maps to holds another stream (a digest collision, or a name
        // taken by kubectl): never write one stream's save into another.
        if let Some(c) = current.filter(|c| c.watcher_name() != name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "exists",
                format!(
                    "stream {name} cannot be stored: its object {object} holds stream {}",
                    c.watcher_name()
                ),
            ));
        }
        let Saved { mut spec, .. } = saved_spec(
            state,
            name,
            body.clone(),
            (ns.clone(), object.clone()),
            current,
        )?;
        extract_push_credentials(&mut spec.config);
        Ok(spec)
    };
    let stored = if creds.is_none() && pushes.is_empty() {
        save_with(state, &ns, &object, |current: Option<&Stream>| {
            Ok(Stream::new(&object, rebuild(current)?))
        })
        .await?
    } else {
        save_with_credentials(state, &ns, &object, spec, creds, pushes, rebuild).await?
    };
    Ok(render(state, &stored))
}

async fn delete(state: &ApiState, name: &str, pairs: &[(String, String)]) -> ApiResult<Response> {
    let s = require(state, name)?;
    match param(pairs, "part") {
        None | Some("config_on_disk") => {
            Api::<Stream>::namespaced(state.client.clone(), &s.namespace().unwrap_or_default())
                .delete(&s.name_any(), &DeleteParams::default())
                .await
                .map_err(|e| ApiError::from_kube("deleting the stream", e))?;
            deleted::until_seen(&state.stores.streams, s.as_ref()).await;
        }
        // Panoptes has no runtime override layer: there is nothing to remove.
        Some("config_override") => {}
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                "part",
                "expected config_on_disk or config_override",
            ));
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /streams/{name}/reboot`: the node API (streamer-node-api.md) has no operation that
/// reboots a camera (`stream_stop` restarts the stream, not the device), so there is nothing
/// to forward it to: 501 for a stream that exists, rather than a success that did nothing.
fn reboot(state: &ApiState, name: &str) -> ApiResult<Response> {
    require(state, name)?;
    Err(super::not_here(
        "camera_reboot_not_supported",
        "the streaming nodes offer no camera reboot operation; reboot the camera through its own interface",
    ))
}

fn layouts(state: &ApiState, name: &str, pairs: &[(String, String)]) -> ApiResult<Response> {
    let started = Instant::now();
    let s = require(state, name)?;
    let with_history = param(pairs, "include_ingest_history") == Some("true");
    // The current placement, then the earlier ones, newest first (at most five).
    let listed = s.status.as_ref().map_or_else(Vec::new, |st| {
        crate::domain::layout_history::listed(st.layout.as_ref(), &st.layout_history)
    });
    let items: Vec<Value> = listed
        .iter()
        .map(|l| {
            let mut v = to_json(l);
            if let (false, Value::Object(m)) = (with_history, &mut v) {
                m.remove("ingest_history");
            }
            v
        })
        .collect();
    envelope(&items, pairs, &LAYOUTS, "layouts", started).map(IntoResponse::into_response)
}

fn preview(state: &ApiState, name: &str, body: Option<Value>) -> ApiResult<Json<Value>> {
    let existing = find(state, name);
    let Saved {
        ns, object, spec, ..
    } = saved_spec(state, name, body, target(state, name)?, existing.as_deref())?;
    let key = ObjectKey::new(&ns, &object);
    let Preview {
        before,
        after,
        world,
    } = Preview::of(
        &state.stores,
        &state.live,
        Edit::Stream {
            key: &key,
            spec: &spec,
        },
    );
    let names: HashMap<&ObjectKey, &String> = world.names.iter().map(|(n, k)| (k, n)).collect();
    let mut changes = Vec::new();
    for (k, placement) in &after.placements {
        let old = before.placements.get(k);
        let same = old.is_some_and(|o| {
            o.ingest == placement.ingest && o.dvr_backups == placement.dvr_backups
        });
        if same {
            continue;
        }
        let mut layout =
            after
                .changes
                .get(k)
                .cloned()
                .unwrap_or_else(|| crate::resources::wire::StreamLayout {
                    ingest: placement.ingest.as_deref().map(Text::new),
                    dvr_backups: placement.dvr_backups.iter().map(|h| Text::new(h)).collect(),
                    ..Default::default()
                });
        layout.ingest_history.clear();
        let mut v = to_json(&layout);
        if let Value::Object(m) = &mut v {
            m.insert(
                "name".into(),
                names
                    .get(&ObjectKey::from_layout(k))
                    .map(|n| n.as_str())
                    .unwrap_or_default()
                    .into(),
            );
        }
        changes.push(v);
    }
    Ok(whole(changes, "changes"))
}

fn camera_get(state: &ApiState, name: &str) -> ApiResult<Response> {
    let s = require(state, name)?;
    let cc = s.spec.camera_config.clone().unwrap_or_default();
    Ok(Json(to_json(&cc)).into_response())
}

async fn camera_save(state: &ApiState, name: &str, body: Option<Value>) -> ApiResult<Response> {
    let s = require(state, name)?;
    let body = object(body)?;
    let stored = save_with(
        state,
        &s.namespace().unwrap_or_default(),
        &s.name_any(),
        |current: Option<&Stream>| {
            let current = current.ok_or_else(|| ApiError::not_found("stream", name))?;
            let mut cc =
                serde_json::to_value(current.spec.camera_config.clone().unwrap_or_default())
                    .unwrap_or_default();
            merge(&mut cc, Value::Object(body.clone()));
            let mut spec = current.spec.clone();
            spec.camera_config = Some(Box::new(decode::<CameraConfig>(cc, "")?));
            Ok(Stream::new(&current.name_any(), spec))
        },
    )
    .await?;
    Ok(Json(to_json(&stored.spec.camera_config.unwrap_or_default())).into_response())
}

/// The `image` file and `proto` field of a multipart firmware upload.
async fn multipart_firmware(req: Request) -> ApiResult<(Vec<u8>, Option<String>)> {
    use axum::extract::{FromRequest, Multipart};
    let bad = |e: axum::extract::multipart::MultipartError| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "body_too_large", "request body too large")
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
        }
    };
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text()))?;
    let (mut image, mut proto) = (None, None);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("image") => image = Some(field.bytes().await.map_err(bad)?.to_vec()),
            Some("proto") => proto = Some(field.text().await.map_err(bad)?),
            _ => {}
        }
    }
    let image = image.ok_or_else(|| {
        ApiError::invalid_body("/image", "the `image` part (the firmware file) is required")
    })?;
    Ok((image, proto))
}

/// Firmware protocols the reference lists.
pub const FIRMWARE_PROTOS: &[&str] = &["iris", "isapi", "xm", "sputnik"];

async fn firmware(
    state: &ApiState,
    name: &str,
    pairs: &[(String, String)],
    req: Request,
) -> ApiResult<Response> {
    use axum::extract::FromRequest;
    let s = require(state, name)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    // Three encodings: `multipart/form-data` with fields `image` (file) and `proto` (what a
    // browser form sends), the SDK's JSON `{image, proto}` (image as base64, or as the
    // literal text), and a raw `application/octet-stream` image with `?proto=`.
    let (image, proto) = if content_type.starts_with("multipart/form-data") {
        multipart_firmware(req).await?
    } else {
        let RawBody(bytes) = RawBody::from_request(req, &()).await?;
        if content_type.starts_with("application/octet-stream") {
            (bytes.to_vec(), param(pairs, "proto").map(str::to_string))
        } else {
            let mut body = object(parse_json(&bytes)?)?;
            let image = match body.remove("image") {
                Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .unwrap_or_else(|_| s.into_bytes()),
                _ => {
                    return Err(ApiError::invalid_body(
                        "/image",
                        "`image` (the firmware file) is required",
                    ));
                }
            };
            let proto = match body.remove("proto") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(p),
                Some(_) => {
                    return Err(ApiError::invalid_body("/proto", "`proto` must be a string"));
                }
            };
            (image, proto)
        }
    };
    let proto = proto.or_else(|| param(pairs, "proto").map(str::to_string));
    let proto = proto.unwrap_or_else(|| "iris".into());
    if !FIRMWARE_PROTOS.contains(&proto.as_str()) {
        return Err(ApiError::invalid_body(
            "/proto",
            "`proto` must be one of iris, isapi, xm, sputnik",
        ));
    }
    if image.is_empty() {
        return Err(ApiError::invalid_body(
            "/image",
            "the firmware image is empty",
        ));
    }
    let ingest = s
        .status
        .as_ref()
        .and_then(|st| st.layout.as_ref()?.ingest.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_placed",
                "the stream is not placed on any streamer",
            )
        })?;
    let client = state.nodes.get(&ingest).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unavailable",
            format!("no client for streamer {ingest}"),
        )
    })?;
    client
        .firmware_update(s.watcher_name(), &proto, image)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, stream = %name, node = %ingest, "firmware upload failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "node_error",
                format!("streamer {ingest} refused the firmware: {}", e.category()),
            )
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
