//! Reads of user-provided Secrets (camera credentials, node credentials), with a short cache so
//! a burst of reconciles of streams sharing one Secret costs one API read. Values are held
//! only in memory and handed to the node client; they are never logged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::Context;

/// How long a read is reused. Rotations reach the nodes within this (plus a resync).
const TTL: Duration = Duration::from_secs(10);

type Data = BTreeMap<String, Vec<u8>>;
/// A read and when it happened (`None`: the Secret did not exist).
type Cached = (Instant, Option<SecretEntry>);

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

/// Cache of Secret data by (namespace, name).
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
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&k).filter(|(t, _)| t.elapsed() < TTL).cloned());
        let data = match cached {
            Some((_, d)) => d,
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
                    c.insert(k, (Instant::now(), d.clone()));
                }
                d
            }
        };
        data.ok_or_else(|| SecretError::NotFound(name.to_string()))
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
