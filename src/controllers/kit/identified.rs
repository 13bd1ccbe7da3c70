//! The reconcile of the kinds with a Watcher id (Preset, Organization, User), written once:
//! finalizer → id → metadata → the kind's judgement → status → Events, counted and backed off
//! like every reconcile. A kind supplies a [`Hook`]: what its status says, and what must
//! happen around its deletion.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::runtime::controller::{Action, Config, Controller};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use super::{Backoff, Error};
use crate::controllers::Context;
use crate::controllers::conditions::{Desired, next_conditions_with};
use crate::controllers::ids::{self, IdState, Identified, Ids};
use crate::controllers::refs::{self, key_of};
use crate::resources::common::CommonStatus;
use crate::resources::{Organization, OrganizationStatus, Preset, PresetStatus, User, UserStatus};
use crate::state::Watched;

/// A kind with a Watcher id and a status the skeleton writes.
pub(crate) trait IdentifiedKind: Identified + ResourceExt + Watched {
    /// The status type.
    type Status: Serialize + Clone + Default + PartialEq + Send + Sync;
    /// The status the object has now (empty when it has none).
    fn current(&self) -> Self::Status;
    /// The conditions and observed generation of a status.
    fn common(status: &mut Self::Status) -> &mut CommonStatus;
    /// `status.id`.
    fn id(status: &Self::Status) -> Option<i64>;
}

/// What a kind decides on one object: its `Ready` condition, the rest of its status (the
/// skeleton fills in conditions and observed generation), and when to look again.
pub(crate) struct Verdict<S> {
    /// `Ready`.
    pub ready: Desired,
    /// The status besides its conditions.
    pub status: S,
    /// Conditions besides `Ready` the kind keeps in step (a User's `PasswordResetRequired`).
    pub extra: Vec<Desired>,
    /// What the controller does next.
    pub then: Action,
}

/// What the skeleton keeps for a kind: the context, the id allocator, the per-object backoff.
pub(crate) struct Common {
    /// The shared context.
    pub ctx: Arc<Context>,
    /// The kind's id allocator.
    pub ids: Ids,
    /// The per-object backoff.
    pub backoff: Backoff,
}

impl Common {
    /// The parts of a controller of `K`.
    pub fn new<K: Identified>(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            ids: Ids::new(K::ID_KIND),
            backoff: Backoff::default(),
        }
    }
}

impl<S> Verdict<S> {
    /// A verdict that waits for the next change when Ready, and looks again after `recheck`
    /// otherwise (a missing reference or a conflict may resolve without touching this object).
    pub fn recheck_unless_ready(ready: Desired, status: S, recheck: std::time::Duration) -> Self {
        let then = if ready.status {
            Action::await_change()
        } else {
            Action::requeue(recheck)
        };
        Self {
            ready,
            status,
            extra: Vec::new(),
            then,
        }
    }
}

/// The per-kind part of the reconcile.
pub(crate) trait Hook: Send + Sync + 'static {
    /// The kind reconciled.
    type Kind: IdentifiedKind;

    /// The skeleton's parts.
    fn common(&self) -> &Common;

    /// Whether this installation reconciles `obj` at all (a User that is not a login is left
    /// alone).
    fn applies(&self, _obj: &Self::Kind) -> bool {
        true
    }

    /// Deletion was requested: the status to show while the object must stay (a Preset
    /// still used by Streams), or `None` to let it go.
    fn keep(
        &self,
        _obj: &Self::Kind,
        _old: &<Self::Kind as IdentifiedKind>::Status,
    ) -> Option<Verdict<<Self::Kind as IdentifiedKind>::Status>> {
        None
    }

    /// What goes with the object, before its id is released and its finalizer removed.
    fn cleanup(&self, _obj: &Self::Kind) -> impl Future<Output = Result<(), Error>> + Send {
        async { Ok(()) }
    }

    /// The kind's judgement of a live object, once its id is settled (`held`: the id it
    /// holds; `None` on a conflict).
    fn judge(
        &self,
        obj: &Self::Kind,
        id: &IdState,
        held: Option<i64>,
        old: &<Self::Kind as IdentifiedKind>::Status,
    ) -> impl Future<Output = Result<Verdict<<Self::Kind as IdentifiedKind>::Status>, Error>> + Send;
}

/// A controller of `K` over the shared store's events, or `None` once `shutdown` came
/// first. Add the kind's cross-kind triggers, then [`run`] it.
pub(crate) async fn controller<K: IdentifiedKind>(
    ctx: &Context,
    shutdown: impl Future<Output = ()>,
) -> Option<Controller<K>> {
    if !super::stores_ready(ctx, shutdown).await {
        return None;
    }
    Some(super::controller_of(&ctx.stores))
}

/// Runs `controller` with the skeleton's reconcile until `shutdown` resolves (in-flight
/// reconciles finish first).
pub(crate) async fn run<H: Hook>(
    controller: Controller<H::Kind>,
    hook: Arc<H>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let kind = H::Kind::kind(&());
    tracing::info!(%kind, "controller started");
    controller
        .with_config(Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, hook)
        .for_each(|result| super::report(&kind, result))
        .await;
    tracing::info!(%kind, "controller stopped");
}

/// Reconciles one object of `H::Kind` (the `reconcile` of its controller).
#[tracing::instrument(skip_all, fields(kind = H::Kind::kind(&()).as_ref(), namespace = obj.namespace(), name = obj.name_any()))]
pub(crate) async fn reconcile<H: Hook>(obj: Arc<H::Kind>, hook: Arc<H>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = converge(obj.as_ref(), hook.as_ref()).await;
    let kind = H::Kind::kind(&());
    hook.common()
        .ctx
        .controller_metrics
        .reconciled(&kind, started, &result);
    let action = result?;
    hook.common().backoff.succeeded(&key_of(obj.as_ref()));
    Ok(action)
}

/// Invalid input waits for a change; anything else backs off per object with jitter.
pub(crate) fn error_policy<H: Hook>(obj: Arc<H::Kind>, error: &Error, hook: Arc<H>) -> Action {
    let kind = H::Kind::kind(&());
    super::error_action(&hook.common().backoff, &key_of(obj.as_ref()), &kind, error)
}

async fn converge<H: Hook>(obj: &H::Kind, hook: &H) -> Result<Action, Error> {
    let ctx = &hook.common().ctx;
    if !hook.applies(obj) {
        return Ok(Action::await_change());
    }
    let old = obj.current();
    if obj.meta().deletion_timestamp.is_some() {
        if let Some(verdict) = hook.keep(obj, &old) {
            return write(ctx, obj, &old, verdict).await;
        }
        hook.common().ids.release(ctx.as_ref(), obj).await?;
        hook.cleanup(obj).await?;
        ids::remove_finalizer(ctx, obj).await?;
        tracing::info!("deleted");
        return Ok(Action::await_change());
    }
    let state = hook
        .common()
        .ids
        .ensure(ctx.as_ref(), obj, || {
            ids::holdings(H::Kind::store(&ctx.stores))
        })
        .await?;
    let held = match state {
        IdState::Held(id) => Some(id),
        IdState::Conflict { .. } => None,
    };
    if ids::metadata_differs(obj, held) {
        ids::apply_metadata(ctx, obj, held).await?;
    }
    let verdict = hook.judge(obj, &state, held, &old).await?;
    write(ctx, obj, &old, verdict).await
}

/// `Ready` as far as the id goes: True with the id held, False on a conflict.
pub(crate) fn id_ready(state: &IdState) -> Desired {
    match state {
        IdState::Held(id) => Desired::yes("Ready", "Reconciled", format!("Watcher id {id}")),
        IdState::Conflict { id, holder, pinned } => Desired::no(
            "Ready",
            ids::ID_CONFLICT,
            ids::conflict_message(*id, holder, *pinned),
        ),
    }
}

/// Writes the status on a change only, then the Events of what changed: `IdAssigned` once,
/// and `Ready` turning False (a Warning, but for a deletion a person asked for).
async fn write<K: IdentifiedKind>(
    ctx: &Context,
    obj: &K,
    old: &K::Status,
    verdict: Verdict<K::Status>,
) -> Result<Action, Error> {
    let Verdict {
        ready,
        mut status,
        extra,
        then,
    } = verdict;
    let generation = obj.meta().generation;
    let (conditions, flipped) = next_conditions_with(
        <K as Identified>::conditions(obj),
        &ready,
        &extra,
        generation,
    );
    *K::common(&mut status) = CommonStatus {
        conditions,
        observed_generation: generation,
    };
    if status == *old {
        return Ok(then);
    }
    super::apply_status(ctx, obj, &status).await?;
    if K::id(old).is_none()
        && let Some(id) = K::id(&status)
    {
        let note = format!("Watcher id {id}");
        refs::publish(ctx, obj, "IdAssigned", note).await;
    }
    if flipped && !ready.status {
        // The Event policy table makes a deletion a person asked for (`MarkedDeleted`) Normal.
        refs::publish(ctx, obj, ready.reason, ready.message).await;
    }
    Ok(then)
}

/// `Ready=False` reason of a Preset whose deletion waits for its Streams.
pub(crate) const MARKED_DELETED: &str = "MarkedDeleted";

macro_rules! identified_kind {
    ($kind:ty, $status:ty) => {
        impl IdentifiedKind for $kind {
            type Status = $status;
            fn current(&self) -> $status {
                self.status.clone().unwrap_or_default()
            }
            fn common(status: &mut $status) -> &mut CommonStatus {
                &mut status.common
            }
            fn id(status: &$status) -> Option<i64> {
                status.id
            }
        }
    };
}

identified_kind!(Preset, PresetStatus);
identified_kind!(Organization, OrganizationStatus);
identified_kind!(User, UserStatus);

/// `Ready` of an id conflict (for the kinds' tables).
#[cfg(test)]
pub(crate) fn conflict() -> Desired {
    id_ready(&IdState::Conflict {
        id: 4,
        holder: "ns/other".into(),
        pinned: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_decides_ready_first() {
        for (state, status, reason) in [
            (IdState::Held(4), true, "Reconciled"),
            (
                IdState::Conflict {
                    id: 4,
                    holder: "ns/other".into(),
                    pinned: true,
                },
                false,
                ids::ID_CONFLICT,
            ),
        ] {
            let ready = id_ready(&state);
            assert_eq!((ready.status, ready.reason), (status, reason), "{state:?}");
        }
    }
}
