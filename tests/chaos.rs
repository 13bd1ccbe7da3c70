//! Chaos: a seeded random schedule of faults against a running operator and simulated nodes,
//! then, with faults stopped, the invariants that matter: every node holds exactly its
//! streams with exactly the desired config, nothing unplaced while capacity exists, no
//! orphans, statuses truthful.
//!
//! After the node faults, control-plane faults one at a time, each followed by the same
//! invariants and its own reconverge time: the operator reaches the real API server through a
//! TCP relay (so its connections can be cut) as a user of its own (so Priority and Fairness
//! can throttle it), and the test binary's own control plane is restarted under it.
//!
//! `cargo test --test chaos` runs a short schedule (part of `make test`, one API-server
//! restart); `make chaos` runs the long one with every control-plane fault. Knobs (env):
//! `CHAOS_SEED`, `CHAOS_SECONDS`, `CHAOS_NODES`, `CHAOS_STREAMS`, `CHAOS_CONTROL_PLANE`
//! (`all` or a comma list of [`CONTROL_PLANE_FAULTS`]; default `apiserver_restart`),
//! `CHAOS_REPORT` (a JSON report; default `target/chaos/report.json`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use panoptes::domain::effective::{Injected, merge_preset, node_body};
use panoptes::resources::Stream;
use panoptes::resources::common::condition;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use streamer_sim::Cluster;
use support::binary::Relay;
use support::operator::Operator;
use support::scenario::{fleet, stream};
use support::{TestNamespace, control_plane, kubectl};

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
    /// Per control-plane fault: seconds from the fault's end to a correct fleet.
    control_plane_reconverge_seconds: BTreeMap<&'static str, f64>,
    /// Evidence that a fault really happened (relists after 410, 429s counted by the API server).
    control_plane_evidence: BTreeMap<&'static str, f64>,
    violations: Vec<String>,
}

/// The control-plane faults, in the order `CHAOS_CONTROL_PLANE=all` runs them.
const CONTROL_PLANE_FAULTS: [&str; 6] = [
    "apiserver_restart",
    "etcd_restart",
    "connection_cut",
    "gone_410",
    "throttle_429",
    "clock_skew",
];

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
    let relay = Relay::start(vec![support::apiserver_addr().await]).await;
    let user = bind_operator_user(&ns).await;
    let op_client =
        support::client_through(&relay.addr, Some((user, vec![AUTHENTICATED.into()]))).await;
    let start = || Operator::start_as(&ns, op_client.clone(), Operator::tunables(&ns));
    let mut op = Some(start());
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
            op = Some(start());
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
                patch_spec(&ns, &name, json!({ "title": title })).await;
                let _ = k.await;
                count(&mut report, "concurrent_edit");
            }
            90..95 => {
                let name = format!("cam{:05}", rng.random_range(0..streams));
                let disabled = rng.random_bool(0.5);
                patch_spec(&ns, &name, json!({ "disabled": disabled })).await;
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
        op = Some(start());
    }
    let calm = Instant::now();
    let mut violations = reconverge(&ns, &sim).await;
    report.reconverge_seconds = calm.elapsed().as_secs_f64();

    let chosen = env("CHAOS_CONTROL_PLANE", "apiserver_restart".to_string());
    let kinds: Vec<&'static str> = CONTROL_PLANE_FAULTS
        .into_iter()
        .filter(|k| chosen == "all" || chosen.split(',').any(|c| c.trim() == *k))
        .collect();
    if !control_plane().owned() {
        println!("control-plane faults skipped: PANOPTES_TEST_KUBECONFIG shares a control plane");
    }
    for kind in kinds.into_iter().filter(|_| control_plane().owned()) {
        if !violations.is_empty() {
            break;
        }
        let op = op.as_ref().expect("running");
        let t0 = Instant::now();
        let evidence = control_plane_fault(kind, &ns, &sim, &relay, op, &mut rng, streams).await;
        let calm = Instant::now();
        violations = reconverge(&ns, &sim).await;
        let took = calm.elapsed().as_secs_f64();
        println!(
            "{kind}: fault {:.1}s, reconverged in {took:.1}s, evidence {evidence}",
            calm.duration_since(t0).as_secs_f64()
        );
        count(&mut report, kind);
        report.control_plane_reconverge_seconds.insert(kind, took);
        report.control_plane_evidence.insert(kind, evidence);
        violations = violations
            .into_iter()
            .map(|v| format!("after {kind}: {v}"))
            .collect();
        if kind == "clock_skew" {
            sim.nodes().iter().for_each(|n| n.clear_faults());
        }
    }
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

/// Waits (up to `CHAOS_RECONVERGE_SECONDS`) for a correct fleet; what is still wrong then.
async fn reconverge(ns: &TestNamespace, sim: &Cluster) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(env("CHAOS_RECONVERGE_SECONDS", 120));
    loop {
        let v = violations(ns, sim).await;
        if v.is_empty() || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The group every authenticated user is in (the operator's user has no other: the exempt
/// `system:masters` would keep Priority and Fairness from throttling it).
const AUTHENTICATED: &str = "system:authenticated";

/// The operator's own user: its requests are told apart from the test's (the admin's) by the
/// API server's Priority and Fairness.
fn operator_user(ns: &TestNamespace) -> String {
    format!("panoptes-chaos-{}", ns.name)
}

/// Binds [`operator_user`] to cluster-admin.
async fn bind_operator_user(ns: &TestNamespace) -> String {
    let user = operator_user(ns);
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": { "name": user },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(ns.client.clone())
        .patch(
            &user,
            &PatchParams::apply("chaos").force(),
            &Patch::Apply(&binding),
        )
        .await
        .unwrap();
    user
}

/// Merge-patches a Stream's spec; a failure is one of the faults, not the test's.
async fn patch_spec(ns: &TestNamespace, name: &str, spec: Value) {
    let _ = ns
        .api::<Stream>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await;
}

/// Edits the titles of `n` random Streams of the `streams` (through the admin's own
/// connection, not the relay): the operator must see them through whatever the fault left of
/// its watches.
async fn touch(ns: &TestNamespace, rng: &mut StdRng, streams: usize, n: usize) {
    for _ in 0..n {
        let name = format!("cam{:05}", rng.random_range(0..streams));
        patch_spec(
            ns,
            &name,
            json!({ "title": format!("cp{}", rng.random::<u32>()) }),
        )
        .await;
    }
}

/// Runs the launcher's `command` (it blocks until the control plane answers again).
async fn inject(command: &'static str) -> String {
    tokio::task::spawn_blocking(move || control_plane().inject(command))
        .await
        .unwrap()
}

/// Injects one control-plane fault and ends it; returns its evidence (relists, 429s; 0 when the
/// fault kind has none to show).
async fn control_plane_fault(
    kind: &str,
    ns: &TestNamespace,
    sim: &Cluster,
    relay: &Relay,
    op: &Operator,
    rng: &mut StdRng,
    streams: usize,
) -> f64 {
    let relists = || op.ctx.stores.relists.get("Stream");
    match kind {
        "apiserver_restart" => {
            inject("restart kube-apiserver").await;
            touch(ns, rng, streams, 10).await;
            0.0
        }
        "etcd_restart" => {
            inject("restart etcd").await;
            touch(ns, rng, streams, 10).await;
            0.0
        }
        "connection_cut" => {
            // Resumable: the watches continue from their resource version, no relist.
            let before = relists();
            for _ in 0..3 {
                relay.cut();
                relay.hold(true);
                touch(ns, rng, streams, 5).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                relay.hold(false);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert_eq!(
                relists(),
                before,
                "a cut connection made the operator relist"
            );
            0.0
        }
        "gone_410" => {
            // While the operator is cut off, the history its watches would resume from is
            // compacted away. The restart drops the API server's watch cache, which would
            // otherwise replay the missed events from memory: the resume meets a 410.
            let before = relists();
            relay.cut();
            relay.hold(true);
            touch(ns, rng, streams, 20).await;
            inject("compact").await;
            inject("restart kube-apiserver").await;
            relay.hold(false);
            support::eventually(
                Duration::from_secs(60),
                "the operator relists Streams",
                || async { (relists() > before).then_some(()) },
            )
            .await;
            (relists() - before) as f64
        }
        "throttle_429" => {
            let rejected = || async {
                support::apiserver_samples(
                    &ns.client,
                    "apiserver_flowcontrol_rejected_requests_total",
                )
                .await
                .into_iter()
                .filter(|(l, _)| l.get("priority_level").map(String::as_str) == Some(TINY))
                .map(|(_, v)| v)
                .sum::<f64>()
            };
            throttle(ns, true).await;
            // Every Stream changes: the operator's status writes queue up on its 3 seats.
            futures::stream::iter(0..streams)
                .map(|i| async move {
                    patch_spec(ns, &format!("cam{i:05}"), json!({ "title": "throttled" })).await
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await;
            let got = support::eventually(
                Duration::from_secs(60),
                "429s from the API server",
                || async {
                    let n = rejected().await;
                    (n > 0.0).then_some(n)
                },
            )
            .await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            throttle(ns, false).await;
            rejected().await.max(got)
        }
        "clock_skew" => {
            // The skew stays on while the fleet reconverges: the invariants hold under it.
            for n in sim.nodes() {
                let minutes = rng.random_range(1..10) * if rng.random_bool(0.5) { 1 } else { -1 };
                n.update_faults(|f| f.clock_skew_ms = minutes * 60_000);
            }
            touch(ns, rng, streams, 10).await;
            0.0
        }
        other => panic!("unknown control-plane fault {other}"),
    }
}

/// The priority level that throttles the operator: 1 share of the server's concurrency (a few
/// seats), nothing borrowed, excess rejected at once (429).
const TINY: &str = "chaos-tiny";

/// Puts the operator's user on [`TINY`] (a FlowSchema ahead of every default one), or lifts it.
async fn throttle(ns: &TestNamespace, on: bool) {
    let user = operator_user(ns);
    let levels: Api<PriorityLevelConfiguration> = Api::all(ns.client.clone());
    let schemas: Api<FlowSchema> = Api::all(ns.client.clone());
    let pp = PatchParams::apply("chaos").force();
    if !on {
        let _ = schemas.delete(TINY, &DeleteParams::default()).await;
        let _ = levels.delete(TINY, &DeleteParams::default()).await;
        return;
    }
    let level: PriorityLevelConfiguration = serde_json::from_value(json!({
        "metadata": { "name": TINY },
        "spec": { "type": "Limited", "limited": {
            "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
            "limitResponse": { "type": "Reject" },
        }},
    }))
    .unwrap();
    levels
        .patch(TINY, &pp, &Patch::Apply(&level))
        .await
        .unwrap();
    let schema: FlowSchema = serde_json::from_value(json!({
        "metadata": { "name": TINY },
        "spec": {
            "priorityLevelConfiguration": { "name": TINY },
            "matchingPrecedence": 100,
            "distinguisherMethod": { "type": "ByUser" },
            "rules": [{
                "subjects": [{ "kind": "User", "user": { "name": user } }],
                "resourceRules": [{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                    "namespaces": ["*"], "clusterScope": true }],
                "nonResourceRules": [{ "verbs": ["*"], "nonResourceURLs": ["*"] }],
            }],
        },
    }))
    .unwrap();
    schemas
        .patch(TINY, &pp, &Patch::Apply(&schema))
        .await
        .unwrap();
}

/// Everything that is wrong with the fleet right now (empty = correct).
async fn violations(ns: &TestNamespace, sim: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    let streams = match ns.api::<Stream>().list(&ListParams::default()).await {
        Ok(list) => list,
        // Right after a control-plane restart: not correct yet, not a failure.
        Err(e) => return vec![format!("listing Streams: {e}")],
    };
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
            .map(|h| h.to_string())
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
                .map(|c| {
                    (
                        c.status.to_string(),
                        c.reason.to_string(),
                        c.observed_generation,
                    )
                })
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
                .get(ingest.as_str())
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
