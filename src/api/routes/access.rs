//! Access besides logins (reference §10): a user's API key (`/users/{id}/apikey`), shared
//! link tokens (`/shares`), a camera's credentials (`/streams/{name}/auth`), and the play
//! authorization backend the nodes call (`/play_auth`, not a Watcher operation). Storage and
//! decisions are [`crate::domain::access`]'s; Secrets follow [`crate::domain::credentials`]:
//! the facade only ever writes new Secrets it creates for their owner, and never reads or
//! writes one it did not create.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{envelope, int_param, pairs, param};
use crate::api::ApiState;
use crate::api::auth::Caller;
use crate::api::body::{JsonBody, decode};
use crate::api::error::{ApiError, ApiResult};
use crate::api::members::reject_unknown;
use crate::api::query::{CollectionSpec, Field};
use crate::api::write::{
    CredentialsOwner, create_credentials, delete_credentials, save_with, secret_text,
};
use crate::domain::access::{self, ShareRecord, SharedTokenPermission};
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::effective;
use crate::domain::validate;
use crate::resources::common::API_MANAGER;
use crate::resources::stream::CameraCredentials;
use crate::resources::{Stream, User};

/// How long a node may keep a play decision before asking again (Flussonic's
/// `X-AuthDuration`): a deleted token stops working within this many seconds.
pub const PLAY_AUTH_SECONDS: u32 = 30;

/// `{apikey}` (reference `Apikey`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Apikey {
    /// The key: in clear only in the answer of the create; masked (last 4 characters) on get.
    pub apikey: String,
}

/// A shared token (reference `SharedToken`).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SharedToken {
    /// The token (admins see it; it goes into the play URL as `?token=`).
    pub key: String,
    /// Its name.
    pub name: String,
    /// The stream it grants access to.
    pub media: String,
    /// What it allows.
    pub permissions: Vec<SharedTokenPermission>,
}

/// Camera credentials (reference `Auth`); `password` is write-only.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Auth {
    /// Camera login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// Camera password: accepted on save, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Camera port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// `GET /shares`.
pub const SHARES: CollectionSpec<'static> = CollectionSpec {
    default_sort: "name",
    tiebreak: "key",
    default_limit: 100,
    max_limit: 1000,
    search: &[],
    filters: &[Field::new("name"), Field::new("media")],
    passthrough: &[],
    members: &["key", "media", "name", "permissions"],
};

// ---- API keys ----

/// The identity with id `raw` if the caller may manage its API key: admins any, a user only
/// itself. A non-admin learns nothing about other ids (403 whether or not they exist).
fn own_user(state: &ApiState, caller: &Caller, raw: &str) -> ApiResult<std::sync::Arc<User>> {
    let id = int_param("user_id", raw)?;
    let user = super::users::find(state, id);
    let is_self = user
        .as_ref()
        .is_some_and(|u| u.uid().as_deref() == Some(caller.uid.as_str()));
    if !caller.admin && !is_self {
        return Err(ApiError::forbidden(
            "only admins manage the API keys of other users",
        ));
    }
    user.ok_or_else(|| ApiError::not_found("user", id))
}

/// The API key Secret of `user` if the facade created it for this very User.
async fn apikey_secret(state: &ApiState, user: &User) -> ApiResult<Option<Secret>> {
    let Some(name) = user.annotations().get(access::APIKEY_ANNOTATION) else {
        return Ok(None);
    };
    let ns = user.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(state.client.clone(), &ns)
        .get_opt(name)
        .await
        .map_err(|e| ApiError::internal("reading the API key Secret", e))?;
    let uid = user.uid().unwrap_or_default();
    Ok(secret.filter(|s| credentials::owned_by(s, OwnerKind::User, &uid)))
}

/// `GET /users/{user_id}/apikey`: the key masked but for its last 4 characters.
pub async fn apikey_get(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Apikey>> {
    let user = own_user(&state, &caller, &raw)?;
    let last4 = apikey_secret(&state, &user)
        .await?
        .and_then(|s| s.data?.get(access::LAST4_FIELD).cloned())
        .and_then(|b| String::from_utf8(b.0).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_apikey",
                format!("user {} has no API key; POST creates one", user.spec.name),
            )
        })?;
    Ok(Json(Apikey {
        apikey: access::mask(&last4),
    }))
}

/// `POST /users/{user_id}/apikey`: a new key, in clear in this answer only. The old key stops
/// working at once (its Secret is deleted); only the key's digest and last 4 characters are
/// stored.
pub async fn apikey_create(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Apikey>> {
    // The SDK sends `null`; an object is accepted if it names nothing but `apikey`.
    if let Some(b) = body.0 {
        let obj = JsonBody(Some(b)).object()?;
        reject_unknown(&obj, "users_apikey_create", &[], None)?;
    }
    let user = own_user(&state, &caller, &raw)?;
    let ns = user.namespace().unwrap_or_default();
    let uid = user.uid().unwrap_or_default();
    let object = user.name_any();
    let key = access::new_key();
    let data = BTreeMap::from([
        (
            access::DIGEST_FIELD.to_string(),
            state.auth.digester().digest(&key),
        ),
        (access::LAST4_FIELD.to_string(), access::last4(&key)),
    ]);
    let owner = CredentialsOwner {
        kind: OwnerKind::User,
        name: &object,
        uid: Some(&uid),
    };
    let name = create_credentials(&state, &ns, &owner, "api-key", data, &BTreeMap::new()).await?;
    let old = user.annotations().get(access::APIKEY_ANNOTATION).cloned();
    let patch = json!({"metadata": {"uid": uid, "annotations": {access::APIKEY_ANNOTATION: name}}});
    if let Err(e) = merge_patch::<User>(&state, &ns, &object, &patch).await {
        delete_credentials(&state, &ns, &name, OwnerKind::User, Some(&uid)).await;
        return Err(e);
    }
    if let Some(old) = old.filter(|o| *o != name) {
        delete_credentials(&state, &ns, &old, OwnerKind::User, Some(&uid)).await;
    }
    Ok(Json(Apikey { apikey: key }))
}

/// Patches the object and waits (bounded) until this replica's store shows the patch: a
/// shared token or API key answered with 200 works at once on this replica, whose `play_auth`
/// and API-key logins read the store (a node asking about a token just created was refused
/// for a moment).
async fn merge_patch<K>(state: &ApiState, ns: &str, name: &str, patch: &Value) -> ApiResult<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + crate::state::Stored
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let pp = PatchParams {
        field_manager: Some(API_MANAGER.to_string()),
        ..Default::default()
    };
    let stored = Api::<K>::namespaced(state.client.clone(), ns)
        .patch(name, &pp, &Patch::Merge(patch))
        .await
        .map_err(|e| ApiError::from_kube("saving the object", e))?;
    crate::api::write::until_shown(state, &stored).await;
    Ok(stored)
}

// ---- shared tokens ----

/// The shared tokens of every stream the facade serves, with their keys (read from their
/// Secrets: one list per namespace holding tokens; a token whose Secret is not the facade's
/// for that stream is left out).
async fn all_shares(state: &ApiState) -> ApiResult<Vec<Value>> {
    let streams = crate::api::deleted::objects(&state.stores.streams);
    let with: Vec<_> = streams
        .iter()
        .filter(|s| !access::shares(s.annotations()).is_empty())
        .collect();
    let namespaces: BTreeSet<String> = with.iter().filter_map(|s| s.namespace()).collect();
    let selector = format!(
        "{}={}",
        credentials::COMPONENT_LABEL,
        credentials::FACADE_CREDENTIALS
    );
    let mut secrets: BTreeMap<(String, String), Secret> = BTreeMap::new();
    for ns in namespaces {
        let list = Api::<Secret>::namespaced(state.client.clone(), &ns)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| ApiError::internal("listing shared token Secrets", e))?;
        for s in list.items {
            secrets.insert((ns.clone(), s.name_any()), s);
        }
    }
    let mut items = Vec::new();
    for s in with {
        let ns = s.namespace().unwrap_or_default();
        let uid = s.uid().unwrap_or_default();
        for (_, r) in access::shares(s.annotations()) {
            let Some(secret) = secrets
                .get(&(ns.clone(), r.secret.clone()))
                .filter(|x| credentials::owned_by(x, OwnerKind::Stream, &uid))
            else {
                continue;
            };
            let Some(key) = secret
                .data
                .as_ref()
                .and_then(|d| d.get(access::KEY_FIELD))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
            else {
                continue;
            };
            items.push(crate::api::views::to_json(&SharedToken {
                key,
                name: r.name,
                media: s.watcher_name().to_string(),
                permissions: r.permissions,
            }));
        }
    }
    Ok(items)
}

/// `GET /shares`.
pub async fn shares_list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<crate::api::query::Envelope>> {
    let started = Instant::now();
    let items = all_shares(&state).await?;
    envelope(&items, &pairs(&raw), &SHARES, "shared_tokens", started)
}

/// `POST /shares`: a token for the stream `media`. `key` empty or absent (generated clients
/// send it empty): one is generated; a chosen key must be at least 32 characters.
pub async fn shares_create(
    State(state): State<ApiState>,
    body: JsonBody,
) -> ApiResult<Json<SharedToken>> {
    let mut obj = body.object()?;
    reject_unknown(&obj, "shared_token_create", &[], None)?;
    let text = |obj: &mut Map<String, Value>, k: &str| -> ApiResult<String> {
        match obj.remove(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ApiError::invalid_body(
                &format!("/{k}"),
                format!("`{k}` must be a string"),
            )),
        }
    };
    let name = text(&mut obj, "name")?;
    let media = text(&mut obj, "media")?;
    let chosen = text(&mut obj, "key")?;
    let permissions: Vec<SharedTokenPermission> = match obj.remove("permissions") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => decode(v, "/permissions")?,
    };
    if name.trim().is_empty() {
        return Err(ApiError::invalid_body("/name", "`name` is required"));
    }
    validate::line("/name", &name, validate::LINE_MAX)
        .map_err(|e| ApiError::invalid_body(e.pointer, e.message))?;
    if media.is_empty() {
        return Err(ApiError::invalid_body(
            "/media",
            "`media` (the stream name) is required",
        ));
    }
    let key = if chosen.is_empty() {
        access::new_key()
    } else if chosen.len() < 32
        || chosen.len() > 256
        || !chosen.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(ApiError::invalid_body(
            "/key",
            "leave `key` empty to have one generated, or send 32 to 256 printable characters",
        ));
    } else {
        chosen
    };
    let stream = super::streams::find(&state, &media).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_media",
            format!("no stream named {media}"),
        )
        .pointer("/media")
    })?;
    let digest = state.auth.digester().digest(&key);
    let annotation = access::share_annotation(&digest);
    if crate::api::deleted::objects(&state.stores.streams)
        .iter()
        .any(|s| s.annotations().contains_key(&annotation))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            "a shared token with this key exists",
        ));
    }
    let ns = stream.namespace().unwrap_or_default();
    let uid = stream.uid().unwrap_or_default();
    let object = stream.name_any();
    let owner = CredentialsOwner {
        kind: OwnerKind::Stream,
        name: &object,
        uid: Some(&uid),
    };
    let data = BTreeMap::from([(access::KEY_FIELD.to_string(), key.clone())]);
    let secret =
        create_credentials(&state, &ns, &owner, "shared-token", data, &BTreeMap::new()).await?;
    let record = ShareRecord {
        name: name.clone(),
        permissions: permissions.clone(),
        digest,
        secret: secret.clone(),
        created_at: chrono::Utc::now().timestamp_millis(),
    };
    let value = serde_json::to_string(&record)
        .map_err(|e| ApiError::internal("encoding a shared token", e))?;
    let patch = json!({"metadata": {"uid": uid, "annotations": {annotation: value}}});
    if let Err(e) = merge_patch::<Stream>(&state, &ns, &object, &patch).await {
        delete_credentials(&state, &ns, &secret, OwnerKind::Stream, Some(&uid)).await;
        return Err(e);
    }
    Ok(Json(SharedToken {
        key,
        name,
        media: stream.watcher_name().to_string(),
        permissions,
    }))
}

/// `DELETE /shares/{key}`: the token stops working at the nodes' next check
/// ([`PLAY_AUTH_SECONDS`]).
pub async fn shares_delete(
    State(state): State<ApiState>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    let digest = state.auth.digester().digest(&key);
    let annotation = access::share_annotation(&digest);
    let found = crate::api::deleted::objects(&state.stores.streams)
        .into_iter()
        .find_map(|s| {
            let r: ShareRecord = serde_json::from_str(s.annotations().get(&annotation)?).ok()?;
            state
                .auth
                .digester()
                .matches(&key, &r.digest)
                .then_some((s, r))
        });
    let Some((stream, record)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such shared token",
        ));
    };
    let ns = stream.namespace().unwrap_or_default();
    let uid = stream.uid().unwrap_or_default();
    let patch = json!({"metadata": {"uid": uid, "annotations": {annotation.clone(): null}}});
    // Read-your-writes: `merge_patch` waits for this replica's store, so a list right after
    // the delete no longer shows the token.
    merge_patch::<Stream>(&state, &ns, &stream.name_any(), &patch).await?;
    delete_credentials(&state, &ns, &record.secret, OwnerKind::Stream, Some(&uid)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /play_auth`: the authorization backend the nodes call on every play of a pushed
/// stream (its `on_play` URL, `--play-auth-url`), with Flussonic's parameters: `name`,
/// `token`, `media_request` (or `dvr` and `from`), `ip`, `proto`, `request_type`. 200 when one
/// of the stream's shared tokens allows this play, else 403 — the same 403, with the same
/// empty body, whether the stream or the token exists or not. Nothing is kept per request.
pub async fn play_auth(State(state): State<ApiState>, RawQuery(raw): RawQuery) -> Response {
    let pairs = pairs(&raw);
    let (name, token) = (param(&pairs, "name"), param(&pairs, "token"));
    let now = chrono::Utc::now().timestamp();
    let play = access::classify(
        param(&pairs, "media_request"),
        param(&pairs, "dvr"),
        param(&pairs, "from"),
        now,
    );
    let allowed = match (name, token) {
        (Some(name), Some(token)) => super::streams::find(&state, name).is_some_and(|s| {
            let digest = state.auth.digester().digest(token);
            access::shares(s.annotations()).iter().any(|(_, r)| {
                subtle_eq(&digest, &r.digest) && access::allows(&r.permissions, play, now)
            })
        }),
        _ => false,
    };
    let status = if allowed {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    let mut resp = status.into_response();
    resp.headers_mut()
        .insert("x-authduration", HeaderValue::from(PLAY_AUTH_SECONDS));
    resp
}

fn subtle_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

// ---- camera credentials ----

/// The camera credentials Secret of `s` if the facade created it for this Stream; 409 when
/// the Stream takes its camera credentials from a Secret it does not own (a manifest's: the
/// facade neither reads nor writes it); None when it has none.
async fn owned_camera_secret(
    state: &ApiState,
    s: &Stream,
) -> ApiResult<Option<(CameraCredentials, BTreeMap<String, String>)>> {
    let Some(c) = credentials::camera_credentials(&s.spec) else {
        return Ok(None);
    };
    let ns = s.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(state.client.clone(), &ns)
        .get_opt(&c.secret_name)
        .await
        .map_err(|e| ApiError::internal("reading the camera credentials Secret", e))?;
    let uid = s.uid().unwrap_or_default();
    match secret {
        Some(sec) if credentials::owned_by(&sec, OwnerKind::Stream, &uid) => {
            let (data, _) = secret_text(state, &ns, &c.secret_name).await?;
            Ok(Some((c.clone(), data)))
        }
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "credentials_not_owned",
            format!(
                "the camera credentials of stream {} come from Secret {}, which Panoptes did not \
                 create for it (a manifest manages them); change them there",
                s.watcher_name(),
                c.secret_name
            ),
        )),
    }
}

fn auth_view(c: &CameraCredentials, data: &BTreeMap<String, String>) -> Auth {
    let user_key = c.username_key.as_deref().unwrap_or("username");
    Auth {
        login: data.get(user_key).cloned(),
        password: None,
        port: data.get("port").and_then(|p| p.parse().ok()),
    }
}

/// `GET /streams/{name}/auth`: login and port; the password is write-only.
pub async fn camera_auth_get(state: &ApiState, name: &str) -> ApiResult<Response> {
    let s = super::streams::find(state, name).ok_or_else(|| ApiError::not_found("stream", name))?;
    let view = match owned_camera_secret(state, &s).await? {
        Some((c, data)) => auth_view(&c, &data),
        None => Auth::default(),
    };
    Ok(Json(view).into_response())
}

/// `PUT /streams/{name}/auth`: new camera credentials in a new Secret the facade creates for
/// the Stream (the one it replaces is deleted). Empty members (`""`, port `0`, what generated
/// clients send for members they do not mean to change) keep the stored values.
pub async fn camera_auth_save(
    state: &ApiState,
    name: &str,
    body: Option<Value>,
) -> ApiResult<Response> {
    let obj = JsonBody(body).object()?;
    reject_unknown(&obj, "camera_auth_save", &[], None)?;
    let want: Auth = decode(Value::Object(obj), "")?;
    if let Some(p) = want.port
        && !(0..=65535).contains(&p)
    {
        return Err(ApiError::invalid_body("/port", "`port` must be 0..65535"));
    }
    let s = super::streams::find(state, name).ok_or_else(|| ApiError::not_found("stream", name))?;
    let current = owned_camera_secret(state, &s).await?;
    let mut data = current
        .as_ref()
        .map(|(c, d)| {
            let get = |k: Option<&str>, default: &str| d.get(k.unwrap_or(default)).cloned();
            let mut m = BTreeMap::new();
            for (k, v) in [
                ("username", get(c.username_key.as_deref(), "username")),
                ("password", get(c.password_key.as_deref(), "password")),
                ("port", d.get("port").cloned()),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            }
            m
        })
        .unwrap_or_default();
    for (k, v) in [("username", want.login), ("password", want.password)] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            data.insert(k.to_string(), v);
        }
    }
    if let Some(p) = want.port.filter(|p| *p != 0) {
        data.insert("port".into(), p.to_string());
    }
    if !data.contains_key("username") || !data.contains_key("password") {
        return Err(ApiError::invalid_body(
            "",
            "`login` and `password` are required when the stream has no camera credentials yet",
        ));
    }
    // Bound to the camera's current address: the Stream controller gives the credentials only
    // to inputs of this origin (a later change of the camera's host needs them entered again).
    let origin = s
        .spec
        .config
        .inputs
        .iter()
        .flatten()
        .map(|i| i.url.as_str())
        .find(|u| effective::with_userinfo(u, "u", "p") != *u)
        .and_then(credentials::origin);
    let destinations = origin
        .map(|o| BTreeMap::from([("username".into(), o.clone()), ("password".into(), o)]))
        .unwrap_or_default();
    let ns = s.namespace().unwrap_or_default();
    let uid = s.uid().unwrap_or_default();
    let object = s.name_any();
    let owner = CredentialsOwner {
        kind: OwnerKind::Stream,
        name: &object,
        uid: Some(&uid),
    };
    let written = create_credentials(
        state,
        &ns,
        &owner,
        "camera-credentials",
        data.clone(),
        &destinations,
    )
    .await?;
    let reference = CameraCredentials {
        secret_name: written.clone(),
        username_key: None,
        password_key: None,
    };
    let saved = save_with(state, &ns, &object, |live: Option<&Stream>| {
        let Some(live) = live.filter(|l| l.uid().as_deref() == Some(uid.as_str())) else {
            return Err(ApiError::not_found("stream", name));
        };
        let mut spec = live.spec.clone();
        spec.facade_credentials = Some(Box::new(reference.clone()));
        Ok(Stream::new(&object, spec))
    })
    .await;
    if let Err(e) = saved {
        delete_credentials(state, &ns, &written, OwnerKind::Stream, Some(&uid)).await;
        return Err(e);
    }
    if let Some(old) = s.spec.facade_credentials.as_ref()
        && old.secret_name != written
    {
        delete_credentials(state, &ns, &old.secret_name, OwnerKind::Stream, Some(&uid)).await;
    }
    Ok(Json(auth_view(&reference, &data)).into_response())
}
