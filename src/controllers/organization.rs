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

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::Context;
use super::conditions::Desired;
use super::ids::{self, IdKind, IdState, Ids};
use super::refs::{self, Backoff, Error, Key, Pending, RefIndex, Settle, SourceKind, key_of};
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
    store: Store<Organization>,
    ids: Ids,
    /// Stream → its `organizationRef`.
    streams: RefIndex,
    pending: Pending,
    backoff: Backoff,
}

impl OrganizationController {
    fn stream_changed(&self, stream: &Stream) -> Vec<ObjectRef<Organization>> {
        let (ns, name) = key_of(stream).into_parts();
        let targets = stream.referenced(RefKind::Organization);
        let affected = self.streams.observe(&ns, &name, targets);
        self.touch(
            &ns,
            affected,
            SourceKind::Stream,
            &name,
            stream.resource_version(),
        )
    }

    /// Organizations of the namespace that name `preset` (organizations are few: a scan of
    /// the store; a new organization is reconciled on its own creation anyway).
    fn preset_changed(&self, preset: &Preset) -> Vec<ObjectRef<Organization>> {
        let (ns, name) = key_of(preset).into_parts();
        let orgs = self.orgs_where(&ns, |o| o.refers_to(RefKind::Preset, &name));
        self.touch(
            &ns,
            orgs,
            SourceKind::Preset,
            &name,
            preset.resource_version(),
        )
    }

    fn user_changed(&self, user: &User) -> Vec<ObjectRef<Organization>> {
        let (ns, name) = key_of(user).into_parts();
        let orgs = self.orgs_where(&ns, |o| o.refers_to(RefKind::User, &name));
        self.touch(&ns, orgs, SourceKind::User, &name, user.resource_version())
    }

    fn orgs_where(&self, ns: &str, f: impl Fn(&Organization) -> bool) -> Vec<String> {
        self.store
            .state()
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(ns) && f(o))
            .map(|o| o.name_any())
            .collect()
    }

    fn touch(
        &self,
        ns: &str,
        orgs: Vec<String>,
        kind: SourceKind,
        source: &str,
        rv: Option<String>,
    ) -> Vec<ObjectRef<Organization>> {
        orgs.into_iter()
            .map(|o| {
                self.pending
                    .record(Key::new(ns, &o), kind, source, rv.clone());
                ObjectRef::new(&o).within(ns)
            })
            .collect()
    }
}

/// Runs the Organization controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    if !refs::stores_ready(&ctx, shutdown.clone()).await {
        return;
    }
    let wc = watcher::Config::default().any_semantic();
    let controller = Controller::new(
        ctx.scope.api::<Organization>(ctx.client.clone()),
        wc.clone(),
    );
    let ctl = Arc::new(OrganizationController {
        ctx: ctx.clone(),
        store: controller.store(),
        ids: Ids::new(IdKind::Organization),
        streams: RefIndex::default(),
        pending: Pending::default(),
        backoff: Backoff::default(),
    });
    let on_stream = {
        let ctl = ctl.clone();
        move |s: Stream| ctl.stream_changed(&s)
    };
    let on_preset = {
        let ctl = ctl.clone();
        move |p: Preset| ctl.preset_changed(&p)
    };
    let on_user = {
        let ctl = ctl.clone();
        move |u: User| ctl.user_changed(&u)
    };
    tracing::info!("organization controller started");
    controller
        .with_config(Config::default().concurrency(CONCURRENCY))
        .watches(
            ctx.scope.api::<Stream>(ctx.client.clone()),
            wc.clone(),
            on_stream,
        )
        .watches(
            ctx.scope.api::<Preset>(ctx.client.clone()),
            wc.clone(),
            on_preset,
        )
        .watches(ctx.scope.api::<User>(ctx.client.clone()), wc, on_user)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctl)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "organization controller");
            }
        })
        .await;
    tracing::info!("organization controller stopped");
}

/// Reconciles one Organization.
#[tracing::instrument(skip_all, fields(namespace = org.namespace(), name = org.name_any()))]
pub async fn reconcile(
    org: Arc<Organization>,
    ctl: Arc<OrganizationController>,
) -> Result<Action, Error> {
    let key = key_of(org.as_ref());
    let result = reconcile_inner(&org, &ctl, &key).await;
    ctl.ctx.controller_metrics.count("Organization", &result);
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
    refs::error_action(&ctl.backoff, &key_of(org.as_ref()), "Organization", error)
}

async fn reconcile_inner(
    org: &Organization,
    ctl: &OrganizationController,
    key: &Key,
) -> Result<Action, Error> {
    let ctx = &ctl.ctx;
    let facts = match ctl
        .pending
        .settle(ctx, key, &[(SourceKind::Stream, &ctl.streams)])
        .await?
    {
        Settle::Wait(d) => return Ok(Action::requeue(d)),
        Settle::Done(facts) => facts,
    };
    let (ns, name) = (key.namespace(), key.name());
    if org.meta().deletion_timestamp.is_some() {
        ctl.ids.release(ctx, org).await?;
        ids::remove_finalizer(ctx, org).await?;
        return Ok(Action::await_change());
    }

    let state = ctl
        .ids
        .ensure(ctx, org, || ids::holdings(&ctl.store))
        .await?;
    let held = match state {
        IdState::Held(id) => Some(id),
        IdState::Conflict { .. } => None,
    };
    if ids::metadata_differs(org, held) {
        ids::apply_metadata(ctx, org, held).await?;
    }

    let missing = refs::missing_references(ctx, org, &facts).await?;

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
    let (conditions, flipped) = refs::next_conditions(&old.common.conditions, &ready, generation);
    let next = OrganizationStatus {
        common: CommonStatus {
            conditions,
            observed_generation: generation,
        },
        id: held.or(old.id),
        streams_count: Some(ctl.streams.count(ns, name)),
    };
    if next != old {
        refs::apply_status(ctx, org, &next).await?;
        if old.id.is_none()
            && let Some(id) = next.id
        {
            refs::publish(ctx, org, "IdAssigned", format!("Watcher id {id}")).await;
        }
        if flipped && !ready.status {
            refs::publish(ctx, org, ready.reason, ready.message.clone()).await;
        }
    }
    Ok(if ready.status {
        Action::await_change()
    } else {
        Action::requeue(RECHECK)
    })
}
