//! The real `panoptes run` binary against the test control plane, its output in a file.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::TestNamespace;

/// A loopback port that was free when asked, for a child process to bind.
///
/// Taken below Linux's ephemeral range (32768 and up by default) and below the sandbox test's
/// 20000..32000: a port the kernel picked for `:0` is released before the child binds it, and
/// meanwhile any outgoing connection (the child's own to the API server) may take it, as a
/// `bench_smoke` shard operator found with 41633. Ports of this range are only ever handed out
/// here: each process starts at its own offset and never repeats one, and a port still bound
/// by someone else is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FROM: u32 = 10_000;
    const SPAN: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Processes a few pids apart start 97 ports apart: more than one test binary hands out.
    let start = (std::process::id().wrapping_mul(97)) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = (FROM + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FROM}..{}", FROM + SPAN)
}

/// One `panoptes run` process.
pub struct Binary {
    /// The process.
    pub child: Child,
    /// Probe address (`/healthz`, `/readyz`, `/metrics`).
    pub probe: String,
    /// Facade address.
    pub api: String,
    /// Peer channel address (published on the Lease while it leads).
    pub peer: String,
    /// stdout and stderr of the process.
    pub log: PathBuf,
}

impl Binary {
    /// Starts `panoptes run` scoped to `ns` with a 1 s node resync and `RUST_LOG=rust_log`.
    pub fn start(ns: &TestNamespace, rust_log: &str) -> Self {
        Self::start_with(ns, rust_log, &[])
    }

    /// [`Binary::start`] with `extra` arguments after the usual ones.
    pub fn start_with(ns: &TestNamespace, rust_log: &str, extra: &[&str]) -> Self {
        Self::start_scoped(&ns.name, &ns.name, rust_log, extra)
    }

    /// [`Binary::start_with`] watching namespace `watched`, its own objects in `system`.
    pub fn start_scoped(system: &str, watched: &str, rust_log: &str, extra: &[&str]) -> Self {
        let probe = format!("127.0.0.1:{}", free_port());
        let api = format!("127.0.0.1:{}", free_port());
        let peer = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!("panoptes-{watched}-{}.log", free_port()));
        let out = std::fs::File::create(&log).unwrap();
        // `PANOPTES_TEST_BINARY`: another build (say of the base commit, to see a test fail).
        let bin = std::env::var("PANOPTES_TEST_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_panoptes").to_string());
        let child = Command::new(bin)
            .args(["run", "--namespace", watched, "--system-namespace", system])
            .args([
                "--probe-addr",
                &probe,
                "--api-addr",
                &api,
                "--peer-addr",
                &peer,
            ])
            .args(["--node-resync-seconds", "1", "--log-format", "json"])
            .args(extra)
            .env("KUBECONFIG", &super::control_plane().kubeconfig)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("panoptes starts");
        Self {
            child,
            probe,
            api,
            peer,
            log,
        }
    }

    /// Sends a signal (`-TERM`, `-KILL`).
    pub fn signal(&self, sig: &str) {
        super::run_ok(Command::new("kill").args([sig, &self.child.id().to_string()]));
    }

    /// The process's resident set size, bytes (Linux).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the process is running");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A front relay like a Service in front of replicas: each accepted connection goes to the
/// next backend in turn; a backend that refuses the connection is skipped (the only retry:
/// once bytes were sent nothing is retried, so a request in flight on a dying backend fails).
/// It is also a network fault between a client and a real server: [`Relay::cut`] drops every
/// open connection, [`Relay::hold`] refuses new ones.
pub struct Relay {
    /// The relay's address.
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
    cuts: tokio::sync::watch::Sender<u64>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// Relays to `backends` (`host:port`), alternating per connection.
    pub async fn start(backends: Vec<String>) -> Self {
        Self::serve(backends, 1).await
    }

    /// Relays to `backends` like a Service with `sessionAffinity: ClientIP` (every test
    /// client is 127.0.0.1, one client): every connection goes to the same backend until it
    /// refuses one, then to the next.
    pub async fn sticky(backends: Vec<String>) -> Self {
        Self::serve(backends, 0).await
    }

    /// Relays to `backends`, moving `step` backends on per connection (0: sticky).
    async fn serve(backends: Vec<String>, step: usize) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cuts, cut_rx) = tokio::sync::watch::channel(0u64);
        let held = std::sync::Arc::new(AtomicBool::new(false));
        let next = std::sync::Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let held = held.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if held.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees its connection reset
                    }
                    let first = next.fetch_add(step, Ordering::Relaxed);
                    let (backends, next) = (backends.clone(), next.clone());
                    let mut cut = cut_rx.clone();
                    cut.mark_unchanged();
                    tokio::spawn(async move {
                        for i in 0..backends.len() {
                            let to = &backends[(first + i) % backends.len()];
                            match tokio::net::TcpStream::connect(to).await {
                                Ok(mut server) => {
                                    tokio::select! {
                                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                        _ = cut.changed() => {}
                                    }
                                    return;
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                                    // A sticky client moves on for good, as kube-proxy's
                                    // affinity does once its endpoint is gone.
                                    if step == 0 {
                                        let _ = next.compare_exchange(
                                            first + i,
                                            first + i + 1,
                                            Ordering::Relaxed,
                                            Ordering::Relaxed,
                                        );
                                    }
                                    continue;
                                }
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Self {
            addr,
            task,
            cuts,
            held,
        }
    }

    /// Drops every open connection (both directions, mid-stream: watches and requests in
    /// flight fail like on a network fault).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// While `on`, new connections are dropped as soon as they arrive.
    pub fn hold(&self, on: bool) {
        self.held.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
