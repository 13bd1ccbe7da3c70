//! GitOps health: our statuses as kstatus (Flux) and Argo CD's health Lua read them, first on
//! hand-written statuses covering every branch, then on the statuses the real operator writes
//! while it runs with nothing but the chart's RBAC (impersonating its ServiceAccount).

#[path = "gitops/argocd.rs"]
mod argocd;
#[path = "gitops/kstatus.rs"]
mod kstatus;
mod support;

use std::process::Stdio;
use std::time::Duration;

use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use support::{
    TestNamespace, eventually, impersonating_kubeconfig, install_chart_rbac, repo_root,
    sample_documents, service_account_groups,
};

use kstatus::Status;

/// Generous: `make test` runs many test binaries at once on a small machine.
const WAIT: Duration = Duration::from_secs(120);

/// The operator process, stopped when the test ends, panics included.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

fn object(kind: &str, generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": kind,
        "metadata": {"name": "x", "namespace": "video", "generation": generation},
        "status": status
    })
}

fn cond(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": generation})
}

#[test]
fn every_status_shape_reads_the_same_in_kstatus_and_argo_cd() {
    let ready = |s: &str, reason: &str| cond("Ready", s, reason, "m", 2);
    let cases = [
        (
            "not reconciled yet",
            object("Stream", 1, Value::Null),
            Status::InProgress,
            "Progressing",
        ),
        (
            "newer spec than the status",
            object(
                "Stream",
                3,
                json!({"observedGeneration": 2, "conditions": [ready("True", "Synced")]}),
            ),
            Status::InProgress,
            "Progressing",
        ),
        (
            "ready",
            object(
                "Preset",
                2,
                json!({"observedGeneration": 2, "conditions": [ready("True", "Reconciled")]}),
            ),
            Status::Current,
            "Healthy",
        ),
        (
            "a node Panoptes cannot reach",
            object(
                "Streamer",
                2,
                json!({"observedGeneration": 2, "conditions": [
                    cond("Reachable", "False", "Unreachable", "connection refused", 2),
                    ready("False", "NotReachable")]}),
            ),
            Status::InProgress,
            "Degraded",
        ),
        (
            "a camera no node can take",
            object(
                "Stream",
                2,
                json!({"observedGeneration": 2, "conditions": [
                    cond("Scheduled", "False", "NoEligibleNode", "no node has site=west", 2),
                    ready("False", "NotScheduled")]}),
            ),
            Status::InProgress,
            "Degraded",
        ),
        (
            "a reference applied later in the same sync",
            object(
                "User",
                2,
                json!({"observedGeneration": 2, "conditions": [ready("False", "MissingReference")]}),
            ),
            Status::InProgress,
            "Progressing",
        ),
        (
            "a camera switched off on purpose",
            object(
                "Stream",
                2,
                json!({"observedGeneration": 2, "conditions": [ready("False", "Disabled")]}),
            ),
            Status::InProgress,
            "Suspended",
        ),
        (
            "a camera that sends nothing",
            object(
                "Stream",
                2,
                json!({"observedGeneration": 2, "conditions": [
                    cond("Scheduled", "True", "Placed", "on streamer-1", 2),
                    cond("Synced", "True", "InSync", "config matches", 2),
                    ready("False", "NotAlive")]}),
            ),
            Status::InProgress,
            "Degraded",
        ),
        (
            "unknown",
            object(
                "Stream",
                2,
                json!({"observedGeneration": 2, "conditions": [ready("Unknown", "Probing")]}),
            ),
            Status::InProgress,
            "Progressing",
        ),
        (
            "stalled",
            object(
                "Stream",
                2,
                json!({"observedGeneration": 2, "conditions": [
                    cond("Stalled", "True", "InvalidSpec", "bad", 2), ready("False", "InvalidSpec")]}),
            ),
            Status::Failed,
            "Degraded",
        ),
    ];
    for (what, obj, want_kstatus, want_argo) in cases {
        assert_eq!(kstatus::compute(&obj).0, want_kstatus, "kstatus: {what}");
        assert_eq!(argocd::health(&obj).0, want_argo, "Argo CD: {what}");
    }
    let mut deleting = object(
        "Stream",
        2,
        json!({"observedGeneration": 2, "conditions": [ready("True", "Synced")]}),
    );
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(kstatus::compute(&deleting).0, Status::Terminating);
    assert_eq!(argocd::health(&deleting).0, "Progressing");
    // The message says why, from the most specific False condition.
    let (_, message) = argocd::health(&object(
        "Stream",
        2,
        json!({"observedGeneration": 2, "conditions": [
            cond("Scheduled", "False", "NoEligibleNode", "no node has site=west", 2),
            ready("False", "NotScheduled")]}),
    ));
    assert_eq!(message, "NoEligibleNode: no node has site=west");
}

#[test]
fn the_argocd_cm_snippet_carries_health_lua_for_each_kind() {
    let text =
        std::fs::read_to_string(repo_root().join("charts/panoptes/argocd/argocd-cm.yaml")).unwrap();
    let cm: Value = serde_yaml::from_str(&text).unwrap();
    let script = argocd::script();
    let data = cm["data"].as_object().unwrap();
    assert_eq!(data.len(), 5, "{:?}", data.keys());
    for kind in ["Streamer", "Stream", "Preset", "Organization", "User"] {
        let key = format!("resource.customizations.health.panoptes.dev_{kind}");
        assert_eq!(
            data.get(&key).and_then(Value::as_str),
            Some(script.as_str()),
            "{key} differs from health.lua: run `make argocd-cm`"
        );
    }
}

/// The five kinds, as (kind, plural).
const CONTROLLED: &[(&str, &str)] = &[
    ("Streamer", "streamers"),
    ("Stream", "streams"),
    ("Preset", "presets"),
    ("Organization", "organizations"),
    ("User", "users"),
];

fn api(client: &kube::Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let (group, version) = ("panoptes.dev", "v1alpha1");
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Sample objects that are not expected to become Ready: the cameras the samples label as
/// deliberately unreachable (only relevant once Streams are in `CONTROLLED`).
fn expected_not_ready(obj: &Value) -> bool {
    obj["metadata"]["labels"]["sandbox.panoptes.dev/expect"] == "unreachable"
}

/// Applies the samples into `ns`, Streamers pointed at `node_urls`.
async fn apply_samples(client: &kube::Client, ns: &str, node_urls: &[String]) {
    let pp = PatchParams::apply("gitops-tests");
    let mut streamer = 0;
    for mut doc in sample_documents() {
        let kind = doc["kind"].as_str().unwrap().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let (group, version) = doc["apiVersion"]
            .as_str()
            .unwrap()
            .split_once('/')
            .unwrap_or(("", "v1"));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
        if kind == "Streamer" {
            doc["spec"]["apiUrl"] = json!(node_urls[streamer]);
            streamer += 1;
        }
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
            .patch(&name, &pp, &Patch::Apply(&doc))
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }
}

/// The node credentials of the samples' Secret, so the simulated nodes accept them.
fn sample_node_credentials() -> (String, String, String) {
    let secret = sample_documents()
        .into_iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "streamer-credentials")
        .unwrap();
    let s = |k: &str| secret["stringData"][k].as_str().unwrap().to_string();
    (s("login"), s("password"), s("clusterKey"))
}

async fn start_nodes() -> streamer_sim::Cluster {
    let (login, password, cluster_key) = sample_node_credentials();
    streamer_sim::Cluster::start_with(streamer_sim::ClusterOptions {
        nodes: 3,
        base_port: 0,
        node: streamer_sim::NodeOptions {
            edit_auth: Some((login, password)),
            cluster_key: Some(cluster_key),
            ..streamer_sim::NodeOptions::default()
        },
        ..streamer_sim::ClusterOptions::default()
    })
    .await
    .unwrap()
}

/// Every controlled sample object, read back.
async fn controlled_objects(client: &kube::Client, ns: &str) -> Vec<(String, Value)> {
    let mut out = vec![];
    for (kind, plural) in CONTROLLED {
        for o in api(client, ns, kind, plural)
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            let mut v = serde_json::to_value(&o).unwrap();
            v["kind"] = json!(kind);
            out.push((kind.to_string(), v));
        }
    }
    out
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap()
}

#[tokio::test]
async fn the_operator_with_only_the_charts_rbac_converges_the_samples_survives_a_node_failure_and_health_follows()
 {
    let ns = TestNamespace::new("gitops").await;
    // Namespaced mode: the operator may touch this namespace only, as the chart grants.
    let user = install_chart_rbac(&ns.name, "panoptes", &["--set", "namespaced=true"]);
    let dir = std::env::temp_dir().join(&ns.name);
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    impersonating_kubeconfig(&user, &service_account_groups(&ns.name), &kubeconfig);

    let nodes = start_nodes().await;
    let urls: Vec<String> = nodes.nodes().iter().map(|n| n.base_url()).collect();
    apply_samples(&ns.client, &ns.name, &urls).await;

    let log = dir.join("panoptes.log");
    let operator = std::process::Command::new(env!("CARGO_BIN_EXE_panoptes"))
        .args([
            "run",
            "--namespace",
            &ns.name,
            "--system-namespace",
            &ns.name,
        ])
        .args(["--probe-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"])
        .args(["--peer-addr", "127.0.0.1:0"])
        .args(["--node-resync-seconds", "1", "--log-format", "text"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("panoptes.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let mut operator = KillOnDrop(operator);

    let client = ns.client.clone();
    let name = ns.name.clone();
    let objects = eventually(WAIT, "the samples to converge", || {
        let (client, name) = (client.clone(), name.clone());
        async move {
            let objs = controlled_objects(&client, &name).await;
            objs.iter()
                .all(|(_, o)| {
                    if expected_not_ready(o) {
                        // Processed (current generation, a Ready condition) but not Ready.
                        o["status"]["observedGeneration"] == o["metadata"]["generation"]
                            && kstatus::compute(o).0 == Status::InProgress
                    } else {
                        kstatus::compute(o).0 == Status::Current
                    }
                })
                .then_some(objs)
        }
    })
    .await;
    let expected: usize = CONTROLLED
        .iter()
        .map(|(kind, _)| {
            sample_documents()
                .iter()
                .filter(|d| d["kind"] == *kind)
                .count()
        })
        .sum();
    assert_eq!(objects.len(), expected, "{objects:?}");
    for (kind, o) in &objects {
        let name = name_of(o);
        let violations = kstatus::convention_violations(o);
        assert!(violations.is_empty(), "{kind} {name}: {violations:?}");
        let (health, message) = argocd::health(o);
        if expected_not_ready(o) {
            // A camera whose input never connects: a fault a person must look at.
            assert_eq!(health, "Degraded", "{kind} {name}: {message}");
            assert!(message.starts_with("NotAlive"), "{kind} {name}: {message}");
        } else {
            assert_eq!(health, "Healthy", "{kind} {name}: {message}");
        }
    }

    // A user whose password Secret key is gone: Ready=False on the new generation.
    let users = api(&ns.client, &ns.name, "User", "users");
    users
        .patch(
            "guard",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"passwordSecretRef": {"key": "nobody"}}})),
        )
        .await
        .unwrap();
    let guard = eventually(WAIT, "guard to turn not Ready", || {
        let users = users.clone();
        async move {
            let mut v = serde_json::to_value(users.get("guard").await.unwrap()).unwrap();
            v["kind"] = json!("User");
            let ready = v["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned());
            (v["status"]["observedGeneration"] == v["metadata"]["generation"]
                && ready.is_some_and(|c| c["status"] == "False"))
            .then_some(v)
        }
    })
    .await;
    assert!(kstatus::convention_violations(&guard).is_empty());
    // A missing Secret may be on its way (the binary's grace is 60 s): Reconciling, which
    // both tools read as in progress; after the grace it is Stalled (the test below).
    assert_eq!(kstatus::compute(&guard).0, Status::InProgress);
    let (health, message) = argocd::health(&guard);
    assert_eq!(health, "Progressing", "{message}");
    assert!(message.starts_with("PasswordSecretMissing"), "{message}");

    // Node failure: streamer-1 (the only node with site=north) goes down. It reads Degraded,
    // and so do the cameras that may run nowhere else; when it returns, all converge again.
    nodes.node(0).down().await;
    let streamers = api(&ns.client, &ns.name, "Streamer", "streamers");
    let streams = api(&ns.client, &ns.name, "Stream", "streams");
    let read = |api: Api<DynamicObject>, kind: &'static str, name: &'static str| async move {
        let mut v = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
        v["kind"] = json!(kind);
        v
    };
    let dead = eventually(WAIT, "streamer-1 to read Degraded", || {
        let streamers = streamers.clone();
        async move {
            let v = read(streamers, "Streamer", "streamer-1").await;
            (argocd::health(&v).0 == "Degraded").then_some(v)
        }
    })
    .await;
    assert!(argocd::health(&dead).1.starts_with("Unreachable"), "{dead}");
    assert_eq!(kstatus::compute(&dead).0, Status::InProgress);
    let stranded = eventually(WAIT, "north-cam-01 to read Degraded", || {
        let streams = streams.clone();
        async move {
            let v = read(streams, "Stream", "north-cam-01").await;
            (argocd::health(&v).0 == "Degraded").then_some(v)
        }
    })
    .await;
    assert!(kstatus::convention_violations(&stranded).is_empty());
    nodes.node(0).up().await.unwrap();
    let client = ns.client.clone();
    let name = ns.name.clone();
    eventually(WAIT, "recovery after the node returns", || {
        let (client, name) = (client.clone(), name.clone());
        async move {
            let objs = controlled_objects(&client, &name).await;
            objs.iter()
                .filter(|(_, o)| !expected_not_ready(o) && name_of(o) != "guard")
                .all(|(_, o)| argocd::health(o).0 == "Healthy")
                .then_some(())
        }
    })
    .await;

    operator.stop();
    let output = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(dir.join("panoptes.err")).unwrap();
    assert!(
        // A denied call reads "... is forbidden: User ... cannot ..." (reason Forbidden).
        !output.to_lowercase().contains("forbidden"),
        "the chart's RBAC denied the operator something:\n{output}"
    );
}

/// kstatus and Argo CD on one live object, read as the tools would.
fn both(obj: &Value) -> (Status, String) {
    (kstatus::compute(obj).0, argocd::health(obj).0)
}

/// Waits until the live `kind`/`name` reads `want` in both tools; the object then.
async fn wait_health(
    ns: &TestNamespace,
    kind: &str,
    plural: &str,
    name: &str,
    want: (Status, &str),
    what: &str,
) -> Value {
    let api = api(&ns.client, &ns.name, kind, plural);
    eventually(WAIT, what, || async {
        let mut v = serde_json::to_value(api.get(name).await.ok()?).ok()?;
        v["kind"] = json!(kind);
        let (status, health) = both(&v);
        (status == want.0 && health == want.1).then_some(v)
    })
    .await
}

/// Fails fast, recovers: a Stream whose camera credentials Secret is missing reads Failed
/// (kstatus) and Degraded (Argo CD) once the grace for a missing reference ends (2 s for the
/// in-process operator), instead of InProgress until the tools time out; a Streamer whose
/// node rejects its credentials reads Failed/Degraded at once. Fixing the cause brings both
/// back to Current/Healthy.
#[tokio::test]
async fn a_missing_camera_secret_and_rejected_node_credentials_fail_fast_and_recover() {
    use k8s_openapi::api::core::v1::Secret;
    use support::scenario::{fleet, stream};

    let (ns, sim) = fleet("gitops-stall", 1).await;
    let _op = support::operator::Operator::start(&ns);
    let host = sim.node(0).hostname().to_string();
    let started = std::time::Instant::now();
    stream(
        &ns,
        "gate",
        json!({ "credentials": { "secretName": "camera" } }),
    )
    .await;
    let stalled = wait_health(
        &ns,
        "Stream",
        "streams",
        "gate",
        (Status::Failed, "Degraded"),
        "the Stream without its Secret reads Failed/Degraded",
    )
    .await;
    let conditions = stalled["status"]["conditions"].as_array().unwrap();
    let stall = conditions.iter().find(|c| c["type"] == "Stalled").unwrap();
    assert_eq!(stall["reason"], "SecretUnavailable", "{stalled}");
    // 2 s of grace plus a reconcile, with a wide margin for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );

    let secrets = ns.api::<Secret>();
    let camera = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "camera" },
                         "stringData": { "username": "u", "password": "p" } });
    secrets
        .patch(
            "camera",
            &PatchParams::apply("test"),
            &Patch::Apply(&camera),
        )
        .await
        .unwrap();
    let healthy = wait_health(
        &ns,
        "Stream",
        "streams",
        "gate",
        (Status::Current, "Healthy"),
        "the Stream with its Secret reads Current/Healthy",
    )
    .await;
    assert!(
        !healthy.to_string().contains("\"Stalled\""),
        "Stalled is gone once fixed: {healthy}"
    );

    // The node rejects the Streamer's credentials: no retry fixes that.
    let password = |p: &str| json!({ "stringData": { "password": p } });
    secrets
        .patch(
            "node-creds",
            &PatchParams::default(),
            &Patch::Merge(&password("wrong")),
        )
        .await
        .unwrap();
    let rejected = wait_health(
        &ns,
        "Streamer",
        "streamers",
        &host,
        (Status::Failed, "Degraded"),
        "the Streamer with rejected credentials reads Failed/Degraded",
    )
    .await;
    assert!(
        rejected.to_string().contains("CredentialsRejected"),
        "{rejected}"
    );
    secrets
        .patch(
            "node-creds",
            &PatchParams::default(),
            &Patch::Merge(&password("letmein!")),
        )
        .await
        .unwrap();
    wait_health(
        &ns,
        "Streamer",
        "streamers",
        &host,
        (Status::Current, "Healthy"),
        "the Streamer with fixed credentials reads Current/Healthy",
    )
    .await;
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The reasons of the False conditions the controllers write: the second argument of
/// `Desired::no(…)` (a literal, or a `const` resolved to its literal), `reason: "…"` of a
/// refusal and `blocked("…"` of a Stream that cannot be pushed. Whitespace is dropped first,
/// so rustfmt's line breaks do not matter.
fn false_reasons() -> std::collections::BTreeSet<String> {
    let mut files = vec![];
    for dir in ["src/controllers", "src/domain"] {
        rust_files(&repo_root().join(dir), &mut files);
    }
    let code: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let flat: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let literal_after = |s: &str| -> Option<String> {
        let s = s.strip_prefix('"')?;
        Some(s[..s.find('"')?].to_string())
    };
    let constant = |name: &str| -> Option<String> {
        let at = flat.find(&format!("const{name}:&str="))?;
        literal_after(&flat[at + format!("const{name}:&str=").len()..])
    };
    let camel = |r: &str| {
        r.starts_with(|c: char| c.is_ascii_uppercase())
            && r.chars().all(|c| c.is_ascii_alphanumeric())
    };
    let mut out = std::collections::BTreeSet::new();
    for (marker, skip_first) in [
        ("Desired::no(", true),
        ("reason:", false),
        ("blocked(", false),
    ] {
        for (at, _) in flat.match_indices(marker) {
            let mut rest = &flat[at + marker.len()..];
            if skip_first {
                let Some(first) = literal_after(rest) else {
                    continue;
                };
                rest = &rest[first.len() + 2..];
                let Some(r) = rest.strip_prefix(',') else {
                    continue;
                };
                rest = r;
            }
            let reason = literal_after(rest).or_else(|| {
                let ident: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let last = ident.rsplit("::").next()?;
                (last.len() > 1 && last.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                    .then(|| constant(last))
                    .flatten()
            });
            if let Some(r) = reason.filter(|r| camel(r)) {
                out.insert(r);
            }
        }
    }
    out
}

/// The README's Troubleshooting section names every reason a False condition can carry, so a
/// first-time user finds what `kubectl get … -o wide` shows (it once missed `NameConflict`,
/// `SecretUnavailable` and others the operator wrote).
#[test]
fn the_readme_troubleshooting_section_names_every_reason_the_operator_writes() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("## Troubleshooting").unwrap();
    let section = &readme[start..start + readme[start + 3..].find("\n## ").unwrap()];
    let reasons = false_reasons();
    for must in [
        "NameConflict",
        "SecretUnavailable",
        "MissingReference",
        "Unschedulable",
    ] {
        assert!(reasons.contains(must), "the scan finds {must}: {reasons:?}");
    }
    let named = |r: &str| {
        section.match_indices(r).any(|(i, _)| {
            let before = section[..i].chars().next_back();
            let after = section[i + r.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    let missing: Vec<&String> = reasons.iter().filter(|r| !named(r)).collect();
    assert!(
        missing.is_empty(),
        "README Troubleshooting lacks these reasons: {missing:?}"
    );
    // And every reason the Event policy writes (its list of Events is there too).
    let unlisted: Vec<&str> = panoptes::events::policy::POLICY
        .iter()
        .filter(|r| r.written && !named(r.reason))
        .map(|r| r.reason)
        .collect();
    assert!(
        unlisted.is_empty(),
        "README Troubleshooting lacks these Event reasons: {unlisted:?}"
    );
}
