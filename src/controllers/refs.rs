//! Cross-kind references: which objects name which (a derived index), and which names do not
//! resolve.
//!
//! [`RefIndex`] is fed by a controller's trigger mappers from the shared stores' fan-out
//! (`state::Tap`), and the tap hands an event on only after the store applied it: a mapper
//! reads the store, never an older copy, and a reconcile it triggers sees the store at least as
//! new as the event. It answers "which targets did this source reference before" (so a Stream
//! that moves from preset A to preset B re-reconciles both) and "how many sources reference
//! this target" without scanning every Stream per reconcile.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::Context;
use crate::domain::refs::{RefKind, Reference, References};

/// `namespace` and `name` of an object.
pub type Key = crate::domain::key::ObjectKey;

/// The key of `obj`.
pub fn key_of<K: ResourceExt>(obj: &K) -> Key {
    Key::of(obj)
}

/// Publishes an Event about `obj` as the Event policy ([`crate::events::policy`]) says;
/// failures are logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    reason: &str,
    note: String,
) {
    ctx.events.publish(&obj.object_ref(&()), reason, note).await;
}

/// Source object → names of the targets it references (same namespace), and the reverse.
/// Fed by a controller's trigger stream, so it is exactly as fresh as the triggers.
#[derive(Default)]
pub struct RefIndex {
    inner: Mutex<RefIndexInner>,
}

#[derive(Default)]
struct RefIndexInner {
    by_source: HashMap<Key, Vec<String>>,
    by_target: HashMap<Key, BTreeSet<String>>,
}

impl RefIndexInner {
    /// Drops `ns/source` from the referrers of each of `targets` (an emptied entry goes).
    fn unlink(&mut self, ns: &str, source: &str, targets: &[String]) {
        for t in targets {
            let key = Key::new(ns, t);
            if let Some(set) = self.by_target.get_mut(&key) {
                set.remove(source);
                if set.is_empty() {
                    self.by_target.remove(&key);
                }
            }
        }
    }
}

impl RefIndex {
    /// Records that `ns/source` now references `targets`; returns every target whose set of
    /// sources may have changed (the old and the new ones, deduplicated, sorted).
    pub(crate) fn observe(&self, source_key: &Key, targets: Vec<String>) -> Vec<String> {
        let (ns, source) = (source_key.namespace(), source_key.name());
        let mut targets = targets;
        targets.sort();
        targets.dedup();
        let mut inner = self.inner.lock().expect("ref index poisoned");
        // Every reconcile of every Stream observes its references, nearly always the same
        // ones: re-linking them cost a removal and an insertion in each target's set of
        // sources (string compares by the dozen in a set of 100,000 names) for no change.
        let unchanged = match inner.by_source.get(source_key) {
            Some(old) => *old == targets,
            None => targets.is_empty(),
        };
        if unchanged {
            return targets;
        }
        // A source that references nothing has no entry: most Streams name no preset, no
        // organization and no Secret, and three empty entries each (one per index) were
        // ~300 bytes per stream, 30 MB at 100,000.
        let old = if targets.is_empty() {
            inner.by_source.remove(source_key)
        } else {
            inner.by_source.insert(source_key.clone(), targets.clone())
        }
        .unwrap_or_default();
        inner.unlink(ns, source, &old);
        for t in &targets {
            inner
                .by_target
                .entry(Key::new(ns, t))
                .or_default()
                .insert(source.to_string());
        }
        let mut affected: Vec<String> = old.into_iter().chain(targets).collect();
        affected.sort();
        affected.dedup();
        affected
    }

    /// Forgets `ns/source` (it was deleted); returns the targets it referenced.
    pub(crate) fn forget(&self, ns: &str, source: &str) -> Vec<String> {
        let mut inner = self.inner.lock().expect("ref index poisoned");
        let old = inner
            .by_source
            .remove(&Key::new(ns, source))
            .unwrap_or_default();
        inner.unlink(ns, source, &old);
        old
    }

    /// An index of every source in `store`, by `targets` of each.
    pub(crate) fn of_store<S>(store: &Store<S>, targets: impl Fn(&S) -> Vec<String>) -> Self
    where
        S: Resource<DynamicType = ()> + ResourceExt + Clone + 'static,
    {
        let index = Self::default();
        for s in store.state() {
            index.observe(&Key::of(s.as_ref()), targets(&s));
        }
        index
    }

    /// A mapper's step: brings the entry of `source` up to date with `store` (which already
    /// applied the event that carried `source`; gone from it: forgotten), and returns every
    /// target whose set of sources may have changed.
    pub(crate) fn follow<S, T>(
        &self,
        store: &Store<S>,
        source: &S,
        targets: impl Fn(&S) -> Vec<String>,
    ) -> Vec<ObjectRef<T>>
    where
        S: Resource<DynamicType = ()> + ResourceExt + Clone + 'static,
        T: Resource<DynamicType = ()>,
    {
        let key = Key::of(source);
        let (ns, name) = (key.namespace(), key.name());
        let affected = match store.get(&ObjectRef::new(name).within(ns)) {
            Some(current) => self.observe(&key, targets(&current)),
            None => self.forget(ns, name),
        };
        affected
            .into_iter()
            .map(|t| ObjectRef::new(&t).within(ns))
            .collect()
    }

    /// How many sources reference `ns/target`.
    pub fn count(&self, ns: &str, target: &str) -> i64 {
        let inner = self.inner.lock().expect("ref index poisoned");
        inner
            .by_target
            .get(&Key::new(ns, target))
            .map_or(0, |s| s.len() as i64)
    }

    /// The sources referencing `target` (a watch mapper's answer: what to reconcile).
    pub fn referrers<T: ResourceExt, S: Resource<DynamicType = ()>>(
        &self,
        target: &T,
    ) -> Vec<ObjectRef<S>> {
        let ns = target.namespace().unwrap_or_default();
        self.sources(&ns, &target.name_any())
            .into_iter()
            .map(|s| ObjectRef::new(&s).within(&ns))
            .collect()
    }

    /// The sources referencing `ns/target`, sorted.
    pub fn sources(&self, ns: &str, target: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("ref index poisoned");
        inner
            .by_target
            .get(&Key::new(ns, target))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The references of `obj` that do not resolve in the shared stores ([`crate::domain::refs`],
/// one rule for every kind). The stores are at least as new as the event that triggered the
/// reconcile, so a name they lack is missing.
pub fn missing_references<K: References + ResourceExt>(ctx: &Context, obj: &K) -> Vec<Reference> {
    let ns = obj.namespace().unwrap_or_default();
    let stores = &ctx.stores;
    crate::domain::refs::missing_references(obj, |kind, name| match kind {
        RefKind::Preset => holds(&stores.presets, &ns, name),
        RefKind::Organization => holds(&stores.organizations, &ns, name),
        RefKind::User => holds(&stores.users, &ns, name),
    })
}

fn holds<K: Resource<DynamicType = ()> + Clone + 'static>(
    store: &Store<K>,
    ns: &str,
    name: &str,
) -> bool {
    store.get(&ObjectRef::new(name).within(ns)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn observe_returns_old_and_new_targets() {
        let idx = RefIndex::default();
        assert_eq!(
            idx.observe(&Key::new("ns", "s1"), names(&["a"])),
            names(&["a"])
        );
        assert_eq!(
            idx.observe(&Key::new("ns", "s2"), names(&["a"])),
            names(&["a"])
        );
        assert_eq!(idx.count("ns", "a"), 2);
        // Moving s1 from a to b touches both.
        assert_eq!(
            idx.observe(&Key::new("ns", "s1"), names(&["b"])),
            names(&["a", "b"])
        );
        assert_eq!(idx.count("ns", "a"), 1);
        assert_eq!(idx.count("ns", "b"), 1);
        assert_eq!(idx.sources("ns", "a"), names(&["s2"]));
        // The same targets again change nothing and still name them.
        assert_eq!(
            idx.observe(&Key::new("ns", "s1"), names(&["b"])),
            names(&["b"])
        );
        assert_eq!(idx.count("ns", "b"), 1);
        // Same name in another namespace is another target.
        assert_eq!(idx.count("other", "a"), 0);
        assert_eq!(idx.forget("ns", "s2"), names(&["a"]));
        assert_eq!(idx.count("ns", "a"), 0);
    }

    #[test]
    fn duplicates_count_once() {
        let idx = RefIndex::default();
        idx.observe(&Key::new("ns", "o"), names(&["p", "p", "q"]));
        assert_eq!(idx.count("ns", "p"), 1);
        assert_eq!(
            idx.observe(&Key::new("ns", "o"), vec![]),
            names(&["p", "q"])
        );
        assert_eq!(idx.count("ns", "q"), 0);
    }

    #[test]
    fn a_source_without_references_holds_no_entry() {
        let idx = RefIndex::default();
        assert_eq!(idx.observe(&Key::new("ns", "bare"), vec![]), names(&[]));
        assert_eq!(idx.observe(&Key::new("ns", "bare"), vec![]), names(&[]));
        assert!(idx.inner.lock().unwrap().by_source.is_empty());
        idx.observe(&Key::new("ns", "s"), names(&["p"]));
        assert_eq!(
            idx.observe(&Key::new("ns", "s"), vec![]),
            names(&["p"]),
            "dropping a reference touches it"
        );
        let inner = idx.inner.lock().unwrap();
        assert!(inner.by_source.is_empty() && inner.by_target.is_empty());
    }
}
