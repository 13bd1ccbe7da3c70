//! `panoptes run`: watches, controllers and servers under one shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::controllers::leader::{Elector, LeaderConfig, LeaderMetrics};
use crate::controllers::{self, Context, Tunables};
use crate::domain::instance::{DEFAULT_INSTANCE, Instance};
use crate::state::{Scope, Shard, Shared};
use crate::telemetry::Metrics;

/// How long shutdown waits for in-flight reconciles.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Settings of `panoptes run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Namespaces to watch.
    pub scope: Scope,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub probe_addr: SocketAddr,
    /// Namespace of Panoptes' own objects (id claims, leader Lease).
    pub system_namespace: String,
    /// The installation the names of those objects derive from.
    pub instance: Instance,
    /// Address of the Watcher admin API facade (None: no facade).
    pub api_addr: Option<SocketAddr>,
    /// Namespace of resources created through the facade.
    pub api_namespace: String,
    /// Namespaces besides `api_namespace` whose Users are logins (cluster mode; empty: only
    /// the facade's namespace holds identities).
    pub identity_namespaces: Vec<String>,
    /// Run the reconcilers only while holding the leader Lease.
    pub leader_election: bool,
    /// Reconciler tunables (the system namespace is taken from `system_namespace`).
    pub tunables: Tunables,
    /// The Streams and Streamers this instance reconciles.
    pub shard: Shard,
    /// Run the Preset, Organization and User controllers. They are not sharded: in a sharded
    /// installation exactly one shard runs them.
    pub shared_controllers: bool,
    /// This replica's name (`POD_NAME`), read once by clap: the leader Lease holder and the
    /// Events' reporting instance.
    pub pod_name: Option<String>,
    /// The facade's trusted proxies and caps.
    pub facade: FacadeFlags,
    /// Address of the peer channel between replicas (None: none; standbys then serve empty
    /// live stats). Used with leader election only.
    pub peer_addr: Option<SocketAddr>,
    /// The peer address published on the Lease (default: `POD_IP`:port, else `peer_addr`).
    pub peer_advertise: Option<String>,
    /// How long the leader Lease stays valid without renewal.
    pub leader_lease: std::time::Duration,
    /// How often the leader renews it.
    pub leader_renew: std::time::Duration,
    /// The version this replica reports (`panoptes_build_info`, the leader Lease).
    pub version: String,
}

/// `panoptes run`'s flags, one group per concern. [`RunArgs::config`] is the one place they
/// become a [`RunConfig`].
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// What this instance watches and reconciles.
    #[command(flatten)]
    pub scope: ScopeFlags,
    /// Where it listens.
    #[command(flatten)]
    pub listen: ListenFlags,
    /// Leader election.
    #[command(flatten)]
    pub leader: LeaderFlags,
    /// How it treats the streamer nodes.
    #[command(flatten)]
    pub nodes: NodeFlags,
    /// The facade's exposure to clients.
    #[command(flatten)]
    pub facade: FacadeFlags,
    /// Log format.
    #[arg(long, env = "PANOPTES_LOG_FORMAT", value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,
    /// The version this replica reports in `panoptes_build_info` and on the leader Lease
    /// (default: the build's own). Hidden, for tests: a rolling-upgrade test runs one build
    /// as an "old" and a "new" replica and tells them apart by what they report. It changes
    /// nothing else.
    #[arg(long, env = "PANOPTES_REPORTED_VERSION", hide = true)]
    pub reported_version: Option<String>,
}

/// What an instance watches and reconciles.
#[derive(Clone, Debug, clap::Args)]
pub struct ScopeFlags {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "PANOPTES_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace for Panoptes' own objects (Watcher id claims); in a pod, its own namespace.
    #[arg(long, env = "PANOPTES_SYSTEM_NAMESPACE", default_value = "default")]
    pub system_namespace: String,
    /// The installation's name (the chart's fullname): the names of its objects in the
    /// system namespace derive from it (`<INSTANCE>-jwt`, `<INSTANCE>-settings`,
    /// `<INSTANCE>-peer-key`, Leases `<INSTANCE>-leader[-<SHARD>]` and
    /// `<INSTANCE>-id-<kind>-<id>`), so two installations share a system namespace. Its
    /// Watcher ids are its own. Shards of one installation name the same instance.
    #[arg(long, env = "PANOPTES_INSTANCE", default_value = DEFAULT_INSTANCE)]
    pub instance: Instance,
    /// Namespace of resources created through the facade (default: --namespace, else
    /// "default").
    #[arg(long, env = "PANOPTES_API_NAMESPACE")]
    pub api_namespace: Option<String>,
    /// Namespaces besides the API namespace whose Users may log in to the facade
    /// (comma-separated). By default only the API namespace holds identities: in cluster
    /// mode a User elsewhere is nobody.
    #[arg(long, env = "PANOPTES_IDENTITY_NAMESPACES", value_delimiter = ',')]
    pub identity_namespaces: Vec<String>,
    /// Reconcile only the Streams and Streamers labelled `panoptes.dev/shard=<SHARD>`,
    /// under the leader Lease `<INSTANCE>-leader-<SHARD>` (see README, "Scaling out").
    #[arg(long, env = "PANOPTES_SHARD")]
    pub shard: Option<String>,
    /// Run the Preset, Organization and User controllers (unsharded kinds). In a sharded
    /// installation set this on exactly one shard.
    #[arg(long, env = "PANOPTES_SHARED_CONTROLLERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub shared_controllers: bool,
}

/// Listen addresses.
#[derive(Clone, Debug, clap::Args)]
pub struct ListenFlags {
    /// Listen address of /healthz, /readyz and /metrics.
    #[arg(long, env = "PANOPTES_PROBE_ADDR", default_value = "0.0.0.0:8080")]
    pub probe_addr: SocketAddr,
    /// Listen address of the Watcher admin API facade.
    #[arg(long, env = "PANOPTES_API_ADDR", default_value = "0.0.0.0:8081")]
    pub api_addr: SocketAddr,
    /// Listen address of the peer channel between replicas (standbys read the leader's
    /// live view and count failed logins there). Used with leader election only.
    #[arg(long, env = "PANOPTES_PEER_ADDR", default_value = "0.0.0.0:8082")]
    pub peer_addr: SocketAddr,
    /// The peer address the leader publishes on its Lease (default: `$POD_IP:<port of
    /// --peer-addr>`, else --peer-addr).
    #[arg(long, env = "PANOPTES_PEER_ADVERTISE")]
    pub peer_advertise: Option<String>,
}

/// Leader election.
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderFlags {
    /// Run the reconcilers only while holding the leader Lease (in the system namespace).
    #[arg(long, env = "PANOPTES_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Seconds the leader Lease stays valid without renewal (a dead leader is replaced
    /// within this plus --leader-renew-ms).
    #[arg(long, env = "PANOPTES_LEADER_LEASE_SECONDS", default_value_t = 15)]
    pub leader_lease_seconds: u64,
    /// Milliseconds between renewals of the leader Lease (and a standby's tries).
    #[arg(long, env = "PANOPTES_LEADER_RENEW_MS", default_value_t = 4000)]
    pub leader_renew_ms: u64,
    /// This replica's name: the leader Lease's holder identity and the instance of the
    /// Events it reports (in a pod, from the downward API; default: host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
}

/// How the reconcilers treat the streamer nodes.
#[derive(Clone, Debug, clap::Args)]
pub struct NodeFlags {
    /// Seconds between probes and lists of each node.
    #[arg(long, env = "PANOPTES_NODE_RESYNC_SECONDS", default_value_t = 5)]
    pub node_resync_seconds: u64,
    /// Streams listed per second across all nodes at most: past that many streams in the
    /// fleet (25,000 at the defaults), each node is listed less often than it is probed
    /// (a stream's liveness and drift repair follow its node's list; dead nodes are still
    /// detected by the probes).
    #[arg(long, env = "PANOPTES_NODE_LIST_BUDGET", default_value_t = 5_000)]
    pub node_list_budget: u32,
    /// Milliseconds one health probe of a node may take (separate from the timeout of
    /// lists and bodies). With `--node-probe-attempts` it bounds how long a hung node
    /// stays Reachable; keep it above the slowest healthy node's answer time.
    #[arg(long, env = "PANOPTES_NODE_PROBE_TIMEOUT_MS", default_value_t = 1500)]
    pub node_probe_timeout_ms: u64,
    /// Probe attempts before a node is marked Unreachable.
    #[arg(long, env = "PANOPTES_NODE_PROBE_ATTEMPTS", default_value_t = 3)]
    pub node_probe_attempts: u32,
    /// Seconds a Stream's deletion waits for an unreachable node before leaving the copy
    /// to be collected when the node returns.
    #[arg(long, env = "PANOPTES_DELETE_GRACE_SECONDS", default_value_t = 60)]
    pub delete_grace_seconds: u64,
    /// Seconds a missing referenced Secret, Preset or Organization reads
    /// `Reconciling=True` before it reads `Stalled=True` (GitOps tools fail fast then).
    #[arg(
        long,
        env = "PANOPTES_MISSING_REFERENCE_GRACE_SECONDS",
        default_value_t = 60
    )]
    pub missing_reference_grace_seconds: u64,
    /// URL the nodes call to authorize every play of a pushed stream (its `on_play`):
    /// the facade's `/watcher/admin-api/v3/play_auth` as the nodes reach it, e.g.
    /// `http://panoptes.panoptes-system:8081/watcher/admin-api/v3/play_auth`. Set, playback
    /// needs a shared token (`/shares`); unset, streams are pushed without `on_play`.
    #[arg(long, env = "PANOPTES_PLAY_AUTH_URL")]
    pub play_auth_url: Option<String>,
    /// Cameras restarting at once on one node when a preset change reaches them (a Preset's
    /// `spec.rollout.maxRestartingPerNode` overrides it).
    #[arg(long, env = "PANOPTES_ROLLOUT_PER_NODE", default_value_t = crate::controllers::context::DEFAULT_ROLLOUT_PER_NODE)]
    pub rollout_per_node: u32,
    /// Seconds between two looks at every Stream without a change (a rotated Secret the watch
    /// missed, a node copy changed between lists): one walk over all of them, spread evenly.
    #[arg(long, env = "PANOPTES_STREAM_RESYNC_SECONDS", default_value_t = 600)]
    pub stream_resync_seconds: u64,
}

impl NodeFlags {
    /// The reconcilers' tunables (floors keep a typo from busy-looping).
    fn tunables(self, system_namespace: String, instance: Instance) -> Tunables {
        Tunables {
            instance,
            node_resync: Duration::from_secs(self.node_resync_seconds.max(1)),
            node_list_budget: self.node_list_budget.max(1),
            delete_grace: Duration::from_secs(self.delete_grace_seconds),
            missing_grace: Duration::from_secs(self.missing_reference_grace_seconds),
            system_namespace,
            probe: crate::flussonic::ProbePolicy {
                timeout: Duration::from_millis(self.node_probe_timeout_ms.max(100)),
                attempts: self.node_probe_attempts.max(1),
            },
            events: Default::default(),
            play_auth_url: self.play_auth_url.filter(|u| !u.is_empty()),
            rollout_per_node: self.rollout_per_node.max(1),
            stream_resync: Duration::from_secs(self.stream_resync_seconds.max(10)),
        }
    }
}

impl RunArgs {
    /// The settings of `panoptes run` these flags give.
    pub fn config(self) -> RunConfig {
        let ScopeFlags {
            namespace,
            system_namespace,
            instance,
            api_namespace,
            identity_namespaces,
            shard,
            shared_controllers,
        } = self.scope;
        let lease = Duration::from_secs(self.leader.leader_lease_seconds.max(1));
        RunConfig {
            api_namespace: api_namespace
                .or_else(|| namespace.clone())
                .unwrap_or_else(|| "default".into()),
            scope: namespace.map_or(Scope::Cluster, Scope::Namespace),
            probe_addr: self.listen.probe_addr,
            tunables: self
                .nodes
                .tunables(system_namespace.clone(), instance.clone()),
            system_namespace,
            instance,
            api_addr: Some(self.listen.api_addr),
            identity_namespaces,
            leader_election: self.leader.leader_election,
            shard: shard.map_or_else(Shard::all, Shard::named),
            shared_controllers,
            pod_name: self.leader.pod_name,
            facade: self.facade,
            peer_addr: Some(self.listen.peer_addr),
            peer_advertise: self.listen.peer_advertise,
            leader_lease: lease,
            // Renewing slower than a third of the lease risks losing it to one slow call.
            leader_renew: Duration::from_millis(self.leader.leader_renew_ms.max(100))
                .min(lease / 3),
            version: self
                .reported_version
                .unwrap_or_else(|| crate::telemetry::VERSION.into()),
        }
    }
}

/// Flags of the facade's exposure to unauthenticated clients: who may speak for a client
/// address, and how much any request can make the process keep.
#[derive(Clone, Debug, clap::Args)]
pub struct FacadeFlags {
    /// Peers (CIDRs, comma-separated) whose X-Forwarded-For names the client for the login
    /// throttle: the ingress or load balancer in front of the facade. Default: none (the
    /// client is the peer address).
    #[arg(long, env = "PANOPTES_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Events GET /events keeps in memory (the newest of the Kubernetes Events it watches).
    #[arg(long, env = "PANOPTES_AUDIT_MAX_ENTRIES", default_value_t = crate::api::audit::CAPACITY)]
    pub audit_max_entries: usize,
    /// Bytes of the events GET /events keeps in memory.
    #[arg(long, env = "PANOPTES_AUDIT_MAX_BYTES", default_value_t = crate::api::audit::MAX_BYTES)]
    pub audit_max_bytes: usize,
    /// Entries of the failed-login table (login and client address pairs).
    #[arg(long, env = "PANOPTES_LOGIN_FAILURES_MAX_ENTRIES", default_value_t = crate::api::auth::FAILURES_MAX_ENTRIES)]
    pub login_failures_max_entries: usize,
    /// Bytes of the failed-login table.
    #[arg(long, env = "PANOPTES_LOGIN_FAILURES_MAX_BYTES", default_value_t = crate::api::auth::FAILURES_MAX_BYTES)]
    pub login_failures_max_bytes: usize,
    /// Bytes of a request's headers the facade accepts (larger: 431 in the error envelope).
    #[arg(long, env = "PANOPTES_MAX_HEADER_BYTES", default_value_t = crate::api::MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,
    /// A Secret in the facade's namespace (keys `password`, optional `username`, default
    /// `admin`) for the first admin login: at start, User `admin` is created from it unless a
    /// User of that name exists (the chart's `admin.existingSecret`).
    #[arg(long, env = "PANOPTES_ADMIN_SECRET")]
    pub admin_secret: Option<String>,
}

impl FacadeFlags {
    /// `config` with these flags applied.
    pub fn apply(&self, mut config: crate::api::ApiConfig) -> crate::api::ApiConfig {
        config.trusted_proxies = self.trusted_proxies.clone();
        config.limits = crate::api::Limits {
            audit_max_entries: self.audit_max_entries,
            audit_max_bytes: self.audit_max_bytes,
            login_failures_max_entries: self.login_failures_max_entries,
            login_failures_max_bytes: self.login_failures_max_bytes,
            max_header_bytes: self.max_header_bytes,
        };
        config
    }
}

/// Errors that stop `panoptes run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable kubeconfig or in-cluster config.
    #[error("cannot connect to Kubernetes: {0}")]
    Connect(#[source] kube::Error),
    /// The facade could not load or create its signing key.
    #[error("cannot start the facade: {0}")]
    Api(#[source] kube::Error),
    /// Another replica took the leader Lease or it could not be renewed; exiting lets the
    /// process restart as a standby.
    #[error("lost the leader Lease")]
    LostLeadership,
    /// A listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A shutdown signal shared by every task: flipped once, observed by all.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the function that triggers it.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves once shutdown was requested.
    pub async fn wait(mut self) {
        // An error means the sender is gone, which also means shutdown.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Creates User `admin` (access level admin, password from `secret`) in `namespace` unless
/// it exists: a fresh install gets a login without anyone applying a User by hand, and a User
/// someone changed since is never overwritten. Failures are logged, not fatal: the facade
/// still serves the logins that exist.
async fn first_admin(client: &Client, namespace: &str, secret: &str) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};
    let login = match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(secret)
        .await
    {
        Ok(s) => s
            .and_then(|s| s.data?.get("username").cloned())
            .and_then(|v| String::from_utf8(v.0).ok())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "admin".into()),
        Err(error) => {
            tracing::warn!(%error, secret, "cannot read the first admin's Secret");
            "admin".into()
        }
    };
    let user: crate::resources::User = match serde_json::from_value(serde_json::json!({
        "apiVersion": "panoptes.dev/v1alpha1",
        "kind": "User",
        "metadata": { "name": "admin", "namespace": namespace },
        "spec": {
            "name": login,
            "accessLevel": "admin",
            "passwordSecretRef": { "name": secret, "key": "password" },
        },
    })) {
        Ok(u) => u,
        Err(error) => {
            tracing::warn!(%error, "the first admin User does not deserialize");
            return;
        }
    };
    match Api::<crate::resources::User>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &user)
        .await
    {
        Ok(_) => tracing::info!(namespace, login, "created the first admin User `admin`"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(error) => tracing::warn!(%error, "cannot create the first admin User"),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(config: RunConfig) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Connect)?;
    let (stop, shutdown) = Shutdown::new();
    let mut watches = JoinSet::new();
    // The composition root: what the reconcilers and the facade share is built here, once,
    // and handed to each.
    let shared = Shared {
        // `panoptes_build_info` reports the version this replica says it runs.
        metrics: Metrics::reporting(&config.version),
        ..Shared::start(
            client.clone(),
            config.scope.clone(),
            config.shard.clone(),
            &mut watches,
        )
    };
    let (stores, metrics) = (shared.stores.clone(), shared.metrics.clone());

    let listener = tokio::net::TcpListener::bind(config.probe_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.probe_addr,
            source,
        })?;
    // The elector exists before the probe server: `/healthz` is its lease-loss watchdog.
    let elector = config.leader_election.then(|| {
        let mut lease = LeaderConfig::new(config.system_namespace.clone());
        if let Some(pod) = &config.pod_name {
            lease.identity = pod.clone();
        }
        // Each shard elects its own leader: shards run side by side, replicas of one shard
        // stand by for each other.
        lease.name = config.instance.leader_lease(config.shard.name());
        lease.lease_duration = config.leader_lease;
        lease.renew_every = config.leader_renew;
        lease.version = config.version.clone();
        lease.peer_address = config
            .peer_addr
            .map(|a| crate::peer::advertised(a, config.peer_advertise.as_deref()));
        Elector::new(client.clone(), lease)
    });
    // Elected replicas report leadership from the Lease; a replica without election leads
    // alone from start to shutdown.
    let alone = elector.is_none().then(LeaderMetrics::default);
    match (&elector, &alone) {
        (Some(elector), _) => metrics.register(|r| elector.metrics().register(r)),
        (None, Some(alone)) => metrics.register(|r| alone.register(r)),
        (None, None) => {}
    }
    let probes = crate::http::router(
        stores.clone(),
        metrics.clone(),
        elector.as_ref().map(Elector::status),
    );
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        tracing::info!(addr = %config.probe_addr, "serving /healthz, /readyz, /metrics");
        axum::serve(listener, probes)
            .with_graceful_shutdown(server_shutdown.wait())
            .await
    });

    let ready = stores.clone();
    tokio::spawn(async move {
        ready.wait_ready().await;
        tracing::info!("caches synced");
    });

    let tunables = Tunables {
        system_namespace: config.system_namespace.clone(),
        instance: config.instance.clone(),
        ..config.tunables.clone()
    };
    let ctx = Arc::new(
        Context::new(&shared, tunables)
            .with_identities(crate::domain::tenancy::Identities::new(
                &config.api_namespace,
                &config.identity_namespaces,
            ))
            .with_instance(config.pod_name.clone()),
    );

    // Every replica serves the facade from its own watches; only the leader reconciles. A
    // standby's live stats are a copy of the leader's, over the peer channel below.
    let mut api_server = None;
    let mut facade = None;
    if let Some(addr) = config.api_addr {
        let mut api_config = crate::api::ApiConfig::new(
            config.api_namespace.clone(),
            config.system_namespace.clone(),
        );
        api_config.identity_namespaces = config.identity_namespaces.clone();
        api_config.instance = config.instance.clone();
        api_config.events_scope = Some(config.scope.clone());
        api_config.pod_name = config.pod_name.clone();
        let api = crate::api::ApiState::new(&shared, config.facade.apply(api_config))
            .await
            .map_err(RunError::Api)?;
        metrics.register(|r| api.metrics.register(r));
        if let Some(secret) = &config.facade.admin_secret {
            first_admin(&client, &config.api_namespace, secret).await;
        }
        facade = Some(api.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        tracing::info!(%addr, "serving the Watcher admin API at {}", crate::api::BASE);
        api_server = Some(tokio::spawn(crate::api::serve(
            api,
            listener,
            shutdown.clone().wait(),
        )));
    }

    // Issue 19, the peer channel: every replica serves it; a standby mirrors the leader's
    // live view and counts failed logins at the leader until it leads itself.
    let mut mirror = None;
    if let (Some(elector), Some(addr)) = (&elector, config.peer_addr) {
        let key = crate::peer::PeerKey::load(
            &client,
            &config.system_namespace,
            &config.instance.peer_key(),
        )
        .await
        .map_err(RunError::Api)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Listen { addr, source })?;
        let app = crate::peer::router(shared.live.clone(), key.clone(), facade.clone());
        tokio::spawn(crate::peer::serve(listener, app, shutdown.clone().wait()));
        let peer = crate::peer::PeerClient::new(
            key,
            elector.leader_peer(),
            elector.status(),
            elector.peer_address().map(str::to_string),
        );
        if let Some(api) = &facade {
            api.auth.share_lockout(Arc::new(peer.clone()));
        }
        mirror = Some(tokio::spawn(peer.mirror(shared.live.clone())));
    }
    if let Some(elector) = &elector {
        tracing::info!(
            identity = elector.identity(),
            "waiting to become the leader"
        );
        tokio::select! {
            _ = elector.acquire() => {}
            _ = termination_signal() => {
                let _ = stop.send(true);
                watches.abort_all();
                let _ = server.await;
                if let Some(api) = api_server {
                    let _ = api.await;
                }
                return Ok(());
            }
        }
    }

    if let Some(alone) = &alone {
        alone.set_leading(true);
    }
    if let Some(mirror) = mirror {
        // The cache is this replica's own from now on (its probes replace the copy).
        mirror.abort();
        shared.live.set_mirror(false);
    }

    let mut reconcilers = JoinSet::new();
    controllers::spawn_all(
        &ctx,
        || shutdown.clone().wait(),
        config.shared_controllers,
        &mut reconcilers,
    );
    if config.shared_controllers {
        // Facade credentials Secrets left by a crash or a failed write (the Secrets of every
        // kind are swept once, by the shard that runs the shared controllers).
        reconcilers.spawn(controllers::credentials::run(
            ctx.clone(),
            shutdown.clone().wait(),
            controllers::credentials::SweepConfig::default(),
        ));
    }

    let lost = match &elector {
        Some(elector) => tokio::select! {
            _ = elector.hold() => true,
            _ = termination_signal() => false,
        },
        None => {
            termination_signal().await;
            false
        }
    };
    tracing::info!("shutting down");
    if let Some(alone) = &alone {
        alone.set_leading(false);
    }
    let _ = stop.send(true);
    // Controllers finish their in-flight reconciles before the watches feeding them stop.
    // In-flight reconciles finish, but a node that hangs must not hold the process past its
    // termination grace period: whatever is left after SHUTDOWN_GRACE is dropped (all of it is
    // idempotent and picked up by the next leader).
    let drain = async { while reconcilers.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("reconciles still running at shutdown; abandoning them");
        reconcilers.abort_all();
    }
    watches.abort_all();
    if let Some(elector) = &elector
        && !lost
    {
        elector.release().await;
    }
    if let Ok(Err(error)) = server.await {
        tracing::warn!(%error, "probe server stopped with an error");
    }
    if let Some(api) = api_server
        && let Ok(Err(error)) = api.await
    {
        tracing::warn!(%error, "facade stopped with an error");
    }
    if lost {
        return Err(RunError::LostLeadership);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn config(args: &[&str]) -> RunConfig {
        Cli::try_parse_from(std::iter::once("panoptes").chain(args.iter().copied()))
            .unwrap()
            .run
            .config()
    }

    #[test]
    fn flags_become_one_run_config() {
        let c = config(&[
            "--namespace",
            "video",
            "--system-namespace",
            "panoptes-system",
            "--leader-lease-seconds",
            "3",
            "--node-resync-seconds",
            "0",
            "--play-auth-url",
            "",
            "--rollout-per-node",
            "0",
        ]);
        assert_eq!(c.scope, Scope::Namespace("video".into()));
        // The facade creates objects where the operator watches unless told otherwise.
        assert_eq!(c.api_namespace, "video");
        assert_eq!(c.tunables.system_namespace, "panoptes-system");
        // Renewing slower than a third of the lease would lose it to one slow call.
        assert_eq!(c.leader_renew, Duration::from_secs(1));
        assert_eq!(c.tunables.node_resync, Duration::from_secs(1));
        assert_eq!(c.tunables.play_auth_url, None);
        assert_eq!(
            c.tunables.rollout_per_node, 1,
            "a budget of 0 would stall every rollout"
        );
        let c = config(&["--instance", "team-b-panoptes"]);
        assert_eq!(c.instance.as_str(), "team-b-panoptes");
        assert_eq!(c.tunables.instance, c.instance);
        assert!(Cli::try_parse_from(["panoptes", "--instance", "Team_B"]).is_err());
        let c = config(&[]);
        // Installs from before the flag keep their names.
        assert_eq!(c.instance, Instance::default());
        assert_eq!(c.tunables.rollout_per_node, 10);
        assert_eq!(c.scope, Scope::Cluster);
        assert_eq!(c.api_namespace, "default");
        assert_eq!(c.leader_renew, Duration::from_secs(4));
        assert!(c.leader_election && c.shared_controllers);
        assert_eq!(c.version, crate::telemetry::VERSION);
        assert_eq!(config(&["--reported-version", "old"]).version, "old");
    }
}
