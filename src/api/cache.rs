//! Rendered streams by object version, so a list of 10,000 streams renders only what
//! changed since the last request. An entry is valid while the stream, its organization
//! and preset keep their resourceVersions and the ingest node's live report is the same
//! `Arc` (the live cache replaces the `Arc` on every update while someone, here the
//! entry, still holds the old one).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::state::NodeLive;

/// What a rendering depended on.
#[derive(Clone, Default)]
pub struct Deps {
    /// resourceVersions of the object and what it references.
    pub versions: String,
    /// The live report the rendering read.
    pub node: Option<Arc<NodeLive>>,
}

impl PartialEq for Deps {
    fn eq(&self, other: &Self) -> bool {
        self.versions == other.versions
            && match (&self.node, &other.node) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// One cache of rendered objects keyed by uid.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, (Deps, Arc<Value>)>>,
}

impl Cache {
    /// Renders every `(uid, deps, render)` that is not cached with the same deps; drops
    /// entries of objects that are gone.
    pub fn render_all<F>(&self, items: Vec<(String, Deps, F)>) -> Vec<Arc<Value>>
    where
        F: FnOnce() -> Value,
    {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(items.len());
        let mut seen = HashSet::with_capacity(items.len());
        for (uid, deps, render) in items {
            let value = match map.get(&uid) {
                Some((d, v)) if *d == deps => v.clone(),
                _ => {
                    let v = Arc::new(render());
                    map.insert(uid.clone(), (deps, v.clone()));
                    v
                }
            };
            seen.insert(uid);
            out.push(value);
        }
        if map.len() > seen.len() {
            map.retain(|k, _| seen.contains(k));
        }
        out
    }
}

/// The facade's caches.
#[derive(Default)]
pub struct Caches {
    /// Streams.
    pub streams: Cache,
}
