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
    /// Digest of the resourceVersions of the object and what it references (no allocation
    /// per object and request).
    pub versions: u64,
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
    pub fn render_all<'a, F>(&self, items: Vec<(&'a str, Deps, F)>) -> Vec<Arc<Value>>
    where
        F: FnOnce() -> Value,
    {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(items.len());
        let mut uids: Vec<&'a str> = Vec::with_capacity(items.len());
        for (uid, deps, render) in items {
            let value = match map.get(uid) {
                Some((d, v)) if *d == deps => v.clone(),
                _ => {
                    let v = Arc::new(render());
                    map.insert(uid.to_string(), (deps, v.clone()));
                    v
                }
            };
            uids.push(uid);
            out.push(value);
        }
        // More entries than objects means some objects are gone: only then pay for a set.
        if map.len() > uids.len() {
            let seen: HashSet<&str> = uids.into_iter().collect();
            map.retain(|k, _| seen.contains(k.as_str()));
        }
        out
    }
}

/// FNV-1a over some strings (separated), for [`Deps::versions`].
pub fn digest<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.unwrap_or("").bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The facade's caches.
#[derive(Default)]
pub struct Caches {
    /// Streams.
    pub streams: Cache,
}
