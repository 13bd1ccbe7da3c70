//! Many simulated nodes in one process, each on its own loopback port, and the handle tests
//! drive them with ([`SimNode`]): faults, restarts, hand edits, counters.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use axum::{Json, extract::State};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::clock::SimClock;
use crate::control::{self, Ctl};
use crate::error::ApiError;
use crate::faults::{Counters, Faults};
use crate::net::bind;
use crate::node::Node;
use crate::options::{Behaviour, NodeOptions};

/// Nodes of one process, for peer stats.
#[derive(Debug, Default)]
pub struct Registry {
    nodes: RwLock<Vec<Weak<Node>>>,
}

impl Registry {
    fn add(&self, node: &Arc<Node>) {
        self.nodes
            .write()
            .expect("registry")
            .push(Arc::downgrade(node));
    }

    /// A node by hostname or `host:port`.
    pub fn find(&self, key: &str) -> Option<Arc<Node>> {
        let port = key
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        self.nodes
            .read()
            .expect("registry")
            .iter()
            .filter_map(Weak::upgrade)
            .find(|n| {
                n.hostname == key
                    || n.addr.to_string() == key
                    || (port == Some(n.addr.port())
                        && (key.starts_with("localhost:")
                            || key.starts_with("127.0.0.1:")
                            || key.starts_with(&format!("{}:", n.hostname))))
            })
    }
}

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Port of node 0 (node i listens on base_port + i); 0 = any free port per node.
    pub base_port: u16,
    /// Listen address.
    pub bind: IpAddr,
    /// Node i is called `{hostname_prefix}{i}`.
    pub hostname_prefix: String,
    /// Credentials and switches every node starts with.
    pub node: NodeOptions,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 1,
            base_port: 0,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            hostname_prefix: "sim-node-".into(),
            node: NodeOptions::default(),
        }
    }
}

/// Simulated nodes running in this process. Dropping it stops them.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<SimNode>,
    clock: SimClock,
    registry: Arc<Registry>,
    opts: ClusterOptions,
    control: Option<JoinHandle<()>>,
}

impl Cluster {
    /// Starts `n` nodes on free loopback ports with the default credentials
    /// (`flussonic` / `letmein!`, view `viewer` / `viewonly`, cluster key `sim-cluster-key`).
    pub async fn start(n: usize) -> io::Result<Self> {
        Self::start_with(ClusterOptions {
            nodes: n,
            ..ClusterOptions::default()
        })
        .await
    }

    /// Starts nodes as described.
    pub async fn start_with(opts: ClusterOptions) -> io::Result<Self> {
        let mut cluster = Self {
            nodes: Vec::new(),
            clock: SimClock::default(),
            registry: Arc::new(Registry::default()),
            opts: opts.clone(),
            control: None,
        };
        for _ in 0..opts.nodes {
            cluster.add_node(opts.node.clone()).await?;
        }
        Ok(cluster)
    }

    /// Adds one more node.
    pub async fn add_node(&mut self, node_opts: NodeOptions) -> io::Result<SimNode> {
        let i = self.nodes.len();
        let port = if self.opts.base_port == 0 {
            0
        } else {
            self.opts.base_port + i as u16
        };
        let listener = bind(SocketAddr::new(self.opts.bind, port))?;
        let addr = listener.local_addr()?;
        let node = Arc::new(Node::new(
            format!("{}{i}", self.opts.hostname_prefix),
            addr,
            &node_opts,
            self.clock.clone(),
            Arc::downgrade(&self.registry),
        ));
        self.registry.add(&node);
        node.serve_on(listener).await;
        let handle = SimNode(node);
        self.nodes.push(handle.clone());
        Ok(handle)
    }

    /// All nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// The shared clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Advances simulated time on every node.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The cluster control API: `/_sim/nodes`, `/_sim/nodes/{index|hostname}/...`,
    /// `/_sim/clock/advance`.
    pub fn control_router(&self) -> Router {
        let mut r = Router::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let ctl = Ctl {
                node: n.0.clone(),
                local: false,
            };
            r = r
                .nest(&format!("/_sim/nodes/{i}"), control::router(ctl.clone()))
                .nest(
                    &format!("/_sim/nodes/{}", n.hostname()),
                    control::router(ctl),
                );
        }
        let nodes: Vec<Arc<Node>> = self.nodes.iter().map(|n| n.0.clone()).collect();
        r.route("/_sim/nodes", get(list_nodes).with_state(nodes))
            .route(
                "/_sim/clock/advance",
                post(advance).with_state(self.clock.clone()),
            )
            .fallback(crate::faults::not_found)
            .layer(axum::middleware::map_response(crate::faults::server_header))
    }

    /// Serves [`Cluster::control_router`] on `addr` until the cluster is dropped.
    pub async fn serve_control(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let listener = bind(addr)?;
        let local = listener.local_addr()?;
        let router = self.control_router();
        self.control = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        }));
        Ok(local)
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        for n in &self.nodes {
            n.0.go_down().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(c) = self.control.take() {
            c.abort();
        }
        for n in &self.nodes {
            n.0.up.store(false, std::sync::atomic::Ordering::SeqCst);
            if let Ok(mut t) = n.0.accept_task.try_lock()
                && let Some(t) = t.take()
            {
                t.abort();
            }
        }
    }
}

async fn list_nodes(State(nodes): State<Vec<Arc<Node>>>) -> Json<Value> {
    Json(
        json!({"nodes": nodes.iter().enumerate().map(|(i, n)| json!({"index": i, "hostname": n.hostname, "base_url": format!("http://{}", n.addr), "up": n.is_up()})).collect::<Vec<_>>()}),
    )
}

async fn advance(State(clock): State<SimClock>, body: axum::body::Bytes) -> Json<Value> {
    let ms = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ms").and_then(Value::as_u64))
        .unwrap_or(0);
    clock.advance(Duration::from_millis(ms));
    Json(json!({"offset_ms": clock.offset().as_millis() as u64}))
}

/// Handle to one simulated node.
#[derive(Clone, Debug)]
pub struct SimNode(pub(crate) Arc<Node>);

impl SimNode {
    /// Hostname the node reports (`ServerStats.hostname`).
    pub fn hostname(&self) -> &str {
        &self.0.hostname
    }

    /// Listen address.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Firmware images the node received, oldest first (simulator assumption).
    pub fn firmware_uploads(&self) -> Vec<crate::firmware::FirmwareUpload> {
        self.0
            .firmware
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `http://127.0.0.1:<port>`: the Streamer's API URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// `<base_url>/streamer/api/v3`.
    pub fn api_url(&self) -> String {
        format!("{}/streamer/api/v3", self.base_url())
    }

    /// Persistent `server_id`.
    pub fn server_id(&self) -> String {
        self.0.server_id.clone()
    }

    /// Per-boot instance id (`ServerStats.id`).
    pub fn instance_id(&self) -> String {
        self.0.lock().rt.id.clone()
    }

    /// `config_version` as `(boot time s, revision)`.
    pub fn config_version(&self) -> (i64, i64) {
        let st = self.0.lock();
        (st.rt.started_at / 1000, st.rt.rev)
    }

    /// `ServerStats` as the node would answer now.
    pub fn server_stats(&self) -> Value {
        let now = self.0.now();
        let st = self.0.lock();
        self.0.server_stats(&st, now)
    }

    /// Whether it accepts connections.
    pub fn is_up(&self) -> bool {
        self.0.is_up()
    }

    // ---- faults -----------------------------------------------------------------------

    /// Current fault switches.
    pub fn faults(&self) -> Faults {
        self.0.faults.lock().expect("faults").clone()
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, f: Faults) {
        *self.0.faults.lock().expect("faults") = f;
    }

    /// Edits the fault switches.
    pub fn update_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.0.faults.lock().expect("faults"));
    }

    /// No faults.
    pub fn clear_faults(&self) {
        self.set_faults(Faults::default());
    }

    /// Fixed added latency per request.
    pub fn set_latency(&self, d: Duration) {
        self.update_faults(|f| f.latency_ms = d.as_millis() as u64);
    }

    /// The next `n` requests answer `status` (5xx).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.update_faults(|f| {
            f.fail_next = n;
            f.fail_next_status = status;
        });
    }

    /// A fraction of requests answer `status` (0 = random 500/502/503).
    pub fn set_error_rate(&self, rate: f64, status: u16) {
        self.update_faults(|f| {
            f.error_rate = rate;
            f.error_status = status;
        });
    }

    /// Slow accept: at most `n` requests served at once.
    pub fn set_max_concurrency(&self, n: Option<usize>) {
        self.update_faults(|f| f.max_concurrency = n);
    }

    /// Requests hang (never answered).
    pub fn set_hang(&self, on: bool) {
        self.update_faults(|f| f.hang = on);
    }

    /// Current behaviour switches.
    pub fn behaviour(&self) -> Behaviour {
        self.0.lock().beh.clone()
    }

    /// Edits the behaviour switches.
    pub fn update_behaviour(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.0.lock().beh);
    }

    /// Refuse connections (listener closed, open connections dropped).
    pub async fn down(&self) {
        self.0.go_down().await;
    }

    /// Accept connections again on the same port.
    pub async fn up(&self) -> io::Result<()> {
        self.0.go_up().await
    }

    /// Restart: runtime lost (new id, uptime 0, `starting` for a while), disk config kept.
    pub async fn restart(&self) -> io::Result<()> {
        self.0.restart(None).await
    }

    /// Restart into a broken config: `streamer_status: broken_config` with this `config_error`.
    pub async fn restart_broken(&self, config_error: Value) -> io::Result<()> {
        self.0.restart(Some(config_error)).await
    }

    // ---- a human on the node ----------------------------------------------------------

    /// Edits (merge patch) or creates a stream by hand; bumps `config_version`.
    pub fn drift_stream(&self, name: &str, patch: Value) -> Result<(), ApiError> {
        self.0.drift_stream(name, &patch)
    }

    /// Deletes a stream by hand.
    pub fn drift_delete_stream(&self, name: &str) -> bool {
        self.0.drift_delete_stream(name)
    }

    /// Edits the server config by hand (merge patch).
    pub fn drift_config(&self, patch: Value) {
        self.0.drift_config(&patch);
    }

    /// A runtime-only stream: `named_by` `user` (published) or `remote`.
    pub fn add_foreign_stream(
        &self,
        name: &str,
        named_by: &str,
        config: Value,
    ) -> Result<(), ApiError> {
        self.0.add_foreign(name, named_by, &config)
    }

    /// Adds (negative: removes) viewers; starts on-demand streams.
    pub fn play(&self, name: &str, clients: i64) -> Result<(), ApiError> {
        self.0.play(name, clients)
    }

    /// The input goes silent (or recovers).
    pub fn silence(&self, name: &str, silent: bool) -> Result<(), ApiError> {
        self.0.silence(name, silent)
    }

    /// Rotates `edit_auth`.
    pub fn set_edit_auth(&self, login: &str, password: &str) {
        self.drift_config(json!({"edit_auth": {"login": login, "password": password}}));
    }

    /// Sets (or removes) `view_auth`.
    pub fn set_view_auth(&self, creds: Option<(&str, &str)>) {
        self.drift_config(
            json!({"view_auth": creds.map(|(l, p)| json!({"login": l, "password": p}))}),
        );
    }

    /// Sets (or removes) `cluster_key`.
    pub fn set_cluster_key(&self, key: Option<&str>) {
        self.drift_config(json!({"cluster_key": key}));
    }

    /// API tokens accepted as `Bearer`.
    pub fn set_tokens(&self, tokens: &[&str]) {
        self.0.lock().tokens = tokens.iter().map(|t| t.to_string()).collect();
    }

    /// `api_allowed_from` (empty = anyone).
    pub fn set_api_allowed_from(&self, cidrs: &[&str]) {
        self.drift_config(
            json!({"api_allowed_from": if cidrs.is_empty() { Value::Null } else { json!(cidrs) }}),
        );
    }

    /// Sets (or clears) `config_external`.
    pub fn set_config_external(&self, url: Option<&str>) {
        self.drift_config(json!({"config_external": url}));
    }

    // ---- inspection -------------------------------------------------------------------

    /// Request counters of the node API.
    pub fn counters(&self) -> Counters {
        self.0.counters.lock().expect("counters").clone()
    }

    /// Node API requests received since the last reset.
    pub fn requests(&self) -> u64 {
        self.counters().total
    }

    /// Requests of one route, e.g. `"PUT /streams/{name}"`.
    pub fn route_count(&self, route: &str) -> u64 {
        self.counters().by_route.get(route).copied().unwrap_or(0)
    }

    /// Requests on one stream, e.g. `("DELETE", "cam1")`.
    pub fn stream_count(&self, method: &str, name: &str) -> u64 {
        let key = format!("{method} {name}");
        self.counters().by_stream.get(&key).copied().unwrap_or(0)
    }

    /// Restarts of one stream (see [`Counters::restarts`]).
    pub fn restarts(&self, name: &str) -> u64 {
        self.counters().restarts.get(name).copied().unwrap_or(0)
    }

    /// Restarts of every stream of the node.
    pub fn restarts_total(&self) -> u64 {
        self.counters().restarts.values().sum()
    }

    /// When each stream write was stored since the counters were last reset (see
    /// [`Node::store_times`](crate::node::Node)), in order.
    pub fn store_times(&self) -> Vec<std::time::Instant> {
        self.0.store_times.lock().expect("store times").clone()
    }

    /// Forgets the store times (the counters stay).
    pub fn clear_store_times(&self) {
        self.0.store_times.lock().expect("store times").clear();
    }

    /// Zeroes the counters and forgets the store times.
    pub fn reset_counters(&self) {
        self.clear_store_times();
        let mut c = self.0.counters.lock().expect("counters");
        let in_flight = c.in_flight;
        *c = Counters {
            in_flight,
            ..Counters::default()
        };
    }

    /// What is stored on disk for a stream (`config_on_disk`).
    pub fn stored_stream(&self, name: &str) -> Option<Value> {
        self.0.lock().disk.stream(name).map(|s| s.config.clone())
    }

    /// Number of configured streams (a cheap poll: no name is copied).
    pub fn stored_count(&self) -> usize {
        self.0.lock().disk.count()
    }

    /// Names of the configured streams.
    pub fn stream_names(&self) -> Vec<String> {
        self.0
            .lock()
            .disk
            .streams()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The effective stream as `GET /streams/{name}` would answer.
    pub fn stream(&self, name: &str) -> Option<Value> {
        self.0.stream_get(name).ok()
    }

    /// A viewer at `ip` opens `path` (`<stream>/index.m3u8`, `<stream>/index-<from>-<dur>.m3u8`,
    /// `<stream>/archive-<from>-<dur>.mp4`, …) with `?token=`: like Flussonic, the node asks
    /// the stream's `on_play` backend (if it has one) and serves the play only on a 200. Each
    /// call is a new session (`request_type=new_session`).
    pub async fn viewer_play(
        &self,
        path: &str,
        token: Option<&str>,
        ip: &str,
    ) -> crate::PlayOutcome {
        use crate::PlayOutcome;
        let Some((name, media_request, proto)) = crate::play::media_request(path) else {
            return PlayOutcome::NoStream;
        };
        let Some(config) = self.stored_stream(&name) else {
            return PlayOutcome::NoStream;
        };
        let Some(url) = config
            .get("on_play")
            .and_then(|p| p.get("url"))
            .and_then(|u| u.as_str())
            .filter(|u| !u.is_empty())
            .map(str::to_string)
        else {
            return PlayOutcome::Allowed;
        };
        let session = uuid::Uuid::new_v4().to_string();
        let url = crate::play::backend_url(
            &url,
            &[
                ("name", &name),
                ("token", token.unwrap_or("")),
                ("ip", ip),
                ("proto", proto),
                ("type", proto),
                ("request_type", "new_session"),
                ("request_number", "1"),
                ("session_id", &session),
                ("media_request", &media_request),
            ],
        );
        match crate::play::http_get_status(&url).await {
            Some(200) => PlayOutcome::Allowed,
            status => PlayOutcome::Denied(status),
        }
    }

    /// The stored server config.
    pub fn server_config(&self) -> Value {
        Value::Object(self.0.lock().disk.server.clone())
    }

    /// The control state as JSON (same as `GET /_sim/state`).
    pub fn state(&self) -> Value {
        control::state_of(&self.0)
    }
}
