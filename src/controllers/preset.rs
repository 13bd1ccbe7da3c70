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

use futures::FutureExt;
use kube::Resource;
use kube::runtime::controller::Action;

use super::Context;
use super::conditions::Desired;
use super::ids::IdState;
use super::kit::Error;
use super::kit::identified::{self, Common, Hook, MARKED_DELETED, Verdict, id_ready};
use super::refs::{RefIndex, key_of};
use crate::resources::{Organization, Preset, PresetStatus, Stream};

/// Reconciles running at once.
const CONCURRENCY: u16 = 4;
/// How often an id conflict is re-checked (the holder may go away).
const CONFLICT_RECHECK: Duration = Duration::from_secs(30);

/// State of the Preset controller, shared by its reconciles and mappers.
pub struct PresetController {
    common: Common,
    /// Stream → its `presetRef`.
    streams: RefIndex,
    /// Organization → its `presetRefs`.
    organizations: RefIndex,
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
    let Some(controller) = identified::controller::<Preset>(&ctx, shutdown.clone()).await else {
        return;
    };
    let stores = &ctx.stores;
    let ctl = Arc::new(PresetController {
        common: Common::new::<Preset>(ctx.clone()),
        streams: RefIndex::of_store(&stores.streams, stream_presets),
        organizations: RefIndex::of_store(&stores.organizations, Organization::offered_presets),
    });
    let on_stream = {
        let ctl = ctl.clone();
        move |s: Arc<Stream>| {
            ctl.streams
                .follow(&ctl.common.ctx.stores.streams, s.as_ref(), stream_presets)
        }
    };
    let on_org = {
        let ctl = ctl.clone();
        move |o: Arc<Organization>| {
            ctl.organizations.follow(
                &ctl.common.ctx.stores.organizations,
                o.as_ref(),
                Organization::offered_presets,
            )
        }
    };
    let controller = controller
        .watches_shared_stream(stores.subscribe::<Stream>(), on_stream)
        .watches_shared_stream(stores.subscribe::<Organization>(), on_org);
    identified::run(controller, ctl, CONCURRENCY, shutdown).await;
}

impl Hook for PresetController {
    type Kind = Preset;

    fn common(&self) -> &Common {
        &self.common
    }

    /// Soft delete: while Streams use the preset it stays, marked deleted.
    fn keep(&self, preset: &Preset, old: &PresetStatus) -> Option<Verdict<PresetStatus>> {
        let requested = preset.meta().deletion_timestamp.as_ref()?;
        let (streams, organizations) = self.counts(preset);
        soft_delete(streams, organizations, old, requested.0.as_millisecond())
    }

    async fn judge(
        &self,
        preset: &Preset,
        state: &IdState,
        held: Option<i64>,
        old: &PresetStatus,
    ) -> Result<Verdict<PresetStatus>, Error> {
        let (streams, organizations) = self.counts(preset);
        Ok(Verdict::recheck_unless_ready(
            id_ready(state),
            PresetStatus {
                id: held.or(old.id),
                deleted_at: None,
                streams_count: Some(streams),
                organizations_count: Some(organizations),
                ..Default::default()
            },
            CONFLICT_RECHECK,
        ))
    }
}

/// A preset whose deletion was requested (at `requested`, UTC ms) stays while `streams`
/// use it.
fn soft_delete(
    streams: i64,
    organizations: i64,
    old: &PresetStatus,
    requested: i64,
) -> Option<Verdict<PresetStatus>> {
    (streams > 0).then(|| Verdict {
        extra: Vec::new(),
        ready: Desired::no(
            "Ready",
            MARKED_DELETED,
            format!(
                "deletion requested; {streams} stream(s) still use the preset, it is removed once none does"
            ),
        ),
        status: PresetStatus {
            id: old.id,
            deleted_at: old.deleted_at.or(Some(requested)),
            streams_count: Some(streams),
            organizations_count: Some(organizations),
            ..Default::default()
        },
        then: Action::await_change(),
    })
}

impl PresetController {
    /// Streams and Organizations using the preset.
    fn counts(&self, preset: &Preset) -> (i64, i64) {
        let (ns, name) = key_of(preset).into_parts();
        (
            self.streams.count(&ns, &name),
            self.organizations.count(&ns, &name),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::ids::Identified;

    #[test]
    fn a_used_preset_is_kept_marked_deleted_from_the_first_request() {
        let old = PresetStatus {
            id: Some(2),
            ..Default::default()
        };
        assert!(soft_delete(0, 3, &old, 1000).is_none(), "unused: it goes");
        let kept = soft_delete(2, 0, &old, 1000).expect("used: it stays");
        assert_eq!(
            (kept.ready.status, kept.ready.reason),
            (false, MARKED_DELETED)
        );
        assert_eq!(kept.status.deleted_at, Some(1000));
        assert_eq!(kept.status.id, Some(2));
        let again = soft_delete(1, 0, &kept.status, 5000).unwrap();
        assert_eq!(
            again.status.deleted_at,
            Some(1000),
            "the first request time stays"
        );
    }

    #[test]
    fn preset_is_identified() {
        let mut p = Preset::new("p", Default::default());
        p.spec.id = Some(4);
        assert_eq!(p.pinned_id(), Some(4));
        assert_eq!(p.status_id(), None);
    }
}
