//! What every reconciler shares: the error type, per-object backoff, the writes to its own
//! objects, and waiting for the shared stores.

mod backoff;
mod error;
pub(crate) mod identified;
mod write;

use std::future::Future;

pub use backoff::Backoff;
pub(crate) use backoff::error_action;
pub use error::Error;
pub(crate) use error::is_not_found;
pub(crate) use write::{apply_metadata, apply_status, replace_status};

use super::Context;

/// Waits until every shared store has its initial list, or `shutdown` resolves (then false).
pub(crate) async fn stores_ready(ctx: &Context, shutdown: impl Future<Output = ()>) -> bool {
    tokio::select! {
        _ = ctx.stores.wait_ready() => true,
        _ = shutdown => false,
    }
}

/// A controller of `K` over the one watch of `K` (its store and the events after the store
/// applied them), not a watch of its own.
pub(crate) fn controller_of<K: crate::state::Watched>(
    stores: &crate::state::Stores,
) -> kube::runtime::Controller<K> {
    kube::runtime::Controller::for_shared_stream(stores.subscribe::<K>(), K::store(stores).clone())
}

/// What `Controller::run` yields besides reconciles, by one policy for every kind: queue and
/// runner errors at warn (a watch refused with 403 must show at the default level), objects
/// gone before their turn at debug (expected after a delete). Reconcile failures are counted
/// and logged by the reconcile itself and [`error_action`].
pub(crate) fn report<K, E>(
    kind: &str,
    result: Result<
        (
            kube::runtime::reflector::ObjectRef<K>,
            kube::runtime::controller::Action,
        ),
        kube::runtime::controller::Error<E, kube::runtime::watcher::Error>,
    >,
) -> std::future::Ready<()>
where
    K: kube::Resource,
    E: std::error::Error,
{
    use kube::runtime::controller::Error as Run;
    match result {
        Ok(_) | Err(Run::ReconcilerFailed(..)) => {}
        Err(Run::ObjectNotFound(obj)) => {
            tracing::debug!(kind, %obj, "object gone before its reconcile")
        }
        Err(error @ (Run::QueueError(_) | Run::RunnerError(_))) => {
            tracing::warn!(kind, %error, "controller trigger or queue failed")
        }
    }
    std::future::ready(())
}
