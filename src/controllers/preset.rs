//! Preset controller: keeps each Preset's Watcher id, counts the Streams and Organizations
//! that use it, and implements Watcher's soft delete.
//!
//! Soft delete: every Preset carries the finalizer `panoptes.dev/cleanup` (it also releases the
//! id claim). When deletion is requested while Streams still name the preset in
//! `spec.presetRef`, the preset stays, with `status.deletedAt` (the deletion request time, UTC
//! ms) and `Ready=False` reason `MarkedDeleted`; once no Stream uses it, the claim is released
//! and the finalizer removed, and the preset goes away.
//!
//! Triggers: Preset changes; Stream changes mapped to the presets they name now *and* named
//! before (a [`RefIndex`] fed by the same watch), Organization changes likewise through their
//! `presetRefs`. Status is written only when it changes.

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
use crate::resources::common::CommonStatus;
use crate::resources::{Organization, Preset, PresetStatus, Stream};

/// Reconciles running at once.
const CONCURRENCY: u16 = 4;
/// How often an id conflict is re-checked (the holder may go away).
const CONFLICT_RECHECK: Duration = Duration::from_secs(30);

/// State of the Preset controller, shared by its reconciles and mappers.
pub struct PresetController {
    ctx: Arc<Context>,
    store: Store<Preset>,
    ids: Ids,
    /// Stream → its `presetRef`.
    streams: RefIndex,
    /// Organization → its `presetRefs`.
    organizations: RefIndex,
    pending: Pending,
    backoff: Backoff,
}

impl PresetController {
    fn stream_changed(&self, stream: &Stream) -> Vec<ObjectRef<Preset>> {
        let (ns, name) = key_of(stream).into_parts();
        let targets = stream
            .spec
            .preset_ref
            .iter()
            .filter(|r| !r.is_empty())
            .cloned()
            .collect();
        let affected = self.streams.observe(&ns, &name, targets);
        self.touch(
            &ns,
            affected,
            SourceKind::Stream,
            &name,
            stream.resource_version(),
        )
    }

    fn organization_changed(&self, org: &Organization) -> Vec<ObjectRef<Preset>> {
        let (ns, name) = key_of(org).into_parts();
        let targets = org.offered_presets();
        let affected = self.organizations.observe(&ns, &name, targets);
        self.touch(
            &ns,
            affected,
            SourceKind::Organization,
            &name,
            org.resource_version(),
        )
    }

    fn touch(
        &self,
        ns: &str,
        presets: Vec<String>,
        kind: SourceKind,
        source: &str,
        rv: Option<String>,
    ) -> Vec<ObjectRef<Preset>> {
        presets
            .into_iter()
            .map(|p| {
                self.pending
                    .record(Key::new(ns, &p), kind, source, rv.clone());
                ObjectRef::new(&p).within(ns)
            })
            .collect()
    }
}

/// Runs the Preset controller until `shutdown` resolves (in-flight reconciles finish first).
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    if !refs::stores_ready(&ctx, shutdown.clone()).await {
        return;
    }
    let wc = watcher::Config::default().any_semantic();
    let controller = Controller::new(ctx.scope.api::<Preset>(ctx.client.clone()), wc.clone());
    let ctl = Arc::new(PresetController {
        ctx: ctx.clone(),
        store: controller.store(),
        ids: Ids::new(IdKind::Preset),
        streams: RefIndex::default(),
        organizations: RefIndex::default(),
        pending: Pending::default(),
        backoff: Backoff::default(),
    });
    let on_stream = {
        let ctl = ctl.clone();
        move |s: Stream| ctl.stream_changed(&s)
    };
    let on_org = {
        let ctl = ctl.clone();
        move |o: Organization| ctl.organization_changed(&o)
    };
    tracing::info!("preset controller started");
    controller
        .with_config(Config::default().concurrency(CONCURRENCY))
        .watches(
            ctx.scope.api::<Stream>(ctx.client.clone()),
            wc.clone(),
            on_stream,
        )
        .watches(
            ctx.scope.api::<Organization>(ctx.client.clone()),
            wc,
            on_org,
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctl)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "preset controller");
            }
        })
        .await;
    tracing::info!("preset controller stopped");
}

/// Reconciles one Preset.
#[tracing::instrument(skip_all, fields(namespace = preset.namespace(), name = preset.name_any()))]
pub async fn reconcile(preset: Arc<Preset>, ctl: Arc<PresetController>) -> Result<Action, Error> {
    let key = key_of(preset.as_ref());
    let result = reconcile_inner(&preset, &ctl, &key).await;
    ctl.ctx.controller_metrics.count("Preset", &result);
    let action = result?;
    ctl.backoff.succeeded(&key);
    Ok(action)
}

/// Invalid input waits for a change; anything else backs off per preset with jitter.
pub fn error_policy(preset: Arc<Preset>, error: &Error, ctl: Arc<PresetController>) -> Action {
    refs::error_action(&ctl.backoff, &key_of(preset.as_ref()), "Preset", error)
}

async fn reconcile_inner(
    preset: &Preset,
    ctl: &PresetController,
    key: &Key,
) -> Result<Action, Error> {
    let ctx = &ctl.ctx;
    let indexes = [
        (SourceKind::Stream, &ctl.streams),
        (SourceKind::Organization, &ctl.organizations),
    ];
    if let Settle::Wait(d) = ctl.pending.settle(ctx, key, &indexes).await? {
        return Ok(Action::requeue(d));
    }
    let (ns, name) = (key.namespace(), key.name());
    let streams = ctl.streams.count(ns, name);
    let organizations = ctl.organizations.count(ns, name);
    let old = preset.status.clone().unwrap_or_default();

    if let Some(requested) = &preset.meta().deletion_timestamp {
        if streams == 0 {
            ctl.ids.release(ctx, preset).await?;
            ids::remove_finalizer(ctx, preset).await?;
            tracing::info!("preset deleted");
            return Ok(Action::await_change());
        }
        let ready = Desired::no(
            "Ready",
            "MarkedDeleted",
            format!(
                "deletion requested; {streams} stream(s) still use the preset, it is removed once none does"
            ),
        );
        let deleted_at = old.deleted_at.or(Some(requested.0.as_millisecond()));
        let next = status(
            preset,
            &old,
            &ready,
            old.id,
            deleted_at,
            streams,
            organizations,
        );
        write(ctx, preset, &old, next.0, next.1, &ready).await?;
        return Ok(Action::await_change());
    }

    let state = ctl
        .ids
        .ensure(ctx, preset, || ids::holdings(&ctl.store))
        .await?;
    let (held, ready) = match &state {
        IdState::Held(id) => (
            Some(*id),
            Desired::yes("Ready", "Reconciled", format!("Watcher id {id}")),
        ),
        IdState::Conflict { id, holder, pinned } => (
            None,
            Desired::no(
                "Ready",
                ids::ID_CONFLICT,
                ids::conflict_message(*id, holder, *pinned),
            ),
        ),
    };
    if ids::metadata_differs(preset, held) {
        ids::apply_metadata(ctx, preset, held).await?;
    }
    let id = held.or(old.id);
    let next = status(preset, &old, &ready, id, None, streams, organizations);
    write(ctx, preset, &old, next.0, next.1, &ready).await?;
    Ok(match state {
        IdState::Held(_) => Action::await_change(),
        IdState::Conflict { .. } => Action::requeue(CONFLICT_RECHECK),
    })
}

fn status(
    preset: &Preset,
    old: &PresetStatus,
    ready: &Desired,
    id: Option<i64>,
    deleted_at: Option<i64>,
    streams: i64,
    organizations: i64,
) -> (PresetStatus, bool) {
    let generation = preset.meta().generation;
    let (conditions, flipped) = refs::next_conditions(&old.common.conditions, ready, generation);
    let next = PresetStatus {
        common: CommonStatus {
            conditions,
            observed_generation: generation,
        },
        id,
        deleted_at,
        streams_count: Some(streams),
        organizations_count: Some(organizations),
    };
    (next, flipped)
}

async fn write(
    ctx: &Context,
    preset: &Preset,
    old: &PresetStatus,
    next: PresetStatus,
    flipped: bool,
    ready: &Desired,
) -> Result<(), Error> {
    if next == *old {
        return Ok(());
    }
    refs::apply_status(ctx, preset, &next).await?;
    if old.id.is_none()
        && let Some(id) = next.id
    {
        refs::publish(ctx, preset, "IdAssigned", format!("Watcher id {id}")).await;
    }
    if flipped && !ready.status {
        refs::publish(ctx, preset, ready.reason, ready.message.clone()).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::ids::Identified;

    #[test]
    fn unchanged_status_is_not_rewritten() {
        let mut p = Preset::new("p", Default::default());
        p.metadata.generation = Some(1);
        let ready = Desired::yes("Ready", "Reconciled", "Watcher id 1");
        let (first, flipped) = status(&p, &PresetStatus::default(), &ready, Some(1), None, 2, 0);
        assert!(flipped);
        let (second, flipped) = status(&p, &first, &ready, Some(1), None, 2, 0);
        assert!(!flipped);
        assert_eq!(first, second);
    }

    #[test]
    fn preset_is_identified() {
        let mut p = Preset::new("p", Default::default());
        p.spec.id = Some(4);
        assert_eq!(p.pinned_id(), Some(4));
        assert_eq!(p.status_id(), None);
    }
}
