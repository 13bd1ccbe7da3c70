//! The state every reconciler shares, built once and passed as `Arc<Context>`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;

use super::fleet::Fleet;
use crate::domain::health::{COUNT_WRITES_PER_SECOND, counts_period, list_interval};
use crate::domain::tenancy::Identities;
use crate::state::{LiveStats, NodeClients, Scope, Secrets, Shared, Stores};
use crate::telemetry::Metrics;
use std::sync::Arc;

/// [`Tunables::rollout_per_node`] unless told otherwise (`--rollout-per-node`).
pub const DEFAULT_ROLLOUT_PER_NODE: u32 = 10;

/// Tunables of the reconcilers.
#[derive(Clone, Debug)]
pub struct Tunables {
    /// How often each node is probed and listed.
    pub node_resync: Duration,
    /// Streams listed per second across all nodes at most (`domain::health::list_interval`).
    pub node_list_budget: u32,
    /// How long a stream's deletion waits for an unreachable node before giving up on it
    /// (the streamer controller removes the leftover when the node returns).
    pub delete_grace: Duration,
    /// Namespace holding Panoptes' own objects (id claims, leases).
    pub system_namespace: String,
    /// The installation the names of those objects derive from.
    pub instance: crate::domain::instance::Instance,
    /// Timing of node health probes (how fast a hung node is judged unreachable).
    pub probe: crate::flussonic::ProbePolicy,
    /// Rate limits of Event writes (per object and for the whole operator).
    pub events: crate::events::limit::Limits,
    /// How long a missing referenced Secret, Preset or Organization reads `Reconciling`
    /// before it reads `Stalled` (GitOps tools then fail fast instead of timing out).
    pub missing_grace: Duration,
    /// The facade's play authorization URL, pushed as every stream's `on_play`
    /// (`--play-auth-url`); None: streams are pushed without one.
    pub play_auth_url: Option<String>,
    /// Cameras of one preset restarting at once on one node when a preset change reaches
    /// them, unless the Preset sets `spec.rollout.maxRestartingPerNode`.
    pub rollout_per_node: u32,
    /// How often every Stream is looked at again without a change (a rotated Secret the
    /// watch missed, safety): one paced walk over the store per period.
    pub stream_resync: Duration,
}

impl Default for Tunables {
    fn default() -> Self {
        Self {
            node_resync: Duration::from_secs(5),
            node_list_budget: 5_000,
            delete_grace: Duration::from_secs(60),
            system_namespace: "default".into(),
            instance: Default::default(),
            probe: crate::flussonic::ProbePolicy::default(),
            events: crate::events::limit::Limits::default(),
            missing_grace: super::conditions::MISSING_GRACE,
            play_auth_url: None,
            rollout_per_node: DEFAULT_ROLLOUT_PER_NODE,
            stream_resync: Duration::from_secs(600),
        }
    }
}

/// Shared by every reconciler: the instance's [`Shared`] state (built by `panoptes run`, not
/// here) and what only the reconcilers use.
#[derive(Clone)]
pub struct Context {
    /// API client (field manager `panoptes` on every apply).
    pub client: Client,
    /// Namespaces watched.
    pub scope: Scope,
    /// Reflector stores of the five kinds.
    pub stores: Stores,
    /// The Event writer (reporting controller `panoptes`; policy, series and rate limits).
    pub events: Arc<crate::events::EventWriter>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Tunables.
    pub tunables: Tunables,
    /// Live stats cache (fed by the Streamer controller, read by everyone).
    pub live: LiveStats,
    /// One client per node (the facade holds the same).
    pub nodes: NodeClients,
    /// Reconciler and node metrics.
    pub(crate) controller_metrics: super::metrics::ControllerMetrics,
    /// Request metrics of every node client.
    pub(crate) node_metrics: crate::flussonic::NodeMetrics,
    /// Placements, node contents and triggers shared by the stream-side loops.
    pub fleet: Arc<Fleet>,
    /// Namespaces whose Users are logins (the User controller ignores the others).
    pub identities: Identities,
    /// Values of the Secrets objects reference, read by name (every Secret read goes here).
    pub secrets: Arc<Secrets>,
    /// The node list interval and the count-write period, and when they were computed
    /// (counting the streams clones the store's list, so not on every reconcile).
    periods: Arc<Mutex<Option<(Instant, Periods)>>>,
}

/// The node periods that follow the fleet's size.
#[derive(Clone, Copy)]
struct Periods {
    list: Duration,
    counts: Duration,
}

/// How often the node periods are computed again.
const LIST_INTERVAL_REFRESH: Duration = Duration::from_secs(10);

impl Context {
    /// The reconcilers' context over `shared`, for `panoptes run` or a test.
    pub fn new(shared: &Shared, tunables: Tunables) -> Self {
        let Shared {
            client,
            scope,
            stores,
            live,
            nodes,
            secrets,
            metrics,
        } = shared.clone();
        let events = Arc::new(crate::events::EventWriter::new(
            client.clone(),
            None,
            tunables.events,
        ));
        metrics.register(|r| events.metrics.register(r));
        super::conditions::set_missing_grace(tunables.missing_grace);
        let node_metrics = crate::flussonic::NodeMetrics::new();
        metrics.register(|r| node_metrics.register(r));
        let controller_metrics = super::metrics::ControllerMetrics::default();
        metrics.register(|r| controller_metrics.register(r));
        metrics.register(|r| stores.relists.register(r));
        // Namespaced: that namespace holds the identities. Cluster mode: the facade's default
        // namespace, until `with_identities` says otherwise.
        let identities = match &scope {
            Scope::Namespace(ns) => Identities::new(ns, &[]),
            Scope::Cluster => Identities::new("default", &[]),
        };
        Self {
            identities,
            client,
            scope,
            stores,
            events,
            metrics,
            tunables,
            live,
            nodes,
            node_metrics,
            controller_metrics,
            fleet: Arc::new(Fleet::default()),
            secrets,
            periods: Arc::default(),
        }
    }

    /// How often each node's streams are listed now ([`list_interval`]): the Streamer
    /// controller lists by it, the Stream controller waits that long for a new camera to show.
    pub(crate) fn list_interval(&self) -> Duration {
        self.periods().list
    }

    /// How long a Streamer's count-only status change waits after its last status write
    /// ([`counts_period`]).
    pub(crate) fn counts_period(&self) -> Duration {
        self.periods().counts
    }

    fn periods(&self) -> Periods {
        let mut cached = self.periods.lock().unwrap_or_else(|e| e.into_inner());
        match *cached {
            Some((at, periods)) if at.elapsed() < LIST_INTERVAL_REFRESH => periods,
            _ => {
                // Counted from the store, not the placements: the first layout waits for
                // every node's first probe, and the restart of a big fleet is when it matters.
                let streams = self.stores.streams.state().len();
                let nodes = self.stores.streamers.state().len();
                let resync = self.tunables.node_resync;
                let periods = Periods {
                    list: list_interval(resync, streams, self.tunables.node_list_budget),
                    counts: counts_period(resync, nodes, COUNT_WRITES_PER_SECOND),
                };
                *cached = Some((Instant::now(), periods));
                periods
            }
        }
    }

    /// The same context with Events reported by `instance` (the pod's name).
    pub(crate) fn with_instance(mut self, instance: Option<String>) -> Self {
        self.events = Arc::new(self.events.reporting_as(self.client.clone(), instance));
        self
    }

    /// The same context with `identities` as the namespaces whose Users are logins.
    pub(crate) fn with_identities(mut self, identities: Identities) -> Self {
        self.identities = identities;
        self
    }
}
