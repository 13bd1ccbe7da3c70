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
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::Context;
use super::conditions::{self, Desired};
use super::ids::{self, IdKind, IdState, Ids};
use super::kit::{self, Backoff, Error};
use super::refs::{self, Key, RefIndex, key_of};
use crate::resources::common::CommonStatus;
use crate::resources::{Organization, Preset, PresetStatus, Stream};

/// Reconciles running at once.
const CONCURRENCY: u16 = 4;
/// How often an id conflict is re-checked (the holder may go away).
const CONFLICT_RECHECK: Duration = Duration::from_secs(30);

/// State of the Preset controller, shared by its reconciles and mappers.
pub struct PresetController {
    ctx: Arc<Context>,
    ids: Ids,
    /// Stream → its `presetRef`.
    streams: RefIndex,
    /// Organization → its `presetRefs`.
    organizations: RefIndex,
    backoff: Backoff,
}

/// The presets a Stream uses.
fn stream_presets(stream: &Stream) -> Vec<String> {
    stream
        .spec
        .preset_ref
        .iter()
        .filter(|r| !r.is_empty())
        .cloned()
        .collect()
}

/// Runs the Preset controller until `shutdown` resolves (in-flight reconciles finish first).
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = shutdown.shared();
    if !kit::stores_ready(&ctx, shutdown.clone()).await {
        return;
    }
    let stores = &ctx.stores;
    let ctl = Arc::new(PresetController {
        ctx: ctx.clone(),
        ids: Ids::new(IdKind::Preset),
        streams: RefIndex::of_store(&stores.streams, stream_presets),
        organizations: RefIndex::of_store(&stores.organizations, Organization::offered_presets),
        backoff: Backoff::default(),
    });
    let on_stream = {
        let ctl = ctl.clone();
        move |s: Arc<Stream>| {
            ctl.streams
                .follow(&ctl.ctx.stores.streams, s.as_ref(), stream_presets)
        }
    };
    let on_org = {
        let ctl = ctl.clone();
        move |o: Arc<Organization>| {
            ctl.organizations.follow(
                &ctl.ctx.stores.organizations,
                o.as_ref(),
                Organization::offered_presets,
            )
        }
    };
    tracing::info!("preset controller started");
    let taps = &stores.taps;
    Controller::for_shared_stream(
        taps.presets.subscribe(&stores.presets),
        stores.presets.clone(),
    )
    .with_config(Config::default().concurrency(CONCURRENCY))
    .watches_shared_stream(taps.streams.subscribe(&stores.streams), on_stream)
    .watches_shared_stream(taps.organizations.subscribe(&stores.organizations), on_org)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctl)
    .for_each(|result| kit::report("Preset", result))
    .await;
    tracing::info!("preset controller stopped");
}

/// Reconciles one Preset.
#[tracing::instrument(skip_all, fields(namespace = preset.namespace(), name = preset.name_any()))]
pub async fn reconcile(preset: Arc<Preset>, ctl: Arc<PresetController>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key_of(preset.as_ref());
    let result = reconcile_inner(&preset, &ctl, &key).await;
    ctl.ctx
        .controller_metrics
        .reconciled("Preset", started, &result);
    let action = result?;
    ctl.backoff.succeeded(&key);
    Ok(action)
}

/// Invalid input waits for a change; anything else backs off per preset with jitter.
pub fn error_policy(preset: Arc<Preset>, error: &Error, ctl: Arc<PresetController>) -> Action {
    kit::error_action(&ctl.backoff, &key_of(preset.as_ref()), "Preset", error)
}

async fn reconcile_inner(
    preset: &Preset,
    ctl: &PresetController,
    key: &Key,
) -> Result<Action, Error> {
    let ctx = &ctl.ctx;
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
        .ensure(ctx, preset, || ids::holdings(&ctx.stores.presets))
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
    let (conditions, flipped) =
        conditions::next_conditions(&old.common.conditions, ready, generation);
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
    kit::apply_status(ctx, preset, &next).await?;
    if old.id.is_none()
        && let Some(id) = next.id
    {
        refs::publish(
            ctx,
            preset,
            EventType::Normal,
            "IdAssigned",
            format!("Watcher id {id}"),
        )
        .await;
    }
    if flipped && !ready.status {
        let type_ = if ready.reason == "MarkedDeleted" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        refs::publish(ctx, preset, type_, ready.reason, ready.message.clone()).await;
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
