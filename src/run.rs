//! `panoptes run`: watches, controllers and servers under one shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::controllers::leader::{Elector, LeaderConfig};
use crate::controllers::{self, Context, Tunables};
use crate::state::{self, Scope, Shard};
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
    /// Events kept in the facade's audit ring (GET /events).
    #[arg(long, env = "PANOPTES_AUDIT_MAX_ENTRIES", default_value_t = crate::api::audit::CAPACITY)]
    pub audit_max_entries: usize,
    /// Bytes of the events kept in the facade's audit ring.
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
    let metrics = Metrics::new();
    let (stop, shutdown) = Shutdown::new();
    let mut watches = JoinSet::new();
    let stores = state::start_sharded(
        client.clone(),
        &config.scope,
        config.shard.clone(),
        &mut watches,
    );

    let listener = tokio::net::TcpListener::bind(config.probe_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.probe_addr,
            source,
        })?;
    let probes = crate::http::router(stores.clone(), metrics.clone());
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
        ..config.tunables.clone()
    };
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            config.scope.clone(),
            stores.clone(),
            metrics.clone(),
            tunables,
        )
        .with_identities(crate::domain::tenancy::Identities::new(
            &config.api_namespace,
            &config.identity_namespaces,
        ))
        .with_instance(config.pod_name.clone()),
    );

    // Every replica serves the facade from its own watches; only the leader reconciles (a
    // standby's live stats stay empty until it leads).
    let mut api_server = None;
    if let Some(addr) = config.api_addr {
        let mut api_config = crate::api::ApiConfig::new(
            config.api_namespace.clone(),
            config.system_namespace.clone(),
        );
        api_config.identity_namespaces = config.identity_namespaces.clone();
        let api = crate::api::ApiState::new(
            client.clone(),
            stores.clone(),
            ctx.live.clone(),
            ctx.nodes.clone(),
            config.facade.apply(api_config),
        )
        .await
        .map_err(RunError::Api)?;
        metrics.register(|r| api.metrics.register(r));
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

    let elector = config.leader_election.then(|| {
        let mut lease = LeaderConfig::new(config.system_namespace.clone());
        if let Some(pod) = &config.pod_name {
            lease.identity = pod.clone();
        }
        // Each shard elects its own leader: shards run side by side, replicas of one shard
        // stand by for each other.
        if let Some(shard) = config.shard.name() {
            lease.name = format!("{}-{shard}", lease.name);
        }
        Elector::new(client.clone(), lease)
    });
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
