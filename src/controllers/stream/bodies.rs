//! Which node copies were found to match a stream's effective body, so a reconcile that finds
//! the same copy on the node again needs no second comparison. A restart onto wiped nodes, or
//! a relist, reconciles every stream at once; diffing every body against the node's
//! `config_on_disk` each time was a large part of the operator's CPU per push.
//!
//! Only a digest of the body's inputs ([`BodyKey`]) and weak pointers to the node copies are
//! kept. Keeping the built bodies as well cost about 3 KiB per stream (31 MiB at 10,000
//! streams) and measured no faster: building a body is cheaper than the allocator traffic of
//! holding 10,000 of them (BENCHMARKS.md, "the body cache measured apart").

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, Weak};

use crate::controllers::fleet::Disk;
use crate::controllers::refs::Key;
use crate::domain::effective::BodyKey;

/// A 128-bit digest of a [`BodyKey`]: two independently keyed SipHashes, so a changed input
/// (a rotated password's Secret version) is never taken for the old one by a collision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest(u64, u64);

/// One stream's digest and the node copies known to match the body built for it.
struct Entry {
    digest: Digest,
    /// hostname → the node copy (`config_on_disk`, the very allocation the fleet holds) last
    /// found to match. Weak: a copy the fleet has replaced is not kept alive here, and the
    /// allocation a weak pointer pins cannot be reused by a newer copy (no false match).
    in_sync: Vec<(Box<str>, Weak<Disk>)>,
}

/// Matches by stream.
pub struct Bodies {
    hashers: (RandomState, RandomState),
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Default for Bodies {
    fn default() -> Self {
        Self {
            hashers: (RandomState::new(), RandomState::new()),
            entries: Mutex::default(),
        }
    }
}

impl Bodies {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The digest of `key`.
    pub fn digest(&self, key: &BodyKey) -> Digest {
        Digest(self.hashers.0.hash_one(key), self.hashers.1.hash_one(key))
    }

    /// Whether `copy` on `host` was found to match the body of `stream` built for `digest`.
    pub fn matched(&self, stream: &Key, digest: Digest, host: &str, copy: &Arc<Disk>) -> bool {
        self.lock()
            .get(stream)
            .filter(|e| e.digest == digest)
            .and_then(|e| e.in_sync.iter().find(|(h, _)| &**h == host))
            .is_some_and(|(_, m)| std::ptr::eq(m.as_ptr(), Arc::as_ptr(copy)))
    }

    /// Records that `copy` on `host` matches the body of `stream` built for `digest`
    /// (forgetting the matches of another digest).
    pub fn record_match(&self, stream: &Key, digest: Digest, host: &str, copy: &Arc<Disk>) {
        let mut entries = self.lock();
        let entry = entries.entry(stream.clone()).or_insert_with(|| Entry {
            digest,
            in_sync: Vec::new(),
        });
        if entry.digest != digest {
            entry.digest = digest;
            entry.in_sync.clear();
        }
        let weak = Arc::downgrade(copy);
        match entry.in_sync.iter_mut().find(|(h, _)| &**h == host) {
            Some((_, m)) => *m = weak,
            None => entry.in_sync.push((host.into(), weak)),
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
    fn equal_keys_have_equal_digests_and_changed_inputs_do_not() {
        let b = Bodies::default();
        assert_eq!(b.digest(&key(1)), b.digest(&key(1)));
        assert_ne!(b.digest(&key(1)), b.digest(&key(2)));
    }

    #[test]
    fn a_match_holds_for_its_node_copy_and_digest_only() {
        let b = Bodies::default();
        let s = Key::new("ns", "s");
        let (d1, d2) = (b.digest(&key(1)), b.digest(&key(2)));
        let copy = Arc::new(Disk::of(&serde_json::json!({"name": "s"})));
        assert!(!b.matched(&s, d1, "n1", &copy), "nothing recorded yet");
        b.record_match(&s, d1, "n1", &copy);
        assert!(b.matched(&s, d1, "n1", &copy));
        assert!(!b.matched(&s, d1, "n2", &copy), "another node");
        assert!(
            !b.matched(&Key::new("ns", "t"), d1, "n1", &copy),
            "another stream"
        );
        let relisted = Arc::new((*copy).clone());
        assert!(
            !b.matched(&s, d1, "n1", &relisted),
            "a copy the node listed again is compared again"
        );
        assert!(!b.matched(&s, d2, "n1", &copy), "another body");
        b.record_match(&s, d1, "n2", &relisted);
        assert!(b.matched(&s, d1, "n1", &copy) && b.matched(&s, d1, "n2", &relisted));
        b.record_match(&s, d2, "n1", &copy);
        assert!(
            !b.matched(&s, d2, "n2", &relisted),
            "a new body forgets the old matches"
        );
        b.forget(&s);
        assert!(!b.matched(&s, d2, "n1", &copy));
    }

    #[test]
    fn a_match_does_not_keep_the_node_copy_alive() {
        let b = Bodies::default();
        let s = Key::new("ns", "s");
        let d = b.digest(&key(1));
        let copy = Arc::new(Disk::of(&serde_json::json!({"name": "s"})));
        b.record_match(&s, d, "n1", &copy);
        let weak = Arc::downgrade(&copy);
        drop(copy);
        assert!(weak.upgrade().is_none());
    }
}
