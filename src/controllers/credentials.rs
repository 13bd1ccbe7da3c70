//! Lifecycle of the credentials Secrets the facade creates (rules in
//! [`crate::domain::credentials`]): the finalizers of Users, Streamers and Streams delete the
//! ones their object references, and the leader's sweep deletes what a crash or a failed write
//! left behind. A cluster's garbage collector would also follow the owner references; neither
//! depends on one (the test control plane has none).
//!
//! Sweep rules, for each facade-created Secret:
//! - owned by an object that no longer exists (or by an older object of the same name): deleted;
//! - owned by a live object that does not reference it, once older than the grace period
//!   (credentials a save replaced, or a save that failed after writing them): deleted;
//! - not owned yet, once older than the grace period: adopted by the object it was written for
//!   when that object references it (a create whose owner update was lost), deleted otherwise.
//!
//! The grace period covers a facade write in flight (Secret written, object not yet).
//!
//! The same sweep releases id claims ([`crate::domain::ids`]) whose object does not exist:
//! the facade claims an id before it creates the object, so a crash (or a failed create whose
//! release failed too) in between would otherwise lose that id for good.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Context;
use crate::domain::credentials::{self, OwnerKind};
use crate::domain::ids::{self, ClaimSpace, IdKind};
use crate::resources::common::CONTROLLER_MANAGER;
use crate::resources::{Organization, Preset, Stream, Streamer, User};
use crate::state::Scope;

/// How often the leader sweeps, and how old an unowned or unreferenced Secret must be.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// Time between sweeps.
    pub every: Duration,
    /// Age below which a Secret may belong to a facade write in flight and is left alone.
    pub grace: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(300),
            grace: Duration::from_secs(600),
        }
    }
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Secrets deleted.
    pub deleted: Vec<String>,
    /// Secrets given their intended owner.
    pub adopted: Vec<String>,
}

/// Deletes the Secrets among `names` that the facade created for `obj` (owned by its uid):
/// the finalizers' cleanup. Secrets someone else created are never touched. Failures are
/// logged, never returned: a deletion must not wedge on them, and the sweep deletes Secrets
/// whose owner is gone.
pub async fn delete_facade_credentials<K: ResourceExt>(
    ctx: &Context,
    ns: &str,
    names: &[String],
    kind: OwnerKind,
    obj: &K,
) {
    let Some(uid) = obj.uid() else {
        return;
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let object = obj.name_any();
    for name in names {
        if !credentials::may_be_facade_named(kind, &object, name) {
            continue;
        }
        let result = match api.get_opt(name).await {
            Ok(Some(secret)) if credentials::owned_by(&secret, kind, &uid) => {
                delete(&api, &secret).await
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            tracing::warn!(%error, namespace = ns, secret = %name, "deleting the credentials Secret of a deleted object; the sweep retries");
        }
    }
}

async fn delete(api: &Api<Secret>, secret: &Secret) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&secret.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The uid, deletion state and referenced credentials Secrets of `kind` `ns/name`, if it exists.
async fn object_refs(
    client: &Client,
    kind: OwnerKind,
    ns: &str,
    name: &str,
) -> Result<Option<(String, bool, Vec<String>)>, kube::Error> {
    async fn get<K>(client: &Client, ns: &str, name: &str) -> Result<Option<K>, kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(client.clone(), ns).get_opt(name).await
    }
    fn facts<K: ResourceExt>(o: &K, refs: Vec<String>) -> (String, bool, Vec<String>) {
        (
            o.uid().unwrap_or_default(),
            o.meta().deletion_timestamp.is_some(),
            refs,
        )
    }
    Ok(match kind {
        OwnerKind::User => get::<User>(client, ns, name).await?.map(|o| {
            let refs = [
                credentials::user_refs(&o.spec),
                credentials::annotated_refs(o.annotations()),
            ];
            facts(&o, refs.concat())
        }),
        OwnerKind::Streamer => get::<Streamer>(client, ns, name)
            .await?
            .map(|o| facts(&o, credentials::streamer_refs(&o.spec))),
        OwnerKind::Stream => get::<Stream>(client, ns, name).await?.map(|o| {
            let refs = [
                credentials::stream_refs(&o.spec),
                credentials::annotated_refs(o.annotations()),
            ];
            facts(&o, refs.concat())
        }),
    })
}

/// One sweep over the facade-created credentials Secrets in `scope`.
pub async fn sweep_once(
    client: &Client,
    scope: &Scope,
    grace: Duration,
) -> Result<SweepReport, kube::Error> {
    let selector = credentials::facade_created_selector();
    let list = scope
        .api::<Secret>(client.clone())
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut report = SweepReport::default();
    for meta in list.items {
        let ns = meta.namespace().unwrap_or_default();
        let name = meta.name_any();
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        // Full object (the list carried metadata only; the checks below need no data).
        let secret = Secret {
            metadata: meta.metadata,
            ..Default::default()
        };
        let old = secret
            .creation_timestamp()
            .is_none_or(|t| now - t.0.as_millisecond() >= grace.as_millis() as i64);
        let verdict = match credentials::owner_of(&secret) {
            Some((kind, owner, uid)) => match object_refs(client, kind, &ns, &owner).await? {
                None => Verdict::Delete,
                Some((live_uid, _, _)) if live_uid != uid => Verdict::Delete,
                // The finalizer deletes what the object references.
                Some((_, true, _)) => Verdict::Keep,
                Some((_, false, refs)) if old && !refs.contains(&name) => Verdict::Delete,
                Some(_) => Verdict::Keep,
            },
            None if !old => Verdict::Keep,
            None => match credentials::intended_owner(&secret) {
                None => Verdict::Delete,
                Some((kind, owner)) => match object_refs(client, kind, &ns, &owner).await? {
                    Some((uid, false, refs)) if refs.contains(&name) && !uid.is_empty() => {
                        Verdict::Adopt(kind, owner, uid)
                    }
                    _ => Verdict::Delete,
                },
            },
        };
        match verdict {
            Verdict::Keep => {}
            Verdict::Delete => {
                delete(&api, &secret).await?;
                tracing::info!(namespace = %ns, secret = %name, "swept a leftover credentials Secret");
                report.deleted.push(format!("{ns}/{name}"));
            }
            Verdict::Adopt(kind, owner, uid) => {
                let body = serde_json::json!({"metadata": {"ownerReferences": [{
                    "apiVersion": credentials::api_version(),
                    "kind": kind.as_str(),
                    "name": owner,
                    "uid": uid,
                    "controller": true,
                }]}});
                let pp = PatchParams {
                    field_manager: Some(CONTROLLER_MANAGER.to_string()),
                    ..Default::default()
                };
                api.patch(&name, &pp, &Patch::Merge(&body)).await?;
                report.adopted.push(format!("{ns}/{name}"));
            }
        }
    }
    Ok(report)
}

enum Verdict {
    Keep,
    Delete,
    Adopt(OwnerKind, String, String),
}

/// Whether `kind` `ns/name` exists on the API server.
async fn id_holder_exists(
    client: &Client,
    kind: IdKind,
    ns: &str,
    name: &str,
) -> Result<bool, kube::Error> {
    Ok(match kind {
        IdKind::User => Api::<User>::namespaced(client.clone(), ns)
            .get_metadata_opt(name)
            .await?
            .is_some(),
        IdKind::Preset => Api::<Preset>::namespaced(client.clone(), ns)
            .get_metadata_opt(name)
            .await?
            .is_some(),
        IdKind::Organization => Api::<Organization>::namespaced(client.clone(), ns)
            .get_metadata_opt(name)
            .await?
            .is_some(),
    })
}

/// One sweep over `instance`'s id claims in `claim_namespace`: releases each claim whose object does
/// not exist once it is older than `grace` ([`ids::claim_is_stale`]). Returns the released
/// claims' names. A claim changed since it was listed (re-pointed by a facade create, adopted
/// by a controller) is kept: the delete is guarded by its uid and resourceVersion.
pub async fn sweep_id_claims(
    client: &Client,
    claim_namespace: &str,
    instance: &crate::domain::instance::Instance,
    grace: Duration,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), claim_namespace);
    let selector = format!(
        "{}={},{}",
        credentials::MANAGED_BY_LABEL,
        credentials::MANAGED_BY,
        ids::CLAIM_KIND_LABEL
    );
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut released = Vec::new();
    // Another installation's claims in the same namespace are its own to judge: its
    // objects may be where this one cannot look.
    for lease in list
        .items
        .into_iter()
        .filter(|l| ids::claim_in(instance, l))
    {
        let Some(kind) = ids::claim_kind(&lease) else {
            continue;
        };
        let exists = match ids::claim_holder(&lease) {
            None => false,
            Some((ns, name)) => match id_holder_exists(client, kind, &ns, &name).await {
                Ok(exists) => exists,
                // Unreadable (e.g. a namespace outside the operator's rights): keep the claim.
                Err(error) => {
                    tracing::warn!(%error, claim = %lease.name_any(), "reading the holder of an id claim; kept");
                    continue;
                }
            },
        };
        let created = lease.creation_timestamp().map(|t| t.0.as_millisecond());
        if ids::claim_is_stale(created, exists, now, grace.as_millis() as i64)
            && ids::release_stale_claim(&api, &lease).await?
        {
            tracing::info!(claim = %lease.name_any(), "released an id claim whose object does not exist");
            released.push(lease.name_any());
        }
    }
    Ok(released)
}

/// Sweeps every `cfg.every` until `shutdown` resolves (run by the leader only).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    cfg: SweepConfig,
) {
    let shutdown = shutdown.shared();
    loop {
        tokio::select! {
            _ = shutdown.clone() => return,
            _ = tokio::time::sleep(cfg.every) => {}
        }
        if let Err(error) = sweep_once(&ctx.client, &ctx.scope, cfg.grace).await {
            tracing::warn!(%error, "sweeping credentials Secrets");
        }
        if let Err(error) = sweep_id_claims(
            &ctx.client,
            ctx.claim_namespace(),
            ctx.instance(),
            cfg.grace,
        )
        .await
        {
            tracing::warn!(%error, "sweeping id claims");
        }
    }
}
