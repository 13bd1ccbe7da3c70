//! Test support: one real control plane (kube-apiserver + etcd) per test binary, CRDs
//! installed from `crds/`, and a fresh namespace per test.
//!
//! Set `PANOPTES_TEST_KUBECONFIG` to reuse a control plane that is already running
//! (`target/controlplane/bin/controlplane --bin-dir target/controlplane/bin --state-dir /tmp/cp --crd-dir crds --watch-stdin=false`).
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};

/// The shared control plane of this test binary.
pub struct ControlPlane {
    /// Admin kubeconfig (group system:masters).
    pub kubeconfig: PathBuf,
    // Keeping stdin open keeps the launcher alive; the OS closes it when this process exits,
    // and the launcher then stops etcd and kube-apiserver, even after a panic or SIGKILL.
    // Its stdin and stdout also carry fault commands and their answers ([`ControlPlane::inject`]).
    launcher: Option<Mutex<Launcher>>,
    _state_dir: Option<PathBuf>,
}

struct Launcher {
    _child: Child,
    stdin: ChildStdin,
    stdout: std::io::Lines<BufReader<ChildStdout>>,
}

impl ControlPlane {
    /// Whether this test binary started its own control plane (faults can be injected).
    pub fn owned(&self) -> bool {
        self.launcher.is_some()
    }

    /// Injects a control-plane fault through the launcher (`restart kube-apiserver`,
    /// `restart etcd`, `compact`) and returns its answer's detail once done. Blocking; panics
    /// when the control plane is not this binary's own or the launcher refuses.
    pub fn inject(&self, command: &str) -> String {
        use std::io::Write;
        let mut l = self
            .launcher
            .as_ref()
            .expect(
                "faults need the test binary's own control plane (unset PANOPTES_TEST_KUBECONFIG)",
            )
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        writeln!(l.stdin, "{command}").expect("writing to the launcher");
        let answer = l
            .stdout
            .next()
            .expect("the launcher answers")
            .expect("reading the launcher");
        answer
            .strip_prefix(&format!("OK {command} "))
            .unwrap_or_else(|| panic!("launcher: {answer}"))
            .to_string()
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directory of the control-plane binaries (`make controlplane` builds them).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("PANOPTES_CONTROLPLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/controlplane/bin"))
}

fn start_launcher() -> ControlPlane {
    let bin = bin_dir();
    let launcher = bin.join("controlplane");
    assert!(
        launcher.exists(),
        "{} is missing: run `make controlplane` (or set PANOPTES_TEST_KUBECONFIG)",
        launcher.display()
    );
    let state_dir = std::env::temp_dir().join(format!("panoptes-cp-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir).unwrap();
    let mut child = Command::new(&launcher)
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--crd-dir")
        .arg(repo_root().join("crds"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the control plane launcher");
    let stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let kubeconfig = loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("READY ") => break PathBuf::from(line[6..].trim()),
            Some(Ok(_)) => continue,
            _ => panic!(
                "control plane launcher exited before READY; see its log in {}",
                state_dir.display()
            ),
        }
    };
    ControlPlane {
        kubeconfig,
        launcher: Some(Mutex::new(Launcher {
            _child: child,
            stdin,
            stdout: lines,
        })),
        _state_dir: Some(state_dir),
    }
}

/// The control plane, started on first use.
pub fn control_plane() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| match std::env::var_os("PANOPTES_TEST_KUBECONFIG") {
        Some(path) => ControlPlane {
            kubeconfig: path.into(),
            launcher: None,
            _state_dir: None,
        },
        None => start_launcher(),
    })
}

/// A client for the admin user, bound to the calling test's runtime.
pub async fn admin_client() -> Client {
    client_for(&control_plane().kubeconfig, None).await
}

/// A client that impersonates `user` (and `groups`), to test RBAC as a service account would.
pub async fn impersonating_client(user: &str, groups: Vec<String>) -> Client {
    client_for(
        &control_plane().kubeconfig,
        Some((user.to_string(), groups)),
    )
    .await
}

/// A client that reaches the API server through `addr` (`host:port` of a [`binary::Relay`], so
/// its connections can be cut), impersonating `user` (and `groups`) when given.
pub async fn client_through(addr: &str, impersonate: Option<(String, Vec<String>)>) -> Client {
    let mut config = config_for(&control_plane().kubeconfig, impersonate).await;
    config.cluster_url = format!("https://{addr}").parse().unwrap();
    let client = Client::try_from(config).unwrap();
    ensure_crds(&client).await;
    client
}

async fn config_for(kubeconfig: &Path, impersonate: Option<(String, Vec<String>)>) -> Config {
    let kc = Kubeconfig::read_from(kubeconfig).expect("reading the test kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    if let Some((user, groups)) = impersonate {
        config.auth_info.impersonate = Some(user);
        config.auth_info.impersonate_groups = Some(groups);
    }
    config
}

/// The API server's `host:port` (for a relay in front of it).
pub async fn apiserver_addr() -> String {
    let config = config_for(&control_plane().kubeconfig, None).await;
    config.cluster_url.authority().unwrap().to_string()
}

async fn client_for(kubeconfig: &Path, impersonate: Option<(String, Vec<String>)>) -> Client {
    let client = Client::try_from(config_for(kubeconfig, impersonate).await).unwrap();
    ensure_crds(&client).await;
    client
}

/// Applies the CRDs from `crds/` (a reused control plane may hold older ones) and waits until
/// they are Established. Runs once per test binary.
async fn ensure_crds(client: &Client) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    // The OnceCell is per process, but each test has its own runtime; a fresh client is used.
    let client = client.clone();
    DONE.get_or_init(|| async move {
        let api: Api<CustomResourceDefinition> = Api::all(client);
        for (_, crd) in panoptes::resources::crds() {
            let name = crd.metadata.name.clone().unwrap();
            api.patch(
                &name,
                &PatchParams::apply("panoptes-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
            tokio::time::timeout(
                Duration::from_secs(30),
                await_condition(api.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not established in 30 s"))
            .unwrap();
        }
    })
    .await;
}

/// A namespace of one test. Deleted when dropped (it stays Terminating: there is no
/// namespace controller in the test control plane, so names are never reused).
pub struct TestNamespace {
    /// The namespace name.
    pub name: String,
    /// An admin client.
    pub client: Client,
}

impl TestNamespace {
    /// Creates `prefix-<random>`.
    pub async fn new(prefix: &str) -> Self {
        let client = admin_client().await;
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "panoptes.dev/test": "true" } }
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        Self { name, client }
    }

    /// An `Api` for `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        let kubeconfig = control_plane().kubeconfig.clone();
        // Drop cannot await; a plain kubectl call keeps this independent of the test runtime.
        let _ = Command::new(bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "delete",
                "namespace",
                &name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `kubectl` against the shared control plane.
pub fn kubectl() -> Command {
    let mut cmd = Command::new(bin_dir().join("kubectl"));
    cmd.arg("--kubeconfig").arg(&control_plane().kubeconfig);
    cmd
}

/// `helm` (needs no cluster for lint and template).
pub fn helm() -> Command {
    let mut cmd = Command::new(bin_dir().join("helm"));
    // Helm wants writable cache and config dirs; keep them out of the user's home.
    let home = std::env::temp_dir().join("panoptes-helm");
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// Runs `cmd`, returning stdout; panics with stdout+stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Polls `check` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the namespace of `ns` holds an Event with `reason` about the object `regarding`.
pub async fn events_with_reason(ns: &TestNamespace, reason: &str, regarding: &str) -> bool {
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    events
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
        })
}

/// Every YAML document in `manifests/samples/`, in file order.
pub fn sample_documents() -> Vec<serde_json::Value> {
    let dir = repo_root().join("manifests/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut docs = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

/// Renders the chart's ServiceAccount and RBAC for release `release` in `ns` (extra helm
/// `values` flags) and applies them. Returns the ServiceAccount's user name.
pub fn install_chart_rbac(ns: &str, release: &str, values: &[&str]) -> String {
    let yaml = run_ok(
        helm()
            .args(["template", release])
            .arg(repo_root().join("charts/panoptes"))
            .args(["--namespace", ns])
            .args(["--show-only", "templates/serviceaccount.yaml"])
            .args(["--show-only", "templates/rbac.yaml"])
            .args(["--show-only", "templates/rbac-system.yaml"])
            .args(values),
    );
    let file = std::env::temp_dir().join(format!("{ns}-{release}-rbac.yaml"));
    std::fs::write(&file, yaml).unwrap();
    run_ok(kubectl().args(["apply", "-n", ns, "-f"]).arg(&file));
    format!("system:serviceaccount:{ns}:{release}")
}

/// The groups the API server gives a ServiceAccount of namespace `ns`.
pub fn service_account_groups(ns: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".into(),
    ]
}

/// A kubeconfig file that impersonates `user` in `groups`, for child processes (the
/// `panoptes` binary) that should run with a ServiceAccount's permissions.
pub fn impersonating_kubeconfig(user: &str, groups: &[String], file: &Path) {
    let text = std::fs::read_to_string(&control_plane().kubeconfig).unwrap();
    let mut kc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    for u in kc["users"].as_array_mut().unwrap() {
        u["user"]["as"] = user.into();
        u["user"]["as-groups"] = groups.into();
    }
    std::fs::write(file, serde_yaml::to_string(&kc).unwrap()).unwrap();
}

pub mod binary;
pub mod operator;
pub mod scenario;

/// The samples of the API server's metric `family` (from its `/metrics`): each sample's labels
/// and value.
#[allow(dead_code)]
pub async fn apiserver_samples(
    client: &Client,
    family: &str,
) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = client
        .request_text(req)
        .await
        .expect("reading the API server's /metrics");
    samples(&text, family)
}

/// The labelled samples of `family` in a Prometheus text exposition: each sample's labels and
/// value.
#[allow(dead_code)]
pub fn samples(text: &str, family: &str) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
    let prefix = format!("{family}{{");
    text.lines()
        .filter_map(|line| {
            let (labels, value) = line.strip_prefix(&prefix)?.rsplit_once("} ")?;
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some((labels, value.trim().parse().unwrap_or(0.0)))
        })
        .collect()
}

/// The state an operator instance shares between its reconcilers and its facade, over `ns`,
/// built as `panoptes run` builds it ([`panoptes::state::Shared::start`]); its watches run in
/// `watches`.
pub fn shared(
    ns: &TestNamespace,
    watches: &mut tokio::task::JoinSet<()>,
) -> panoptes::state::Shared {
    shared_as(ns, ns.client.clone(), watches)
}

/// Like [`shared`], talking to the API server with `client` (through a relay, as another user).
pub fn shared_as(
    ns: &TestNamespace,
    client: Client,
    watches: &mut tokio::task::JoinSet<()>,
) -> panoptes::state::Shared {
    panoptes::state::Shared::start(
        client,
        panoptes::state::Scope::Namespace(ns.name.clone()),
        panoptes::state::Shard::all(),
        watches,
    )
}
