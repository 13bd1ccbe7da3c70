//! Reads of user-provided Secrets (camera credentials, node credentials, passwords): by name,
//! only the Secrets an object references, each read once and kept until the metadata watch of
//! Secrets (`Stores::secrets`, which never carries values) shows another version. So 10,000
//! streams sharing one Secret cost one read at start-up, a rotation is seen at the next
//! reconcile, and the operator needs no watch of Secret values. Values are held only in memory
//! and handed to the node client; they are never logged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::Context;

type Data = BTreeMap<String, Vec<u8>>;
/// A read (`None`: the Secret did not exist).
type Cached = Option<SecretEntry>;

/// A Secret's data with what identifies the version of it (for destination binding).
#[derive(Clone, Default)]
pub struct SecretEntry {
    /// Values by key.
    pub data: Data,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// The `panoptes.dev/destinations` annotation, if any.
    pub destinations: Option<String>,
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

/// Cache of Secret data by (namespace, name), shared by every controller.
#[derive(Default)]
pub struct Secrets {
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl Secrets {
    /// All data of `ns/name`.
    pub async fn data(&self, ctx: &Context, ns: &str, name: &str) -> Result<Data, SecretError> {
        self.entry(ctx, ns, name).await.map(|e| e.data)
    }

    /// Data and version identity of `ns/name`.
    pub async fn entry(
        &self,
        ctx: &Context,
        ns: &str,
        name: &str,
    ) -> Result<SecretEntry, SecretError> {
        let k = (ns.to_string(), name.to_string());
        let watched = ctx
            .stores
            .secrets
            .get(&ObjectRef::new(name).within(ns))
            .map(|m| m.resource_version().unwrap_or_default());
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(&k)
                .filter(|d| current(d, watched.as_deref()))
                .cloned()
        });
        let data = match cached {
            Some(d) => d,
            None => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
                let got = api.get_opt(name).await.map_err(|e| SecretError::Api {
                    secret: name.to_string(),
                    message: e.to_string(),
                })?;
                let d = got.map(|s| SecretEntry {
                    uid: s.metadata.uid.clone().unwrap_or_default(),
                    resource_version: s.metadata.resource_version.clone().unwrap_or_default(),
                    destinations: s
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(crate::domain::destinations::ANNOTATION).cloned()),
                    data: s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect::<Data>(),
                });
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(k, d.clone());
                }
                d
            }
        };
        data.ok_or_else(|| SecretError::NotFound(name.to_string()))
    }

    /// How many Secrets are cached (for tests).
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// One text value of `ns/name`.
    pub async fn text(
        &self,
        ctx: &Context,
        ns: &str,
        name: &str,
        key: &str,
    ) -> Result<String, SecretError> {
        let data = self.data(ctx, ns, name).await?;
        let raw = data.get(key).ok_or_else(|| SecretError::MissingKey {
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
        Some(SecretEntry {
            resource_version: rv.into(),
            ..Default::default()
        })
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
