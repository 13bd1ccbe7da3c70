//! Writes: server-side apply with field manager `panoptes-api`, and Secrets for the
//! credentials that arrive through the API (always new, facade-created Secrets owned by their
//! object: see [`crate::domain::credentials`]).
//!
//! Server-side apply cannot remove a member another field manager owns (e.g. one set with
//! `kubectl apply`). A Watcher save states the whole resulting object (a merge result, or the
//! body of a `$reset`), so after applying, members the API server still has but the facade
//! did not send are removed with a JSON merge patch: the result is exactly what was asked.
//!
//! Saves are optimistic ([`save_with`]): the current object is read from the API server (not
//! the reflector store), the edit is computed on it, and both writes carry the read
//! `resourceVersion` as a precondition. Losing a race (409) re-reads and re-applies the edit,
//! so concurrent partial saves and direct API edits are never reverted.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use k8s_openapi::ByteString;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ApiState;
use super::error::ApiError;
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::ids::ClaimSpace;
use crate::resources::common::API_MANAGER;

fn params() -> PatchParams {
    PatchParams::apply(API_MANAGER).force()
}

impl ClaimSpace for ApiState {
    fn client(&self) -> &kube::Client {
        &self.client
    }
    fn claim_namespace(&self) -> &str {
        &self.config.system_namespace
    }
    fn instance(&self) -> &crate::domain::instance::Instance {
        &self.config.instance
    }
}

/// How many times one save re-reads and re-applies its edit after losing a race.
const SAVE_ATTEMPTS: u32 = 12;

/// Saves the object `ns/name`: reads it from the API server, lets `edit` build the complete
/// object to store from it (`None`: it does not exist yet, and is created), and writes with the
/// read `resourceVersion` as a precondition. On a conflict (someone wrote in between, or a
/// racing create won) it starts over from a fresh read, so the edit is applied on top of the
/// other write instead of reverting it. It answers once this replica's store shows the write
/// (bounded by [`SEEN_WITHIN`]), so a read on this replica that follows sees it.
pub async fn save_with<K, F>(
    state: &ApiState,
    ns: &str,
    name: &str,
    mut edit: F,
) -> Result<K, ApiError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    F: FnMut(Option<&K>) -> Result<K, ApiError>,
    K: crate::state::Stored,
{
    let api: Api<K> = Api::namespaced(state.client.clone(), ns);
    for attempt in 0..SAVE_ATTEMPTS {
        let current = api
            .get_opt(name)
            .await
            .map_err(|e| ApiError::internal("reading the current object", e))?;
        let mut obj = edit(current.as_ref())?;
        let written = match &current {
            Some(c) => {
                obj.meta_mut().resource_version = c.resource_version();
                apply_guarded(&api, &obj).await
            }
            None => {
                let pp = PostParams {
                    field_manager: Some(API_MANAGER.to_string()),
                    ..Default::default()
                };
                api.create(&pp, &obj).await
            }
        };
        match written {
            Ok(stored) => {
                until_shown(state, &stored).await;
                return Ok(stored);
            }
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                // Spread the retries of saves that collided so they do not collide again.
                let ms = rand::random_range(0..=5 * u64::from(attempt + 1));
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            Err(e) => return Err(ApiError::from_kube("saving the object", e)),
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "conflict",
        "the object kept changing while it was being saved; send the save again",
    ))
}

/// How long a write waits for this replica's store to show it.
pub const SEEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// After a write the API server answered with `stored`: waits, at most [`SEEN_WITHIN`], until
/// this replica's store holds it (see [`until_stored`]); at once where no store of this
/// replica ever will (another shard's object).
pub async fn until_shown<K: crate::state::Stored>(state: &ApiState, stored: &K) {
    if let Some(store) = K::store_of(&state.stores, stored) {
        let key = kube::runtime::reflector::ObjectRef::from_obj(stored);
        let version = stored.resource_version().unwrap_or_default();
        let deadline = tokio::time::Instant::now() + SEEN_WITHIN;
        until_stored(store, &key, &version, deadline).await;
    }
}

/// Waits until `store` holds `key` at `version` or a later one, or `deadline` passes:
/// a read on this replica right after the write answers shows it (read-your-writes; another
/// replica's store follows its own watch, see README, "High availability"). Past the
/// deadline the write still answers: the API server has it, the store follows.
pub async fn until_stored<K>(
    store: &kube::runtime::reflector::Store<K>,
    key: &kube::runtime::reflector::ObjectRef<K>,
    version: &str,
    deadline: tokio::time::Instant,
) where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    // One keyed lookup per poll: cheap however many objects the store holds.
    while tokio::time::Instant::now() < deadline
        && !store.get(key).is_some_and(|have| {
            let have = have.resource_version().unwrap_or_default();
            have == version || newer(&have, version)
        })
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Whether version `a` is later than `b` (etcd's versions are increasing integers; anything
/// else is treated as not later, and the wait is bounded anyway).
fn newer(a: &str, b: &str) -> bool {
    matches!((a.parse::<u64>(), b.parse::<u64>()), (Ok(a), Ok(b)) if a > b)
}

/// The two writes of an exact save. When `obj` carries a `resourceVersion`, the apply is
/// conditional on it and the clean-up patch on the version the apply produced: a write by
/// anyone else in between makes this fail with 409 instead of being overwritten.
async fn apply_guarded<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = obj.name_any();
    let guarded = obj.resource_version().is_some();
    let stored = api.patch(&name, &params(), &Patch::Apply(obj)).await?;
    let want = spec_of(obj);
    let have = spec_of(&stored);
    let mut patch = Map::new();
    diff(&have, &want, &mut patch);
    if patch.is_empty() {
        return Ok(stored);
    }
    let mut body = serde_json::json!({ "spec": Value::Object(patch) });
    if guarded {
        body["metadata"] = serde_json::json!({ "resourceVersion": stored.resource_version() });
    }
    let pp = PatchParams {
        field_manager: Some(API_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch(&name, &pp, &Patch::Merge(&body)).await
}

fn spec_of<K: Serialize>(obj: &K) -> Value {
    serde_json::to_value(obj)
        .ok()
        .and_then(|mut v| v.get_mut("spec").map(Value::take))
        .unwrap_or(Value::Null)
}

/// The merge patch turning `have` into `want` (objects only; other values replace).
fn diff(have: &Value, want: &Value, out: &mut Map<String, Value>) {
    let (Value::Object(h), Value::Object(w)) = (have, want) else {
        return;
    };
    for (k, hv) in h {
        match w.get(k) {
            None => {
                out.insert(k.clone(), Value::Null);
            }
            Some(wv) if wv != hv => {
                if hv.is_object() && wv.is_object() {
                    let mut inner = Map::new();
                    diff(hv, wv, &mut inner);
                    out.insert(k.clone(), Value::Object(inner));
                } else {
                    out.insert(k.clone(), wv.clone());
                }
            }
            Some(_) => {}
        }
    }
}

/// Creates or updates Panoptes' own singleton Secret `name` in the system namespace (the
/// settings) with `data` (keys this call does not mention stay). Never for credentials of an
/// object: those go through [`create_credentials`].
pub async fn put_secret(
    state: &ApiState,
    ns: &str,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_string());
    secret.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_string(),
            "panoptes".to_string(),
        )]
        .into(),
    );
    secret.data = Some(
        data.into_iter()
            .map(|(k, v)| (k, ByteString(v.into_bytes())))
            .collect(),
    );
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": secret.metadata,
        "type": "Opaque",
        "data": secret.data,
    });
    Api::<Secret>::namespaced(state.client.clone(), ns)
        .patch(name, &params(), &Patch::Apply(&value))
        .await
        .map(|_| ())
        // Never echo the API server's message here: it could quote the value.
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                ApiError::invalid_body("", "the credentials could not be stored")
            }
            e => ApiError::internal("storing a Secret", e),
        })
}

/// The object a facade credentials Secret belongs to. `uid` is `None` before the object
/// exists (a create): the Secret then names its intended owner and gets the owner reference
/// from [`adopt_credentials`] once the object is created.
pub struct CredentialsOwner<'a> {
    /// Kind of the object.
    pub kind: OwnerKind,
    /// Object name.
    pub name: &'a str,
    /// Object uid, when it exists.
    pub uid: Option<&'a str>,
}

impl CredentialsOwner<'_> {
    fn reference(&self, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: credentials::api_version(),
            kind: self.kind.as_str().to_string(),
            name: self.name.to_string(),
            uid: uid.to_string(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }
}

/// Creates a new credentials Secret for `owner` holding `data` (with `destinations`: key →
/// the `scheme://host:port` each value was entered for) and returns its name. The name is
/// generated by the API server, so the facade never writes into (or adopts) a Secret it did
/// not create, whatever names objects have.
pub async fn create_credentials(
    state: &ApiState,
    ns: &str,
    owner: &CredentialsOwner<'_>,
    what: &str,
    data: BTreeMap<String, String>,
    destinations: &BTreeMap<String, String>,
) -> Result<String, ApiError> {
    let mut secret = Secret::default();
    secret.metadata.generate_name = Some(credentials::generate_name(owner.name, what));
    secret.metadata.labels = Some(BTreeMap::from([
        (
            credentials::MANAGED_BY_LABEL.to_string(),
            credentials::MANAGED_BY.to_string(),
        ),
        (
            credentials::COMPONENT_LABEL.to_string(),
            credentials::FACADE_CREDENTIALS.to_string(),
        ),
    ]));
    secret.metadata.annotations = Some(BTreeMap::from([
        (
            credentials::FOR_ANNOTATION.to_string(),
            format!("{}/{}", owner.kind.as_str(), owner.name),
        ),
        (
            credentials::DESTINATIONS_ANNOTATION.to_string(),
            credentials::destinations_json(destinations),
        ),
    ]));
    secret.metadata.owner_references = owner.uid.map(|uid| vec![owner.reference(uid)]);
    secret.type_ = Some("Opaque".into());
    secret.data = Some(
        data.into_iter()
            .map(|(k, v)| (k, ByteString(v.into_bytes())))
            .collect(),
    );
    let pp = PostParams {
        field_manager: Some(API_MANAGER.to_string()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(state.client.clone(), ns)
        .create(&pp, &secret)
        .await
        .map(|s| s.name_any())
        // Never echo the API server's message here: it could quote the value.
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                ApiError::invalid_body("", "the credentials could not be stored")
            }
            kube::Error::Api(s) if s.code == 413 => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the credentials are too large",
            ),
            e => ApiError::internal("storing a Secret", e),
        })
}

/// Makes the just-created object `owner` (uid `uid`) the owner of credentials Secret `name`.
/// A failure is logged only: the leader's sweep adopts Secrets their intended owner references.
pub async fn adopt_credentials(
    state: &ApiState,
    ns: &str,
    name: &str,
    owner: &CredentialsOwner<'_>,
    uid: &str,
) {
    let body = serde_json::json!({
        "metadata": { "ownerReferences": [owner.reference(uid)] }
    });
    let pp = PatchParams {
        field_manager: Some(API_MANAGER.to_string()),
        ..Default::default()
    };
    if let Err(error) = Api::<Secret>::namespaced(state.client.clone(), ns)
        .patch(name, &pp, &Patch::Merge(&body))
        .await
    {
        tracing::warn!(%error, secret = name, "setting the owner of a credentials Secret");
    }
}

/// Deletes credentials Secret `name` if the facade created it and it belongs to `owner`
/// (owned by `uid`, or, with `uid` `None`, not owned by anything yet): a rollback of a failed
/// write, or the removal of credentials a write replaced. Secrets the facade did not create are
/// never touched. Failures are logged; the sweep collects what is left.
pub async fn delete_credentials(
    state: &ApiState,
    ns: &str,
    name: &str,
    kind: OwnerKind,
    uid: Option<&str>,
) {
    let api = Api::<Secret>::namespaced(state.client.clone(), ns);
    let secret = match api.get_opt(name).await {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, secret = name, "reading a credentials Secret to delete");
            return;
        }
    };
    let ours = match uid {
        Some(uid) => credentials::owned_by(&secret, kind, uid),
        None => {
            credentials::is_facade_created(&secret)
                && secret.owner_references().is_empty()
                && credentials::intended_owner(&secret).is_some_and(|(k, _)| k == kind)
        }
    };
    if !ours {
        return;
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(error) => tracing::warn!(%error, secret = name, "deleting a credentials Secret"),
    }
}

/// Server-side dry run of applying `obj`: the API server validates it (schema, CEL, size)
/// without storing anything, so nothing (credentials included) is written for a save that
/// would fail.
pub async fn dry_run_apply<K>(state: &ApiState, ns: &str, obj: &K) -> Result<(), ApiError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(state.client.clone(), ns);
    api.patch(&obj.name_any(), &params().dry_run(), &Patch::Apply(obj))
        .await
        .map(|_| ())
        .map_err(|e| ApiError::from_kube("saving the object", e))
}

/// Server-side dry run of creating `obj`.
pub async fn dry_run_create<K>(state: &ApiState, ns: &str, obj: &K) -> Result<(), ApiError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(state.client.clone(), ns);
    let pp = PostParams {
        dry_run: true,
        field_manager: Some(API_MANAGER.to_string()),
    };
    api.create(&pp, obj)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::from_kube("creating the object", e))
}

/// The data of Secret `name` as text (values that are not UTF-8 are left out), or empty when
/// it does not exist.
pub async fn secret_text(
    state: &ApiState,
    ns: &str,
    name: &str,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), ApiError> {
    let got = Api::<Secret>::namespaced(state.client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| ApiError::internal("reading a Secret", e))?;
    let Some(secret) = got else {
        return Ok(Default::default());
    };
    let destinations = credentials::destinations(&secret);
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
        .collect();
    Ok((data, destinations))
}

/// The object as the API server has it now (read-your-writes for back-to-back saves, which the
/// reflector store may not have seen yet). A 404 falls back to `obj`. Saves use [`save_with`],
/// which also guards the write; this is for reads that must not lag.
pub async fn latest<K>(state: &ApiState, obj: &K) -> Result<K, ApiError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(state.client.clone(), &obj.namespace().unwrap_or_default());
    match api.get_opt(&obj.name_any()).await {
        Ok(Some(current)) => Ok(current),
        Ok(None) => Ok(obj.clone()),
        Err(e) => Err(ApiError::internal("reading the current object", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_removes_extras_and_keeps_equal_members() {
        let mut out = Map::new();
        diff(
            &json!({"a": 1, "b": {"c": 1, "d": 2}, "e": [1]}),
            &json!({"b": {"c": 1}, "e": [2]}),
            &mut out,
        );
        assert_eq!(
            Value::Object(out),
            json!({"a": null, "b": {"d": null}, "e": [2]})
        );
    }
}
