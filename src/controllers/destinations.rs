//! The I/O around [`crate::domain::destinations`]: the cluster owner's allow-list (ConfigMap
//! `panoptes-destinations` in the system namespace), read with a short cache, and the
//! Secret facts a decision needs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::Context;
use crate::domain::destinations::{ALLOW_LIST_CONFIGMAP, ALLOW_LIST_KEY, AllowList, SecretFacts};
use crate::state::SecretEntry;

/// How long a read of the allow-list is reused.
const TTL: Duration = Duration::from_secs(10);

/// The allow-list, cached.
#[derive(Default)]
pub struct AllowListCache {
    cached: Mutex<Option<(Instant, AllowList)>>,
    /// Held while one caller reads the ConfigMap: the others wait for its read instead of
    /// each making their own (at a restart over 10,000 cameras, the 128 reconciles running at
    /// once all missed and made 148 GETs in 3 s).
    reading: tokio::sync::Mutex<()>,
}

impl AllowListCache {
    /// The current allow-list. Absent, unreadable or empty: nothing extra is allowed.
    pub async fn get(&self, ctx: &Context) -> AllowList {
        if let Some(list) = self.fresh() {
            return list;
        }
        let _reading = self.reading.lock().await;
        if let Some(list) = self.fresh() {
            return list;
        }
        let api: Api<ConfigMap> =
            Api::namespaced(ctx.client.clone(), &ctx.tunables.system_namespace);
        let list = match api.get_opt(ALLOW_LIST_CONFIGMAP).await {
            Ok(cm) => {
                let text = cm
                    .and_then(|c| c.data)
                    .and_then(|d| d.get(ALLOW_LIST_KEY).cloned())
                    .unwrap_or_default();
                let (list, bad) = AllowList::parse(&text);
                if !bad.is_empty() {
                    tracing::warn!(configmap = ALLOW_LIST_CONFIGMAP, entries = ?bad, "ignoring allow-list entries that are not origins (scheme://host:port)");
                }
                list
            }
            Err(error) => {
                tracing::warn!(%error, "reading the destinations allow-list failed; allowing nothing extra");
                AllowList::default()
            }
        };
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((Instant::now(), list.clone()));
        }
        list
    }

    /// The cached read, while it is younger than [`TTL`].
    fn fresh(&self) -> Option<AllowList> {
        let cached = self.cached.lock().ok()?;
        let (at, list) = cached.as_ref()?;
        (at.elapsed() < TTL).then(|| list.clone())
    }
}

/// The facts of `entry` for a decision about Secret `name`.
pub fn facts<'a>(name: &'a str, entry: &'a SecretEntry) -> SecretFacts<'a> {
    SecretFacts {
        name,
        uid: &entry.uid,
        resource_version: &entry.resource_version,
        annotation: entry.annotation(crate::domain::destinations::ANNOTATION),
    }
}
