//! Hands a kind's watch events to a controller without a second watch and a second cache.
//!
//! `Controller::new` runs its own watch and keeps its own copy of every object: for 10,000
//! Streams that doubles the API server's watch work and the operator's memory (the
//! controller's copy even keeps managedFields). Instead the store's reflector passes each
//! applied object on through a [`Tap`], and the controller runs over that stream and the
//! shared store (`Controller::for_stream`). Nobody subscribed (a standby replica): events are
//! dropped, never buffered, so the store never waits on a controller.

use std::sync::{Arc, Mutex};

use futures::Stream;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::mpsc;

/// The sending side, owned by the reflector task; cheap to clone.
pub(crate) struct Tap<K> {
    subscriber: Arc<Mutex<Option<mpsc::UnboundedSender<K>>>>,
}

impl<K> Clone for Tap<K> {
    fn clone(&self) -> Self {
        Self {
            subscriber: self.subscriber.clone(),
        }
    }
}

impl<K> Default for Tap<K> {
    fn default() -> Self {
        Self {
            subscriber: Arc::default(),
        }
    }
}

impl<K> Tap<K>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// Passes an applied object to the subscriber, if any (a gone subscriber is forgotten).
    pub fn send(&self, obj: K) {
        let mut sub = self.subscriber.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = sub.as_ref()
            && tx.send(obj).is_err()
        {
            *sub = None;
        }
    }

    /// Every object of `store` once, then every applied object from now on. Replaces an
    /// earlier subscriber (a controller restarted after a lost lease gets the stream anew).
    /// Subscribing before reading the store means nothing falls between the two; an object
    /// seen twice costs one extra reconcile at most (the controller merges queued ones).
    pub(crate) fn subscribe(
        &self,
        store: &Store<K>,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let (tx, mut rx) = mpsc::unbounded_channel();
        *self.subscriber.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let current: Vec<K> = store.state().iter().map(|o| (**o).clone()).collect();
        let live = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        futures::StreamExt::map(
            futures::StreamExt::chain(futures::stream::iter(current), live),
            Ok,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn cm(name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c
    }

    fn name(r: Option<Result<ConfigMap, watcher::Error>>) -> String {
        r.expect("an item")
            .expect("no error")
            .metadata
            .name
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn replays_the_store_then_passes_events_on() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&Event::Apply(cm("old")));
        let tap = Tap::default();
        // Nobody listens yet: dropped, not queued.
        tap.send(cm("unheard"));
        let mut sub = Box::pin(tap.subscribe(&store));
        tap.send(cm("new"));
        assert_eq!(name(sub.next().await), "old");
        assert_eq!(name(sub.next().await), "new");
        // A second subscriber replaces the first, whose stream ends.
        let mut again = Box::pin(tap.subscribe(&store));
        assert!(sub.next().await.is_none());
        tap.send(cm("later"));
        assert_eq!(name(again.next().await), "old");
        assert_eq!(name(again.next().await), "later");
        drop(again);
        // A dropped subscriber is forgotten on the next send.
        tap.send(cm("nobody"));
        assert!(tap.subscriber.lock().unwrap().is_none());
    }
}
