//! `make bench`: the scale scenarios of issue #8 in one run, against the release `panoptes`
//! binary (cargo builds it for this bench with the bench profile, i.e. release settings).
//! Prints a Markdown table and writes it to `target/bench/results.md`; the operator logs go
//! to `target/bench/`.
//!
//! `PANOPTES_BENCH_FACADE_SECONDS` (default 10) sets how long each facade query is loaded;
//! `PANOPTES_BENCH_SKIP=rollout,facade,failover` leaves those scenarios out of the full arms
//! (`restart` too: then the arm ends after the 60 s at rest).
//! `PANOPTES_BENCH_ONLY` (comma-separated `1k`, `10k`, `shards`; default all) runs a subset,
//! for working on one figure. Three arms run only when named: `100k` (100,000 Streams on 1,000
//! nodes, `make bench-100k`, ~40 min alone on 2 cores), `scale:STREAMS:NODES`, the same
//! scenario at any size (e.g. `scale:30000:300` while working on a 100k figure), and
//! `shards:STREAMS:NODES:COUNT`, COUNT shards side by side (`shards` is `shards:2000:20:2`).
//! Every size run adds a line to the cost curve printed under the table.
//!
//! Realistic conditions (issue #21): every full-scenario arm runs the operator as the chart
//! does with two replicas, a leader and a standby (leader election on, the peer channel), and
//! reports the standby's memory and CPU beside the leader's; `PANOPTES_BENCH_STANDBY=0` runs the
//! leader alone. `PANOPTES_BENCH_SECRETS=per-stream` gives every Stream its own camera
//! credentials Secret, written as the facade writes one (see `scale::CameraSecrets`).
//!
//! `PANOPTES_BENCH_PERF=1` samples the operator with `perf` and takes a 30 s CPU profile of
//! kube-apiserver (`target/bench/apiserver-*.pprof`, read with
//! `go tool pprof -top target/controlplane/bin/kube-apiserver FILE`) during each convergence.

#[path = "../tests/scale/mod.rs"]
mod scale;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use scale::operator::{HeapCount, OperatorProcess, cpu_split_named, mib};
use scale::{CameraSecrets, Fleet, Rate};

/// Holder names of the two replicas on the leader Lease.
const LEADER: &str = "bench-leader";
const STANDBY: &str = "bench-standby";

/// The conditions a scenario runs under.
#[derive(Clone, Copy, Debug)]
struct Setup {
    /// A standby replica beside the leader (the chart's `replicaCount: 2`).
    standby: bool,
    /// What the Streams reference for their camera's login.
    secrets: CameraSecrets,
}

impl Setup {
    /// `PANOPTES_BENCH_STANDBY` (default on; `0` or `off`: the leader alone) and
    /// `PANOPTES_BENCH_SECRETS`.
    fn from_env() -> Self {
        let standby = std::env::var("PANOPTES_BENCH_STANDBY")
            .map(|v| !matches!(v.trim(), "0" | "off" | "false"))
            .unwrap_or(true);
        Self {
            standby,
            secrets: CameraSecrets::from_env(),
        }
    }

    /// The run's conditions, for the header.
    fn describe(&self) -> String {
        format!(
            "full-scenario arms: {}; camera credentials: {}",
            if self.standby {
                "a leader and a standby replica (leader election on)"
            } else {
                "the operator alone (leader election off)"
            },
            match self.secrets {
                CameraSecrets::None => "none",
                CameraSecrets::PerStream =>
                    "one Secret per Stream (PANOPTES_BENCH_SECRETS=per-stream)",
            }
        )
    }
}

/// One line of the results table.
struct Row {
    figure: String,
    value: String,
    target: &'static str,
}

#[derive(Default)]
struct Report(Vec<Row>);

impl Report {
    fn add(&mut self, figure: impl Into<String>, value: impl Into<String>, target: &'static str) {
        let row = Row {
            figure: figure.into(),
            value: value.into(),
            target,
        };
        eprintln!("  {:<58} {:<28} {}", row.figure, row.value, row.target);
        self.0.push(row);
    }

    fn markdown(&self) -> String {
        let mut s = String::from("| Figure | Measured | Target |\n|---|---|---|\n");
        for r in &self.0 {
            let _ = writeln!(s, "| {} | {} | {} |", r.figure, r.value, r.target);
        }
        s
    }
}

/// One size's figures for the cost curve (time and memory per stream, 1k → 10k → 100k).
struct Point {
    streams: usize,
    nodes: usize,
    /// Apply → all on nodes (None: did not converge).
    converged: Option<Duration>,
    /// Creating the Streams.
    created: Duration,
    /// The operator's CPU seconds during the convergence.
    operator_cpu: f64,
    rss_idle_kib: u64,
    rss_settled_kib: u64,
    /// The operator's CPU seconds per second over 60 s at rest with every stream (node probes
    /// and lists, the paced walk, the facade's refresh); `None` where not measured.
    rest_cpu_rate: Option<f64>,
}

/// The cost curve: one row per size, the per-stream figures side by side.
fn curve_markdown(points: &[Point]) -> String {
    let mut s = String::from(
        "| Streams / nodes | Apply → all on nodes | per 1,000 streams | Operator CPU per stream | \
         … less the at-rest rate × convergence time | \
         Operator RSS idle / settled | RSS per stream (settled − idle) |\n|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        let per_k = |d: Duration| d.as_secs_f64() * 1000.0 / p.streams as f64;
        let _ = writeln!(
            s,
            "| {} / {} | {} (creates {:.1} s) | {} | {:.2} ms | {} | {:.0} / {:.0} MiB | {:.1} KiB |",
            p.streams,
            p.nodes,
            secs(p.converged),
            p.created.as_secs_f64(),
            p.converged
                .map_or("—".into(), |d| format!("{:.2} s", per_k(d))),
            p.operator_cpu * 1000.0 / p.streams as f64,
            // The background runs at the at-rest rate only once every stream exists: this
            // subtracts too much, so it is a floor of the work the streams' arrival cost.
            match (p.rest_cpu_rate, p.converged) {
                (Some(rate), Some(took)) => format!(
                    "≥ {:.2} ms",
                    (p.operator_cpu - rate * took.as_secs_f64()).max(0.0) * 1000.0
                        / p.streams as f64
                ),
                _ => "—".into(),
            },
            mib(p.rss_idle_kib),
            mib(p.rss_settled_kib),
            p.rss_settled_kib.saturating_sub(p.rss_idle_kib) as f64 / p.streams as f64,
        );
    }
    s
}

/// How long a phase over `streams` may take before it is reported as not finished: 600 s,
/// more at sizes where the API server's create rate alone takes longer (~140 objects/s at
/// 100,000 on 2 cores).
fn patience(streams: usize) -> Duration {
    Duration::from_secs(600).max(Duration::from_millis(streams as u64 * 12))
}

/// Targets that depend on the size: issue #8's at 10,000, issue #21's at 100,000.
fn target(streams: usize, at_10k: &'static str, at_100k: &'static str) -> &'static str {
    match streams {
        s if s >= 100_000 => at_100k,
        s if s >= 10_000 => at_10k,
        _ => "",
    }
}

/// The CPU seconds of the process named `name` between two [`scale::operator::cpu_split`]s.
fn cpu_of(before: &[(String, f64)], after: &[(String, f64)], name: &str) -> f64 {
    let find = |v: &[(String, f64)]| v.iter().find(|(n, _)| n == name).map_or(0.0, |(_, c)| *c);
    find(after) - find(before)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("did not finish".into(), |d| {
        format!("{:.1} s", d.as_secs_f64())
    })
}

fn out_dir() -> PathBuf {
    let dir = support::repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("creating target/bench");
    dir
}

fn operator(fleet: &Fleet, shard: Option<&str>, log: &str, heap: HeapCount) -> OperatorProcess {
    OperatorProcess::start(
        PathBuf::from(env!("CARGO_BIN_EXE_panoptes")).as_path(),
        &support::control_plane().kubeconfig,
        &fleet.ns.name,
        shard,
        &[],
        out_dir().join(log),
        heap,
    )
}

/// One of two replicas as the chart runs them (leader election on), named `identity`.
fn replica(fleet: &Fleet, identity: &str, log: &str, heap: HeapCount) -> OperatorProcess {
    OperatorProcess::start_replica(
        PathBuf::from(env!("CARGO_BIN_EXE_panoptes")).as_path(),
        &support::control_plane().kubeconfig,
        &fleet.ns.name,
        identity,
        &[],
        out_dir().join(log),
        heap,
    )
}

/// The operator that reconciles: the leading replica with a standby, else the operator alone.
/// Ready and, as a replica, holding the Lease when this returns. Only the first leader of an
/// arm counts its heap (`PANOPTES_HEAP_COUNT=1`): its heap figure is the one read, and a
/// later leader's push or facade figures are taken without the counter's cost.
async fn leader(
    fleet: &Fleet,
    setup: Setup,
    log: &str,
    ready: Duration,
    heap: HeapCount,
) -> OperatorProcess {
    if !setup.standby {
        let mut op = operator(fleet, None, log, heap);
        op.wait_ready(ready).await;
        return op;
    }
    let mut op = replica(fleet, LEADER, log, heap);
    op.wait_ready(ready).await;
    scale::wait_leader(fleet, LEADER, ready).await;
    op
}

/// Starts the standby replica (once the leader leads) and waits until its caches synced.
async fn standby(fleet: &Fleet, log: &str, ready: Duration) -> OperatorProcess {
    let mut op = replica(fleet, STANDBY, log, HeapCount::Off);
    op.wait_ready(ready).await;
    op
}

/// Convergence of `streams` on `nodes` from an empty fleet, with the raw node rate first.
/// Returns the fleet and the running operator for the scenarios that follow.
async fn convergence(
    report: &mut Report,
    curve: &mut Vec<Point>,
    streams: usize,
    nodes: usize,
    setup: Setup,
) -> Converged {
    let label = format!("{streams} streams / {nodes} nodes");
    eprintln!("== convergence, {label}");
    let fleet = Fleet::start(&format!("bench-{streams}"), nodes, 1).await;
    let raw_cpu = scale::operator::cpu_split(&[]);
    let raw = scale::raw_accept_rate(&fleet, streams).await;
    let raw_cpu = scale::operator::cpu_delta(&raw_cpu, &scale::operator::cpu_split(&[]));
    let op = leader(
        &fleet,
        setup,
        &format!("operator-{streams}.log"),
        Duration::from_secs(60),
        HeapCount::Inherit,
    )
    .await;
    let standby = if setup.standby {
        let log = format!("operator-{streams}-standby.log");
        Some(standby(&fleet, &log, Duration::from_secs(60)).await)
    } else {
        None
    };
    let pids = operator_pids(&op, standby.as_ref());
    // Idle: caches synced and every node probed once (first probes run at start).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = op.rss_kib();
    let standby_idle = standby.as_ref().map(OperatorProcess::rss_kib);

    let names = scale::stream_names("cam", streams);
    let want: HashSet<String> = names.iter().cloned().collect();
    // PANOPTES_BENCH_PERF=1 samples the operator with `perf record` while it converges.
    let perf = perf_record(&op, "convergence", &format!("perf-{streams}.data"));
    let apiserver_profile = apiserver_profile(&format!("apiserver-{streams}.pprof"), 30);
    let cpu_before = cpu_split_named(&pids);
    let writes_before = scale::apiserver_writes(&fleet.ns.client).await;
    let started = Instant::now();
    let created = scale::create_streams_with(&fleet, &names, 1, setup.secrets).await;
    // The patience counts from the last create: with a Secret per camera (three writes
    // each) the creates alone outlast it at 100,000 (1,570 s, against 1,200 s of patience).
    let converged = scale::wait_held(&fleet, &want, started, created + patience(streams)).await;
    let cpu_after = cpu_split_named(&pids);
    let operator_cpu = cpu_of(&cpu_before, &cpu_after, "panoptes");
    let cpu = scale::operator::cpu_delta(&cpu_before, &cpu_after);
    perf_stop(perf);
    profile_wait(apiserver_profile);
    let push = converged.map(|d| Rate {
        count: streams,
        took: d,
        client_cpu: None,
    });

    report.add(
        format!("Convergence, {label}: apply → all on nodes"),
        match push {
            Some(p) => format!(
                "{:.1} s ({:.0} streams/s)",
                p.took.as_secs_f64(),
                p.per_second()
            ),
            None => format!(
                "did not converge within {:.0} s of the last create",
                patience(streams).as_secs_f64()
            ),
        },
        target(streams, "≤ 60 s", "creates + ≤ 2 s"),
    );
    report.add("CPU time used during that convergence", cpu, "");
    report.add(
        format!(
            "… of which creating the Streams ({} in flight{})",
            scale::CREATE_CONCURRENCY,
            match setup.secrets {
                CameraSecrets::None => "",
                CameraSecrets::PerStream =>
                    "; each a credentials Secret, the Stream, the Secret's owner: 3 writes",
            }
        ),
        format!(
            "{:.1} s ({:.0} {}/s)",
            created.as_secs_f64(),
            streams as f64 / created.as_secs_f64(),
            match setup.secrets {
                CameraSecrets::None => "objects",
                CameraSecrets::PerStream => "Streams",
            }
        ),
        "",
    );
    if setup.secrets == CameraSecrets::PerStream {
        report.add(
            "Cameras on nodes with their own login (their Secret's values in the input URL)",
            format!("{} of {streams}", scale::logins_on_nodes(&fleet, &names)),
            "all",
        );
    }
    report.add(
        format!(
            "Raw node-accept rate, {label} ({} in flight, {} per node; the median of three takes)",
            scale::PUSH_CONCURRENCY,
            scale::PER_NODE_IN_FLIGHT
        ),
        format!(
            "{:.0} PUT/s ({:.1} s; CPU of the three: {raw_cpu})",
            raw.per_second(),
            raw.took.as_secs_f64()
        ),
        "",
    );
    if let Some(p) = push {
        report.add(
            "… last Stream created → all on nodes (the operator's lag behind the API server)",
            format!("{:.1} s", p.took.saturating_sub(created).as_secs_f64()),
            target(streams, "", "≤ 2 s"),
        );
        report.add(
            format!("Streams on nodes per second during the apply ÷ raw rate, {label} (bound by the create rate)"),
            format!("{:.3}×", p.per_second() / raw.per_second()),
            "",
        );
    }
    report.add(
        format!("Operator RSS idle ({nodes} nodes, no streams)"),
        format!("{:.0} MiB", mib(idle)),
        "",
    );
    let settle = scale::wait_quiet(
        &fleet.ns.client,
        Duration::from_secs(5),
        Duration::from_secs(300),
    )
    .await;
    let settled = op.rss_kib();
    per_stream_writes(
        report,
        &fleet,
        &op,
        streams,
        &writes_before,
        started.elapsed().saturating_sub(created),
    )
    .await;
    report.add(
        format!(
            "Operator RSS at {streams} streams (writes settled after {:.0} s)",
            settle.as_secs_f64()
        ),
        format!("{:.0} MiB", mib(settled)),
        target(streams, "≤ 300 MiB", "≤ 600 MiB"),
    );
    if let Some(heap) = op.heap_live_kib().await {
        report.add(
            format!("Operator heap live at {streams} streams (PANOPTES_HEAP_COUNT=1) / RSS − heap (allocator retention)"),
            format!("{:.0} / {:.0} MiB", mib(heap), mib(settled.saturating_sub(heap))),
            "",
        );
    }
    report.add(
        "… per stream (RSS settled − idle, ÷ streams)",
        format!(
            "{:.1} KiB",
            settled.saturating_sub(idle) as f64 / streams as f64
        ),
        target(streams, "", "≤ 5 KiB"),
    );
    if let Some(sb) = &standby {
        report.add(
            "Standby replica (not leading; watches, facade, peer mirror): RSS idle / at rest, CPU during the convergence",
            format!(
                "{:.0} / {:.0} MiB, {:.1} s (leader {operator_cpu:.1} s)",
                mib(standby_idle.unwrap_or_default()),
                mib(sb.rss_kib()),
                cpu_of(&cpu_before, &cpu_after, "panoptes standby"),
            ),
            "",
        );
    }
    curve.push(Point {
        streams,
        nodes,
        converged,
        created,
        operator_cpu,
        rss_idle_kib: idle,
        rss_settled_kib: settled,
        rest_cpu_rate: None,
    });
    Converged {
        fleet,
        op,
        standby,
        names,
        raw,
    }
}

/// The operator's API-server writes from before the first create to rest, per stream (every
/// one is taken from the creates on a shared API server), and how long after the last create
/// they went on. The creates themselves (`POST streams`) are the bench's, not the operator's.
async fn per_stream_writes(
    report: &mut Report,
    fleet: &Fleet,
    op: &OperatorProcess,
    streams: usize,
    before: &std::collections::BTreeMap<String, f64>,
    since_last_create: Duration,
) {
    let d = scale::delta(before, &scale::apiserver_writes(&fleet.ns.client).await);
    let per = |k: &str| d.get(k).copied().unwrap_or(0) as f64 / streams as f64;
    report.add(
        format!("Operator writes per stream, first create → rest, {streams} streams: status patches / other Stream patches / Events"),
        format!(
            "{:.2} / {:.2} / {:.2}",
            per("PATCH streams/status"),
            per("PATCH streams"),
            per("POST events") + per("PATCH events"),
        ),
        "status ≤ 1",
    );
    // Each node's stream counts change at nearly every resync while the creates run: written
    // each time, they were a third of the API server's writes in a 100k apply.
    report.add(
        format!("… Streamer status patches from first create → rest, per node and per stream, {streams} streams"),
        format!(
            "{:.1} / {:.3}",
            d.get("PATCH streamers/status").copied().unwrap_or(0) as f64
                / fleet.sim.nodes().len().max(1) as f64,
            per("PATCH streamers/status"),
        ),
        "",
    );
    // The operator's own count (since it started, just before the creates): a failed write it
    // tried again is a request the API server counted too.
    let work = op.work_counts().await;
    report.add(
        "… the operator's Stream status writes per stream: landed / failed and tried again / given up",
        format!(
            "{:.2} / {:.2} / {:.2}",
            work.status_ok / streams as f64,
            work.status_retried / streams as f64,
            work.status_dropped / streams as f64
        ),
        "",
    );
    // A camera's `Ready=Starting` waits for two lists of its node: lists lagging behind their
    // interval show up as statuses written twice.
    let (buckets, sum, count) = op.histogram("panoptes_node_list_period_seconds").await;
    let over = |le: f64| {
        let within = buckets
            .iter()
            .find(|(b, _)| (*b - le).abs() < 1e-9)
            .map_or(count, |(_, n)| *n);
        (count - within) / count.max(1.0) * 100.0
    };
    report.add(
        "… node lists from start to rest: mean time between two lists of a node / share over 40 s / over 80 s",
        format!(
            "{:.1} s / {:.1} % / {:.1} % ({count:.0} lists)",
            sum / count.max(1.0),
            over(40.0),
            over(80.0)
        ),
        "",
    );
    let parts = op.status_changes().await;
    report.add(
        "… what those writes changed, per stream (a write can change several; `same`: nothing)",
        parts
            .iter()
            .map(|(part, n)| format!("{part} {:.3}", n / streams as f64))
            .collect::<Vec<_>>()
            .join(", "),
        "",
    );
    report.add(
        "… last Stream created → API-server writes quiet (no write in 5 s, cap 300 s)",
        format!("{:.0} s", since_last_create.as_secs_f64()),
        "≤ 60 s",
    );
}

/// What a convergence leaves running for the scenarios that follow.
struct Converged {
    fleet: Fleet,
    op: OperatorProcess,
    standby: Option<OperatorProcess>,
    names: Vec<String>,
    raw: Rate,
}

/// The operator processes to account CPU to, by name.
fn operator_pids(
    op: &OperatorProcess,
    standby: Option<&OperatorProcess>,
) -> Vec<(&'static str, u32)> {
    std::iter::once(("panoptes", op.pid()))
        .chain(standby.map(|s| ("panoptes standby", s.pid())))
        .collect()
}

/// `perf record` of the operator while `PANOPTES_BENCH_PERF` is set (DWARF call graphs: the
/// release build keeps no frame pointers). Stop it with [`perf_stop`].
fn perf_record(op: &OperatorProcess, scenario: &str, file: &str) -> Option<std::process::Child> {
    // `PANOPTES_BENCH_PERF_AT=restart` records that scenario alone: perf's own CPU over a
    // 100k convergence would slow the creates the figures are about.
    if let Ok(at) = std::env::var("PANOPTES_BENCH_PERF_AT")
        && !at.split(',').any(|a| a.trim() == scenario)
    {
        return None;
    }
    // `PANOPTES_BENCH_PERF=1` samples at 99 Hz; a larger number is the rate (a push window of
    // a few seconds needs more than 99 samples a second to rank anything).
    let hz = std::env::var("PANOPTES_BENCH_PERF")
        .ok()?
        .parse::<u32>()
        .ok()
        .filter(|hz| *hz > 1)
        .unwrap_or(99)
        .to_string();
    Some(
        std::process::Command::new("perf")
            .args([
                "record",
                "-F",
                hz.as_str(),
                "--call-graph",
                "dwarf,16384",
                "-p",
            ])
            .arg(op.pid().to_string())
            .arg("-o")
            .arg(out_dir().join(file))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("running perf"),
    )
}

/// A CPU profile of kube-apiserver over the next `seconds`, while `PANOPTES_BENCH_PERF` or
/// `PANOPTES_BENCH_PPROF` is set (`go tool pprof -top target/controlplane/bin/kube-apiserver
/// FILE`; Go's sampler costs the API server little). Wait for it with [`profile_wait`].
fn apiserver_profile(file: &str, seconds: u64) -> Option<std::process::Child> {
    std::env::var_os("PANOPTES_BENCH_PERF").or_else(|| std::env::var_os("PANOPTES_BENCH_PPROF"))?;
    Some(
        std::process::Command::new(support::repo_root().join("target/controlplane/bin/kubectl"))
            .arg("--kubeconfig")
            .arg(&support::control_plane().kubeconfig)
            .args([
                "get",
                "--raw",
                &format!("/debug/pprof/profile?seconds={seconds}"),
            ])
            .stdout(std::fs::File::create(out_dir().join(file)).expect("creating the profile file"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("running kubectl"),
    )
}

fn profile_wait(profile: Option<std::process::Child>) {
    if let Some(mut p) = profile {
        let _ = p.wait();
    }
}

fn perf_stop(perf: Option<std::process::Child>) {
    if let Some(mut perf) = perf {
        // SIGINT makes perf write its data file and exit.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait();
    }
}

/// The operator's own push pace, without the API server's create rate in the way: stop it,
/// wipe every node, start it again over the existing Streams and time until the nodes hold
/// them all again.
async fn repush(
    report: &mut Report,
    fleet: &Fleet,
    op: OperatorProcess,
    names: &[String],
    raw: Rate,
    setup: Setup,
) -> (OperatorProcess, Option<f64>) {
    eprintln!("== restart onto wiped nodes");
    op.stop();
    // From 50,000 Streams the API server's periodic consistency check of them costs as much
    // CPU as the push itself (it overlapped the restart at 100k in a run: 0.25×); the raw
    // rate taken at the start of the run saw no such check, so the restart starts right after
    // one, and the raw rate is taken again just before it, under the same conditions.
    let check_wait = if names.len() >= 50_000 {
        scale::after_consistency_check(
            &fleet.ns.client,
            "panoptes.dev",
            "streams",
            Duration::from_secs(600),
        )
        .await
    } else {
        None
    };
    let raw_before = scale::raw_accept_rate(fleet, names.len()).await;
    let raw_apart = scale::raw_accept_rate_apart(fleet, names.len()).await;
    for node in fleet.sim.nodes() {
        for name in node.stream_names() {
            node.drift_delete_stream(&name);
        }
    }
    let want: HashSet<String> = names.iter().cloned().collect();
    // Issue 17: one LIST of the Streams at start (there were three, one per Stream watch).
    // Nothing else lists Streams meanwhile: the bench reads the nodes, not the API server.
    let lists = || scale::apiserver_lists(&fleet.ns.client, "panoptes.dev", "streams");
    let lists_before = lists().await;
    let requests_before = scale::apiserver_requests(&fleet.ns.client).await;
    for node in fleet.sim.nodes() {
        node.reset_counters();
    }
    let started = Instant::now();
    // A replica restarted under the holder's name takes its Lease back at once.
    let op = leader(
        fleet,
        setup,
        "operator-restart.log",
        patience(names.len()) / 5,
        HeapCount::Off,
    )
    .await;
    let perf = perf_record(&op, "restart", "perf-restart.data");
    // The push window at 100k is ~15 s after the caches synced; a profile longer than the
    // window would mostly show the API server at rest.
    let profile = apiserver_profile(
        "apiserver-restart.pprof",
        (names.len() as u64 / 6_000).clamp(3, 30),
    );
    let ready = started.elapsed();
    let cpu_before = scale::operator::cpu_split(&[op.pid()]);
    let work_before = op.work_counts().await;
    let held = scale::wait_held_timed(fleet, &want, started, patience(names.len())).await;
    let stored = scale::stored(fleet);
    let cpu_after = scale::operator::cpu_split(&[op.pid()]);
    let operator_cpu = cpu_of(&cpu_before, &cpu_after, "panoptes");
    let cpu = scale::operator::cpu_delta(&cpu_before, &cpu_after);
    let work = op.work_counts().await - work_before;
    perf_stop(perf);
    profile_wait(profile);
    let listed = lists().await - lists_before;
    // What the nodes served meanwhile: every request of the operator, by route (a stream
    // list of a node holding its share costs the node and the operator as much as a push of
    // each stream it lists).
    let mut routes: BTreeMap<String, u64> = BTreeMap::new();
    for node in fleet.sim.nodes() {
        for (route, n) in node.counters().by_route {
            *routes.entry(route).or_default() += n;
        }
    }
    let mut routes: Vec<(String, u64)> = routes.into_iter().collect();
    routes.sort_by_key(|r| std::cmp::Reverse(r.1));
    let routes = routes
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    // What the API server served meanwhile (its CPU in this window was as large as the
    // operator's at 100k): the most frequent requests.
    let mut served: Vec<(String, u64)> = scale::delta(
        &requests_before,
        &scale::apiserver_requests(&fleet.ns.client).await,
    )
    .into_iter()
    .collect();
    served.sort_by_key(|s| std::cmp::Reverse(s.1));
    let served = served
        .iter()
        .take(6)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let label = format!(
        "{} streams / {} nodes",
        names.len(),
        fleet.sim.nodes().len()
    );
    report.add(
        format!("Restart onto wiped nodes, {label}: start → all on nodes"),
        match held.all {
            Some(t) => format!(
                "{:.1} s (caches synced after {:.1} s, first stream on a node after {:.1} s)",
                t.as_secs_f64(),
                ready.as_secs_f64(),
                held.first.unwrap_or_default().as_secs_f64()
            ),
            None => format!(
                "did not finish in {:.0} s",
                patience(names.len()).as_secs_f64()
            ),
        },
        "",
    );
    report.add(
        format!("Operator start-up, {label}: all lists synced / first push"),
        format!("{:.1} s / {}", ready.as_secs_f64(), secs(held.first)),
        target(names.len(), "", "first push ≤ 30 s"),
    );
    report.add(
        "CPU time used from caches synced to all on nodes (the nodes hold nothing at first)",
        cpu,
        "",
    );
    report.add(
        "Operator work from caches synced to all on nodes, per stream: Stream reconciles / node PUTs / Streamer reconciles per node",
        format!(
            "{:.2} / {:.2} / {:.1}",
            work.stream_reconciles / names.len() as f64,
            work.pushes / names.len() as f64,
            work.streamer_reconciles / fleet.sim.nodes().len().max(1) as f64
        ),
        "",
    );
    report.add(
        "Node API requests from start to all on nodes, by route (every node)",
        routes,
        "",
    );
    report.add(
        "API-server requests from start to all on nodes (every client; the six most frequent)",
        served,
        "",
    );
    // kube's watcher lists in pages of 500: one list of 10,000 Streams is 20 requests.
    let pages = names.len().div_ceil(500).max(1) as f64;
    report.add(
        format!(
            "LIST requests of the {} Streams from start to all on nodes (pages of 500)",
            names.len()
        ),
        format!("{listed:.0} = {:.1} lists", listed / pages),
        "1 list",
    );
    let mut ratio = None;
    if let (Some(stored), Some(_)) = (stored, held.all) {
        // The push phase: from the first stream stored on a node to the last, as the nodes
        // stamped them (the raw takes are timed the same way). Before it the operator syncs
        // its caches, probes and lists every node and lays out (above).
        let rate = names.len() as f64 / stored.window.as_secs_f64().max(1e-3);
        report.add(
            format!(
                "Panoptes push rate (first → last stream stored by a node) ÷ raw rate taken just before the restart from a client process of its own, {label}"
            ),
            format!(
                "{rate:.0} streams/s in {:.3} s = {:.2}× of {:.0} PUT/s ({} writes stored)",
                stored.window.as_secs_f64(),
                rate / raw_apart.per_second(),
                raw_apart.per_second(),
                stored.count,
            ),
            // Up to 20,000 the median of five restarts holds the target (below).
            target(names.len(), "", "≥ 0.8×"),
        );
        if let Some(client) = raw_apart.client_cpu {
            let per = |s: f64| s * 1e6 / names.len() as f64;
            report.add(
                "… CPU per stream pushed: Panoptes (caches synced → all on nodes, its first node lists and layout included) / the raw client",
                format!("{:.0} µs / {:.0} µs", per(operator_cpu), per(client)),
                "",
            );
        }
        report.add(
            "… its ramp: streams stored per second in each 50 ms from the first",
            stored.ramp_summary(8),
            "",
        );
        report.add(
            "… ÷ raw rate from a client inside the simulated nodes' process (the yardstick until session 13), just before the restart / at the start of the run",
            format!(
                "{:.2}× of {:.0} PUT/s / {:.2}× of {:.0} PUT/s",
                rate / raw_before.per_second(),
                raw_before.per_second(),
                rate / raw.per_second(),
                raw.per_second(),
            ),
            "",
        );
        if let Some(waited) = check_wait {
            report.add(
                "… the restart began after the API server's consistency check of the Streams passed (kube-apiserver lists every Stream from etcd every 5–7.5 min)",
                format!("waited {:.0} s for it", waited.as_secs_f64()),
                "",
            );
        }
        ratio = Some(rate / raw_apart.per_second());
    }
    (op, ratio)
}

/// Issue 21's rollout budget: a preset change reaching every camera, at the default budget.
async fn rollout(report: &mut Report, fleet: &Fleet, names: &[String]) {
    eprintln!("== preset rollout");
    let took = scale::roll_preset(fleet, names, Duration::from_secs(600)).await;
    report.add(
        format!(
            "Preset change over {} cameras at the default budget ({} restarting per node): change → all restarted with it",
            names.len(),
            panoptes::controllers::context::DEFAULT_ROLLOUT_PER_NODE
        ),
        secs(took),
        "",
    );
}

async fn steady_writes(
    report: &mut Report,
    fleet: &Fleet,
    streams: usize,
    op: &OperatorProcess,
    standby: Option<&OperatorProcess>,
) -> f64 {
    eprintln!("== steady state, 60 s");
    let pids = operator_pids(op, standby);
    let before = scale::apiserver_writes(&fleet.ns.client).await;
    let cpu_before = cpu_split_named(&pids);
    let profile = apiserver_profile(&format!("apiserver-rest-{streams}.pprof"), 60);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let cpu_after = cpu_split_named(&pids);
    profile_wait(profile);
    let after = scale::apiserver_writes(&fleet.ns.client).await;
    report.add(
        format!("CPU time used in those 60 s at rest, {streams} streams"),
        scale::operator::cpu_delta(&cpu_before, &cpu_after),
        "",
    );
    if let Some(sb) = standby {
        report.add(
            "Standby replica RSS / leader RSS at the end of those 60 s",
            format!("{:.0} / {:.0} MiB", mib(sb.rss_kib()), mib(op.rss_kib())),
            "",
        );
    }
    let d = scale::delta(&before, &after);
    let total: u64 = d.values().sum();
    let detail = if d.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            d.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    report.add(
        format!("API-server writes in 60 s of steady state, {streams} streams"),
        format!("{total}{detail}"),
        "0",
    );
    cpu_of(&cpu_before, &cpu_after, "panoptes")
}

async fn facade(report: &mut Report, op: &OperatorProcess, fleet: &Fleet, names: &[String]) {
    eprintln!("== facade");
    let one = &names[42];
    let streams = names.len();
    let latency = format!("Facade list latency at {streams} streams");
    let p99 = target(streams, "p99 ≤ 20 ms", "p99 ≤ 50 ms");
    let oha = support::repo_root().join("target/tools/bin/oha");
    let api = op.api_addr.to_string();
    let login = ("bench", "bench-password");
    scale::facade::create_login(&fleet.ns, login).await;
    // The User controller hashes the password first: up to a minute on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        match scale::facade::probe(&api, login).await {
            Err(why) if why.starts_with("login answered") && Instant::now() < deadline => {}
            other => break other,
        }
    };
    let token = match token {
        Ok(t) => t,
        Err(why) => {
            report.add(latency, why, p99);
            return;
        }
    };
    if !oha.exists() {
        report.add(
            latency,
            format!("{} is missing: run `make bench`", oha.display()),
            p99,
        );
        return;
    }
    let seconds = std::env::var("PANOPTES_BENCH_FACADE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // At rest: the restart's and the login's writes settle first (each Stream change makes
    // the next request rebuild the facade's snapshot; the writes during the window are
    // reported below).
    let settle = scale::wait_quiet(
        &fleet.ns.client,
        Duration::from_secs(5),
        patience(streams) / 10,
    )
    .await;
    eprintln!("  writes settled after {:.0} s", settle.as_secs_f64());
    let rss_before = op.rss_kib();
    let writes_before = scale::apiserver_writes(&fleet.ns.client).await;
    for (label, path) in scale::facade::queries(one) {
        let figure = format!("Facade `{path}` p50 / p99 / req/s (oha, 16 connections)");
        match scale::facade::measure(
            &oha,
            &api,
            token.as_deref(),
            label,
            &path,
            Duration::from_secs(seconds),
            16,
        ) {
            Ok(l) => report.add(
                figure,
                format!(
                    "{:.1} / {:.1} ms / {:.0} ({:.0}% ok)",
                    l.p50_ms,
                    l.p99_ms,
                    l.rps,
                    l.success * 100.0
                ),
                p99,
            ),
            Err(e) => report.add(figure, e, p99),
        }
    }
    // The facade's snapshot of rendered streams exists once a list was asked for.
    report.add(
        "Operator RSS before / after the facade load (its snapshot of the rendered streams)",
        format!("{:.0} / {:.0} MiB", mib(rss_before), mib(op.rss_kib())),
        "",
    );
    let writes = scale::delta(
        &writes_before,
        &scale::apiserver_writes(&fleet.ns.client).await,
    );
    report.add(
        "API-server writes on panoptes.dev objects while the facade was measured",
        writes.values().sum::<u64>().to_string(),
        "",
    );
}

async fn failover(report: &mut Report, fleet: &Fleet) {
    eprintln!("== failover");
    let victim = fleet.sim.nodes().len() / 3;
    let f = scale::failover(fleet, victim, Duration::from_secs(120)).await;
    let total = f.detection.zip(f.recovery).map(|(d, r)| d + r);
    report.add(
        format!(
            "Failover, kill 1 of {} nodes ({} streams on it): detection",
            fleet.sim.nodes().len(),
            f.dead_streams
        ),
        secs(f.detection),
        "",
    );
    report.add(
        "Failover: detection → all its streams on live nodes",
        secs(f.recovery),
        "≤ 10 s",
    );
    report.add(
        "Failover: kill → all its streams on live nodes (detection included)",
        secs(total),
        "≤ 10 s",
    );
    report.add(
        "Failover: streams moved vs optimum (the dead node's)",
        format!("{} vs {}", f.moved, f.dead_streams),
        "equal",
    );
}

/// `count` shards side by side, one operator each, over `streams` on `nodes` (stream and node
/// `i` belong to shard `i % count`). One API server serves them all, so this measures the
/// operator-side partitioning only: what each shard's operator holds and does, not what
/// separate control planes would take.
async fn shards(report: &mut Report, streams: usize, nodes: usize, count: usize, setup: Setup) {
    eprintln!("== {count} shards, {streams} streams / {nodes} nodes");
    let fleet = Fleet::start(&format!("bench-shards-{count}"), nodes, count).await;
    let mut ops = Vec::new();
    for s in 0..count {
        let shard = scale::shard_of(s, count);
        let mut op = operator(
            &fleet,
            shard.as_deref(),
            &format!("operator-shard-{s}-of-{count}.log"),
            HeapCount::Off,
        );
        op.wait_ready(Duration::from_secs(60)).await;
        ops.push(op);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle: Vec<u64> = ops.iter().map(OperatorProcess::rss_kib).collect();
    let names = scale::stream_names("cam", streams);
    let want: HashSet<String> = names.iter().cloned().collect();
    let shard_names: Vec<String> = (0..count).map(|s| format!("shard {s}")).collect();
    let pids: Vec<(&str, u32)> = shard_names
        .iter()
        .zip(&ops)
        .map(|(n, op)| (n.as_str(), op.pid()))
        .collect();
    let cpu_before = cpu_split_named(&pids);
    let started = Instant::now();
    let created = scale::create_streams_with(&fleet, &names, count, setup.secrets).await;
    let took = scale::wait_held(&fleet, &want, started, patience(streams)).await;
    let cpu_after = cpu_split_named(&pids);
    let (per_shard, crossed) = scale::shard_split(&fleet, count);
    let what = format!(
        "{count} shards ({streams} streams / {nodes} nodes, one operator each, one API server: operator-side partitioning only)"
    );
    report.add(
        format!("{what}: apply → all on nodes"),
        format!(
            "{} (creates {:.1} s, {:.0} objects/s)",
            secs(took),
            created.as_secs_f64(),
            streams as f64 / created.as_secs_f64()
        ),
        "",
    );
    report.add(
        format!("{count} shards: streams held per shard, streams on another shard's nodes"),
        format!(
            "{}, {crossed} crossed",
            per_shard
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        "split, 0 crossed",
    );
    report.add(
        format!("{count} shards: CPU time used during that convergence"),
        scale::operator::cpu_delta(&cpu_before, &cpu_after),
        "",
    );
    report.add(
        format!("{count} shards: RSS of each operator, idle → all on nodes"),
        ops.iter()
            .zip(&idle)
            .map(|(op, idle)| format!("{:.0} → {:.0} MiB", mib(*idle), mib(op.rss_kib())))
            .collect::<Vec<_>>()
            .join(", "),
        "",
    );
    for op in ops {
        op.stop();
    }
}

/// Convergence, steady-state writes, restart onto wiped nodes, a preset rollout, facade and
/// failover at one size.
async fn full(
    report: &mut Report,
    curve: &mut Vec<Point>,
    streams: usize,
    nodes: usize,
    setup: Setup,
) {
    let Converged {
        fleet,
        op,
        standby,
        names,
        raw,
    } = convergence(report, curve, streams, nodes, setup).await;
    let rest = steady_writes(report, &fleet, streams, &op, standby.as_ref()).await;
    if let Some(p) = curve.last_mut() {
        p.rest_cpu_rate = Some(rest / 60.0);
    }
    // Every node stays up until the failover kills one: any other down mark is a node taken
    // for dead while it answered (a starved probe loop did that at 100k once).
    let first_leader_marks = node_unreachable_marks(&op).await;
    // The restart measures the leader's own push pace, as without a standby: a standby left
    // running would take the Lease if the restart outlasted it. It starts again afterwards,
    // over every stream: a replica's start-up at this size.
    if skipped("restart") {
        // Convergence and rest alone (`PANOPTES_BENCH_SKIP=restart,…`), for work on them.
        op.stop();
        if let Some(sb) = standby {
            sb.stop();
        }
        return;
    }
    if let Some(sb) = standby {
        sb.stop();
    }
    // One restart at 10,000 streams is a push of ~0.4 s, and one take's ratio moved between
    // 0.61× and 1.35× within a run (a pause of 0.1 s on this shared 2-core machine is a
    // quarter of the window): up to 20,000 the restart is taken five times and the median is
    // the figure (the rows above it are the last take's). At 100,000 one take is ~20 s of
    // pushing, and each needs the API server's consistency check out of the way.
    let takes = if names.len() <= 20_000 { 5 } else { 1 };
    let mut op = op;
    let mut ratios = Vec::with_capacity(takes);
    for take in 1..=takes {
        let mut scratch = Report::default();
        let into = if take == takes {
            &mut *report
        } else {
            &mut scratch
        };
        let (next, ratio) = repush(into, &fleet, op, &names, raw, setup).await;
        op = next;
        ratios.extend(ratio);
    }
    if takes > 1 {
        let shown = ratios
            .iter()
            .map(|r| format!("{r:.2}×"))
            .collect::<Vec<_>>()
            .join(", ");
        ratios.sort_by(f64::total_cmp);
        report.add(
            format!("Panoptes push rate ÷ raw rate, {takes} restarts onto wiped nodes in a row: each / the median"),
            match ratios.get(ratios.len() / 2) {
                Some(median) if ratios.len() == takes => format!("{shown} / {median:.2}×"),
                _ => format!("{shown} ({} of {takes} finished)", ratios.len()),
            },
            target(names.len(), "≥ 0.8×", "≥ 0.8×"),
        );
    }
    let standby = if setup.standby {
        Some(restart_standby(report, &fleet, names.len()).await)
    } else {
        None
    };
    // Issue 21 asks for the time to roll 10,000 cameras, at every size.
    if !skipped("rollout") {
        rollout(report, &fleet, &names[..names.len().min(10_000)]).await;
    }
    if !skipped("facade") {
        facade(report, &op, &fleet, &names).await;
    }
    let killed = if skipped("failover") {
        0
    } else {
        failover(report, &fleet).await;
        1
    };
    let down_marks = first_leader_marks
        .zip(node_unreachable_marks(&op).await)
        .map_or("not read (see the operator logs)".to_string(), |(a, b)| {
            (a + b).saturating_sub(killed).to_string()
        });
    report.add(
        format!(
            "Nodes marked unreachable while they answered (probe outcomes, both leaders; the \
             failover's killed node excluded), {streams} streams / {nodes} nodes"
        ),
        down_marks,
        "0",
    );
    op.stop();
    if let Some(sb) = standby {
        sb.stop();
    }
}

/// `panoptes_node_unreachable_marks_total` of a leader.
async fn node_unreachable_marks(op: &OperatorProcess) -> Option<u64> {
    op.metric("panoptes_node_unreachable_marks_total")
        .await
        .map(|v| v as u64)
}

/// The standby started over `streams` existing Streams: until its caches synced, and its
/// memory then.
async fn restart_standby(report: &mut Report, fleet: &Fleet, streams: usize) -> OperatorProcess {
    eprintln!("== standby start over {streams} streams");
    let started = Instant::now();
    let sb = standby(fleet, "operator-standby-restart.log", patience(streams) / 5).await;
    let ready = started.elapsed();
    let cpu = scale::operator::cpu_seconds(sb.pid());
    report.add(
        format!("Standby replica started over {streams} streams: caches synced / RSS / CPU"),
        format!(
            "{:.1} s / {:.0} MiB / {cpu:.1} s",
            ready.as_secs_f64(),
            mib(sb.rss_kib())
        ),
        "",
    );
    sb
}

/// One part of the run.
#[derive(Debug, PartialEq)]
enum Arm {
    /// Convergence only (`1k`).
    Convergence(usize, usize),
    /// Every scenario at (streams, nodes): `10k`, `100k`, `scale:STREAMS:NODES`.
    Full(usize, usize),
    /// (streams, nodes, count) shards side by side: `shards` (2,000 / 20 / 2),
    /// `shards:STREAMS:NODES:COUNT`.
    Shards(usize, usize, usize),
}

/// Whether `PANOPTES_BENCH_SKIP` (comma-separated `restart`, `rollout`, `facade`, `failover`) leaves out
/// a scenario of the full arms, for a run after one figure (the three take ~3 min at 10k).
fn skipped(scenario: &str) -> bool {
    std::env::var("PANOPTES_BENCH_SKIP")
        .unwrap_or_default()
        .split(',')
        .any(|s| s.trim() == scenario)
}

fn only() -> String {
    std::env::var("PANOPTES_BENCH_ONLY").unwrap_or_default()
}

/// The arms `PANOPTES_BENCH_ONLY` names, in run order; empty: `make bench`'s default set (the
/// 100k arm runs only when named, it alone takes ~40 minutes).
fn arms(only: &str) -> Vec<Arm> {
    let only = if only.trim().is_empty() {
        "1k,10k,shards"
    } else {
        only
    };
    only.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| match part {
            "1k" => Arm::Convergence(1_000, 10),
            "10k" => Arm::Full(10_000, 100),
            "100k" => Arm::Full(100_000, 1_000),
            "shards" => Arm::Shards(2_000, 20, 2),
            other => sized(other).unwrap_or_else(|| {
                panic!(
                    "PANOPTES_BENCH_ONLY: unknown arm {other:?} (1k, 10k, 100k, shards, \
                     scale:STREAMS:NODES with more than 42 streams and 3 nodes, \
                     shards:STREAMS:NODES:COUNT with 2 to NODES shards)"
                )
            }),
        })
        .collect()
}

/// `scale:STREAMS:NODES` and `shards:STREAMS:NODES:COUNT`.
fn sized(arm: &str) -> Option<Arm> {
    let (kind, size) = arm.split_once(':')?;
    let numbers: Vec<usize> = size
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    match (kind, numbers.as_slice()) {
        ("scale", &[streams, nodes]) if streams > 42 && nodes > 3 => {
            Some(Arm::Full(streams, nodes))
        }
        ("shards", &[streams, nodes, count])
            if (2..=nodes).contains(&count) && streams >= count =>
        {
            Some(Arm::Shards(streams, nodes, count))
        }
        _ => None,
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {:.1} GiB memory",
        mem as f64 / 1024.0 / 1024.0
    )
}

fn main() {
    // This binary is also the raw client of `scale::raw_accept_rate_apart`.
    scale::raw_client_if_asked();
    // `cargo bench` passes `--bench`. `cargo test --all-targets` (make test) runs bench targets
    // too, without it: the full run takes many minutes, so that run only says where it is;
    // tests/bench_smoke.rs covers the harness in `make test`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: the full benchmark runs with `make bench`; skipped under cargo test");
        return;
    }
    // A typo in PANOPTES_BENCH_ONLY or PANOPTES_BENCH_SECRETS fails here, before the control
    // plane starts.
    let arms = arms(&only());
    let setup = Setup::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    // The machine may be shared: a figure means little without the load it was taken under.
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let report = runtime.block_on(async {
        // Starts the control plane before anything is timed.
        let _ = support::admin_client().await;
        let mut report = Report::default();
        let mut curve = Vec::new();
        for arm in arms {
            match arm {
                Arm::Convergence(streams, nodes) => {
                    // The leader alone: the 1k line of the cost curve stays comparable.
                    let alone = Setup {
                        standby: false,
                        ..setup
                    };
                    let c = convergence(&mut report, &mut curve, streams, nodes, alone).await;
                    c.op.stop();
                }
                Arm::Full(streams, nodes) => {
                    full(&mut report, &mut curve, streams, nodes, setup).await;
                }
                Arm::Shards(streams, nodes, count) => {
                    shards(&mut report, streams, nodes, count, setup).await;
                }
            }
        }
        (report, curve)
    });
    let (report, curve) = report;
    let only = only();
    let header = format!(
        "Machine: {}\nLoad before the run (1/5/15 min): {load}\nConditions: {}\nDate: {}\nCommand: `{}{}make bench` ({:.0} s)\n\n",
        machine(),
        setup.describe(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        [
            "PANOPTES_BENCH_STANDBY",
            "PANOPTES_BENCH_SECRETS",
            "PANOPTES_BENCH_SKIP"
        ]
        .iter()
        .filter_map(|k| Some(format!("{k}={} ", std::env::var(k).ok()?)))
        .collect::<String>(),
        if only.is_empty() {
            String::new()
        } else {
            format!("PANOPTES_BENCH_ONLY={only} ")
        },
        started.elapsed().as_secs_f64()
    );
    let mut md = format!("{header}{}", report.markdown());
    if !curve.is_empty() {
        let _ = write!(md, "\nCost curve:\n\n{}", curve_markdown(&curve));
    }
    println!("\n{md}");
    let path = out_dir().join("results.md");
    std::fs::write(&path, &md).expect("writing target/bench/results.md");
    eprintln!("written to {}", path.display());
}
