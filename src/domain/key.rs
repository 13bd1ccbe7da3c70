//! The identity of a namespaced object, one type for every index keyed by object.
//!
//! It holds `namespace/name` in one shared string: that is also the layouter's stream key
//! ([`crate::layout::StreamView::key`]), so crossing into the layout and back costs a
//! reference count, not an allocation. Neither part can contain `/` (Kubernetes names), so the
//! string identifies the pair.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use kube::ResourceExt;

/// `namespace` and `name` of an object; displays as `namespace/name`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    full: Arc<str>,
    /// Where the `/` between namespace and name is.
    slash: usize,
}

impl ObjectKey {
    /// The key of `namespace`/`name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        // Not `format!`: every reconcile keys its object, and the formatting machinery was
        // most of what that cost.
        let mut full = String::with_capacity(namespace.len() + 1 + name.len());
        full.push_str(namespace);
        full.push('/');
        full.push_str(name);
        Self {
            full: full.into(),
            slash: namespace.len(),
        }
    }

    /// The key of `obj` (a cluster-scoped object has the empty namespace).
    pub fn of<K: ResourceExt>(obj: &K) -> Self {
        // Borrowed, not `namespace()`/`name_any()`: those clone both strings, and every
        // reconcile keys its object.
        let meta = obj.meta();
        let name = match &meta.name {
            Some(n) => n.as_str(),
            None => meta.generate_name.as_deref().unwrap_or_default(),
        };
        Self::new(meta.namespace.as_deref().unwrap_or_default(), name)
    }

    /// The object's namespace.
    pub fn namespace(&self) -> &str {
        &self.full[..self.slash]
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.full[self.slash + 1..]
    }

    /// `(namespace, name)` as owned strings.
    pub fn into_parts(self) -> (String, String) {
        (self.namespace().to_string(), self.name().to_string())
    }

    /// `namespace/name`, shared: the layouter's key of a stream.
    pub fn as_arc(&self) -> &Arc<str> {
        &self.full
    }

    /// The key a layouter key names. Keys the world built always have both parts; anything
    /// else is read as a name in the empty namespace.
    pub fn from_layout(key: &Arc<str>) -> Self {
        match key.find('/') {
            Some(slash) => Self {
                full: key.clone(),
                slash,
            },
            None => Self::new("", key),
        }
    }
}

impl<K: ResourceExt> From<&K> for ObjectKey {
    fn from(obj: &K) -> Self {
        Self::of(obj)
    }
}

/// Namespace first, then name, as the pair would order (`a/x` before `a-b/y`).
impl Ord for ObjectKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.namespace(), self.name()).cmp(&(other.namespace(), other.name()))
    }
}

impl PartialOrd for ObjectKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.full)
    }
}

/// `namespace/name` without a `/` is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected namespace/name, got {0:?}")]
pub struct NotAKey(String);

impl FromStr for ObjectKey {
    type Err = NotAKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !name.contains('/') => Ok(Self::new(ns, name)),
            _ => Err(NotAKey(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_display_and_parse_round_trip() {
        let k = ObjectKey::new("cams", "gate");
        assert_eq!((k.namespace(), k.name()), ("cams", "gate"));
        assert_eq!(k.to_string(), "cams/gate");
        assert_eq!("cams/gate".parse::<ObjectKey>(), Ok(k.clone()));
        assert_eq!(ObjectKey::from_layout(k.as_arc()), k);
        assert!(Arc::ptr_eq(
            ObjectKey::from_layout(k.as_arc()).as_arc(),
            k.as_arc()
        ));
        assert!("gate".parse::<ObjectKey>().is_err());
        assert!("a/b/c".parse::<ObjectKey>().is_err());
        let cluster = ObjectKey::new("", "n1");
        assert_eq!((cluster.namespace(), cluster.name()), ("", "n1"));
        assert_eq!(ObjectKey::from_layout(&Arc::from("n1")), cluster);
    }

    #[test]
    fn orders_as_the_pair_does() {
        let pairs = [("a", "x"), ("a-b", "y"), ("a", "w"), ("", "z"), ("b", "a")];
        let mut by_key: Vec<ObjectKey> = pairs.iter().map(|(n, m)| ObjectKey::new(n, m)).collect();
        let mut by_pair = pairs.to_vec();
        by_key.sort();
        by_pair.sort();
        let back: Vec<(&str, &str)> = by_key.iter().map(|k| (k.namespace(), k.name())).collect();
        assert_eq!(back, by_pair);
    }
}
