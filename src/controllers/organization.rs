//! Organization controller: keeps each Organization's Watcher id, checks that the Presets and
//! the owner User it names exist, and counts the Streams it owns.
//!
//! A missing reference is `Ready=False` reason `MissingReference` naming what is missing, with
//! an Event; the organization is re-checked when a Preset or User of that name changes (and
//! every 30 s while something is missing). The finalizer `panoptes.dev/cleanup` releases the id
//! claim on deletion.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::Context;
use super::conditions::{self, Desired};
use super::ids::{self, IdKind, IdState, Ids};
use super::kit::{self, Backoff, Error};
use super::refs::{self, Key, RefIndex, key_of};
use crate::domain::refs::{MISSING_REFERENCE, RefKind, References, missing_message};
use crate::resources::common::CommonStatus;
use crate::resources::{Organization, OrganizationStatus, Preset, Stream, User};

/// Reconciles running at once.
const CONCURRENCY: u16 = 4;
/// How often a missing reference or an id conflict is re-checked besides the watch triggers.
const RECHECK: Duration = Duration::from_secs(30);

/// State of the Organization controller, shared by its reconciles and mappers.
pub struct OrganizationController {
    ctx: Arc<Context>,
    ids: Ids,
    /// Stream → its `organizationRef`.
    streams: RefIndex,
    backoff: Backoff,
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
        self.ctx
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
    if !kit::stores_ready(&ctx, shutdown.clone()).await {
        return;
    }
    let stores = &ctx.stores;
    let ctl = Arc::new(OrganizationController {
        ctx: ctx.clone(),
        ids: Ids::new(IdKind::Organization),
        streams: RefIndex::of_store(&stores.streams, stream_organization),
        backoff: Backoff::default(),
    });
    let on_stream = {
        let ctl = ctl.clone();
        move |s: Arc<Stream>| {
            ctl.streams
                .follow(&ctl.ctx.stores.streams, s.as_ref(), stream_organization)
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
    tracing::info!("organization controller started");
    let taps = &stores.taps;
    Controller::for_shared_stream(
        taps.organizations.subscribe(&stores.organizations),
        stores.organizations.clone(),
    )
    .with_config(Config::default().concurrency(CONCURRENCY))
    .watches_shared_stream(taps.streams.subscribe(&stores.streams), on_stream)
    .watches_shared_stream(taps.presets.subscribe(&stores.presets), on_preset)
    .watches_shared_stream(taps.users.subscribe(&stores.users), on_user)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctl)
    .for_each(|result| kit::report("Organization", result))
    .await;
    tracing::info!("organization controller stopped");
}

/// Reconciles one Organization.
#[tracing::instrument(skip_all, fields(namespace = org.namespace(), name = org.name_any()))]
pub async fn reconcile(
    org: Arc<Organization>,
    ctl: Arc<OrganizationController>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key_of(org.as_ref());
    let result = reconcile_inner(&org, &ctl, &key).await;
    ctl.ctx
        .controller_metrics
        .reconciled("Organization", started, &result);
    let action = result?;
    ctl.backoff.succeeded(&key);
    Ok(action)
}

/// Invalid input waits for a change; anything else backs off per organization with jitter.
pub fn error_policy(
    org: Arc<Organization>,
    error: &Error,
    ctl: Arc<OrganizationController>,
) -> Action {
    kit::error_action(&ctl.backoff, &key_of(org.as_ref()), "Organization", error)
}

async fn reconcile_inner(
    org: &Organization,
    ctl: &OrganizationController,
    key: &Key,
) -> Result<Action, Error> {
    let ctx = &ctl.ctx;
    let (ns, name) = (key.namespace(), key.name());
    if org.meta().deletion_timestamp.is_some() {
        ctl.ids.release(ctx, org).await?;
        ids::remove_finalizer(ctx, org).await?;
        return Ok(Action::await_change());
    }

    let state = ctl
        .ids
        .ensure(ctx, org, || ids::holdings(&ctx.stores.organizations))
        .await?;
    let held = match state {
        IdState::Held(id) => Some(id),
        IdState::Conflict { .. } => None,
    };
    if ids::metadata_differs(org, held) {
        ids::apply_metadata(ctx, org, held).await?;
    }

    let missing = refs::missing_references(ctx, org);

    let ready = match &state {
        IdState::Conflict { id, holder, pinned } => Desired::no(
            "Ready",
            ids::ID_CONFLICT,
            ids::conflict_message(*id, holder, *pinned),
        ),
        IdState::Held(_) if !missing.is_empty() => {
            Desired::no("Ready", MISSING_REFERENCE, missing_message(&missing))
        }
        IdState::Held(id) => Desired::yes("Ready", "Reconciled", format!("Watcher id {id}")),
    };
    let old = org.status.clone().unwrap_or_default();
    let generation = org.meta().generation;
    let (conditions, flipped) =
        conditions::next_conditions(&old.common.conditions, &ready, generation);
    let next = OrganizationStatus {
        common: CommonStatus {
            conditions,
            observed_generation: generation,
        },
        id: held.or(old.id),
        streams_count: Some(ctl.streams.count(ns, name)),
    };
    if next != old {
        kit::apply_status(ctx, org, &next).await?;
        if old.id.is_none()
            && let Some(id) = next.id
        {
            refs::publish(
                ctx,
                org,
                EventType::Normal,
                "IdAssigned",
                format!("Watcher id {id}"),
            )
            .await;
        }
        if flipped && !ready.status {
            refs::publish(
                ctx,
                org,
                EventType::Warning,
                ready.reason,
                ready.message.clone(),
            )
            .await;
        }
    }
    Ok(if ready.status {
        Action::await_change()
    } else {
        Action::requeue(RECHECK)
    })
}
