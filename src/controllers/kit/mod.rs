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
    use futures::StreamExt;
    // Each object triggers by [`trigger_ref`], not by kube's own reference (see there); the
    // store's stream is then only the controller's store, never a trigger.
    let triggers = stores.subscribe::<K>().map(|obj| trigger_ref(&*obj));
    kube::runtime::Controller::for_shared_stream(
        futures::stream::pending(),
        K::store(stores).clone(),
    )
    .reconcile_on(triggers)
}

/// What names `obj` in a controller's queue: namespace and name only. kube's own reference
/// also carries the uid and resourceVersion seen, and every object's resync stays scheduled
/// for as long as it exists (kept twice: the queue and its index), so those two strings were
/// ~200 bytes per Stream held for nothing: the store is read by name and namespace.
pub(crate) fn trigger_ref<K: kube::Resource<DynamicType = ()>>(
    obj: &K,
) -> kube::runtime::reflector::ObjectRef<K> {
    let m = obj.meta();
    let r = kube::runtime::reflector::ObjectRef::new(m.name.as_deref().unwrap_or_default());
    match m.namespace.as_deref() {
        Some(ns) => r.within(ns),
        None => r,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Stream;
    use crate::resources::stream::StreamSpec;

    #[test]
    fn a_trigger_names_the_object_and_nothing_more() {
        let mut s = Stream::new("cam", StreamSpec::default());
        s.metadata.namespace = Some("ns".into());
        s.metadata.uid = Some("6f1c2d3e-0000-4a5b-8c9d-000000000001".into());
        s.metadata.resource_version = Some("1234567".into());
        let r = trigger_ref(&s);
        assert_eq!(r, kube::runtime::reflector::ObjectRef::from_obj(&s));
        assert_eq!(
            (r.name.as_str(), r.namespace.as_deref()),
            ("cam", Some("ns"))
        );
        assert!(
            r.extra.uid.is_none() && r.extra.resource_version.is_none(),
            "no uid or resourceVersion held"
        );
    }
}
