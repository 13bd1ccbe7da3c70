//! The streams of a [`World`](super::World) kept between layouter runs, so a run after some
//! Streams changed assembles those alone (issue 21: building the world walks and sorts every
//! Stream, seconds at 100,000 of them, and a bulk apply asks for a run every few hundred
//! milliseconds).
//!
//! [`Tracked::apply`] takes the Streams the watch touched and returns what changed for the
//! layouter ([`Delta`]): the views to lay out again, the keys leaving the layout and the
//! changed Watcher-name owners and blocks. The world's rules apply exactly as in a build:
//! each Stream's view is [`view_of`]'s, and the owner of a name is its oldest holder, found
//! again among that name's holders whenever one of them changed, so a younger Stream takes
//! a name over when the older one goes or renames.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::{Age, Blocked, age, preset_in, view_of};
use crate::domain::key::ObjectKey;
use crate::layout::StreamView;
use crate::resources::{Preset, Stream};
use crate::state::Stores;

/// One Stream as the world last saw it.
#[derive(Debug)]
struct Member {
    /// What its view and name depend on ([`digest`]); equal digests need no look.
    digest: u64,
    age: Age,
    /// Its Watcher name.
    name: String,
    /// It is in the layout (owns its name and takes room).
    placed: bool,
}

/// The streams of a world and who owns which Watcher name; see the module documentation.
#[derive(Debug, Default)]
pub struct Tracked {
    members: HashMap<ObjectKey, Member>,
    /// Watcher name → its owner.
    owners: HashMap<String, ObjectKey>,
    /// Watcher name → its other holders, for the few names held twice.
    younger: HashMap<String, Vec<ObjectKey>>,
    blocked: HashMap<ObjectKey, Blocked>,
}

/// What one [`Tracked::apply`] changed.
#[derive(Debug, Default, PartialEq)]
pub struct Delta {
    /// Streams to lay out again (new, changed, or back in the layout), as views.
    pub upserts: Vec<StreamView>,
    /// Layout keys of streams that left the layout (gone, blocked, being deleted, preset
    /// missing).
    pub removed: Vec<Arc<str>>,
    /// Watcher names whose owner changed, with the new one (`None`: nobody holds it now).
    pub owners: Vec<(String, Option<ObjectKey>)>,
    /// Streams whose block changed, with the new one (`None`: not blocked now).
    pub blocked: Vec<(ObjectKey, Option<Blocked>)>,
    /// Streams gone from the store.
    pub gone: Vec<ObjectKey>,
    /// Streams whose spec, deletion or existence changed.
    pub changed: usize,
}

impl Delta {
    /// Nothing changed for the layouter or the name owners.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty()
            && self.removed.is_empty()
            && self.owners.is_empty()
            && self.blocked.is_empty()
            && self.gone.is_empty()
    }
}

/// What a Stream's view and Watcher name depend on besides Presets (whose changes rebuild
/// the world): its identity, its spec (by generation) and whether it is being deleted. A
/// status write changes none of them.
fn digest(s: &Stream) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        s.uid(),
        s.meta().generation,
        s.meta().deletion_timestamp.is_some(),
    )
        .hash(&mut h);
    h.finish()
}

impl Tracked {
    /// Records `s` as the build walked it (oldest first).
    pub(super) fn track(&mut self, key: &ObjectKey, s: &Stream, name: String, placed: bool) {
        let member = Member {
            digest: digest(s),
            age: age(s),
            name,
            placed,
        };
        self.members.insert(key.clone(), member);
    }

    /// Takes the build's name owners and blocks once every Stream is tracked.
    pub(super) fn settle(
        &mut self,
        owners: &HashMap<String, ObjectKey>,
        blocked: &HashMap<ObjectKey, Blocked>,
    ) {
        self.owners = owners.clone();
        self.blocked = blocked.clone();
        for key in blocked.keys() {
            let name = &self.members[key].name;
            self.younger
                .entry(name.clone())
                .or_default()
                .push(key.clone());
        }
    }

    /// The Watcher name of a tracked Stream.
    pub fn name_of(&self, key: &ObjectKey) -> Option<&str> {
        self.members.get(key).map(|m| m.name.as_str())
    }

    /// [`Tracked::apply`] with the Streams and Presets of the stores.
    pub fn update(
        &mut self,
        stores: &Stores,
        touched: impl IntoIterator<Item = ObjectKey>,
    ) -> Delta {
        let stream = |k: &ObjectKey| {
            stores
                .streams
                .get(&ObjectRef::new(k.name()).within(k.namespace()))
        };
        self.apply(touched, stream, preset_in(stores))
    }

    /// Applies the Streams `touched` keys name as `stream` has them now (`None`: gone), with
    /// Presets looked up by `preset` (namespace, name); keys whose Stream did not change for
    /// the world (a status write) are skipped. See [`Delta`].
    pub fn apply(
        &mut self,
        touched: impl IntoIterator<Item = ObjectKey>,
        stream: impl Fn(&ObjectKey) -> Option<Arc<Stream>>,
        preset: impl Fn(&str, &str) -> Option<Arc<Preset>>,
    ) -> Delta {
        let mut delta = Delta::default();
        // Name → its owner before this apply, for the names whose holders changed.
        let mut names: BTreeMap<String, Option<ObjectKey>> = BTreeMap::new();
        // Key → (it was in the layout, its Stream changed): whose place to decide again.
        let mut relook: BTreeMap<ObjectKey, (bool, bool)> = BTreeMap::new();
        let mut seen = HashSet::new();
        for key in touched {
            if !seen.insert(key.clone()) {
                continue;
            }
            let now = stream(&key);
            let digest = now.as_deref().map(digest);
            let old = self.members.remove(&key);
            if old.as_ref().map(|m| m.digest) == digest {
                if let Some(m) = old {
                    self.members.insert(key, m);
                }
                continue;
            }
            delta.changed += 1;
            let was = old.as_ref().is_some_and(|m| m.placed);
            if let Some(m) = old {
                names
                    .entry(m.name.clone())
                    .or_insert_with(|| self.owners.get(&m.name).cloned());
                self.unhold(&m.name, &key);
            }
            match (now, digest) {
                (Some(s), Some(digest)) => {
                    let name = s.watcher_name().to_string();
                    names
                        .entry(name.clone())
                        .or_insert_with(|| self.owners.get(&name).cloned());
                    self.younger
                        .entry(name.clone())
                        .or_default()
                        .push(key.clone());
                    let member = Member {
                        digest,
                        age: age(&s),
                        name,
                        placed: was,
                    };
                    self.members.insert(key.clone(), member);
                }
                _ => {
                    if self.blocked.remove(&key).is_some() {
                        delta.blocked.push((key.clone(), None));
                    }
                    delta.gone.push(key.clone());
                }
            }
            relook.insert(key, (was, true));
        }
        for (name, before) in names {
            self.resolve(name, before, &mut delta, &mut relook);
        }
        for (key, (was, changed)) in relook {
            let Some(m) = self.members.get_mut(&key) else {
                if was {
                    delta.removed.push(key.as_arc().clone());
                }
                continue;
            };
            let owns = self.owners.get(&m.name) == Some(&key);
            let view = owns
                .then(|| stream(&key))
                .flatten()
                .and_then(|s| view_of(&key, &s, &preset));
            match view {
                Some(view) => {
                    if changed || !was {
                        delta.upserts.push(view);
                    }
                    m.placed = true;
                }
                None => {
                    if was {
                        delta.removed.push(key.as_arc().clone());
                    }
                    m.placed = false;
                }
            }
        }
        delta
    }

    /// Forgets that `key` holds `name`.
    fn unhold(&mut self, name: &str, key: &ObjectKey) {
        if self.owners.get(name) == Some(key) {
            self.owners.remove(name);
        } else if let Some(others) = self.younger.get_mut(name) {
            others.retain(|k| k != key);
            if others.is_empty() {
                self.younger.remove(name);
            }
        }
    }

    /// Gives `name` to its oldest holder again (it was `before`'s), blocks the others, and
    /// has every holder whose block changed looked at again.
    fn resolve(
        &mut self,
        name: String,
        before: Option<ObjectKey>,
        delta: &mut Delta,
        relook: &mut BTreeMap<ObjectKey, (bool, bool)>,
    ) {
        let mut holders: Vec<ObjectKey> = self.owners.remove(&name).into_iter().collect();
        holders.extend(self.younger.remove(&name).unwrap_or_default());
        let members = &self.members;
        holders.sort_by(|a, b| members[a].age.cmp(&members[b].age).then_with(|| a.cmp(b)));
        holders.dedup();
        let owner = holders.first().cloned();
        if owner != before {
            delta.owners.push((name.clone(), owner.clone()));
        }
        for (i, key) in holders.iter().enumerate() {
            let want = owner
                .as_ref()
                .filter(|_| i > 0)
                .map(|o| Blocked::NameConflict(o.clone()));
            if self.blocked.get(key) == want.as_ref() {
                continue;
            }
            match &want {
                Some(b) => self.blocked.insert(key.clone(), b.clone()),
                None => self.blocked.remove(key),
            };
            delta.blocked.push((key.clone(), want));
            let placed = members[key].placed;
            relook.entry(key.clone()).or_insert((placed, false));
        }
        if let Some(owner) = owner {
            self.owners.insert(name.clone(), owner);
        }
        if holders.len() > 1 {
            self.younger.insert(name, holders[1..].to_vec());
        }
    }

    /// The Watcher-name owners (as a build has them), for tests.
    #[cfg(test)]
    pub(super) fn owners(&self) -> &HashMap<String, ObjectKey> {
        &self.owners
    }

    /// The blocked Streams (as a build has them), for tests.
    #[cfg(test)]
    pub(super) fn blocked(&self) -> &HashMap<ObjectKey, Blocked> {
        &self.blocked
    }

    /// The keys in the layout, for tests.
    #[cfg(test)]
    pub(super) fn placed(&self) -> std::collections::BTreeSet<Arc<str>> {
        self.members
            .iter()
            .filter(|(_, m)| m.placed)
            .map(|(k, _)| k.as_arc().clone())
            .collect()
    }
}
