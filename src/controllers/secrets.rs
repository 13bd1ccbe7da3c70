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
type Cached = (Instant, Option<Data>);

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
                let d = got.map(|s| {
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect::<Data>()
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
