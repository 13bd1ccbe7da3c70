//! A deleted object is gone for an API user. Kubernetes keeps an object whose finalizer is
//! still cleaning up (a Stream's removes it from the nodes) with `deletionTimestamp` set, and
//! the stores keep showing it; the vendor's clients read that as "still there" right after
//! their delete answered. So every read of the facade takes its objects from here: a
//! terminating object answers 404 on get and is absent from lists, and a save of its name
//! answers 409 until the cleanup is done (a re-create would race the finalizer).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};

use super::error::ApiError;

/// Whether an API user sees `obj`: not while it is being deleted.
pub fn shown<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_none()
}

/// The store's objects an API user sees (the source of every facade list and lookup).
pub fn objects<K>(store: &Store<K>) -> Vec<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let mut all = store.state();
    all.retain(|o| shown(o.as_ref()));
    all
}

/// The answer to a save of a name whose previous object is still being deleted.
pub fn still_deleting(kind: &str, name: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "being_deleted",
        format!("the previous {kind} {name} is still being deleted; save it again once it is gone"),
    )
}

/// How long a delete waits for the store to see it.
const SEEN_WITHIN: Duration = Duration::from_secs(5);

/// After a delete of `obj` was accepted: waits (bounded) until this replica's store shows it
/// terminating or gone, so a read right after the delete answers 404. Past the bound the
/// delete still answers: the API server has it, the store follows.
pub async fn until_seen<K>(store: &Store<K>, obj: &K)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let key = ObjectRef::from_obj(obj);
    let uid = obj.meta().uid.as_deref();
    let started = tokio::time::Instant::now();
    // One keyed lookup per poll: cheap however many objects the store holds.
    while started.elapsed() < SEEN_WITHIN
        && store
            .get(&key)
            .is_some_and(|o| o.meta().uid.as_deref() == uid && shown(o.as_ref()))
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Stream;

    #[test]
    fn terminating_objects_are_not_shown() {
        let mut s = Stream::new("cam", Default::default());
        assert!(shown(&s));
        s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        assert!(!shown(&s));
    }
}
