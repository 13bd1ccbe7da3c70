//! The scale harness of `make bench` at toy size (100 streams, 5 nodes, the debug binary), so
//! the harness cannot rot between benchmark runs: raw node rate, convergence on the nodes,
//! API-server write counters, memory, failover, and two shards splitting the work.

mod scale;
mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use scale::Fleet;
use scale::operator::OperatorProcess;

fn operator(fleet: &Fleet, shard: Option<&str>, log: &str) -> OperatorProcess {
    OperatorProcess::start(
        PathBuf::from(env!("CARGO_BIN_EXE_panoptes")).as_path(),
        &support::control_plane().kubeconfig,
        &fleet.ns.name,
        shard,
        &["--node-resync-seconds", "1"],
        std::env::temp_dir().join(format!("{}-{log}", fleet.ns.name)),
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

    let mut op = operator(&fleet, None, "operator.log");
    op.wait_ready(Duration::from_secs(60)).await;
    assert!(op.rss_kib() > 0);
    let before = scale::apiserver_writes(&fleet.ns.client).await;
    let names = scale::stream_names("cam", 100);
    let want: HashSet<String> = names.iter().cloned().collect();
    let started = Instant::now();
    scale::create_streams(&fleet, &names, 1).await;
    let took = scale::wait_held(&fleet, &want, started, Duration::from_secs(60)).await;
    assert!(
        took.is_some(),
        "100 streams converge on 5 nodes; see {}",
        op.log.display()
    );
    let after = scale::apiserver_writes(&fleet.ns.client).await;
    assert!(
        scale::delta(&before, &after).contains_key("POST streams"),
        "the API server's write counters are read: {after:?}"
    );

    let rolled = scale::roll_preset(&fleet, &names, Duration::from_secs(60)).await;
    assert!(rolled.is_some(), "a preset change reaches every camera");

    let f = scale::failover(&fleet, 1, Duration::from_secs(60)).await;
    assert!(f.detection.is_some() && f.recovery.is_some(), "{f:?}");
    assert_eq!(f.moved, f.dead_streams, "only the dead node's streams move");
    op.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_streams_and_nodes() {
    let fleet = Fleet::start("smoke-shards", 4, 2).await;
    let mut ops = Vec::new();
    for s in 0..2 {
        let shard = scale::shard_of(s, 2);
        let mut op = operator(&fleet, shard.as_deref(), &format!("shard-{s}.log"));
        op.wait_ready(Duration::from_secs(60)).await;
        ops.push(op);
    }
    let names = scale::stream_names("cam", 40);
    let want: HashSet<String> = names.iter().cloned().collect();
    let started = Instant::now();
    scale::create_streams(&fleet, &names, 2).await;
    let took = scale::wait_held(&fleet, &want, started, Duration::from_secs(60)).await;
    assert!(took.is_some(), "both shards converge");
    for (node, held) in fleet.holdings() {
        for name in held {
            let i: usize = name.trim_start_matches("cam-").parse().unwrap();
            assert_eq!(
                i % 2,
                node % 2,
                "{name} is on node {node} of the other shard"
            );
        }
    }
    for op in ops {
        op.stop();
    }
}
