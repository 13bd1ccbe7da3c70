//! The scale harness of `make bench` at toy size (100 streams, 5 nodes, the debug binary), so
//! the harness cannot rot between benchmark runs: raw node rate, convergence on the nodes under
//! the realistic conditions (a leader and a standby replica, a credentials Secret per camera),
//! API-server write counters, memory, failover, and three shards splitting the work.

mod scale;
mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use scale::operator::{HeapCount, OperatorProcess};
use scale::{CameraSecrets, Fleet};

const FAST: &[&str] = &["--node-resync-seconds", "1"];

fn operator(fleet: &Fleet, shard: Option<&str>, log: &str) -> OperatorProcess {
    OperatorProcess::start(
        PathBuf::from(env!("CARGO_BIN_EXE_panoptes")).as_path(),
        &support::control_plane().kubeconfig,
        &fleet.ns.name,
        shard,
        FAST,
        std::env::temp_dir().join(format!("{}-{log}", fleet.ns.name)),
        HeapCount::Inherit,
    )
}

fn replica(fleet: &Fleet, identity: &str) -> OperatorProcess {
    OperatorProcess::start_replica(
        PathBuf::from(env!("CARGO_BIN_EXE_panoptes")).as_path(),
        &support::control_plane().kubeconfig,
        &fleet.ns.name,
        identity,
        FAST,
        std::env::temp_dir().join(format!("{}-{identity}.log", fleet.ns.name)),
        HeapCount::Inherit,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_harness_runs_at_toy_size() {
    let fleet = Fleet::start("smoke", 5, 1).await;
    let raw = scale::raw_accept_rate(&fleet, 100).await;
    assert!(raw.per_second() > 0.0);
    assert!(
        fleet.holdings().values().all(|h| h.is_empty()),
        "the raw streams are removed again"
    );

    // Two replicas as the chart runs them: the first leads, the second stands by.
    let mut op = replica(&fleet, "smoke-leader");
    op.wait_ready(Duration::from_secs(60)).await;
    scale::wait_leader(&fleet, "smoke-leader", Duration::from_secs(30)).await;
    let mut standby = replica(&fleet, "smoke-standby");
    standby.wait_ready(Duration::from_secs(60)).await;
    assert!(op.rss_kib() > 0 && standby.rss_kib() > 0);
    let before = scale::apiserver_writes(&fleet.ns.client).await;
    let names = scale::stream_names("cam", 100);
    let want: HashSet<String> = names.iter().cloned().collect();
    let started = Instant::now();
    scale::create_streams_with(&fleet, &names, 1, CameraSecrets::PerStream).await;
    let took = scale::wait_held(&fleet, &want, started, Duration::from_secs(60)).await;
    assert!(
        took.is_some(),
        "100 streams converge on 5 nodes; see {}",
        op.log.display()
    );
    support::eventually(
        Duration::from_secs(30),
        "every camera runs with its own login",
        || async { (scale::logins_on_nodes(&fleet, &names) == names.len()).then_some(()) },
    )
    .await;
    assert_eq!(
        scale::leader(&fleet).await.as_deref(),
        Some("smoke-leader"),
        "the standby stood by"
    );
    let after = scale::apiserver_writes(&fleet.ns.client).await;
    assert!(
        scale::delta(&before, &after).contains_key("POST streams"),
        "the API server's write counters are read: {after:?}"
    );
    standby.stop();

    let rolled = scale::roll_preset(&fleet, &names, Duration::from_secs(60)).await;
    assert!(rolled.is_some(), "a preset change reaches every camera");

    // The bench's restart onto wiped nodes: the leader starts again over every stream, and a
    // stream's first reconcile is its push (it waits for the first layout run; a reconcile
    // before it only deferred, and the run reconciled every stream again: 2 per stream).
    op.stop();
    for node in fleet.sim.nodes() {
        for name in node.stream_names() {
            node.drift_delete_stream(&name);
        }
    }
    let requests = scale::apiserver_requests(&fleet.ns.client).await;
    let mut op = replica(&fleet, "smoke-leader");
    op.wait_ready(Duration::from_secs(60)).await;
    let restarted = Instant::now();
    let back = scale::wait_held(&fleet, &want, restarted, Duration::from_secs(60)).await;
    assert!(
        back.is_some(),
        "every stream is pushed again after a restart"
    );
    // The cameras' 100 Secrets are read with a paged list before the first push, not with a
    // GET each (the other test's operators read a few node Secrets meanwhile).
    let served = scale::delta(
        &requests,
        &scale::apiserver_requests(&fleet.ns.client).await,
    );
    let gets = served.get("GET secrets").copied().unwrap_or_default();
    assert!(
        gets < names.len() as u64 / 2,
        "{gets} GETs of Secrets for {} cameras with a Secret each: {served:?}",
        names.len()
    );
    // The destinations allow-list is read once per TTL, not by each reconcile that missed it
    // at once (60 GETs here before).
    let allow_list = served.get("GET configmaps").copied().unwrap_or_default();
    assert!(
        allow_list < 10,
        "{allow_list} GETs of ConfigMaps: {served:?}"
    );
    let work = op.work_counts().await;
    assert!(
        work.stream_reconciles <= 1.5 * names.len() as f64,
        "at most one reconcile per stream until all are pushed again, and a few echoes: {} for {}",
        work.stream_reconciles,
        names.len()
    );

    // The bench's "marked unreachable while they answered" row: 0 before the kill, the one
    // killed node after it.
    let marks = "panoptes_node_unreachable_marks_total";
    assert_eq!(
        op.metric(marks).await,
        Some(0.0),
        "no answering node marked"
    );
    let f = scale::failover(&fleet, 1, Duration::from_secs(60)).await;
    assert!(f.detection.is_some() && f.recovery.is_some(), "{f:?}");
    assert_eq!(f.moved, f.dead_streams, "only the dead node's streams move");
    assert_eq!(op.metric(marks).await, Some(1.0), "the killed node, once");
    op.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_split_the_streams_and_nodes() {
    const SHARDS: usize = 3;
    let fleet = Fleet::start("smoke-shards", 6, SHARDS).await;
    let mut ops = Vec::new();
    for s in 0..SHARDS {
        let shard = scale::shard_of(s, SHARDS);
        let mut op = operator(&fleet, shard.as_deref(), &format!("shard-{s}.log"));
        op.wait_ready(Duration::from_secs(60)).await;
        ops.push(op);
    }
    let names = scale::stream_names("cam", 60);
    let want: HashSet<String> = names.iter().cloned().collect();
    let started = Instant::now();
    scale::create_streams(&fleet, &names, SHARDS).await;
    let took = scale::wait_held(&fleet, &want, started, Duration::from_secs(60)).await;
    assert!(took.is_some(), "every shard converges");
    let (per_shard, crossed) = scale::shard_split(&fleet, SHARDS);
    assert_eq!(crossed, 0, "no stream on another shard's node");
    assert_eq!(
        per_shard,
        vec![20; SHARDS],
        "each shard holds its own streams"
    );
    for op in ops {
        op.stop();
    }
}
