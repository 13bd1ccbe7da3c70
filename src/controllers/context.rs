//! The state every reconciler shares, built once and passed as `Arc<Context>`.

use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::state::{Scope, Stores};
use crate::telemetry::Metrics;

/// Tunables of the reconcilers.
#[derive(Clone, Debug)]
pub struct Tunables {
    /// How often each node is probed and listed.
    pub node_resync: Duration,
    /// How long a stream's deletion waits for an unreachable node before giving up on it
    /// (the streamer controller removes the leftover when the node returns).
    pub delete_grace: Duration,
    /// Namespace holding Panoptes' own objects (id claims, leases).
    pub system_namespace: String,
}

impl Default for Tunables {
    fn default() -> Self {
        Self {
            node_resync: Duration::from_secs(10),
            delete_grace: Duration::from_secs(60),
            system_namespace: "default".into(),
        }
    }
}

/// Shared by every reconciler.
#[derive(Clone)]
pub struct Context {
    /// API client (field manager `panoptes` on every apply).
    pub client: Client,
    /// Namespaces watched.
    pub scope: Scope,
    /// Reflector stores of the five kinds.
    pub stores: Stores,
    /// Event recorder (reporting controller `panoptes`).
    pub recorder: Recorder,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Tunables.
    pub tunables: Tunables,
}

impl Context {
    /// A context for `panoptes run` or a test.
    pub fn new(
        client: Client,
        scope: Scope,
        stores: Stores,
        metrics: Metrics,
        tunables: Tunables,
    ) -> Self {
        let reporter = Reporter {
            controller: "panoptes".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            scope,
            stores,
            recorder,
            metrics,
            tunables,
        }
    }
}
