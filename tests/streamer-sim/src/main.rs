//! `streamer-sim`: starts N simulated Flussonic Media Server nodes and a control endpoint.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use streamer_sim::{Behaviour, Cluster, ClusterOptions, Faults, NodeOptions};

const EXAMPLES: &str = r#"THIS IS A SIMULATOR (test double) of the Flussonic Media Server node API v3, not the product.
Every response carries `Server: streamer-sim (SIMULATOR of Flussonic Media Server)`.

STARTING N NODES
  streamer-sim --nodes 3 --base-port 8080 --login flussonic --password 'letmein!'
    node i listens on 127.0.0.1:(8080+i), hostname sim-node-i, API under /streamer/api/v3
    (also /flussonic/api/v3); the cluster control endpoint listens on --control-port (8079).

  curl -u flussonic:'letmein!' http://127.0.0.1:8080/streamer/api/v3/config/stats
  curl -u flussonic:'letmein!' -X PUT http://127.0.0.1:8080/streamer/api/v3/streams/cam1 \
       -d '{"$reset":true,"name":"cam1","static":true,"inputs":[{"url":"fake://cam1"}]}'
  curl -u flussonic:'letmein!' 'http://127.0.0.1:8080/streamer/api/v3/streams?limit=10&select=name,stats.alive'

  Credentials may come from the environment instead of the command line (which `ps` shows):
  STREAMER_SIM_LOGIN, STREAMER_SIM_PASSWORD, STREAMER_SIM_CLUSTER_KEY.

  Auth: Basic edit_auth (write) or view_auth (read-only: writes get 403), `Bearer base64(login:pass)`,
  `Bearer <--token>`, `Cluster <ts>:<hex sha1("<ts>:<cluster key>")>`; none/wrong -> 401.
  Inputs matching --healthy-url (default fake://*) go alive after the start delay; others retry forever.

CONTROL ENDPOINT (never part of the node API)
  Cluster port: http://127.0.0.1:8079/_sim/nodes/{index|hostname}/...   list: GET /_sim/nodes
  Each node's own port also serves /_sim/... for itself (but cannot bring itself back up).
  N=http://127.0.0.1:8079/_sim/nodes/0

  state, counters:   curl $N/state        curl $N/counters        curl -X DELETE $N/counters
  latency:           curl -X PUT $N/faults -d '{"latency_ms":300,"latency_jitter_ms":100}'
  hang:              curl -X PUT $N/faults -d '{"hang":true}'
  5xx rate:          curl -X PUT $N/faults -d '{"error_rate":0.3,"error_status":0}'   (0 = 500/502/503)
  next N fail:       curl -X PUT $N/faults -d '{"fail_next":3,"fail_next_status":502}'
  only one endpoint: curl -X PUT $N/faults -d '{"latency_ms":500,"path_prefix":"/streams"}'
  non-JSON errors:   curl -X PUT $N/faults -d '{"error_body":"html"}'          (json|text|html)
  truncated body:    curl -X PUT $N/faults -d '{"truncate_next":2}'
  slow accept:       curl -X PUT $N/faults -d '{"max_concurrency":1,"latency_ms":200}'
  clock skew:        curl -X PUT $N/faults -d '{"clock_skew_ms":300000}'
  clear faults:      curl -X DELETE $N/faults
  down (refuse):     curl -X POST $N/down          up again: curl -X POST $N/up
  restart:           curl -X POST $N/restart       (runtime lost, disk kept, new id, `starting` for a while)
  broken config:     curl -X POST $N/restart -d '{"broken_config":{"error":"bad_url","line":3,"col":5,"path":["streams",0],"detail":"bad url"}}'
                     curl -X POST $N/fix_config
  human drift:       curl -X PUT $N/drift/streams/cam1 -d '{"title":"edited by hand"}'
                     curl -X DELETE $N/drift/streams/cam1
                     curl -X PUT $N/drift/config -d '{"loglevel":"debug"}'
  foreign stream:    curl -X POST $N/foreign/published1 -d '{"named_by":"user"}'   (or "remote")
  viewers:           curl -X POST $N/play/cam1 -d '{"clients":5}'      (negative removes; starts on-demand streams)
  input silent:      curl -X POST $N/silence/cam1 -d '{"silent":true}'
  credentials:       curl -X PUT $N/auth -d '{"edit_auth":{"login":"admin","password":"new"},"tokens":["t1"]}'
                     curl -X PUT $N/auth -d '{"api_allowed_from":["10.0.0.0/8"]}'
  config_external:   curl -X PUT $N/drift/config -d '{"config_external":"http://backend/streams"}'
  behaviour (§7):    curl -X PUT $N/behaviour -d '{"delete_unknown_status":200,"raw_slash_names":false,"array_merge":"by_index"}'
  advance the clock: curl -X POST http://127.0.0.1:8079/_sim/clock/advance -d '{"ms":5000}'   (all nodes)
  stored config:     curl $N/disk
"#;

/// SIMULATOR of Flussonic Media Server nodes (streamer API v3) for tests and benchmarks.
#[derive(Parser, Debug)]
#[command(name = "streamer-sim", version, after_help = EXAMPLES)]
struct Args {
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Port of node 0; node i listens on base-port + i.
    #[arg(long, default_value_t = 8080)]
    base_port: u16,
    /// Listen address (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port of the cluster control endpoint (/_sim/nodes/...).
    #[arg(long, default_value_t = 8079)]
    control_port: u16,
    /// Node i is called <prefix><i>.
    #[arg(long, default_value = "sim-node-")]
    hostname_prefix: String,
    /// edit_auth login.
    #[arg(long, env = "STREAMER_SIM_LOGIN", default_value = "flussonic")]
    login: String,
    /// edit_auth password.
    #[arg(
        long,
        env = "STREAMER_SIM_PASSWORD",
        hide_env_values = true,
        default_value = "letmein!"
    )]
    password: String,
    /// view_auth login (read-only API).
    #[arg(long, default_value = "viewer")]
    view_login: String,
    /// view_auth password.
    #[arg(long, default_value = "viewonly")]
    view_password: String,
    /// cluster_key (Cluster auth scheme).
    #[arg(
        long,
        env = "STREAMER_SIM_CLUSTER_KEY",
        hide_env_values = true,
        default_value = "sim-cluster-key"
    )]
    cluster_key: String,
    /// API token accepted as `Bearer <token>` (repeatable).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// No credentials at all: the API is open.
    #[arg(long)]
    no_auth: bool,
    /// server_version reported.
    #[arg(long, default_value = "25.03-sim")]
    server_version: String,
    /// Input URL pattern the simulator can reach (`*` wildcard; repeatable).
    #[arg(long = "healthy-url", default_values_t = vec!["fake://*".to_string()])]
    healthy_urls: Vec<String>,
    /// Minimum delay before a reachable stream runs, ms.
    #[arg(long, default_value_t = 1000)]
    start_delay_min_ms: u64,
    /// Maximum delay before a reachable stream runs, ms.
    #[arg(long, default_value_t = 2000)]
    start_delay_max_ms: u64,
    /// How long a (re)started node reports `starting`, ms.
    #[arg(long, default_value_t = 500)]
    starting_ms: u64,
    /// Reconnect interval of unreachable inputs, ms.
    #[arg(long, default_value_t = 1000)]
    retry_interval_ms: u64,
    /// Reject a raw `/` inside stream names (only `%2F` accepted).
    #[arg(long)]
    strict_slash: bool,
    /// Status of DELETE on an unknown stream (404 or 200).
    #[arg(long, default_value_t = 404)]
    delete_unknown_status: u16,
    /// Refuse creating more streams than this per node (400).
    #[arg(long)]
    max_streams: Option<usize>,
    /// Initial fault on every node: added latency, ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Initial fault on every node: fraction of requests answered 500/502/503.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Initial fault on every node: slow accept (requests served at once).
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&a.log))
        .init();
    let behaviour = Behaviour {
        raw_slash_names: !a.strict_slash,
        delete_unknown_status: a.delete_unknown_status,
        starting_ms: a.starting_ms,
        start_delay_min_ms: a.start_delay_min_ms,
        start_delay_max_ms: a.start_delay_max_ms,
        retry_interval_ms: a.retry_interval_ms,
        healthy_urls: a.healthy_urls.clone(),
        max_streams: a.max_streams,
        ..Behaviour::default()
    };
    let node = NodeOptions {
        edit_auth: (!a.no_auth).then(|| (a.login.clone(), a.password.clone())),
        view_auth: (!a.no_auth).then(|| (a.view_login.clone(), a.view_password.clone())),
        cluster_key: (!a.no_auth).then(|| a.cluster_key.clone()),
        tokens: a.tokens.clone(),
        server_version: a.server_version.clone(),
        behaviour,
    };
    let opts = ClusterOptions {
        nodes: a.nodes,
        base_port: a.base_port,
        bind: a.bind,
        hostname_prefix: a.hostname_prefix.clone(),
        node,
    };
    let mut cluster = Cluster::start_with(opts).await?;
    let faults = Faults {
        latency_ms: a.latency_ms,
        error_rate: a.error_rate,
        max_concurrency: a.max_concurrency,
        ..Faults::default()
    };
    for n in cluster.nodes() {
        n.set_faults(faults.clone());
    }
    let control = cluster
        .serve_control(SocketAddr::new(a.bind, a.control_port))
        .await?;
    println!(
        "streamer-sim: SIMULATOR of Flussonic Media Server, {} node(s)",
        cluster.nodes().len()
    );
    for n in cluster.nodes() {
        println!("  {}  {}", n.hostname(), n.api_url());
    }
    println!("  control: http://{control}/_sim/nodes   (Ctrl-C to stop)");
    tokio::signal::ctrl_c().await?;
    cluster.shutdown().await;
    Ok(())
}
