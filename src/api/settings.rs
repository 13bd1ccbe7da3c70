//! Domain and system settings (`/domain_config`, `/system_config`).
//!
//! Stored in the system namespace:
//! - ConfigMap `<instance>-settings` (default `panoptes-settings`), keys `domain_config` and
//!   `system_config` (JSON documents without secrets), written with server-side apply (field
//!   manager `panoptes-api`);
//! - Secret `<instance>-settings`, key `smtp-password`: the SMTP password of
//!   `domain_config.mail` (write-only: never returned).
//!
//! The ConfigMap is watched into memory, so reads (and the login throttle's
//! `watcher_brute_force_timeout`) make no API-server call. The system settings are read-only
//! through the API (the reference has no save operation); an operator edits the ConfigMap.
//! Defaults when absent: `watcher_brute_force_timeout` 1800 s, `loglevel` `info`.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Config};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Api, Client};
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

/// Key of the domain settings in the ConfigMap.
pub const DOMAIN_KEY: &str = "domain_config";
/// Key of the system settings in the ConfigMap.
pub const SYSTEM_KEY: &str = "system_config";
/// Key of the SMTP password in the Secret.
pub const SMTP_PASSWORD_KEY: &str = "smtp-password";
/// Default of `watcher_brute_force_timeout` (seconds).
pub const DEFAULT_BRUTE_FORCE_TIMEOUT: u64 = 1800;

/// The settings ConfigMap, watched.
pub struct Settings {
    store: Store<ConfigMap>,
}

impl Settings {
    /// Starts watching the settings ConfigMap `name` of `namespace`.
    pub fn start(client: &Client, namespace: &str, name: &str, tasks: &mut JoinSet<()>) -> Self {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let (store, writer): (Store<ConfigMap>, Writer<ConfigMap>) = reflector::store();
        let cfg = Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher::watcher(api, cfg)
            .default_backoff()
            .reflect(writer)
            .applied_objects();
        tasks.spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "settings watch error");
                }
            }
        });
        Self { store }
    }

    /// Waits until the settings watch has listed once.
    pub async fn wait_ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    fn document(&self, key: &str) -> Map<String, Value> {
        self.store
            .state()
            .first()
            .and_then(|cm| cm.data.as_ref()?.get(key).cloned())
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The stored domain settings (never containing the SMTP password).
    pub fn domain(&self) -> Map<String, Value> {
        self.document(DOMAIN_KEY)
    }

    /// The system settings with defaults filled in.
    pub fn system(&self) -> Map<String, Value> {
        let mut out = match json!({
            "watcher_brute_force_timeout": DEFAULT_BRUTE_FORCE_TIMEOUT,
            "loglevel": "info",
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        for (k, v) in self.document(SYSTEM_KEY) {
            // Credentials-bearing members are never served, whatever an operator stored.
            if matches!(k.as_str(), "license_key" | "database") {
                continue;
            }
            out.insert(k, v);
        }
        out
    }

    /// `watcher_brute_force_timeout` in seconds.
    pub fn brute_force_timeout(&self) -> u64 {
        self.system()
            .get("watcher_brute_force_timeout")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_BRUTE_FORCE_TIMEOUT)
    }
}
