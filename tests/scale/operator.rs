//! The real `panoptes` binary as a child process, with its memory and probes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The operator's opt-in heap counter (see `panoptes::heap`).
const HEAP_COUNT_ENV: &str = "PANOPTES_HEAP_COUNT";

/// Whether a started operator counts its heap, when this process's `PANOPTES_HEAP_COUNT=1`
/// asks for it. The counter adds a contended global atomic to every allocation and free, so
/// only the process whose heap figure is read should carry it: a push-rate figure taken with
/// it is not production's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapCount {
    /// As this process's environment says.
    Inherit,
    /// Never, whatever the environment says.
    Off,
}

/// A running `panoptes run`. Killed when dropped.
pub struct OperatorProcess {
    child: Child,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub probe_addr: SocketAddr,
    /// The Watcher admin API facade.
    pub api_addr: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
}

fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], crate::support::binary::free_port()))
}

impl OperatorProcess {
    /// Starts `bin run` against `namespace` (leader election off), logging to `log`.
    /// `heap`: whether it inherits `PANOPTES_HEAP_COUNT` from this process.
    pub fn start(
        bin: &Path,
        kubeconfig: &Path,
        namespace: &str,
        shard: Option<&str>,
        extra: &[&str],
        log: PathBuf,
        heap: HeapCount,
    ) -> Self {
        Self::spawn(bin, kubeconfig, namespace, shard, None, extra, log, heap)
    }

    /// Starts `bin run` as one of the chart's replicas: leader election on (the Lease
    /// `panoptes-leader` in `namespace`), `identity` as its holder name, and the peer channel
    /// over which a standby mirrors the leader's live view. The first replica of a namespace
    /// leads; a restarted replica with the holder's identity takes its Lease back at once.
    pub fn start_replica(
        bin: &Path,
        kubeconfig: &Path,
        namespace: &str,
        identity: &str,
        extra: &[&str],
        log: PathBuf,
        heap: HeapCount,
    ) -> Self {
        Self::spawn(
            bin,
            kubeconfig,
            namespace,
            None,
            Some(identity),
            extra,
            log,
            heap,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        bin: &Path,
        kubeconfig: &Path,
        namespace: &str,
        shard: Option<&str>,
        replica: Option<&str>,
        extra: &[&str],
        log: PathBuf,
        heap: HeapCount,
    ) -> Self {
        let probe_addr = free_port();
        let api_addr = free_port();
        let file = std::fs::File::create(&log).expect("creating the operator log");
        let mut cmd = Command::new(bin);
        cmd.args([
            "run",
            "--namespace",
            namespace,
            "--system-namespace",
            namespace,
        ])
        .arg("--probe-addr")
        .arg(probe_addr.to_string())
        .arg("--api-addr")
        .arg(api_addr.to_string());
        match replica {
            None => {
                cmd.arg("--leader-election=false");
            }
            Some(identity) => {
                // Outside a pod the leader publishes its listen address for the standbys.
                cmd.arg("--leader-election=true")
                    .args(["--pod-name", identity, "--peer-addr"])
                    .arg(free_port().to_string())
                    .env_remove("POD_IP");
            }
        }
        cmd.args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file);
        if heap == HeapCount::Off {
            cmd.env_remove(HEAP_COUNT_ENV);
        }
        if let Some(s) = shard {
            cmd.arg("--shard").arg(s);
            // The unsharded kinds are reconciled by the first shard only.
            if s != "s0" {
                cmd.arg("--shared-controllers=false");
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Self {
            child,
            probe_addr,
            api_addr,
            log,
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/PID/status of the operator");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Bytes live on the operator's heap in KiB (`panoptes_heap_live_bytes`), when it runs
    /// with `PANOPTES_HEAP_COUNT=1` (the bench passes its environment on).
    pub async fn heap_live_kib(&self) -> Option<u64> {
        self.metric("panoptes_heap_live_bytes")
            .await
            .map(|b| b as u64 / 1024)
    }

    /// The operator's `/metrics` text (empty when it does not answer).
    async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.probe_addr);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The value of an unlabelled series on the operator's `/metrics`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        unlabelled(&self.metrics_text().await, series)
    }

    /// The operator's cumulative work counters (reconciles of Streams and Streamers, node
    /// PUTs of streams); subtract two readings for a window.
    pub async fn work_counts(&self) -> WorkCounts {
        let text = self.metrics_text().await;
        // The samples of `family` whose labels include every one of `having`, summed.
        let sum = |family: &str, having: &[(&str, &str)]| -> f64 {
            crate::support::samples(&text, family)
                .into_iter()
                .filter(|(labels, _)| {
                    having
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
                })
                .fold(0.0, |total, (_, n)| total + n)
        };
        let stream = ("kind", "Stream");
        WorkCounts {
            stream_reconciles: sum("panoptes_reconciles_total", &[stream]),
            streamer_reconciles: sum("panoptes_reconciles_total", &[("kind", "Streamer")]),
            pushes: sum("panoptes_stream_pushes_total", &[]),
            status_ok: sum("panoptes_status_writes_total", &[stream, ("outcome", "ok")]),
            status_retried: sum(
                "panoptes_status_writes_total",
                &[stream, ("outcome", "retried")],
            ),
            status_dropped: sum(
                "panoptes_status_writes_total",
                &[stream, ("outcome", "dropped")],
            ),
        }
    }

    /// The operator's Stream status writes by what each changed
    /// (`panoptes_status_changes_total`), most frequent first.
    pub async fn status_changes(&self) -> Vec<(String, f64)> {
        let text = self.metrics_text().await;
        let mut parts: Vec<(String, f64)> =
            crate::support::samples(&text, "panoptes_status_changes_total")
                .into_iter()
                .filter(|(labels, _)| labels.get("kind").map(String::as_str) == Some("Stream"))
                .filter_map(|(mut labels, n)| Some((labels.remove("part")?, n)))
                .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        parts
    }

    /// A histogram of the operator's `/metrics` (unlabelled): its cumulative buckets as
    /// `(le, count)`, its sum and its count.
    pub async fn histogram(&self, series: &str) -> (Vec<(f64, f64)>, f64, f64) {
        let text = self.metrics_text().await;
        let buckets = crate::support::samples(&text, &format!("{series}_bucket"))
            .into_iter()
            .filter_map(|(labels, n)| Some((labels.get("le")?.parse().ok()?, n)))
            .collect();
        let value = |suffix: &str| unlabelled(&text, &format!("{series}{suffix}")).unwrap_or(0.0);
        (buckets, value("_sum"), value("_count"))
    }

    /// Waits until `/readyz` answers 200 (caches synced); panics after `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("http://{}/readyz", self.probe_addr);
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited ({status}); see {}", self.log.display());
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the operator was not ready in {timeout:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the operator (SIGKILL: nothing it would do on the way out matters here).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mebibytes from KiB, for reports.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU time (user + system) a process used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Processes whose parent is `pid`, with their command names.
pub fn children(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some((p, comm))
        })
        .collect()
}

/// CPU seconds used so far by this process (the simulated nodes and the load generator), the
/// API server and etcd of this run's control plane, and the given operators (named `panoptes`).
pub fn cpu_split(operators: &[u32]) -> Vec<(String, f64)> {
    let named: Vec<(&str, u32)> = operators.iter().map(|p| ("panoptes", *p)).collect();
    cpu_split_named(&named)
}

/// [`cpu_split`] with each operator process under its own name (`panoptes standby`, a shard).
pub fn cpu_split_named(operators: &[(&str, u32)]) -> Vec<(String, f64)> {
    let me = std::process::id();
    let mut out = vec![(
        "bench (simulated nodes, clients)".to_string(),
        cpu_seconds(me),
    )];
    for (launcher, _) in children(me)
        .into_iter()
        .filter(|(_, c)| c == "controlplane")
    {
        for (pid, comm) in children(launcher) {
            out.push((comm, cpu_seconds(pid)));
        }
    }
    for (name, pid) in operators {
        out.push((name.to_string(), cpu_seconds(*pid)));
    }
    out
}

/// `after - before` of two [`cpu_split`]s, as `name 12.3 s` parts.
pub fn cpu_delta(before: &[(String, f64)], after: &[(String, f64)]) -> String {
    after
        .iter()
        .zip(before)
        .map(|((name, a), (_, b))| format!("{name} {:.1} s", a - b))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cumulative work counters of one operator ([`OperatorProcess::work_counts`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkCounts {
    /// Stream reconciles, every outcome.
    pub stream_reconciles: f64,
    /// Streamer reconciles, every outcome.
    pub streamer_reconciles: f64,
    /// Streams pushed to nodes (PUTs answered).
    pub pushes: f64,
    /// Stream status writes that landed.
    pub status_ok: f64,
    /// Stream status writes that failed and were queued again.
    pub status_retried: f64,
    /// Stream status writes given up (the API server called them invalid).
    pub status_dropped: f64,
}

impl std::ops::Sub for WorkCounts {
    type Output = WorkCounts;
    fn sub(self, o: WorkCounts) -> WorkCounts {
        WorkCounts {
            stream_reconciles: self.stream_reconciles - o.stream_reconciles,
            streamer_reconciles: self.streamer_reconciles - o.streamer_reconciles,
            pushes: self.pushes - o.pushes,
            status_ok: self.status_ok - o.status_ok,
            status_retried: self.status_retried - o.status_retried,
            status_dropped: self.status_dropped - o.status_dropped,
        }
    }
}

/// The value of an unlabelled `series` in a Prometheus text exposition.
fn unlabelled(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
