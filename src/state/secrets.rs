//! Reads of Secrets by name (camera credentials, node credentials, passwords and their
//! hashes): only the Secrets an object references, each read once and kept until the metadata
//! watch of Secrets (`Stores::secrets`, which never carries values) shows another version. So
//! 10,000 streams sharing one Secret cost one read at start-up, a User reconciled again reads
//! nothing, a rotation is seen at the next reconcile, and the operator needs no watch of Secret
//! values. Values are held only in memory and handed to the node client or the hasher; they
//! are never logged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

/// Secrets per page of [`Secrets::warm`]: a page is decoded whole, values included, before
/// the unreferenced Secrets are dropped, and a Secret may hold up to 1 MiB (a Helm release
/// does), so a page is bounded at ~100 MiB rather than kube's watcher's 500.
const WARM_PAGE: u32 = 100;
/// Secrets per page of [`Secrets::warm_facade_created`].
const FACADE_WARM_PAGE: u32 = 1_000;

/// A read (`None`: the Secret did not exist), shared: a camera's reconcile takes it without
/// copying the values.
type Cached = Option<Arc<SecretEntry>>;

/// A small string map as a sorted boxed slice: a Secret holds a few keys, and a `BTreeMap`
/// allocates a node for eleven (~0.5 KiB) however few it holds, once per cached Secret (with a
/// Secret per camera, ~50 MiB at 100,000 cameras for each of the two maps below).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmallMap<V>(Box<[(String, V)]>);

impl<V> SmallMap<V> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl<V> FromIterator<(String, V)> for SmallMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(String, V)> = iter.into_iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Self(pairs.into_boxed_slice())
    }
}

/// A Secret's values by key.
pub type Data = SmallMap<Vec<u8>>;

/// A Secret's data with what identifies the version of it (for destination binding).
#[derive(Clone, Default)]
pub struct SecretEntry {
    /// Values by key.
    pub data: Data,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// The `panoptes.dev/` annotations (the others, `kubectl.kubernetes.io/last-applied-
    /// configuration` above all, may repeat the values and are not kept).
    annotations: SmallMap<String>,
    /// `metadata.ownerReferences` (whose hash a hash Secret holds).
    pub owners: Vec<OwnerReference>,
}

impl From<Secret> for SecretEntry {
    fn from(s: Secret) -> Self {
        let meta = s.metadata;
        Self {
            uid: meta.uid.unwrap_or_default(),
            resource_version: meta.resource_version.unwrap_or_default(),
            annotations: meta
                .annotations
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| {
                    k.strip_prefix(crate::resources::common::GROUP)
                        .is_some_and(|rest| rest.starts_with('/'))
                })
                .collect(),
            owners: meta.owner_references.unwrap_or_default(),
            data: s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        }
    }
}

impl SecretEntry {
    /// One text value (trailing newlines dropped) of Secret `name`.
    pub fn text(&self, name: &str, key: &str) -> Result<String, SecretError> {
        let raw = self.data.get(key).ok_or_else(|| SecretError::MissingKey {
            secret: name.to_string(),
            key: key.to_string(),
        })?;
        String::from_utf8(raw.clone())
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|_| SecretError::NotText {
                secret: name.to_string(),
                key: key.to_string(),
            })
    }

    /// The value of `key`, for [`crate::flussonic::Credentials::from_secret_data`].
    pub fn value(&self, key: &str) -> Option<&[u8]> {
        self.data.get(key).map(Vec::as_slice)
    }
}

impl SecretEntry {
    /// The annotation `key`, if it is one of the kept (`panoptes.dev/`) ones.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

impl std::fmt::Debug for SecretEntry {
    // Redacted: keys only, never values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretEntry")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("uid", &self.uid)
            .field("resource_version", &self.resource_version)
            .finish()
    }
}

/// Why a Secret value is not available.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// No such Secret.
    #[error("Secret {0} not found")]
    NotFound(String),
    /// The Secret lacks the key.
    #[error("Secret {secret} has no key {key:?}")]
    MissingKey {
        /// Secret name.
        secret: String,
        /// Key.
        key: String,
    },
    /// The value is not UTF-8.
    #[error("Secret {secret} key {key:?} is not UTF-8 text")]
    NotText {
        /// Secret name.
        secret: String,
        /// Key.
        key: String,
    },
    /// The API server did not answer.
    #[error("reading Secret {secret}: {message}")]
    Api {
        /// Secret name.
        secret: String,
        /// What the API server said.
        message: String,
    },
}

/// Cache of Secret data by (namespace, name), shared by every controller; part of the state
/// `panoptes run` builds once ([`super::Shared`]).
pub struct Secrets {
    client: Client,
    /// The metadata watch's view: a cached read is used while it shows the same version.
    watched: Store<PartialObjectMeta<Secret>>,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl Secrets {
    /// A cache reading with `client`, kept current by the metadata watch behind `watched`.
    pub(crate) fn new(client: Client, watched: Store<PartialObjectMeta<Secret>>) -> Self {
        Self {
            client,
            watched,
            cache: Mutex::default(),
        }
    }

    /// Data and version identity of `ns/name`.
    pub async fn entry(&self, ns: &str, name: &str) -> Result<Arc<SecretEntry>, SecretError> {
        self.entry_opt(ns, name)
            .await
            .map_err(|e| SecretError::Api {
                secret: name.to_string(),
                message: e.to_string(),
            })?
            .ok_or_else(|| SecretError::NotFound(name.to_string()))
    }

    /// [`Secrets::entry`] with the API server's own error, and `None` for a Secret that does
    /// not exist.
    pub async fn entry_opt(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<SecretEntry>>, kube::Error> {
        let k = (ns.to_string(), name.to_string());
        let watched = self
            .watched
            .get(&ObjectRef::new(name).within(ns))
            .map(|m| m.resource_version().unwrap_or_default());
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(&k)
                .filter(|d| current(d, watched.as_deref()))
                .cloned()
        });
        if let Some(d) = cached {
            return Ok(d);
        }
        let got = Api::<Secret>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?
            .map(|s| Arc::new(SecretEntry::from(s)));
        if let Ok(mut c) = self.cache.lock() {
            c.insert(k, got.clone());
        }
        Ok(got)
    }

    /// Reads the Secrets `names` of `ns` with paged LISTs instead of one GET each, keeping
    /// only those named (the rest of each page is dropped at once, values unread by anyone).
    /// For a start over many Secrets: a restarted leader over 10,000 cameras with a Secret
    /// each made 10,000 GETs before it could push, and pushed at a third of the nodes' pace
    /// (issue 21). The list needs no right beyond the `list` the metadata watch of Secrets
    /// has. Returns the names kept; a failed list leaves the rest to per-name reads.
    pub async fn warm(
        &self,
        ns: &str,
        names: &HashSet<&str>,
    ) -> Result<HashSet<String>, kube::Error> {
        self.warm_pages(ns, names, ListParams::default().limit(WARM_PAGE))
            .await
            .map(|(kept, _)| kept)
    }

    /// [`Secrets::warm`] over the credentials Secrets the facade wrote (its label selector),
    /// in pages of [`FACADE_WARM_PAGE`]: those hold a login and a password or a hash, so a
    /// page stays small however many it holds, and a paged list costs the API server per
    /// page as well as per Secret (100,000 Secrets: 24.6 s in pages of 100, 5.2 s in pages
    /// of 1,000; a restarted leader waited for it before its first push). Returns the names
    /// kept and how many Secrets the list returned.
    pub async fn warm_facade_created(
        &self,
        ns: &str,
        names: &HashSet<&str>,
    ) -> Result<(HashSet<String>, usize), kube::Error> {
        let params = ListParams::default()
            .labels(&crate::domain::credentials::facade_created_selector())
            .limit(FACADE_WARM_PAGE);
        self.warm_pages(ns, names, params).await
    }

    async fn warm_pages(
        &self,
        ns: &str,
        names: &HashSet<&str>,
        mut params: ListParams,
    ) -> Result<(HashSet<String>, usize), kube::Error> {
        let api = Api::<Secret>::namespaced(self.client.clone(), ns);
        let mut kept = HashSet::new();
        let mut listed = 0;
        loop {
            let page = api.list(&params).await?;
            listed += page.items.len();
            let entries: Vec<((String, String), Cached)> = page
                .items
                .into_iter()
                .filter(|s| names.contains(s.name_any().as_str()))
                .map(|s| {
                    let k = (ns.to_string(), s.name_any());
                    (k, Some(Arc::new(SecretEntry::from(s))))
                })
                .collect();
            kept.extend(entries.iter().map(|((_, name), _)| name.clone()));
            if let Ok(mut c) = self.cache.lock() {
                c.extend(entries);
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok((kept, listed)),
            }
        }
    }

    /// Keeps `secret` as just written by this process (the answer to its own write), so the
    /// reconcile its watch event triggers reads nothing.
    pub fn remember(&self, secret: Secret) {
        let k = (secret.namespace().unwrap_or_default(), secret.name_any());
        if let Ok(mut c) = self.cache.lock() {
            c.insert(k, Some(Arc::new(secret.into())));
        }
    }

    /// How many Secrets are cached (for tests).
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// One text value of `ns/name`.
    pub async fn text(&self, ns: &str, name: &str, key: &str) -> Result<String, SecretError> {
        self.entry(ns, name).await?.text(name, key)
    }
}

/// Whether a cached read is the version the metadata watch shows (`watched`: its
/// resourceVersion; `None`: the watch knows no such Secret). A read newer than the watch
/// counts as stale until the watch catches up: one extra read, never an old value kept.
fn current(cached: &Cached, watched: Option<&str>) -> bool {
    match (cached, watched) {
        (Some(entry), Some(rv)) => entry.resource_version == rv,
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(rv: &str) -> Cached {
        Some(Arc::new(SecretEntry {
            resource_version: rv.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn a_small_map_answers_like_a_sorted_map() {
        let m: SmallMap<u8> = [("b", 2), ("a", 1), ("c", 3), ("a", 9)]
            .map(|(k, v)| (k.to_string(), v))
            .into_iter()
            .collect();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(
            m.get("a"),
            Some(&1),
            "the first of a repeated key, as a Secret has none"
        );
        assert_eq!(
            (m.get("b"), m.get("c"), m.get("d")),
            (Some(&2), Some(&3), None)
        );
        assert_eq!(SmallMap::<u8>::default().get("a"), None);
    }

    #[test]
    fn an_entry_keeps_only_panoptes_annotations() {
        let mut s = Secret::default();
        s.metadata.annotations = Some(
            [
                ("panoptes.dev/token-generation", "3"),
                ("panoptes.devx/other", "no"),
                (
                    "kubectl.kubernetes.io/last-applied-configuration",
                    "{\"data\":{\"password\":\"…\"}}",
                ),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        );
        let entry = SecretEntry::from(s);
        assert_eq!(
            entry.annotations.keys().collect::<Vec<_>>(),
            ["panoptes.dev/token-generation"]
        );
        assert_eq!(entry.annotation("panoptes.dev/token-generation"), Some("3"));
    }

    #[test]
    fn a_read_is_reused_until_the_watch_shows_another_version() {
        for (what, cached, watched, reuse) in [
            ("same version", read("5"), Some("5"), true),
            ("changed since", read("5"), Some("6"), false),
            ("read ahead of the watch", read("6"), Some("5"), false),
            ("deleted since", read("5"), None, false),
            ("still absent", None, None, true),
            ("created since", None, Some("1"), false),
        ] {
            assert_eq!(current(&cached, watched), reuse, "{what}");
        }
    }
}
