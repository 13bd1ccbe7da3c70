//! Effective bodies computed once per [`BodyKey`], and which node copies were found to match
//! them. A restart onto wiped nodes reconciles every stream at once: rebuilding each body
//! (preset merge, secret injection, JSON) and diffing it against the node's `config_on_disk`
//! on every reconcile was most of the operator's CPU per push.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::controllers::refs::Key;
use crate::domain::effective::BodyKey;

/// One stream's cached plan and the node copies known to match it.
struct Entry<P> {
    key: BodyKey,
    planned: P,
    /// hostname → the node copy (`config_on_disk`, the very allocation the fleet holds) last
    /// found to match the body: the same copy needs no second comparison.
    in_sync: HashMap<String, Arc<Value>>,
}

/// Plans by stream.
pub struct Bodies<P> {
    entries: Mutex<HashMap<Key, Entry<P>>>,
}

impl<P> Default for Bodies<P> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

impl<P: Clone> Bodies<P> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry<P>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plan of `stream` computed for `key`, if that is what is cached.
    pub fn get(&self, stream: &Key, key: &BodyKey) -> Option<P> {
        self.lock()
            .get(stream)
            .filter(|e| &e.key == key)
            .map(|e| e.planned.clone())
    }

    /// Caches `planned` as the plan of `stream` for `key` (forgetting what matched the old one).
    pub fn put(&self, stream: Key, key: BodyKey, planned: P) {
        self.lock().insert(
            stream,
            Entry {
                key,
                planned,
                in_sync: HashMap::new(),
            },
        );
    }

    /// Whether `copy` on `host` was found to match the body cached for `stream` under `key`.
    pub fn matched(&self, stream: &Key, key: &BodyKey, host: &str, copy: &Arc<Value>) -> bool {
        self.lock()
            .get(stream)
            .filter(|e| &e.key == key)
            .and_then(|e| e.in_sync.get(host))
            .is_some_and(|m| Arc::ptr_eq(m, copy))
    }

    /// Records that `copy` on `host` matches the body cached for `stream` under `key`.
    pub fn record_match(&self, stream: &Key, key: &BodyKey, host: &str, copy: Arc<Value>) {
        if let Some(e) = self.lock().get_mut(stream).filter(|e| &e.key == key) {
            e.in_sync.insert(host.to_string(), copy);
        }
    }

    /// Forgets `stream` (deleted).
    pub fn forget(&self, stream: &Key) {
        self.lock().remove(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::destinations::AllowList;
    use crate::resources::Stream;
    use crate::resources::stream::StreamSpec;

    fn key(generation: i64) -> BodyKey {
        let mut s = Stream::new("s", StreamSpec::default());
        s.metadata.generation = Some(generation);
        BodyKey::of(&s, None, None, &AllowList::default(), |_| None)
    }

    #[test]
    fn a_plan_is_reused_for_its_key_only() {
        let b = Bodies::<&str>::default();
        let s = Key::new("ns", "s");
        assert_eq!(b.get(&s, &key(1)), None);
        b.put(s.clone(), key(1), "body-1");
        assert_eq!(b.get(&s, &key(1)), Some("body-1"));
        assert_eq!(b.get(&s, &key(2)), None, "a new generation is a new body");
        assert_eq!(b.get(&Key::new("ns", "t"), &key(1)), None);
        b.forget(&s);
        assert_eq!(b.get(&s, &key(1)), None);
    }

    #[test]
    fn a_match_holds_for_its_node_copy_and_body_only() {
        let b = Bodies::<&str>::default();
        let s = Key::new("ns", "s");
        b.put(s.clone(), key(1), "body-1");
        let copy = Arc::new(serde_json::json!({"name": "s"}));
        b.record_match(&s, &key(1), "n1", copy.clone());
        assert!(b.matched(&s, &key(1), "n1", &copy));
        assert!(!b.matched(&s, &key(1), "n2", &copy), "another node");
        let relisted = Arc::new((*copy).clone());
        assert!(
            !b.matched(&s, &key(1), "n1", &relisted),
            "a copy the node listed again is compared again"
        );
        assert!(!b.matched(&s, &key(2), "n1", &copy), "another body");
        b.put(s.clone(), key(2), "body-2");
        assert!(
            !b.matched(&s, &key(2), "n1", &copy),
            "a new body forgets the old matches"
        );
    }
}
