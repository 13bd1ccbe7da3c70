//! Users: list (`users_list`), create, get, update. Passwords go to a new facade-created
//! Secret (key `password`) owned by the User and referenced by `spec.facadePasswordSecretRef`;
//! the User controller hashes them. Created users get a pinned id (`spec.id`), so the response
//! carries the id without waiting for the controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{envelope, int_param, pairs};
use crate::api::ApiState;
use crate::api::auth::Caller;
use crate::api::body::{JsonBody, decode};
use crate::api::error::{ApiError, ApiResult};
use crate::api::names::free_object_name;
use crate::api::query::{CollectionSpec, Field};
use crate::api::views::{self, to_json};
use crate::api::write::{
    CredentialsOwner, adopt_credentials, create_credentials, delete_credentials, dry_run_apply,
    dry_run_create, latest, save_with,
};
use crate::domain::accounts;
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::ids::Identified;
use crate::domain::ids::{self, IdKind};
use crate::domain::validate;
use crate::resources::common::SecretKeyRef;
use crate::resources::user::{AccessLevel, Membership, Permissions};
use crate::resources::{User, UserSpec};

/// `GET /users`: by id.
pub const USERS: CollectionSpec<'static> = CollectionSpec {
    default_sort: "id",
    tiebreak: "name",
    default_limit: 100,
    max_limit: 1000,
    search: &["name", "fullname", "email"],
    filters: &[
        Field::integer("id"),
        Field::new("name"),
        Field::new("email"),
        Field::new("access_level"),
        Field::boolean("disabled"),
        Field::alias("organization_id", "organizations.id"),
    ],
    passthrough: &[],
    // Ours and the reference's, so a client selecting a reference member is not refused.
    members: &[
        "access_level",
        "created_at",
        "disabled",
        "email",
        "fullname",
        "id",
        "locale",
        "max_sessions",
        "name",
        "note",
        "organizations",
        "password",
        "phone",
        "readonly",
    ],
};

/// Writable user members (wire names). Unknown members are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
struct UserWrite {
    name: Option<String>,
    fullname: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    locale: Option<String>,
    note: Option<String>,
    max_sessions: Option<i64>,
    disabled: Option<bool>,
    readonly: Option<bool>,
    access_level: Option<AccessLevel>,
}

/// `GET /users`: the identities only (Users of the facade namespace and of
/// `--identity-namespaces`); other namespaces' Users are not the facade's to show.
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<crate::api::query::Envelope>> {
    let started = Instant::now();
    let identities = state.config.identities();
    let items: Vec<Value> = crate::api::deleted::objects(&state.stores.users)
        .iter()
        .filter(|u| identities.is_identity(u))
        .map(|u| to_json(&views::user(&state, u)))
        .collect();
    envelope(&items, &pairs(&raw), &USERS, "users_list", started)
}

/// The identity with Watcher id `id` (Users of other namespaces are not the facade's).
pub(crate) fn find(state: &ApiState, id: i64) -> Option<Arc<User>> {
    let identities = state.config.identities();
    crate::api::deleted::objects(&state.stores.users)
        .into_iter()
        .find(|u| identities.is_identity(u) && u.watcher_id() == Some(id))
}

/// `GET /users/{user_id}`.
pub async fn get(State(state): State<ApiState>, Path(raw): Path<String>) -> ApiResult<Json<Value>> {
    let id = int_param("user_id", &raw)?;
    let u = find(&state, id).ok_or_else(|| ApiError::not_found("user", id))?;
    Ok(Json(to_json(&views::user(&state, &u))))
}

fn take_password(body: &mut Map<String, Value>) -> ApiResult<Option<String>> {
    match body.remove("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) if p.is_empty() => Ok(None),
        Some(Value::String(p)) => Ok(Some(p)),
        Some(_) => Err(ApiError::invalid_body(
            "/password",
            "`password` must be a string",
        )),
    }
}

/// The login and free-text rules of [`validate`], worded for a Watcher client.
fn check(w: &UserWrite) -> ApiResult<()> {
    let bad = |e: validate::Invalid| ApiError::invalid_body(e.pointer, e.message);
    if let Some(n) = &w.name {
        validate::login(n).map_err(bad)?;
    }
    let lines = [
        ("/fullname", &w.fullname, validate::LINE_MAX),
        ("/phone", &w.phone, validate::PHONE_MAX),
    ];
    for (pointer, value, max) in lines {
        if let Some(v) = value {
            validate::line(pointer, v, max).map_err(bad)?;
        }
    }
    if let Some(v) = &w.note {
        validate::text("/note", v, validate::TEXT_MAX).map_err(bad)?;
    }
    Ok(())
}

/// The spec of a user as a Watcher renders it (`password`, `id` and `organizations` are not
/// read here): what `panoptes import` makes of a source's users, by the rules of a save.
pub(crate) fn spec_from_view(body: Value) -> ApiResult<UserSpec> {
    let w: UserWrite = decode(body, "")?;
    check(&w)?;
    let mut spec = UserSpec::default();
    apply_write(&mut spec, w);
    Ok(spec)
}

fn apply_write(spec: &mut UserSpec, w: UserWrite) {
    if let Some(n) = w.name {
        spec.name = n;
    }
    macro_rules! set {
        ($($f:ident),*) => { $( if w.$f.is_some() { spec.$f = w.$f; } )* };
    }
    set!(
        fullname,
        email,
        phone,
        locale,
        note,
        max_sessions,
        disabled,
        readonly,
        access_level
    );
}

/// Where a password entered through the API goes: a new facade-created Secret (key
/// `password`) owned by the User and referenced from `spec.facadePasswordSecretRef`, a field
/// manifests never set. So a Secret shared by several users (or kept in Git) is never written,
/// and re-applying a manifest keeps the new password.
fn password_ref(name: String) -> SecretKeyRef {
    SecretKeyRef {
        name,
        key: "password".into(),
    }
}

/// A valid stand-in for the name the API server will generate, for the dry run.
fn placeholder(object: &str) -> String {
    credentials::generate_name(object, "password")
        .trim_end_matches('-')
        .to_string()
}

async fn store_password(
    state: &ApiState,
    ns: &str,
    owner: &CredentialsOwner<'_>,
    password: String,
) -> ApiResult<SecretKeyRef> {
    let name = create_credentials(
        state,
        ns,
        owner,
        "password",
        BTreeMap::from([("password".to_string(), password)]),
        // A login password is never sent anywhere.
        &BTreeMap::new(),
    )
    .await?;
    Ok(password_ref(name))
}

/// `POST /users`.
pub async fn create(State(state): State<ApiState>, body: JsonBody) -> ApiResult<Json<Value>> {
    let mut body = body.object()?;
    // `organization_id` is the create body's (UserCreate), ignored on update.
    crate::api::members::reject_unknown(&body, "user_create", &["organization_id"], None)?;
    let password = take_password(&mut body)?;
    let org = match body.remove("organization_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i > 0) => n.as_i64(),
        Some(_) => {
            return Err(ApiError::invalid_body(
                "/organization_id",
                "expected a positive integer id",
            ));
        }
    };
    for ro in ["id", "organizations", "created_at"] {
        body.remove(ro);
    }
    let w: UserWrite = decode(Value::Object(body), "")?;
    let Some(login) = w.name.clone().filter(|n| !n.is_empty()) else {
        return Err(ApiError::invalid_body(
            "/name",
            "`name` (the login) is required",
        ));
    };
    check(&w)?;
    if crate::api::auth::login_taken(&state, &login) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "exists",
            format!("user {login} already exists"),
        )
        .pointer("/name"));
    }
    let ns = state.config.namespace.clone();
    let mut spec = UserSpec::default();
    apply_write(&mut spec, w);
    if let Some(id) = org {
        let o = state
            .stores
            .organizations
            .state()
            .into_iter()
            .find(|o| o.namespace().as_deref() == Some(ns.as_str()) && o.watcher_id() == Some(id))
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_organization",
                    format!("organization {id} not found"),
                )
                .pointer("/organization_id")
            })?;
        spec.organizations = Some(vec![Membership {
            organization_ref: o.name_any(),
            permissions: Some(Permissions {
                is_member: Some(true),
                ..Default::default()
            }),
        }]);
    }
    let all = state.stores.users.state();
    let here = || {
        all.iter()
            .filter(|u| u.metadata.namespace.as_deref() == Some(ns.as_str()))
    };
    if here().any(|u| u.spec.name == login && !crate::api::deleted::shown(u.as_ref())) {
        return Err(crate::api::deleted::still_deleting("user", &login));
    }
    // A new object under a name no other object holds (GitOps may hold the plain one).
    let object = free_object_name("user-", &login, |o| {
        here().any(|u| u.metadata.name.as_deref() == Some(o))
    });
    // Nothing is written for a create the API server would refuse (bad locale, too large…).
    if password.is_some() {
        spec.facade_password_secret_ref = Some(password_ref(placeholder(&object)));
    }
    dry_run_create(&state, &ns, &User::new(&object, spec.clone())).await?;
    // The id is claimed on the API server before anything else is written or answered, so
    // creates racing each other (or following each other faster than the watch) never share
    // an id.
    let claimed = ids::claim_new(
        &state,
        IdKind::User,
        |_| format!("{ns}/{object}"),
        &ids::holdings(&state.stores.users),
    )
    .await
    .map_err(|e| ApiError::internal("allocating a user id", e))?;
    spec.id = Some(claimed.id);
    let owner = CredentialsOwner {
        kind: OwnerKind::User,
        name: &object,
        uid: None,
    };
    let mut secret = None;
    let created = async {
        if let Some(p) = password {
            secret = Some(store_password(&state, &ns, &owner, p).await?);
        }
        spec.facade_password_secret_ref = secret.clone();
        let api: kube::Api<User> = kube::Api::namespaced(state.client.clone(), &ns);
        api.create(
            &kube::api::PostParams {
                field_manager: Some(crate::resources::common::API_MANAGER.into()),
                ..Default::default()
            },
            &User::new(&object, spec),
        )
        .await
        .map_err(|e| match e {
            // A create of the same login racing this one won.
            kube::Error::Api(s) if s.is_already_exists() => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "exists",
                format!("user {login} already exists"),
            )
            .pointer("/name"),
            e => ApiError::from_kube("creating the user", e),
        })
    }
    .await;
    let created = match created {
        Ok(u) => u,
        Err(e) => {
            if let Some(r) = &secret {
                delete_credentials(&state, &ns, &r.name, OwnerKind::User, None).await;
            }
            if let Err(re) = claimed.release(&state).await {
                tracing::warn!(error = %re, "releasing the id claim of a failed user create");
            }
            return Err(e);
        }
    };
    if let (Some(r), Some(uid)) = (&secret, created.uid()) {
        adopt_credentials(&state, &ns, &r.name, &owner, &uid).await;
    }
    Ok(Json(to_json(&views::user(&state, &created))))
}

/// `PUT /users/{user_id}`.
pub async fn save(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let id = int_param("user_id", &raw)?;
    let u = find(&state, id).ok_or_else(|| ApiError::not_found("user", id))?;
    let mut body = body.object()?;
    // `organization_id` is the create body's (UserCreate), ignored on update.
    crate::api::members::reject_unknown(&body, "user_save", &["organization_id"], None)?;
    let password = take_password(&mut body)?;
    crate::api::body::take_identity(&mut body, "id", &id.to_string())?;
    // The login: empty from a generated client's partial save means unchanged.
    crate::api::body::drop_empty(&mut body, "name");
    // Server-computed, or create-only (`organization_id`): ignored on update.
    for ro in ["organizations", "created_at", "organization_id"] {
        body.remove(ro);
    }
    let w: UserWrite = decode(Value::Object(body), "")?;
    check(&w)?;
    if let Some(n) = &w.name {
        if n.is_empty() {
            return Err(ApiError::invalid_body("/name", "`name` must not be empty"));
        }
        if *n != u.spec.name && crate::api::auth::login_taken(&state, n) {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "exists",
                format!("user {n} already exists"),
            )
            .pointer("/name"));
        }
    }
    let ns = u.namespace().unwrap_or_default();
    let object = u.name_any();
    // A new password goes to a new owned Secret, written only once a dry run of the save
    // passed; the save itself re-reads and retries on conflicts ([`save_with`]).
    let mut new_secret = None;
    if let Some(p) = password {
        let current = latest(&state, u.as_ref()).await?;
        let uid = current.uid().or_else(|| u.uid()).unwrap_or_default();
        let mut probe = current.spec.clone();
        apply_write(&mut probe, w.clone());
        probe.facade_password_secret_ref = Some(password_ref(placeholder(&object)));
        dry_run_apply(&state, &ns, &User::new(&object, probe)).await?;
        let owner = CredentialsOwner {
            kind: OwnerKind::User,
            name: &object,
            uid: Some(&uid),
        };
        new_secret = Some((store_password(&state, &ns, &owner, p).await?, uid));
    }
    let mut replaced = None;
    let saved = save_with(&state, &ns, &object, |current: Option<&User>| {
        // Deleted meanwhile: a save never recreates it.
        let current = current.ok_or_else(|| ApiError::not_found("user", id))?;
        let mut spec = current.spec.clone();
        apply_write(&mut spec, w.clone());
        if let Some((new, _)) = &new_secret {
            replaced = spec.facade_password_secret_ref.replace(new.clone());
        }
        Ok(User::new(&object, spec))
    })
    .await;
    let stored = match saved {
        Ok(s) => s,
        Err(e) => {
            if let Some((new, uid)) = &new_secret {
                delete_credentials(&state, &ns, &new.name, OwnerKind::User, Some(uid)).await;
            }
            return Err(e);
        }
    };
    if let (Some((new, uid)), Some(old)) = (&new_secret, replaced)
        && old.name != new.name
    {
        delete_credentials(&state, &ns, &old.name, OwnerKind::User, Some(uid)).await;
    }
    Ok(Json(to_json(&views::user(
        &state,
        &with_status(stored, &u),
    ))))
}

/// The stored object with the status the store knew (an apply returns the status too, but a
/// fresh create has none yet; the id is pinned or known either way).
fn with_status(mut stored: User, known: &User) -> User {
    if stored.status.is_none() {
        stored.status = known.status.clone();
    }
    stored
}

/// `DELETE /users/{user_id}`: 409 for yourself or the last enabled admin
/// ([`accounts::may_delete`]). The User's facade-written password Secret is deleted with it
/// here rather than left to the garbage collector, so nothing outlives the user even where
/// the collector lags; the operator's hash Secret goes by its owner reference.
pub async fn delete(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> ApiResult<StatusCode> {
    let id = int_param("user_id", &raw)?;
    let u = find(&state, id).ok_or_else(|| ApiError::not_found("user", id))?;
    let uid = u.uid().unwrap_or_default();
    let identities = state.config.identities();
    let admins = crate::api::deleted::objects(&state.stores.users)
        .iter()
        .filter(|x| identities.is_identity(x) && accounts::is_enabled_admin(&x.spec))
        .count();
    accounts::may_delete(
        &uid,
        &caller.uid,
        accounts::is_enabled_admin(&u.spec),
        admins,
    )
    .map_err(|r| ApiError::new(StatusCode::CONFLICT, r.code(), r.message()))?;
    let ns = u.namespace().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    Api::<User>::namespaced(state.client.clone(), &ns)
        .delete(&u.name_any(), &params)
        .await
        .map_err(|e| ApiError::from_kube("deleting the user", e))?;
    if let Some(r) = &u.spec.facade_password_secret_ref {
        delete_credentials(&state, &ns, &r.name, OwnerKind::User, Some(&uid)).await;
    }
    crate::api::deleted::until_seen(&state.stores.users, u.as_ref()).await;
    Ok(StatusCode::NO_CONTENT)
}
