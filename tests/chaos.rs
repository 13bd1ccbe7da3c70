//! Chaos: a seeded random schedule of faults against a running operator and simulated nodes,
//! then, with faults stopped, the invariants that matter: every node holds exactly its
//! streams with exactly the desired config, nothing unplaced while capacity exists, no
//! orphans, statuses truthful.
//!
//! `cargo test --test chaos` runs a short schedule (part of `make test`); `make chaos` runs
//! the long one. Knobs (env): `CHAOS_SEED`, `CHAOS_SECONDS`, `CHAOS_NODES`, `CHAOS_STREAMS`,
//! `CHAOS_REPORT` (a JSON report; default `target/chaos/report.json`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use panoptes::domain::effective::{Injected, merge_preset, node_body};
use panoptes::resources::Stream;
use panoptes::resources::common::condition;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use streamer_sim::Cluster;
use support::operator::Operator;
use support::scenario::{fleet, stream};
use support::{TestNamespace, kubectl};

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What was done to a node, and when it ends.
enum Pending {
    Up(usize),
    ClearFaults(usize),
}

#[derive(Default, serde::Serialize)]
struct Report {
    seed: u64,
    nodes: usize,
    streams: usize,
    chaos_seconds: u64,
    faults: BTreeMap<&'static str, u64>,
    reconverge_seconds: f64,
    violations: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_fault_schedule_ends_in_a_correct_fleet() {
    let seed: u64 = env("CHAOS_SEED", 20261126);
    let seconds: u64 = env("CHAOS_SECONDS", 20);
    let nodes: usize = env("CHAOS_NODES", 20);
    let streams: usize = env("CHAOS_STREAMS", 200);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = Report {
        seed,
        nodes,
        streams,
        chaos_seconds: seconds,
        ..Report::default()
    };

    let (ns, sim) = fleet("chaos", nodes).await;
    let mut op = Some(Operator::start(&ns));
    futures::stream::iter(0..streams)
        .map(|i| {
            let ns = &ns;
            async move {
                let dvr = if i % 5 == 0 {
                    json!({ "dvr": { "root": "/dvr", "redundancy_factor": 1 } })
                } else {
                    json!({})
                };
                stream(ns, &format!("cam{i:05}"), dvr).await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let started = Instant::now();
    let mut pending: Vec<(Instant, Pending)> = Vec::new();
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let count = |r: &mut Report, what: &'static str| *r.faults.entry(what).or_default() += 1;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..600))).await;
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(t, _)| *t <= now);
        pending = later;
        for (_, p) in due {
            match p {
                Pending::Up(i) => {
                    sim.node(i).up().await.unwrap();
                    down.remove(&i);
                }
                Pending::ClearFaults(i) => sim.node(i).clear_faults(),
            }
        }
        if op.is_none() {
            op = Some(Operator::start(&ns));
        }
        let i = rng.random_range(0..nodes);
        let node = sim.node(i);
        let hold = Duration::from_millis(rng.random_range(1000..5000));
        match rng.random_range(0..100) {
            // Keep at least three quarters of the nodes up so capacity exists.
            0..15 if down.len() < nodes / 4 && !down.contains(&i) => {
                node.down().await;
                down.insert(i);
                pending.push((now + hold, Pending::Up(i)));
                count(&mut report, "node_down");
            }
            15..30 => {
                node.set_latency(Duration::from_millis(rng.random_range(100..1500)));
                pending.push((now + hold, Pending::ClearFaults(i)));
                count(&mut report, "latency_spike");
            }
            30..45 => {
                let status = if rng.random_bool(0.5) { 500 } else { 503 };
                node.set_error_rate(rng.random_range(0.3..1.0), status);
                pending.push((now + hold, Pending::ClearFaults(i)));
                count(&mut report, "error_burst");
            }
            45..52 if !down.contains(&i) => {
                node.restart().await.unwrap();
                count(&mut report, "node_restart");
            }
            52..65 => {
                if let Some(name) = node.stream_names().first().cloned() {
                    if rng.random_bool(0.5) {
                        let _ = node.drift_stream(&name, json!({ "title": "edited on the node" }));
                    } else {
                        node.drift_delete_stream(&name);
                    }
                    count(&mut report, "manual_drift");
                }
            }
            65..70 => {
                let victim = op.take().expect("running");
                if rng.random_bool(0.5) {
                    victim.kill().await;
                } else {
                    victim.stop().await;
                }
                count(&mut report, "operator_restart");
            }
            70..90 => {
                // Two writers race on the same Stream: kubectl and the API.
                let name = format!("cam{:05}", rng.random_range(0..streams));
                let title = format!("t{}", rng.random::<u32>());
                let k = tokio::task::spawn_blocking({
                    let (ns, name) = (ns.name.clone(), name.clone());
                    move || {
                        kubectl()
                            .args(["-n", &ns, "patch", "stream", &name, "--type", "merge"])
                            .args(["-p", r#"{"spec":{"comment":"kubectl"}}"#])
                            .output()
                    }
                });
                let api = ns.api::<Stream>();
                let _ = api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "spec": { "title": title } })),
                    )
                    .await;
                let _ = k.await;
                count(&mut report, "concurrent_edit");
            }
            90..95 => {
                let name = format!("cam{:05}", rng.random_range(0..streams));
                let disabled = rng.random_bool(0.5);
                let _ = ns
                    .api::<Stream>()
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "spec": { "disabled": disabled } })),
                    )
                    .await;
                count(&mut report, "disable_toggle");
            }
            _ => {}
        }
    }

    // Faults stop: every node back, every switch cleared, an operator running.
    for (i, n) in sim.nodes().iter().enumerate() {
        n.clear_faults();
        if down.contains(&i) {
            n.up().await.unwrap();
        }
    }
    if op.is_none() {
        op = Some(Operator::start(&ns));
    }
    let calm = Instant::now();
    let deadline = calm + Duration::from_secs(env("CHAOS_RECONVERGE_SECONDS", 120));
    let violations = loop {
        let v = violations(&ns, &sim).await;
        if v.is_empty() || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    report.reconverge_seconds = calm.elapsed().as_secs_f64();
    report.violations = violations.iter().take(50).cloned().collect();
    let path = std::env::var("CHAOS_REPORT").unwrap_or_else(|_| {
        support::repo_root()
            .join("target/chaos/report.json")
            .display()
            .to_string()
    });
    if let Some(dir) = std::path::Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    op.take().unwrap().stop().await;
    assert!(
        violations.is_empty(),
        "seed {seed}: {} invariant violations after {:.1}s, e.g. {:#?}",
        violations.len(),
        report.reconverge_seconds,
        &violations[..violations.len().min(10)]
    );
}

/// Everything that is wrong with the fleet right now (empty = correct).
async fn violations(ns: &TestNamespace, sim: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    let streams = ns
        .api::<Stream>()
        .list(&ListParams::default())
        .await
        .unwrap();
    let hosts: BTreeMap<String, usize> = sim
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| (n.hostname().to_string(), i))
        .collect();
    let mut want: BTreeMap<String, BTreeSet<String>> =
        hosts.keys().map(|h| (h.clone(), BTreeSet::new())).collect();
    for s in &streams {
        let name = s.watcher_name().to_string();
        let disabled = s.spec.config.disabled == Some(true);
        let layout = s.status.as_ref().and_then(|st| st.layout.clone());
        let Some(layout) = layout.filter(|_| !disabled) else {
            if !disabled {
                out.push(format!("{name}: no layout recorded"));
            }
            continue;
        };
        let nodes: Vec<String> = layout
            .ingest
            .iter()
            .chain(layout.dvr_backups.iter())
            .cloned()
            .collect();
        if !disabled && layout.ingest.is_none() {
            out.push(format!("{name}: unplaced while capacity exists"));
        }
        let desired = node_body(
            &name,
            &merge_preset(&s.spec.config, None),
            &Injected::default(),
        );
        for h in &nodes {
            want.entry(h.clone()).or_default().insert(name.clone());
            let Some(&i) = hosts.get(h) else {
                out.push(format!("{name}: placed on unknown node {h}"));
                continue;
            };
            let stored = sim.node(i).stored_stream(&name);
            let drift = desired.drift(stored.as_ref());
            if drift.needs_write() {
                out.push(format!(
                    "{name} on {h}: config differs from the spec ({drift:?})"
                ));
            }
        }
        let truthful = |t: &str| {
            s.status
                .as_ref()
                .and_then(|st| condition(&st.common.conditions, t))
                .map(|c| (c.status.clone(), c.reason.clone(), c.observed_generation))
        };
        let synced = truthful("Synced");
        if synced.as_ref().map(|c| c.0.as_str()) != Some("True")
            || synced.and_then(|c| c.2) != s.metadata.generation
        {
            out.push(format!(
                "{name}: Synced is not True for the current generation"
            ));
        }
        if let Some(ingest) = layout.ingest.as_ref().filter(|_| !disabled) {
            let alive = hosts
                .get(ingest)
                .and_then(|&i| sim.node(i).stream(&name))
                .and_then(|v| v.pointer("/stats/alive").and_then(Value::as_bool))
                .unwrap_or(false);
            let ready = truthful("Ready").map(|c| c.0 == "True").unwrap_or(false);
            if alive != ready {
                out.push(format!(
                    "{name}: Ready={ready} but the ingest node says alive={alive}"
                ));
            }
        }
    }
    for (h, &i) in &hosts {
        let have: BTreeSet<String> = sim
            .node(i)
            .stream_names()
            .into_iter()
            .filter(|n| {
                sim.node(i)
                    .stored_stream(n)
                    .is_some_and(|c| c["labels"]["managed-by"] == "panoptes")
            })
            .collect();
        for orphan in have.difference(&want[h]) {
            out.push(format!("{h}: holds {orphan}, which is not placed there"));
        }
        for missing in want[h].difference(&have) {
            out.push(format!("{h}: lacks {missing}"));
        }
    }
    out
}
