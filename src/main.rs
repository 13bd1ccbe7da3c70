use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use panoptes::controllers::Tunables;
use panoptes::flussonic::ProbePolicy;
use panoptes::run::{RunConfig, run};
use panoptes::state::{Scope, Shard};
use panoptes::telemetry::{LogFormat, init_logging};
use std::time::Duration;

// See Cargo.toml for why not the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Panoptes: run a Flussonic Watcher-style VMS from Kubernetes custom resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the `run` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as YAML (what `crds/` holds).
    Crd {
        /// Write one file per kind into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Read a Watcher installation (a Watcher or another Panoptes, through its admin API) and
    /// write it as resources (`--out DIR`) or apply them (`--apply`). See README, "Adopt an
    /// existing Watcher".
    Import(panoptes::import::ImportArgs),
    /// Print the facade's OpenAPI document (JSON), as served at /watcher/admin-api/v3/openapi.json.
    Openapi,
    /// Run the controllers and the facade against the current kube context.
    Run {
        /// Watch only this namespace (default: all namespaces).
        #[arg(long, env = "PANOPTES_NAMESPACE")]
        namespace: Option<String>,
        /// Listen address of /healthz, /readyz and /metrics.
        #[arg(long, env = "PANOPTES_PROBE_ADDR", default_value = "0.0.0.0:8080")]
        probe_addr: SocketAddr,
        /// Namespace for Panoptes' own objects (Watcher id claims); in a pod, its own namespace.
        #[arg(long, env = "PANOPTES_SYSTEM_NAMESPACE", default_value = "default")]
        system_namespace: String,
        /// Log format.
        #[arg(long, env = "PANOPTES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Listen address of the Watcher admin API facade.
        #[arg(long, env = "PANOPTES_API_ADDR", default_value = "0.0.0.0:8081")]
        api_addr: SocketAddr,
        /// Namespace of resources created through the facade (default: --namespace, else
        /// "default").
        #[arg(long, env = "PANOPTES_API_NAMESPACE")]
        api_namespace: Option<String>,
        /// Namespaces besides the API namespace whose Users may log in to the facade
        /// (comma-separated). By default only the API namespace holds identities: in cluster
        /// mode a User elsewhere is nobody.
        #[arg(long, env = "PANOPTES_IDENTITY_NAMESPACES", value_delimiter = ',')]
        identity_namespaces: Vec<String>,
        /// Run the reconcilers only while holding the leader Lease (in the system namespace).
        #[arg(long, env = "PANOPTES_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        /// Seconds between probes and lists of each node.
        #[arg(long, env = "PANOPTES_NODE_RESYNC_SECONDS", default_value_t = 5)]
        node_resync_seconds: u64,
        /// Milliseconds one health probe of a node may take (separate from the timeout of
        /// lists and bodies). With `--node-probe-attempts` it bounds how long a hung node
        /// stays Reachable; keep it above the slowest healthy node's answer time.
        #[arg(long, env = "PANOPTES_NODE_PROBE_TIMEOUT_MS", default_value_t = 1500)]
        node_probe_timeout_ms: u64,
        /// Probe attempts before a node is marked Unreachable.
        #[arg(long, env = "PANOPTES_NODE_PROBE_ATTEMPTS", default_value_t = 3)]
        node_probe_attempts: u32,
        /// Seconds a Stream's deletion waits for an unreachable node before leaving the copy
        /// to be collected when the node returns.
        #[arg(long, env = "PANOPTES_DELETE_GRACE_SECONDS", default_value_t = 60)]
        delete_grace_seconds: u64,
        /// Seconds a missing referenced Secret, Preset or Organization reads
        /// `Reconciling=True` before it reads `Stalled=True` (GitOps tools fail fast then).
        #[arg(
            long,
            env = "PANOPTES_MISSING_REFERENCE_GRACE_SECONDS",
            default_value_t = 60
        )]
        missing_reference_grace_seconds: u64,
        /// Reconcile only the Streams and Streamers labelled `panoptes.dev/shard=<SHARD>`,
        /// under the leader Lease `panoptes-leader-<SHARD>` (see README, "Scaling out").
        #[arg(long, env = "PANOPTES_SHARD")]
        shard: Option<String>,
        /// Run the Preset, Organization and User controllers (unsharded kinds). In a sharded
        /// installation set this on exactly one shard.
        #[arg(long, env = "PANOPTES_SHARED_CONTROLLERS", default_value_t = true, action = clap::ArgAction::Set)]
        shared_controllers: bool,
        /// URL the nodes call to authorize every play of a pushed stream (its `on_play`):
        /// the facade's `/watcher/admin-api/v3/play_auth` as the nodes reach it, e.g.
        /// `http://panoptes.panoptes-system:8081/watcher/admin-api/v3/play_auth`. Set, playback
        /// needs a shared token (`/shares`); unset, streams are pushed without `on_play`.
        #[arg(long, env = "PANOPTES_PLAY_AUTH_URL")]
        play_auth_url: Option<String>,
        /// This replica's name: the leader Lease's holder identity and the instance of the
        /// Events it reports (in a pod, from the downward API; default: host name and pid).
        #[arg(long, env = "POD_NAME")]
        pod_name: Option<String>,
        #[command(flatten)]
        facade: panoptes::run::FacadeFlags,
        /// Listen address of the peer channel between replicas (standbys read the leader's
        /// live view and count failed logins there). Used with leader election only.
        #[arg(long, env = "PANOPTES_PEER_ADDR", default_value = "0.0.0.0:8082")]
        peer_addr: SocketAddr,
        /// The peer address the leader publishes on its Lease (default: `$POD_IP:<port of
        /// --peer-addr>`, else --peer-addr).
        #[arg(long, env = "PANOPTES_PEER_ADVERTISE")]
        peer_advertise: Option<String>,
        /// Seconds the leader Lease stays valid without renewal (a dead leader is replaced
        /// within this plus --leader-renew-ms).
        #[arg(long, env = "PANOPTES_LEADER_LEASE_SECONDS", default_value_t = 15)]
        leader_lease_seconds: u64,
        /// Milliseconds between renewals of the leader Lease (and a standby's tries).
        #[arg(long, env = "PANOPTES_LEADER_RENEW_MS", default_value_t = 4000)]
        leader_renew_ms: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd { out_dir } => {
            for (file, crd) in panoptes::resources::crds() {
                let yaml = panoptes::resources::crd_yaml(&crd);
                match &out_dir {
                    None => print!("{yaml}"),
                    Some(dir) => {
                        if let Err(error) = std::fs::write(dir.join(file), yaml) {
                            eprintln!("cannot write {}: {error}", dir.join(file).display());
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Import(args) => {
            init_logging(LogFormat::Text, "warn");
            panoptes::import::run(args).await
        }
        Command::Openapi => {
            use std::io::Write as _;
            let doc = panoptes::api::openapi::build();
            let text = serde_json::to_string_pretty(&doc).expect("a JSON value always serializes");
            // A closed pipe (`| head`) is not worth a panic.
            match writeln!(std::io::stdout(), "{text}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Run {
            namespace,
            probe_addr,
            system_namespace,
            log_format,
            api_addr,
            api_namespace,
            identity_namespaces,
            leader_election,
            node_resync_seconds,
            node_probe_timeout_ms,
            node_probe_attempts,
            delete_grace_seconds,
            missing_reference_grace_seconds,
            shard,
            shared_controllers,
            play_auth_url,
            pod_name,
            facade,
            peer_addr,
            peer_advertise,
            leader_lease_seconds,
            leader_renew_ms,
        } => {
            init_logging(log_format, "info,kube=warn");
            let api_namespace = api_namespace
                .or_else(|| namespace.clone())
                .unwrap_or_else(|| "default".into());
            let scope = namespace.map_or(Scope::Cluster, Scope::Namespace);
            match run(RunConfig {
                scope,
                probe_addr,
                system_namespace: system_namespace.clone(),
                api_addr: Some(api_addr),
                api_namespace,
                identity_namespaces,
                leader_election,
                tunables: Tunables {
                    node_resync: Duration::from_secs(node_resync_seconds.max(1)),
                    delete_grace: Duration::from_secs(delete_grace_seconds),
                    missing_grace: Duration::from_secs(missing_reference_grace_seconds),
                    system_namespace,
                    probe: ProbePolicy {
                        timeout: Duration::from_millis(node_probe_timeout_ms.max(100)),
                        attempts: node_probe_attempts.max(1),
                    },
                    events: Default::default(),
                    play_auth_url: play_auth_url.filter(|u| !u.is_empty()),
                },
                shard: shard.map_or_else(Shard::all, Shard::named),
                shared_controllers,
                pod_name,
                facade,
                peer_addr: Some(peer_addr),
                peer_advertise,
                leader_lease: Duration::from_secs(leader_lease_seconds.max(1)),
                // Renewing slower than a third of the lease risks losing it to one slow call.
                leader_renew: Duration::from_millis(leader_renew_ms.max(100))
                    .min(Duration::from_secs(leader_lease_seconds.max(1)) / 3),
            })
            .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "panoptes stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks of every flag (duplicate names, env clashes, defaults
    /// that do not parse) fail here instead of at a user's start-up.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
