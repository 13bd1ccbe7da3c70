//! `make sandbox` end to end, as a newcomer runs it: it comes up, prints the facade URL and an
//! admin login, writes target/sandbox/env, and Ctrl-C (SIGINT) stops every process it started.
//!
//! Run it alone with `cargo test --test sandbox` (about a minute once the binaries are built).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Stops a process that outlives `after` (TERM, then KILL 10 s later), unless dropped first.
struct Watchdog {
    after: Duration,
    fired: Arc<AtomicBool>,
    /// Dropped with the watchdog, which wakes its thread to leave the process alone.
    _stop: mpsc::Sender<()>,
}

impl Watchdog {
    fn start(pid: u32, after: Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        std::thread::spawn(move || {
            let timed_out = |wait| {
                matches!(
                    stopped.recv_timeout(wait),
                    Err(mpsc::RecvTimeoutError::Timeout)
                )
            };
            if !timed_out(after) {
                return;
            }
            flag.store(true, Ordering::Relaxed);
            for (signal, then) in [("-TERM", 10), ("-KILL", 0)] {
                let _ = Command::new("kill")
                    .args([signal, &pid.to_string()])
                    .status();
                if !timed_out(Duration::from_secs(then)) {
                    return;
                }
            }
        });
        Watchdog {
            after,
            fired,
            _stop: stop,
        }
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::Relaxed)
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn port_in_use(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

#[test]
fn sandbox_comes_up_prints_how_to_use_it_and_stops_cleanly_on_ctrl_c() {
    // Own ports and state directory, so a developer's running sandbox is not disturbed. The
    // ports stay below Linux's ephemeral range (32768 and up by default): an outgoing connection
    // (the operator's own to the API server) may otherwise take one between the script's check
    // and panoptes binding it, as happened in CI with 32780.
    let base: u16 = 20000 + (std::process::id() % 120) as u16 * 100;
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        base + 81 < ephemeral_from,
        "sandbox ports {base}..{} reach the ephemeral range from {ephemeral_from}",
        base + 81
    );
    let dir = std::env::temp_dir().join(format!("panoptes-sandbox-{}", std::process::id()));
    let mut child = Command::new(root().join("tests/sandbox/sandbox.sh"))
        .env("SANDBOX_PORT", base.to_string())
        .env("SANDBOX_DIR", &dir)
        .env("SANDBOX_TIMEOUT", "120")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // The reads below block until the script prints, and the wait until it exits: a script
    // that hangs (a SIGINT ignored since the test started, as under a background job of a
    // non-interactive shell, cannot be trapped) would hang the test run. Past the deadline
    // this stops it (TERM, then KILL), so the test fails saying so instead.
    // `SANDBOX_TEST_DEADLINE` (seconds) shortens it, to see it work.
    let deadline = std::env::var("SANDBOX_TEST_DEADLINE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(720);
    let watchdog = Watchdog::start(child.id(), Duration::from_secs(deadline));
    let mut output = String::new();
    let start = Instant::now();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        println!("{line}");
        output.push_str(&line);
        output.push('\n');
        if line.contains("Ctrl-C stops everything") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "too slow");
    }
    // Keep reading what the script prints while it stops, as a terminal would.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    assert!(
        output.contains("Panoptes sandbox is up"),
        "the sandbox did not come up{}:\n{output}",
        if watchdog.fired() {
            " (stopped by the test's watchdog)"
        } else {
            ""
        }
    );
    let api = format!("http://127.0.0.1:{}/watcher/admin-api/v3", base + 81);
    assert!(output.contains(&api), "no facade URL printed");
    assert!(output.contains("openapi.json"));
    assert!(output.contains("export KUBECONFIG="));
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    for key in [
        "KUBECONFIG=",
        "PANOPTES_API_URL=",
        "PANOPTES_ADMIN_USER=admin",
        "PANOPTES_ADMIN_PASSWORD=",
        "PANOPTES_NAMESPACE=video",
    ] {
        assert!(env.contains(key), "{key} missing from env:\n{env}");
    }
    assert!(port_in_use(base + 81), "the facade is not listening");
    let openapi = Command::new("curl")
        .args(["-sf", &format!("{api}/openapi.json")])
        .output()
        .unwrap();
    assert!(openapi.status.success(), "GET {api}/openapi.json failed");
    let doc: serde_json::Value = serde_json::from_slice(&openapi.stdout).unwrap();
    assert!(doc["openapi"].is_string(), "not an OpenAPI document");

    // The control plane's processes, to check they are gone afterwards.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("controlplane/state.json")).unwrap(),
    )
    .unwrap();
    let mut pids: Vec<i64> = state["child_pids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_i64())
        .collect();
    pids.push(state["launcher_pid"].as_i64().unwrap());

    // Ctrl-C: SIGINT to the script, which stops what it started.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let (fired, after) = (watchdog.fired(), watchdog.after);
    // Exited: the watchdog must not signal its pid, which may be reused from now on.
    drop(watchdog);
    let _ = drain.join();
    assert!(
        !fired,
        "the sandbox script was still running after {after:?}: stopped by the test's watchdog (was SIGINT ignored when the test started?)"
    );
    assert_eq!(status.code(), Some(130), "{status}");
    for port in [base, base + 1, base + 2, base + 3, base + 80, base + 81] {
        assert!(!port_in_use(port), "port {port} still served after Ctrl-C");
    }
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "control plane process {pid} survived Ctrl-C"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
