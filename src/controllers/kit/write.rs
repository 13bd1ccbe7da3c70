//! Writes of the reconcilers to their own objects: status (one uid-pinned JSON patch, on
//! transitions only) and metadata (finalizers, annotations, by server-side apply).

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use super::{Error, is_not_found};
use crate::controllers::Context;
use crate::controllers::refs::{Key, key_of};
use crate::resources::common::CONTROLLER_MANAGER;

/// A kind the reconcilers write: namespaced, and read back typed.
pub(crate) trait Own:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Own for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// Server-side applies `body` (a partial object of kind `K`, `apiVersion`/`kind` added here)
/// to `ns/name` with field manager `manager`, forcing ownership. An object deleted meanwhile
/// needs nothing, so 404 is success.
async fn server_side_apply<K>(
    ctx: &Context,
    (ns, name): (&str, &str),
    manager: &str,
    mut body: serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Own,
{
    body["apiVersion"] = serde_json::json!(K::api_version(&()));
    body["kind"] = serde_json::json!(K::kind(&()));
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams::apply(manager).force();
    let patch = Patch::Apply(&body);
    match api.patch(name, &params, &patch).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces the status subresource of `obj` with `status` (field manager `panoptes`), pinned to
/// its uid. An object deleted (or replaced by a namesake) meanwhile needs nothing.
///
/// One JSON patch (`test` the uid, `add` the whole status) rather than a server-side apply: the
/// controllers own their kinds' status outright, and on the API server an apply costs a YAML
/// decode and a structured merge on top of the update (a third of its CPU time at 10,000
/// Streams in the `make bench` profile).
pub(crate) async fn apply_status<K, S>(ctx: &Context, obj: &K, status: &S) -> Result<(), Error>
where
    K: Own,
    S: Serialize,
{
    let key = key_of(obj);
    replace_status::<K, S>(ctx, &key, obj.uid().as_deref().unwrap_or_default(), status).await
}

/// [`apply_status`] by key and uid, for writers that no longer hold the object.
pub(crate) async fn replace_status<K, S>(
    ctx: &Context,
    key: &Key,
    uid: &str,
    status: &S,
) -> Result<(), Error>
where
    K: Own,
    S: Serialize,
{
    let (ns, name) = (key.namespace(), key.name());
    let failed = Error::kube("writing status of", format!("{} {ns}/{name}", K::kind(&())));
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        { "op": "test", "path": "/metadata/uid", "value": uid },
        { "op": "add", "path": "/status", "value": status },
    ]))
    .expect("a well-formed JSON patch");
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams {
        field_manager: Some(CONTROLLER_MANAGER.into()),
        ..PatchParams::default()
    };
    match api
        .patch_status(name, &params, &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_failed_test(&e) => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

/// The uid `test` of a JSON patch failed: the object was replaced by one of the same name.
/// The API server answers that with a bare 422 (no field causes, unlike a status the schema
/// refuses, whose message names the object and the field).
fn is_failed_test(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422
        && s.message == "the server rejected our request due to an error in our request")
}

/// Server-side applies `metadata` (finalizers, annotations; field manager `panoptes`) to `obj`,
/// pinned to its uid. An object deleted meanwhile needs nothing.
pub(crate) async fn apply_metadata<K>(
    ctx: &Context,
    obj: &K,
    mut metadata: serde_json::Value,
) -> Result<(), Error>
where
    K: Own,
{
    let (ns, name) = key_of(obj).into_parts();
    metadata["name"] = serde_json::json!(name);
    metadata["namespace"] = serde_json::json!(ns);
    metadata["uid"] = serde_json::json!(obj.uid());
    let body = serde_json::json!({ "metadata": metadata });
    server_side_apply::<K>(ctx, (&ns, &name), CONTROLLER_MANAGER, body)
        .await
        .map_err(Error::kube(
            "applying metadata of",
            format!("{} {ns}/{name}", K::kind(&())),
        ))
}
