//! The controllers' side of Watcher ids: the id annotation and finalizer on the object. The
//! allocator itself (claims, conflicts, candidates) is [`crate::domain::ids`], shared with the
//! facade.

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Context;
use super::kit::{Error, is_not_found};
use super::refs::key_of;
pub use crate::domain::ids::*;
use crate::resources::common::FINALIZER;

impl ClaimSpace for Context {
    fn client(&self) -> &kube::Client {
        &self.client
    }
    fn claim_namespace(&self) -> &str {
        &self.tunables.system_namespace
    }
    fn instance(&self) -> &crate::domain::instance::Instance {
        &self.tunables.instance
    }
}

impl From<IdError> for Error {
    fn from(e: IdError) -> Self {
        match e {
            IdError::Kube {
                action,
                what,
                source,
            } => Error::Kube {
                action,
                what,
                source,
            },
            IdError::Exhausted { kind, tries } => Error::IdsExhausted { kind, tries },
        }
    }
}

/// Whether the object's metadata must be applied to show `id` and carry the finalizer.
pub fn metadata_differs<K: ResourceExt>(obj: &K, id: Option<i64>) -> bool {
    let annotation = obj.annotations().get(ID_ANNOTATION).cloned();
    let want = id.map(|i| i.to_string()).or_else(|| annotation.clone());
    annotation != want || !obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Server-side applies (field manager `panoptes`) the id annotation (when `id` is known; an
/// annotation the object already has is kept otherwise) and the finalizer, which releases the
/// id claim (and any other state the controller keeps outside the object) on deletion.
pub async fn apply_metadata<K: Identified>(
    ctx: &Context,
    obj: &K,
    id: Option<i64>,
) -> Result<(), Error> {
    let annotation = id
        .map(|i| i.to_string())
        .or_else(|| obj.annotations().get(ID_ANNOTATION).cloned());
    let mut metadata = serde_json::json!({ "finalizers": [FINALIZER] });
    if let Some(a) = annotation {
        metadata["annotations"] = serde_json::json!({ ID_ANNOTATION: a });
    }
    super::kit::apply_metadata(ctx, obj, metadata).await
}

/// Removes the finalizer with a merge patch guarded by the object's `resourceVersion` (so it
/// works whoever added the finalizer, and a concurrent change makes it fail with 409 and retry
/// instead of dropping someone else's finalizer).
pub async fn remove_finalizer<K>(ctx: &Context, obj: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let (ns, name) = key_of(obj).into_parts();
    let rest: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": obj.resource_version(), "finalizers": rest }
    });
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube(
            "removing finalizer of",
            format!("{} {ns}/{name}", K::kind(&())),
        )(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Preset;

    #[test]
    fn metadata_differs_until_annotated_and_finalized() {
        let mut p = Preset::new("p", Default::default());
        assert!(metadata_differs(&p, Some(3)));
        p.metadata.annotations = Some([(ID_ANNOTATION.to_string(), "3".to_string())].into());
        assert!(metadata_differs(&p, Some(3)));
        p.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert!(!metadata_differs(&p, Some(3)));
        assert!(metadata_differs(&p, Some(4)));
        // Unknown id (conflict): keep what is there.
        assert!(!metadata_differs(&p, None));
    }
}
