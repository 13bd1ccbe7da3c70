//! Fans one watch per kind out to every consumer, without a second watch or a second cache.
//!
//! `Controller::new` and `.watches(..)` each run their own watch and (for the main kind) keep
//! their own copy of every object: for 10,000 Streams that multiplies the API server's watch
//! work, the start-up lists and the operator's memory, and a trigger could fire before the
//! shared store had seen the event that caused it. Instead each store's reflector passes every
//! touched object (deletes included) on through a [`Tap`] *after* the store applied it, and
//! controllers run over subscriptions (`Controller::for_shared_stream`,
//! `.watches_shared_stream`): whatever a reconcile or a mapper reads from [`Stores`] is at
//! least as new as the event that triggered it.
//!
//! Unlike kube's `store_shared`/`ReflectHandle`, a slow subscriber never holds the reflector
//! back (the facade reads the same stores), and nobody subscribed (a standby replica) costs
//! nothing: events are dropped, never buffered.
//!
//! [`Stores`]: super::Stores

use std::sync::{Arc, Mutex};

use futures::Stream;
use kube::runtime::reflector::Store;
use tokio::sync::mpsc;

/// The sending side, owned by the reflector task; cheap to clone.
pub(crate) struct Tap<K> {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>>,
}

impl<K> Clone for Tap<K> {
    fn clone(&self) -> Self {
        Self {
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<K> Default for Tap<K> {
    fn default() -> Self {
        Self {
            subscribers: Arc::default(),
        }
    }
}

impl<K> Tap<K>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// Passes an object the store has applied to every subscriber (gone ones are forgotten).
    pub fn send(&self, obj: K) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if subs.is_empty() {
            return;
        }
        let obj = Arc::new(obj);
        subs.retain(|tx| tx.send(obj.clone()).is_ok());
    }

    /// Every object of `store` once, then every touched object from now on. Subscribing
    /// before reading the store means nothing falls between the two; an object seen twice
    /// costs one extra reconcile at most (the controller merges queued ones). A controller
    /// restarted after a lost lease subscribes anew; its old subscription is forgotten once
    /// dropped.
    pub(crate) fn subscribe(
        &self,
        store: &Store<K>,
    ) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        let current = store.state();
        let live = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        futures::StreamExt::chain(futures::stream::iter(current), live)
    }

    /// How many subscribers are listening (for tests).
    #[cfg(test)]
    fn listeners(&self) -> usize {
        self.subscribers.lock().unwrap().len()
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

    fn name(r: Option<Arc<ConfigMap>>) -> String {
        r.expect("an item")
            .metadata
            .name
            .clone()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn replays_the_store_then_fans_events_out_to_every_subscriber() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&Event::Apply(cm("old")));
        let tap = Tap::default();
        // Nobody listens yet: dropped, not queued.
        tap.send(cm("unheard"));
        let mut first = Box::pin(tap.subscribe(&store));
        tap.send(cm("new"));
        assert_eq!(name(first.next().await), "old");
        assert_eq!(name(first.next().await), "new");
        // A second subscriber gets the store and the events from then on; the first keeps
        // its own stream.
        let mut second = Box::pin(tap.subscribe(&store));
        tap.send(cm("later"));
        assert_eq!(name(first.next().await), "later");
        assert_eq!(name(second.next().await), "old");
        assert_eq!(name(second.next().await), "later");
        // A dropped subscriber is forgotten on the next send.
        drop(first);
        tap.send(cm("again"));
        assert_eq!(tap.listeners(), 1);
        assert_eq!(name(second.next().await), "again");
        drop(second);
        tap.send(cm("nobody"));
        assert_eq!(tap.listeners(), 0);
    }
}
