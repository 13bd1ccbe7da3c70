//! The real `panoptes run` binary against the test control plane, its output in a file.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::TestNamespace;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `panoptes run` process.
pub struct Binary {
    /// The process.
    pub child: Child,
    /// Probe address (`/healthz`, `/readyz`, `/metrics`).
    pub probe: String,
    /// Facade address.
    pub api: String,
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
        let probe = format!("127.0.0.1:{}", free_port());
        let api = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!("panoptes-{}-{}.log", ns.name, free_port()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_panoptes"))
            .args([
                "run",
                "--namespace",
                &ns.name,
                "--system-namespace",
                &ns.name,
            ])
            .args(["--probe-addr", &probe, "--api-addr", &api])
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
            log,
        }
    }

    /// Sends a signal (`-TERM`, `-KILL`).
    pub fn signal(&self, sig: &str) {
        super::run_ok(Command::new("kill").args([sig, &self.child.id().to_string()]));
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
