//! Writes: server-side apply with field manager `panoptes-api`, and Secrets for the
//! credentials that arrive through the API.
//!
//! Server-side apply cannot remove a member another field manager owns (e.g. one set with
//! `kubectl apply`). A Watcher save states the whole resulting object (a merge result, or the
//! body of a `$reset`), so after applying, members the API server still has but the facade
//! did not send are removed with a JSON merge patch: the result is exactly what was asked.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ApiState;
use super::error::ApiError;
use crate::resources::common::API_MANAGER;

fn params() -> PatchParams {
    PatchParams::apply(API_MANAGER).force()
}

/// Applies `obj` (a complete object with apiVersion/kind, without status) so that its spec
/// ends up exactly as given; returns what the API server stored.
pub async fn apply_exact<K>(state: &ApiState, ns: &str, obj: &K) -> Result<K, ApiError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(state.client.clone(), ns);
    let name = obj.name_any();
    let stored = api
        .patch(&name, &params(), &Patch::Apply(obj))
        .await
        .map_err(|e| ApiError::from_kube("saving the object", e))?;
    let want = spec_of(obj);
    let have = spec_of(&stored);
    let mut patch = Map::new();
    diff(&have, &want, &mut patch);
    if patch.is_empty() {
        return Ok(stored);
    }
    let body = serde_json::json!({ "spec": Value::Object(patch) });
    let pp = PatchParams {
        field_manager: Some(API_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch(&name, &pp, &Patch::Merge(&body))
        .await
        .map_err(|e| ApiError::from_kube("saving the object", e))
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

/// Creates or updates the Secret `name` with `data` (keys this call does not mention stay).
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

/// The object as the API server has it now. Partial updates merge onto this, not onto the
/// reflector store, which may not have seen the caller's previous write yet (read-your-writes
/// for back-to-back saves). A 404 falls back to `obj` (the apply then recreates or fails).
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
