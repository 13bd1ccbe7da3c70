//! Organization controller: keeps each Organization's Watcher id, checks that the Presets and
//! the owner User it names exist, and counts the Streams it owns.
//!
//! A missing reference is `Ready=False` reason `MissingReference` naming what is missing, with
//! an Event; the organization is re-checked when a Preset or User of that name changes (and
//! every 30 s while something is missing). The finalizer `panoptes.dev/cleanup` releases the id
//! claim on deletion.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use super::conditions::Desired;
use super::ids::IdState;
use super::kit::Error;
use super::kit::identified::{self, Common, Hook, Verdict, id_ready};
use super::refs::{self, RefIndex, key_of};
use crate::domain::refs::{MISSING_REFERENCE, RefKind, Reference, References, missing_message};
use crate::resources::{Organization, OrganizationStatus, Preset, Stream, User};

/// Reconciles running at once.
const CONCURRENCY: u16 = 4;
/// How often a missing reference or an id conflict is re-checked besides the watch triggers.
const RECHECK: Duration = Duration::from_secs(30);

/// State of the Organization controller, shared by its reconciles and mappers.
pub struct OrganizationController {
    common: Common,
    /// Stream → its `organizationRef`.
    streams: RefIndex,
}

/// The organization a Stream names.
fn stream_organization(stream: &Stream) -> Vec<String> {
    stream.referenced(RefKind::Organization)
}

impl OrganizationController {
    /// Organizations of the namespace that name `target` of `kind` (organizations are few: a
    /// scan of the store; a new organization is reconciled on its own creation anyway).
    fn naming<K: ResourceExt>(&self, kind: RefKind, target: &K) -> Vec<ObjectRef<Organization>> {
        let (ns, name) = key_of(target).into_parts();
        self.common
            .ctx
            .stores
            .organizations
            .state()
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(&ns) && o.refers_to(kind, &name))
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }
}

/// Runs the Organization controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    let Some(controller) = identified::controller::<Organization>(&ctx, shutdown.clone()).await
    else {
        return;
    };
    let stores = &ctx.stores;
    let ctl = Arc::new(OrganizationController {
        common: Common::new::<Organization>(ctx.clone()),
        streams: RefIndex::of_store(&stores.streams, stream_organization),
    });
    let on_stream = {
        let ctl = ctl.clone();
        move |s: Arc<Stream>| {
            let store = &ctl.common.ctx.stores.streams;
            ctl.streams.follow(store, s.as_ref(), stream_organization)
        }
    };
    let on_preset = {
        let ctl = ctl.clone();
        move |p: Arc<Preset>| ctl.naming(RefKind::Preset, p.as_ref())
    };
    let on_user = {
        let ctl = ctl.clone();
        move |u: Arc<User>| ctl.naming(RefKind::User, u.as_ref())
    };
    let controller = controller
        .watches_shared_stream(stores.subscribe::<Stream>(), on_stream)
        .watches_shared_stream(stores.subscribe::<Preset>(), on_preset)
        .watches_shared_stream(stores.subscribe::<User>(), on_user);
    identified::run(controller, ctl, CONCURRENCY, shutdown).await;
}

impl Hook for OrganizationController {
    type Kind = Organization;

    fn common(&self) -> &Common {
        &self.common
    }

    async fn judge(
        &self,
        org: &Organization,
        state: &IdState,
        held: Option<i64>,
        old: &OrganizationStatus,
    ) -> Result<Verdict<OrganizationStatus>, Error> {
        let ready = judge(
            id_ready(state),
            &refs::missing_references(&self.common.ctx, org),
        );
        let (ns, name) = key_of(org).into_parts();
        Ok(Verdict::recheck_unless_ready(
            ready,
            OrganizationStatus {
                id: held.or(old.id),
                streams_count: Some(self.streams.count(&ns, &name)),
                ..Default::default()
            },
            RECHECK,
        ))
    }
}

/// An Organization's `Ready`: the id first, then the presets and owner it names.
fn judge(id: Desired, missing: &[Reference]) -> Desired {
    if id.status && !missing.is_empty() {
        return Desired::no("Ready", MISSING_REFERENCE, missing_message(missing));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::kit::identified::conflict;

    #[test]
    fn ready_by_precedence_for_every_reason() {
        let held = id_ready(&IdState::Held(7));
        let conflict = conflict();
        let gone = [Reference {
            kind: RefKind::Preset,
            name: "gold".into(),
            field: "spec.presetRefs",
        }];
        for (what, id, missing, reason) in [
            ("all there", &held, &[][..], "Reconciled"),
            ("a preset missing", &held, &gone[..], MISSING_REFERENCE),
            ("the id taken wins", &conflict, &gone[..], "IdConflict"),
        ] {
            let ready = judge(id.clone(), missing);
            assert_eq!(ready.reason, reason, "{what}");
            assert_eq!(ready.status, reason == "Reconciled", "{what}");
        }
    }
}
