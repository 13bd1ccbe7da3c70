//! Scale scenario harness shared by `benches/scale.rs` (`make bench`, full size) and
//! `tests/bench_smoke.rs` (`make test`, a few seconds): a real control plane, simulated nodes
//! in this process, and the real `panoptes` binary as a child process.
//!
//! Everything is measured from outside the operator: convergence on the simulated nodes (what
//! they hold, not what statuses claim), memory from `/proc/PID/status`, API-server writes from
//! the API server's own request counters.
#![allow(dead_code)] // the smoke test uses a part of this module

pub mod facade;
pub mod operator;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use panoptes::flussonic::{
    Credentials, NodeClient, NodeClientConfig, NodeMetrics, node_stream_body,
};
use panoptes::resources::common::condition;
use panoptes::resources::wire::StreamConfigSpec;
use panoptes::resources::{Stream, Streamer};
use serde_json::{Value, json};
use streamer_sim::Cluster;

use crate::support::TestNamespace;

/// Node login of the simulated nodes (the simulator's defaults).
pub const NODE_LOGIN: (&str, &str) = ("flussonic", "letmein!");
/// Stream reconciles in flight in the operator (`CONCURRENCY` of the Stream controller); the
/// raw client gets the same budget.
pub const PUSH_CONCURRENCY: usize = 128;
/// Requests in flight per node (`NodeClientConfig::new`'s default), for both.
pub const PER_NODE_IN_FLIGHT: usize = 8;
/// Object creates in flight while applying a scenario.
pub const CREATE_CONCURRENCY: usize = 48;

/// A namespace with simulated nodes declared as Streamers.
pub struct Fleet {
    /// The namespace.
    pub ns: TestNamespace,
    /// The nodes.
    pub sim: Cluster,
}

/// Installs the chart's Stream finalizer policy as `helm install` does on Kubernetes 1.36, so
/// the scenarios see an installation as the chart makes it, and waits until it is in effect.
pub async fn install_finalizer_policy() {
    use crate::support::{helm, kubectl, repo_root, run_ok};
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let yaml = run_ok(
            helm()
                .args(["template", "panoptes"])
                .arg(repo_root().join("charts/panoptes"))
                .args(["--show-only", "templates/finalizer-policy.yaml"])
                .args([
                    "--api-versions",
                    "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
                ]),
        );
        let file = std::env::temp_dir().join(format!("bench-policy-{}.yaml", std::process::id()));
        std::fs::write(&file, yaml).expect("writing the policy");
        run_ok(kubectl().args(["apply", "--server-side", "-f"]).arg(&file));
        // In effect once a dry-run create comes back with the finalizer.
        let client = crate::support::admin_client().await;
        let probe: Stream = serde_json::from_value(json!({
            "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
            "metadata": { "name": "policy-probe", "namespace": "default" },
            "spec": { "inputs": [{ "url": "rtsp://10.0.0.1/live" }] },
        }))
        .expect("a probe Stream");
        let api = Api::<Stream>::namespaced(client, "default");
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(s) = api.create(&dry, &probe).await
                && s.finalizers().iter().any(|f| f == "panoptes.dev/cleanup")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the finalizer policy did not take effect in 30 s");
    })
    .await;
}

/// Node `i`'s shard when the fleet is split in `shards` (`None` = unsharded).
pub fn shard_of(i: usize, shards: usize) -> Option<String> {
    (shards > 1).then(|| format!("s{}", i % shards))
}

impl Fleet {
    /// Starts `nodes` simulated nodes and declares them (split into `shards` by label).
    pub async fn start(prefix: &str, nodes: usize, shards: usize) -> Self {
        install_finalizer_policy().await;
        let ns = TestNamespace::new(prefix).await;
        let sim = Cluster::start(nodes).await.expect("simulated nodes start");
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("node-creds".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("login".to_string(), ByteString(NODE_LOGIN.0.into())),
                ("password".to_string(), ByteString(NODE_LOGIN.1.into())),
            ])),
            ..Default::default()
        };
        ns.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("creating the node Secret");
        let docs: Vec<Value> = sim
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, node)| {
                json!({
                    "apiVersion": "panoptes.dev/v1alpha1",
                    "kind": "Streamer",
                    "metadata": { "name": node.hostname(), "labels": labels(shard_of(i, shards)) },
                    "spec": {
                        "hostname": node.hostname(),
                        "apiUrl": node.base_url(),
                        "credentials": { "secretName": "node-creds" },
                        // The simulator speaks plain http.
                        "allowInsecure": true,
                    }
                })
            })
            .collect();
        create_all::<Streamer>(&ns.client, &ns.name, docs).await;
        Self { ns, sim }
    }

    /// A plain client of node `i`, configured like the operator's (same in-flight limit).
    pub fn node_client(&self, i: usize) -> NodeClient {
        let n = self.sim.node(i);
        plain_client(n.hostname(), &n.base_url())
    }

    /// Stream names each node that is up holds, by node index.
    pub fn holdings(&self) -> BTreeMap<usize, HashSet<String>> {
        self.sim
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_up())
            .map(|(i, n)| (i, n.stream_names().into_iter().collect()))
            .collect()
    }
}

fn labels(shard: Option<String>) -> Value {
    match shard {
        Some(s) => json!({ panoptes::state::SHARD_LABEL: s }),
        None => json!({}),
    }
}

/// Names of a scenario's streams.
pub fn stream_names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// What the Streams of a scenario reference for their camera's login.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CameraSecrets {
    /// Nothing: inputs `fake://NAME` without a login.
    #[default]
    None,
    /// One credentials Secret per Stream, as the facade writes for a camera entered with
    /// `user:password@` (the security rules' ownership: a `generateName` Secret labelled
    /// facade-created, annotated with its intended owner and destination, referenced from
    /// `spec.facadeCredentials`, then owned by the Stream). Three writes per camera: the
    /// Secret, the Stream, the owner reference (the facade's dry run is left out).
    PerStream,
}

impl CameraSecrets {
    /// `PANOPTES_BENCH_SECRETS`: `per-stream`, else none.
    pub fn from_env() -> Self {
        match std::env::var("PANOPTES_BENCH_SECRETS")
            .as_deref()
            .map(str::trim)
        {
            Ok("per-stream") => Self::PerStream,
            Ok("" | "none") | Err(_) => Self::None,
            Ok(other) => panic!("PANOPTES_BENCH_SECRETS: {other:?} is not per-stream or none"),
        }
    }
}

/// The login every camera of a [`CameraSecrets::PerStream`] scenario has: the user is the
/// same, the password is the camera's own.
pub fn camera_login(name: &str) -> (String, String) {
    ("viewer".into(), format!("pw-{name}"))
}

/// Creates `n` Streams (inputs `fake://NAME`, alive in the simulator), split into `shards`;
/// returns how long the creates took.
pub async fn create_streams(fleet: &Fleet, names: &[String], shards: usize) -> Duration {
    create_streams_with(fleet, names, shards, CameraSecrets::None).await
}

/// [`create_streams`] with each camera's login as `secrets` says. With a Secret per Stream the
/// inputs are `rtsp://NAME.cameras.bench/live` (the scheme a login goes into), which the
/// simulated nodes are told to reach.
pub async fn create_streams_with(
    fleet: &Fleet,
    names: &[String],
    shards: usize,
    secrets: CameraSecrets,
) -> Duration {
    if secrets == CameraSecrets::None {
        let docs = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                json!({
                    "apiVersion": "panoptes.dev/v1alpha1",
                    "kind": "Stream",
                    "metadata": { "name": name, "labels": labels(shard_of(i, shards)) },
                    "spec": { "inputs": [{ "url": format!("fake://{name}") }] },
                })
            })
            .collect();
        let started = Instant::now();
        create_all::<Stream>(&fleet.ns.client, &fleet.ns.name, docs).await;
        return started.elapsed();
    }
    for n in fleet.sim.nodes() {
        n.update_behaviour(|b| {
            if !b.healthy_urls.iter().any(|u| u == CAMERA_URLS) {
                b.healthy_urls.push(CAMERA_URLS.into());
            }
        });
    }
    let started = Instant::now();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| async move {
            create_with_secret(fleet, name, shard_of(i, shards)).await;
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<()>()
        .await;
    started.elapsed()
}

/// Inputs of cameras with a login ([`CameraSecrets::PerStream`]).
const CAMERA_URLS: &str = "rtsp://*.cameras.bench/live";

/// The facade's writes for one camera entered with a login (`save_with_credentials`): a new
/// credentials Secret, the Stream referencing it, then the Stream as the Secret's owner.
async fn create_with_secret(fleet: &Fleet, name: &str, shard: Option<String>) {
    use kube::api::{Patch, PatchParams};
    use panoptes::domain::credentials as rules;
    let url = format!("rtsp://{name}.cameras.bench/live");
    let origin = rules::origin(&url).expect("a camera URL with a host");
    let (user, password) = camera_login(name);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "generateName": rules::generate_name(name, "camera-credentials"),
            "labels": {
                rules::MANAGED_BY_LABEL: rules::MANAGED_BY,
                rules::COMPONENT_LABEL: rules::FACADE_CREDENTIALS,
            },
            "annotations": {
                rules::FOR_ANNOTATION: format!("Stream/{name}"),
                rules::DESTINATIONS_ANNOTATION: rules::destinations_json(&BTreeMap::from([
                    ("username".to_string(), origin.clone()),
                    ("password".to_string(), origin),
                ])),
            },
        },
        "type": "Opaque",
        "stringData": { "username": user, "password": password },
    }))
    .expect("a credentials Secret");
    let secrets: Api<Secret> = fleet.ns.api();
    let pp = PostParams::default();
    let created = retry(name, || secrets.create(&pp, &secret)).await;
    let secret_name = created.name_any();
    let stream: Stream = serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1",
        "kind": "Stream",
        "metadata": { "name": name, "labels": labels(shard) },
        "spec": {
            "inputs": [{ "url": url }],
            "facadeCredentials": { "secretName": secret_name },
        },
    }))
    .expect("a Stream");
    let streams: Api<Stream> = fleet.ns.api();
    let stream = retry(name, || streams.create(&pp, &stream)).await;
    let owner = json!({ "metadata": { "ownerReferences": [{
        "apiVersion": rules::api_version(), "kind": "Stream", "name": name,
        "uid": stream.uid().expect("a created Stream has a uid"), "controller": true,
    }] } });
    let (patch, params) = (Patch::Merge(&owner), PatchParams::default());
    retry(name, || secrets.patch(&secret_name, &params, &patch)).await;
}

/// `write` retried like [`create_all`]'s creates (load shedding under the burst).
async fn retry<T, F, Fut>(name: &str, mut write: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    for attempt in 0u64.. {
        match write().await {
            Ok(v) => return v,
            Err(e) if attempt < 20 => {
                tracing::debug!(%name, %e, "write failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
            Err(e) => panic!("writing {name}: {e}"),
        }
    }
    unreachable!()
}

/// How many cameras of `names` run on a node with their own login in the input URL (their
/// Secret's values reached the node body).
pub fn logins_on_nodes(fleet: &Fleet, names: &[String]) -> usize {
    names
        .iter()
        .filter(|name| {
            let (user, password) = camera_login(name);
            let want = format!("rtsp://{user}:{password}@{name}.cameras.bench/live");
            fleet.sim.nodes().iter().any(|n| {
                n.stored_stream(name)
                    .is_some_and(|s| s["inputs"][0]["url"] == json!(want))
            })
        })
        .count()
}

/// The holder of the leader Lease of the default instance in `fleet`'s namespace.
pub async fn leader(fleet: &Fleet) -> Option<String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let name = panoptes::domain::instance::Instance::default().leader_lease(None);
    let lease = fleet.ns.api::<Lease>().get_opt(&name).await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Waits until `identity` holds the leader Lease; panics after `timeout`.
pub async fn wait_leader(fleet: &Fleet, identity: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        let holder = leader(fleet).await;
        if holder.as_deref() == Some(identity) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{identity} did not lead within {timeout:?} (holder: {holder:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How `count` shards split the streams: stream `cam-i` and node `i` belong to shard
/// `i % count`. Returns the streams each shard's nodes hold and how many streams are on a node
/// of another shard (the shards did not split the work).
pub fn shard_split(fleet: &Fleet, count: usize) -> (Vec<usize>, usize) {
    let mut per_shard = vec![0usize; count];
    let mut crossed = 0;
    for (node, held) in fleet.holdings() {
        for name in held {
            let i: usize = name
                .trim_start_matches("cam-")
                .parse()
                .unwrap_or(usize::MAX);
            if i % count == node % count {
                per_shard[node % count] += 1;
            } else {
                crossed += 1;
            }
        }
    }
    (per_shard, crossed)
}

/// Creates every object with a bounded number of creates in flight (kubectl would apply them
/// one by one, and that alone would take minutes at 10,000).
async fn create_all<K>(client: &Client, ns: &str, docs: Vec<Value>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(docs)
        .map(|doc| {
            let api = api.clone();
            async move {
                let obj: K = serde_json::from_value(doc).expect("a valid object");
                let name = obj.name_any();
                // Retries ride out the API server's load shedding (429) under the burst.
                for attempt in 0.. {
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => return,
                        Err(e) if attempt < 20 => {
                            tracing::debug!(%name, %e, "create failed; retrying");
                            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                        }
                        Err(e) => panic!("creating {name}: {e}"),
                    }
                }
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<()>()
        .await;
}

/// Polls the nodes until the streams in `want` are held by nodes that are up; the time from
/// `since`, or None after `timeout`.
pub async fn wait_held(
    fleet: &Fleet,
    want: &HashSet<String>,
    since: Instant,
    timeout: Duration,
) -> Option<Duration> {
    wait_held_timed(fleet, want, since, timeout).await.all
}

/// When the nodes held the first and all of a set of streams, from `since`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Held {
    /// The first one appeared on a node (the first push landed).
    pub first: Option<Duration>,
    /// All of them are on nodes (`None`: not within the timeout).
    pub all: Option<Duration>,
}

/// Like [`wait_held`], also noting when the first stream appeared (polls every 50 ms).
pub async fn wait_held_timed(
    fleet: &Fleet,
    want: &HashSet<String>,
    since: Instant,
    timeout: Duration,
) -> Held {
    let mut out = Held::default();
    loop {
        // Counting first: copying every held name each poll was ~15 ms of a core per 50 ms
        // at 100,000 streams, taken from the operator and the nodes whose pace this times
        // (the raw rate it is compared with has no poller): the names are read only once the
        // count says all may be there. `first` counts any stream, so it means the first of
        // `want` only on nodes that held none at `since` (the restart onto wiped nodes).
        let stored: usize = fleet
            .sim
            .nodes()
            .iter()
            .filter(|n| n.is_up())
            .map(|n| n.stored_count())
            .sum();
        if stored > 0 && out.first.is_none() {
            out.first = Some(since.elapsed());
        }
        let held: usize = if stored < want.len() {
            0
        } else {
            let mut seen = HashSet::with_capacity(want.len());
            for names in fleet.holdings().into_values() {
                seen.extend(names.into_iter().filter(|n| want.contains(n)));
            }
            seen.len()
        };
        if held == want.len() {
            out.all = Some(since.elapsed());
            return out;
        }
        if since.elapsed() > timeout {
            eprintln!("  timed out: {held}/{} streams held", want.len());
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the nodes stored since their store times were last cleared, by their own clock (the
/// simulator stamps every stream write it stores): the push window without polling's ±50 ms,
/// which at 10,000 streams was ±15 % of a 0.7 s push.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Stream writes stored.
    pub count: usize,
    /// From the first stored write to the last.
    pub window: Duration,
    /// Writes stored in each [`RAMP_BUCKET`] from the first (the last one may be partial).
    pub ramp: Vec<usize>,
}

/// The width of a [`Stored::ramp`] bucket.
pub const RAMP_BUCKET: Duration = Duration::from_millis(50);

impl Stored {
    /// Writes per second over the window.
    pub fn rate(&self) -> Rate {
        Rate {
            count: self.count,
            took: self.window,
            client_cpu: None,
        }
    }

    /// The ramp as per-second rates, `a, b, c …` for the first `first` buckets and the peak.
    pub fn ramp_summary(&self, first: usize) -> String {
        let per_s = |n: usize| n as f64 / RAMP_BUCKET.as_secs_f64();
        let head = self
            .ramp
            .iter()
            .take(first)
            .map(|&n| format!("{:.0}", per_s(n)))
            .collect::<Vec<_>>()
            .join(", ");
        let peak = self.ramp.iter().copied().max().unwrap_or(0);
        format!(
            "{head}{} /s (peak {:.0}/s, {} buckets)",
            if self.ramp.len() > first { " …" } else { "" },
            per_s(peak),
            self.ramp.len()
        )
    }
}

/// Forgets every node's store times, so [`stored`] counts from here.
pub fn clear_store_times(fleet: &Fleet) {
    for node in fleet.sim.nodes() {
        node.clear_store_times();
    }
}

/// What every node stored since [`clear_store_times`] (or a counter reset); `None` if nothing.
pub fn stored(fleet: &Fleet) -> Option<Stored> {
    let mut times: Vec<Instant> = fleet
        .sim
        .nodes()
        .iter()
        .flat_map(|n| n.store_times())
        .collect();
    times.sort_unstable();
    let (first, last) = (*times.first()?, *times.last()?);
    let window = last - first;
    let buckets = (window.as_nanos() / RAMP_BUCKET.as_nanos()) as usize + 1;
    let mut ramp = vec![0; buckets];
    for t in &times {
        ramp[((*t - first).as_nanos() / RAMP_BUCKET.as_nanos()) as usize] += 1;
    }
    Some(Stored {
        count: times.len(),
        window,
        ramp,
    })
}

/// How many times [`raw_accept_rate`] pushes every stream; it reports the median take (on 2
/// cores one take read anywhere from 12,500 to 22,000 PUT/s at 100,000 streams).
const RAW_TAKES: usize = 3;

/// The raw rate at which the nodes accept stream PUTs from a plain concurrent client with the
/// operator's budget ([`PUSH_CONCURRENCY`] in flight, [`PER_NODE_IN_FLIGHT`] per node), with
/// the same node client, the same call and the same bodies: the median of [`RAW_TAKES`]
/// takes. The streams are removed again after each.
pub async fn raw_accept_rate(fleet: &Fleet, count: usize) -> Rate {
    let nodes = node_addresses(fleet);
    let mut takes = Vec::with_capacity(RAW_TAKES);
    for _ in 0..RAW_TAKES {
        clear_store_times(fleet);
        let failures = raw_push(&nodes, count).await;
        assert_eq!(failures, 0, "raw pushes failed");
        takes.push(stored_take(fleet, count));
        remove_raw(fleet);
    }
    median(takes)
}

/// The median of [`RAW_TAKES`] takes.
fn median(mut takes: Vec<Rate>) -> Rate {
    takes.sort_by_key(|r| r.took);
    takes.swap_remove(RAW_TAKES / 2)
}

/// (hostname, base URL) of each simulated node.
fn node_addresses(fleet: &Fleet) -> Vec<(String, String)> {
    fleet
        .sim
        .nodes()
        .iter()
        .map(|n| (n.hostname().to_string(), n.base_url()))
        .collect()
}

/// Streams `raw-00000`… pushed round-robin to `nodes` (hostname, base URL) with the operator's
/// budget (clients and bodies are made before; the nodes time it, see [`stored`]). Returns the
/// failed PUTs.
async fn raw_push(nodes: &[(String, String)], count: usize) -> usize {
    let clients: Vec<NodeClient> = nodes
        .iter()
        .map(|(host, url)| plain_client(host, url))
        .collect();
    let bodies: Vec<(usize, _)> = (0..count)
        .map(|i| {
            let name = format!("raw-{i:05}");
            let spec: StreamConfigSpec = serde_json::from_value(json!({
                "inputs": [{ "url": format!("fake://{name}") }],
            }))
            .expect("a stream config");
            (i % clients.len(), node_stream_body(&name, &spec))
        })
        .collect();
    let clients = Arc::new(clients);
    futures::stream::iter(bodies)
        .map(|(node, body)| {
            let clients = clients.clone();
            async move { clients[node].stream_save_config(&body).await.is_err() as usize }
        })
        .buffer_unordered(PUSH_CONCURRENCY)
        .fold(0, |a, b| async move { a + b })
        .await
}

/// A node client configured like the operator's (same in-flight limit).
fn plain_client(hostname: &str, base_url: &str) -> NodeClient {
    NodeClient::new(
        NodeClientConfig::new(
            hostname,
            base_url,
            Credentials::basic(NODE_LOGIN.0, NODE_LOGIN.1),
        )
        .allow_insecure(true),
        NodeMetrics::new(),
    )
    .expect("node client")
}

/// A raw take as the nodes stored it: timed like the operator's push (first to last store),
/// so the ratio compares the same window of both.
fn stored_take(fleet: &Fleet, count: usize) -> Rate {
    let stored = stored(fleet).expect("the raw pushes were stored");
    assert_eq!(stored.count, count, "every raw push stored once");
    stored.rate()
}

/// Removes what [`raw_push`] left on the nodes.
fn remove_raw(fleet: &Fleet) {
    for node in fleet.sim.nodes() {
        for name in node.stream_names() {
            if name.starts_with("raw-") {
                node.drift_delete_stream(&name);
            }
        }
    }
}

/// Set in the environment of a scale binary started as [`raw_accept_rate_apart`]'s client.
pub const RAW_CLIENT_ENV: &str = "PANOPTES_SCALE_RAW_CLIENT";

/// What [`raw_accept_rate_apart`] hands its client on stdin.
#[derive(serde::Serialize, serde::Deserialize)]
struct RawJob {
    /// (hostname, base URL) of each node.
    nodes: Vec<(String, String)>,
    count: usize,
}

/// The raw rate as [`raw_accept_rate`] takes it, but from a client in a process of its own, as
/// the operator is. In-process, a PUT and its answer never leave the one tokio runtime that
/// also serves the simulated nodes (no process wakeup either way, the same threads' caches);
/// the operator's every PUT crosses to another process and back. The binary itself is the
/// client: it runs [`raw_client_if_asked`] first thing in `main`.
pub async fn raw_accept_rate_apart(fleet: &Fleet, count: usize) -> Rate {
    let job = serde_json::to_vec(&RawJob {
        nodes: node_addresses(fleet),
        count,
    })
    .expect("a raw job");
    let mut takes = Vec::with_capacity(RAW_TAKES);
    for _ in 0..RAW_TAKES {
        let job = job.clone();
        clear_store_times(fleet);
        // std's process API on a blocking thread: the crate's tokio has no `process` feature.
        let out = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = std::process::Command::new(std::env::current_exe()?)
                .env(RAW_CLIENT_ENV, "1")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            child.stdin.take().expect("stdin").write_all(&job)?;
            child.wait_with_output()
        })
        .await
        .expect("the raw client's thread")
        .expect("the raw client");
        assert!(
            out.status.success(),
            "the raw client failed: {:?}",
            out.status
        );
        let answer: Value = serde_json::from_slice(&out.stdout).expect("the raw client's JSON");
        assert_eq!(answer["failures"], 0, "raw pushes failed");
        takes.push(Rate {
            client_cpu: answer["cpu_s"].as_f64(),
            ..stored_take(fleet, count)
        });
        remove_raw(fleet);
    }
    median(takes)
}

/// When this process was started as [`raw_accept_rate_apart`]'s client: reads the job from
/// stdin, pushes, prints `{"failures", "cpu_s"}` and exits (the nodes time the pushes).
/// Otherwise returns at once.
pub fn raw_client_if_asked() {
    if std::env::var_os(RAW_CLIENT_ENV).is_none() {
        return;
    }
    let job: RawJob = serde_json::from_reader(std::io::stdin()).expect("a raw job on stdin");
    // As the operator's: a multi-threaded runtime with a worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let cpu = operator::cpu_seconds(std::process::id());
    let failures = runtime.block_on(raw_push(&job.nodes, job.count));
    let cpu_s = operator::cpu_seconds(std::process::id()) - cpu;
    println!("{}", json!({ "failures": failures, "cpu_s": cpu_s }));
    std::process::exit(0);
}

/// Waits until kube-apiserver's watch-cache consistency check of `group/resource` has passed
/// once more (`apiserver_storage_consistency_checks_total`, the `DetectCacheInconsistency`
/// gate, on by default since 1.34): every 5–7.5 minutes it lists every object of the resource
/// from etcd and decodes it, ~50 CPU-s at 100,000 Streams on 2 cores, so a measurement that
/// overlaps one measures the check. Right after one, the next is ≥ 5 minutes away. `None`
/// (at once) where the API server reports no check of the resource; else how long it waited,
/// at most `timeout`.
pub async fn after_consistency_check(
    client: &Client,
    group: &str,
    resource: &str,
    timeout: Duration,
) -> Option<Duration> {
    let checks = || async {
        let samples =
            crate::support::apiserver_samples(client, "apiserver_storage_consistency_checks_total")
                .await;
        let ours: Vec<f64> = samples
            .into_iter()
            .filter(|(l, _)| {
                l.get("group").map(String::as_str) == Some(group)
                    && l.get("resource").map(String::as_str) == Some(resource)
            })
            .map(|(_, v)| v)
            .collect();
        (!ours.is_empty()).then(|| ours.iter().sum::<f64>())
    };
    let before = checks().await?;
    let started = Instant::now();
    while started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if checks().await.is_some_and(|n| n > before) {
            break;
        }
    }
    Some(started.elapsed())
}

/// `count` operations in `took`.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Operations.
    pub count: usize,
    /// Wall time.
    pub took: Duration,
    /// CPU seconds the client used for them, where it runs in a process of its own.
    pub client_cpu: Option<f64>,
}

impl Rate {
    /// Operations per second.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// The API server's request counters of writes (`POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`) by
/// `resource/subresource`, from its `/metrics`.
pub async fn apiserver_writes(client: &Client) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (labels, value) in
        crate::support::apiserver_samples(client, "apiserver_request_total").await
    {
        let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
        let verb = label("verb");
        // APPLY: server-side apply (the operator's finalizer and metadata writes) is counted
        // apart from PATCH by the API server.
        if !matches!(verb, "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE") {
            continue;
        }
        let resource = label("resource");
        // Only what an operator in a namespace writes: our kinds and Events. The API
        // server's own lease renewals and the like are left out.
        if label("group") != "panoptes.dev" && resource != "events" {
            continue;
        }
        let key = match label("subresource") {
            "" => format!("{verb} {resource}"),
            sub => format!("{verb} {resource}/{sub}"),
        };
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

/// The API server's request counters of every client and verb, by `VERB resource/subresource`
/// (group-qualified outside the core group), from its `/metrics`: what it served in a window.
pub async fn apiserver_requests(client: &Client) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (labels, value) in
        crate::support::apiserver_samples(client, "apiserver_request_total").await
    {
        let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
        let resource = match label("group") {
            "" => label("resource").to_string(),
            g => format!("{}.{g}", label("resource")),
        };
        let key = match label("subresource") {
            "" => format!("{} {resource}", label("verb")),
            sub => format!("{} {resource}/{sub}", label("verb")),
        };
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

/// The API server's count of LISTs of `group`/`resource` so far (all namespaces, every
/// client), from its `/metrics`.
pub async fn apiserver_lists(client: &Client, group: &str, resource: &str) -> f64 {
    crate::support::apiserver_samples(client, "apiserver_request_total")
        .await
        .into_iter()
        .filter(|(labels, _)| {
            let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
            label("verb") == "LIST" && label("group") == group && label("resource") == resource
        })
        .map(|(_, value)| value)
        .sum()
}

/// `after - before`, keeping only what changed.
pub fn delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| (k.clone(), d.round() as u64))
        })
        .collect()
}

/// Waits until the operator's writes stop: no write counted in a `quiet` window (bounded).
pub async fn wait_quiet(client: &Client, quiet: Duration, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut last = apiserver_writes(client).await;
    loop {
        tokio::time::sleep(quiet).await;
        let now = apiserver_writes(client).await;
        if delta(&last, &now).is_empty() || started.elapsed() > timeout {
            return started.elapsed();
        }
        last = now;
    }
}

/// Outcome of killing one node.
#[derive(Debug)]
pub struct Failover {
    /// Streams the dead node held (the optimum number of moves).
    pub dead_streams: usize,
    /// Kill → the operator reports the node unreachable (its Streamer's `Reachable` False).
    pub detection: Option<Duration>,
    /// Detection → every stream of the dead node is held by a live node.
    pub recovery: Option<Duration>,
    /// Streams whose node changed (dead node's included).
    pub moved: usize,
}

/// Kills node `victim` and measures how its streams come back elsewhere.
pub async fn failover(fleet: &Fleet, victim: usize, timeout: Duration) -> Failover {
    let before = fleet.holdings();
    let dead: HashSet<String> = before.get(&victim).cloned().unwrap_or_default();
    let host = fleet.sim.node(victim).hostname().to_string();
    let streamers: Api<Streamer> = fleet.ns.api();
    let killed = Instant::now();
    fleet.sim.node(victim).down().await;

    let mut detection = None;
    while detection.is_none() && killed.elapsed() < timeout {
        if let Ok(s) = streamers.get_status(&host).await {
            let unreachable = s
                .status
                .as_ref()
                .and_then(|st| condition(&st.common.conditions, "Reachable"))
                .is_some_and(|c| c.status == "False");
            if unreachable {
                detection = Some(killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = wait_held(fleet, &dead, killed, timeout).await;
    // Let anything that is going to move move, then compare.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = fleet.holdings();
    let mut where_before: HashMap<&str, usize> = HashMap::new();
    for (i, names) in &before {
        for n in names {
            where_before.insert(n, *i);
        }
    }
    let mut moved = 0;
    for (i, names) in &after {
        for n in names {
            if where_before.get(n.as_str()).is_some_and(|b| b != i) {
                moved += 1;
            }
        }
    }
    Failover {
        dead_streams: dead.len(),
        detection,
        recovery: match (detection, recovered) {
            (Some(d), Some(r)) => Some(r.saturating_sub(d)),
            _ => None,
        },
        moved,
    }
}

/// Issue 21's rollout: every stream of `names` gets Preset `bench-rollout` (their own edit,
/// pushed at once), then the preset changes and the nodes, which restart a camera on any config
/// change, take it at the operator's default budget. Returns the time from the preset change
/// until every node copy carries it (`None`: not within `timeout`).
pub async fn roll_preset(fleet: &Fleet, names: &[String], timeout: Duration) -> Option<Duration> {
    use kube::api::{Patch, PatchParams};
    use panoptes::resources::Preset;
    for n in fleet.sim.nodes() {
        n.update_behaviour(|b| b.restart_on_any_change = true);
    }
    let presets: Api<Preset> = fleet.ns.api();
    let apply = |expiration: i64| {
        let presets = presets.clone();
        async move {
            let doc = json!({
                "apiVersion": "panoptes.dev/v1alpha1", "kind": "Preset",
                "metadata": { "name": "bench-rollout" },
                "spec": { "title": "Bench rollout", "dvr": { "root": "/dvr", "expiration": expiration } },
            });
            presets
                .patch(
                    "bench-rollout",
                    &PatchParams::apply("bench").force(),
                    &Patch::Apply(&doc),
                )
                .await
                .expect("applying the bench Preset");
        }
    };
    let carry = |expiration: i64| {
        let want = json!(expiration);
        names.iter().all(|name| {
            fleet
                .sim
                .nodes()
                .iter()
                .filter(|n| n.is_up())
                .filter_map(|n| n.stored_stream(name))
                .all(|s| s["dvr"]["expiration"] == want)
        })
    };
    let wait = |expiration: i64, since: Instant| async move {
        while !carry(expiration) {
            if since.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some(since.elapsed())
    };
    apply(3600).await;
    let streams: Api<Stream> = fleet.ns.api();
    futures::stream::iter(names)
        .map(|name| {
            let streams = streams.clone();
            async move {
                let patch = json!({ "spec": { "presetRef": "bench-rollout" } });
                for attempt in 0..20u64 {
                    match streams
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => return,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await
                        }
                    }
                }
                panic!("giving {name} the bench preset failed");
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<()>()
        .await;
    wait(3600, Instant::now()).await?;
    wait_quiet(
        &fleet.ns.client,
        Duration::from_secs(3),
        Duration::from_secs(120),
    )
    .await;
    let started = Instant::now();
    apply(7200).await;
    wait(7200, started).await
}
