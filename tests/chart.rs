//! The Helm chart as users install it: lint, values schema, rendering with default and
//! non-default values accepted by a real API server (server-side dry run), the hardening of the
//! Deployment, the JWT key kept across upgrades, and manifests/install.yaml being current.
//! What the rendered RBAC allows and denies is tests/rbac.rs.

mod support;

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::{TestNamespace, control_plane, helm, kubectl, repo_root, run_ok};

fn chart() -> PathBuf {
    repo_root().join("charts/panoptes")
}

/// `helm template panoptes charts/panoptes -n NS ARGS...` as text.
fn render(ns: &str, args: &[&str]) -> String {
    run_ok(
        helm()
            .args(["template", "panoptes"])
            .arg(chart())
            .args(["--namespace", ns])
            .args(args),
    )
}

/// The rendered objects.
fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kinds(objs: &[Value]) -> Vec<&str> {
    objs.iter().map(|o| o["kind"].as_str().unwrap()).collect()
}

fn one<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = objs.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, got {:?}", kinds(objs));
    found[0]
}

/// Non-default values a production install would use (ServiceMonitor apart: its CRD is not
/// on the test control plane; it is checked by rendering only).
const HA_VALUES: &[&str] = &[
    "--set",
    "namespaced=true,crds.enabled=false,replicaCount=2,podDisruptionBudget.enabled=true",
    "--set",
    "logFormat=text,service.type=NodePort,ports.api=9091,image.tag=test",
];

fn apply_dry_run(ns: &str, yaml: &str, tag: &str) {
    let file = std::env::temp_dir().join(format!("{ns}-{tag}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    run_ok(
        kubectl()
            .args(["apply", "--dry-run=server", "-n", ns, "-f"])
            .arg(&file),
    );
}

#[test]
fn chart_lints() {
    // --strict: a warning fails too.
    run_ok(helm().args(["lint", "--strict"]).arg(chart()));
    run_ok(
        helm()
            .args(["lint", "--strict"])
            .arg(chart())
            .args(HA_VALUES),
    );
}

#[tokio::test]
async fn default_and_custom_values_render_and_pass_a_server_side_dry_run() {
    let ns = TestNamespace::new("helm").await;
    let default = render(&ns.name, &[]);
    assert_eq!(
        kinds(&objects(&default)),
        [
            "ServiceAccount",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "Deployment",
            "Pod"
        ]
    );
    // The helm-test Pod too (it runs only under `helm test`; no kubelet here to run it).
    let test_pod = one(&objects(&default), "Pod").clone();
    assert_eq!(test_pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let args = test_pod["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap();
    assert!(
        args.contains("/readyz") && args.contains("/watcher/admin-api/v3/login"),
        "{args}"
    );
    apply_dry_run(&ns.name, &default, "default");
    let ha = render(&ns.name, HA_VALUES);
    let objs = objects(&ha);
    for kind in ["PodDisruptionBudget", "Deployment"] {
        one(&objs, kind);
    }
    assert_eq!(one(&objs, "Deployment")["spec"]["replicas"], 2);
    assert_eq!(service(&objs, "api")["spec"]["type"], "NodePort");
    apply_dry_run(&ns.name, &ha, "ha");
}

#[test]
fn namespaced_mode_needs_no_cluster_scoped_object() {
    let objs = objects(&render("video", HA_VALUES));
    for o in &objs {
        assert_eq!(
            o["metadata"]["namespace"], "video",
            "{} {} is not in the release namespace",
            o["kind"], o["metadata"]["name"]
        );
        assert!(!o["kind"].as_str().unwrap().starts_with("Cluster"));
    }
    let env = &one(&objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "PANOPTES_NAMESPACE"),
        "namespaced mode must tell the operator to watch its namespace only: {env}"
    );
}

#[test]
fn the_deployment_is_hardened_and_probed() {
    let objs = objects(&render("video", HA_VALUES));
    let pod = &one(&objs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "run",
            "--probe-addr=0.0.0.0:8080",
            "--api-addr=0.0.0.0:9091",
            "--peer-addr=0.0.0.0:8082",
            "--leader-election=true",
            // Release `panoptes`: the names earlier versions used.
            "--instance=panoptes"
        ]
    );
    assert_eq!(c["image"], "ghcr.io/panoptes-dev/panoptes:test");
}

/// The Service of `component` (`api`: the facade, `metrics`).
fn service<'a>(objs: &'a [Value], component: &str) -> &'a Value {
    let found: Vec<_> = objs
        .iter()
        .filter(|o| {
            o["kind"] == "Service"
                && o["metadata"]["labels"]["app.kubernetes.io/component"] == component
        })
        .collect();
    assert_eq!(found.len(), 1, "expected one {component} Service");
    found[0]
}

fn port_names(svc: &Value) -> Vec<&str> {
    svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| &labels[k] == v)
}

/// Publishing the facade (service.type LoadBalancer) never publishes /metrics: they are two
/// Services, and the ServiceMonitor selects the metrics one only.
#[test]
fn service_monitor_scrapes_the_metrics_service_and_the_facade_service_has_no_metrics() {
    let objs = objects(&render(
        "video",
        &[
            "--set",
            "serviceMonitor.enabled=true,serviceMonitor.labels.release=prom",
            "--set",
            "service.type=LoadBalancer,serviceMonitor.namespace=monitoring",
            "--set",
            "serviceMonitor.scrapeTimeout=10s,serviceMonitor.honorLabels=true",
            "--set",
            "serviceMonitor.metricRelabelings[0].action=drop",
        ],
    ));
    let sm = one(&objs, "ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(sm["metadata"]["namespace"], "monitoring");
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        json!(["video"])
    );
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["scrapeTimeout"], "10s");
    assert_eq!(endpoint["honorLabels"], true);
    assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");
    let (api, metrics) = (service(&objs, "api"), service(&objs, "metrics"));
    assert_eq!(port_names(api), ["api"]);
    assert_eq!(api["spec"]["type"], "LoadBalancer");
    assert_eq!(port_names(metrics), ["metrics"]);
    assert_eq!(metrics["spec"]["type"], "ClusterIP");
    let selector = &sm["spec"]["selector"]["matchLabels"];
    assert!(selects(selector, &metrics["metadata"]["labels"]));
    assert!(!selects(selector, &api["metadata"]["labels"]));
}

/// Issue 19, read-your-writes across replicas: the facade Service keeps a client on one
/// replica (`sessionAffinity: ClientIP`, README "High availability"), with its timeout, and
/// a value turns it off. The metrics Service stays unsticky (Prometheus scrapes each pod).
#[test]
fn the_facade_service_keeps_a_client_on_one_replica_unless_turned_off() {
    let objs = objects(&render("video", &[]));
    let api = &service(&objs, "api")["spec"];
    assert_eq!(api["sessionAffinity"], "ClientIP");
    assert_eq!(
        api["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10800
    );
    assert!(service(&objs, "metrics")["spec"]["sessionAffinity"].is_null());
    let objs = objects(&render(
        "video",
        &["--set", "service.sessionAffinity.timeoutSeconds=600"],
    ));
    let api = &service(&objs, "api")["spec"];
    assert_eq!(
        api["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        600
    );
    let objs = objects(&render(
        "video",
        &["--set", "service.sessionAffinity.enabled=false"],
    ));
    let api = &service(&objs, "api")["spec"];
    assert!(api["sessionAffinity"].is_null() && api["sessionAffinityConfig"].is_null());
    expect_render_error(
        &["--set", "service.sessionAffinity.timeoutSeconds=0"],
        "timeoutSeconds",
    );
}

/// Ingress (TLS, cert-manager annotations passed through), HTTPRoute and NetworkPolicy render
/// as configured; the Ingress, the NetworkPolicy and both Services pass a server-side dry run.
/// The Gateway API CRDs are not on the test control plane: the HTTPRoute is checked by
/// rendering only.
#[tokio::test]
async fn ingress_httproute_and_network_policy_render_and_pass_a_dry_run() {
    let ns = TestNamespace::new("exposure").await;
    let values = [
        "--set",
        "namespaced=true,crds.enabled=false,ingress.enabled=true,ingress.className=nginx",
        "--set",
        "ingress.hosts[0]=cams.example.com,ingress.tls[0].secretName=cams-tls",
        "--set",
        "ingress.tls[0].hosts[0]=cams.example.com",
        "--set",
        "ingress.annotations.cert-manager\\.io/cluster-issuer=letsencrypt",
        "--set",
        "networkPolicy.enabled=true,networkPolicy.apiServer.cidrs[0]=10.0.0.1/32",
        "--set",
        "networkPolicy.nodeCIDRs[0]=10.20.0.0/16,networkPolicy.nodePorts[0]=443",
    ];
    let yaml = render(&ns.name, &values);
    let objs = objects(&yaml);
    let ing = one(&objs, "Ingress");
    assert_eq!(
        ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "cams-tls");
    let backend = &ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], service(&objs, "api")["metadata"]["name"]);
    assert_eq!(backend["port"]["name"], "api");
    let np = &one(&objs, "NetworkPolicy")["spec"];
    assert_eq!(np["policyTypes"], json!(["Ingress", "Egress"]));
    let egress_cidrs: Vec<&str> = np["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["to"].as_array().unwrap())
        .filter_map(|peer| peer["ipBlock"]["cidr"].as_str())
        .collect();
    assert_eq!(egress_cidrs, ["10.0.0.1/32", "10.20.0.0/16"]);
    let ingress_ports: Vec<&str> = np["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ports"][0]["port"].as_str().unwrap())
        .collect();
    // The peer port is open to the operator's own pods only (standbys reach the leader).
    assert_eq!(ingress_ports, ["api", "peer", "probes"]);
    assert!(np["ingress"][1]["from"][0]["podSelector"].is_object());
    apply_dry_run(&ns.name, &yaml, "exposure");

    let route = objects(&render(
        &ns.name,
        &[
            "--set",
            "httpRoute.enabled=true,httpRoute.parentRefs[0].name=public",
            "--set",
            "httpRoute.parentRefs[0].sectionName=https,httpRoute.hostnames[0]=cams.example.com",
            "--show-only",
            "templates/httproute.yaml",
        ],
    ));
    let spec = &one(&route, "HTTPRoute")["spec"];
    assert_eq!(spec["parentRefs"][0]["sectionName"], "https");
    assert_eq!(spec["hostnames"], json!(["cams.example.com"]));
    assert_eq!(spec["rules"][0]["backendRefs"][0]["port"], 80);

    expect_render_error(&["--set", "ingress.enabled=true"], "needs ingress.hosts");
    expect_render_error(
        &["--set", "httpRoute.enabled=true"],
        "needs httpRoute.parentRefs",
    );
    expect_render_error(
        &["--set", "networkPolicy.enabled=true"],
        "needs networkPolicy.apiServer.cidrs",
    );
}

/// `helm template` with `args`, expected to fail with `message` in its error.
fn expect_render_error(args: &[&str], message: &str) {
    let out = helm()
        .args(["template", "panoptes"])
        .arg(chart())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} rendered");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
}

#[test]
fn the_values_schema_and_the_templates_refuse_bad_values() {
    // One per kind of check: unknown key, enum, range, boolean, pattern, array item type,
    // typed object member, object shape, int-or-percent, probe timing.
    expect_render_error(&["--set", "replicas=2"], "additional properties 'replicas'");
    expect_render_error(&["--set", "logFormat=xml"], "/logFormat");
    expect_render_error(&["--set", "ports.api=70000"], "/ports/api");
    expect_render_error(&["--set", "namespaced=yes"], "/namespaced");
    expect_render_error(&["--set", "image.digest=latest"], "/image/digest");
    expect_render_error(&["--set", "extraArgs[0]=1"], "/extraArgs/0");
    expect_render_error(&["--set", "extraEnv[0].value=x"], "/extraEnv/0");
    expect_render_error(
        &["--set", "securityContext.runAsUser=root"],
        "/securityContext/runAsUser",
    );
    expect_render_error(
        &["--set", "podSecurityContext.seccompProfile.type=Off"],
        "/podSecurityContext/seccompProfile/type",
    );
    expect_render_error(&["--set", "commonLabels.team=1"], "/commonLabels/team");
    expect_render_error(
        &["--set", "podDisruptionBudget.maxUnavailable=half"],
        "/podDisruptionBudget/maxUnavailable",
    );
    expect_render_error(
        &["--set", "livenessProbe.periodSeconds=0"],
        "/livenessProbe/periodSeconds",
    );
    expect_render_error(
        &["--set", "topologySpreadConstraints[0].maxSkew=1"],
        "/topologySpreadConstraints/0",
    );
    expect_render_error(&["--set", "crds.enabled=no"], "/crds/enabled");
    // The operator refuses an --instance that is not a DNS label; the schema says so first.
    expect_render_error(&["--set", "instanceName=Team_B"], "/instanceName");
    expect_render_error(
        &["--set", "replicaCount=2,leaderElection.enabled=false"],
        "needs leaderElection.enabled",
    );
}

/// A PodDisruptionBudget no eviction can satisfy makes every node drain hang: refused.
#[test]
fn the_chart_refuses_a_pod_disruption_budget_that_blocks_every_eviction() {
    let pdb = "podDisruptionBudget.enabled=true";
    let blocks = "blocks every eviction";
    expect_render_error(&["--set", pdb], blocks); // minAvailable 1 of 1 replica
    expect_render_error(
        &[
            "--set",
            pdb,
            "--set",
            "replicaCount=2,podDisruptionBudget.minAvailable=2",
        ],
        blocks,
    );
    expect_render_error(
        &[
            "--set",
            pdb,
            "--set",
            "replicaCount=2,podDisruptionBudget.minAvailable=100%",
        ],
        blocks,
    );
    expect_render_error(
        &[
            "--set",
            pdb,
            "--set",
            "replicaCount=2,podDisruptionBudget.maxUnavailable=0",
        ],
        blocks,
    );
    expect_render_error(
        &[
            "--set",
            pdb,
            "--set",
            "replicaCount=2,podDisruptionBudget.minAvailable=1,podDisruptionBudget.maxUnavailable=1",
        ],
        "not both",
    );
    let objs = objects(&render(
        "video",
        &[
            "--set",
            pdb,
            "--set",
            "replicaCount=2,podDisruptionBudget.maxUnavailable=1",
        ],
    ));
    let spec = &one(&objs, "PodDisruptionBudget")["spec"];
    assert_eq!(spec["maxUnavailable"], 1);
    assert!(spec["minAvailable"].is_null());
}

/// Every key of values.schema.json says what it is for (the schema is the values' reference).
#[test]
fn every_values_key_is_documented_in_the_schema() {
    fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
        for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
            let here = format!("{path}.{name}");
            if prop["description"].as_str().is_none_or(str::is_empty) {
                missing.push(here.clone());
            }
            walk(&here, prop, missing);
        }
    }
    let text = std::fs::read_to_string(chart().join("values.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        schema["additionalProperties"], false,
        "the schema is strict"
    );
    let mut missing = vec![];
    walk("", &schema, &mut missing);
    assert!(missing.is_empty(), "undocumented values: {missing:?}");
}

/// The overrides platform teams expect from cert-manager's and CloudNativePG's charts, each
/// landing where it should, and the result accepted by the API server.
#[tokio::test]
async fn common_chart_overrides_render_where_they_belong_and_pass_a_dry_run() {
    let ns = TestNamespace::new("parity").await;
    let digest = format!("sha256:{}", "ab".repeat(32));
    let values = [
        "--set",
        "fullnameOverride=video-ops,nameOverride=pan,commonLabels.team=video",
        "--set",
        "podLabels.tier=ops,podAnnotations.note=x,priorityClassName=high,revisionHistoryLimit=3",
        "--set",
        "extraArgs[0]=--node-resync-seconds=10,logLevel=debug,image.tag=t",
        "--set",
        &format!("image.digest={digest}"),
        "--set",
        "livenessProbe.periodSeconds=20,readinessProbe.timeoutSeconds=2",
        "--set",
        "replicaCount=2,podDisruptionBudget.enabled=true,podDisruptionBudget.maxUnavailable=1",
        "--set",
        "topologySpreadConstraints[0].maxSkew=1,topologySpreadConstraints[0].topologyKey=zone",
        "--set",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "--set-json",
        r#"extraEnv=[{"name":"HTTPS_PROXY","value":"http://proxy:3128"}]"#,
        "--set",
        "namespaced=true,crds.enabled=false",
    ];
    let yaml = render(&ns.name, &values);
    let objs = objects(&yaml);
    for o in &objs {
        let meta = &o["metadata"];
        assert!(
            meta["name"].as_str().unwrap().starts_with("video-ops"),
            "{} {} ignores fullnameOverride",
            o["kind"],
            meta["name"]
        );
        assert_eq!(
            meta["labels"]["team"], "video",
            "{} commonLabels",
            o["kind"]
        );
        assert_eq!(meta["labels"]["app.kubernetes.io/name"], "pan");
    }
    let deploy = one(&objs, "Deployment");
    assert_eq!(deploy["spec"]["revisionHistoryLimit"], 3);
    let pod = &deploy["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["tier"], "ops");
    assert_eq!(pod["metadata"]["labels"]["team"], "video");
    assert_eq!(pod["metadata"]["annotations"]["note"], "x");
    assert_eq!(pod["spec"]["priorityClassName"], "high");
    let tsc = &pod["spec"]["topologySpreadConstraints"][0];
    assert_eq!(
        tsc["labelSelector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        format!("ghcr.io/panoptes-dev/panoptes@{digest}")
    );
    assert_eq!(
        c["args"].as_array().unwrap().last().unwrap(),
        "--node-resync-seconds=10"
    );
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(env("RUST_LOG"), Some(json!("debug")));
    assert_eq!(env("HTTPS_PROXY"), Some(json!("http://proxy:3128")));
    assert_eq!(c["livenessProbe"]["periodSeconds"], 20);
    assert_eq!(c["readinessProbe"]["timeoutSeconds"], 2);
    assert_eq!(
        one(&objs, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );
    apply_dry_run(&ns.name, &yaml, "parity");
}

fn helm_on_cluster() -> Command {
    let mut cmd = helm();
    cmd.arg("--kubeconfig").arg(&control_plane().kubeconfig);
    cmd
}

fn signing_key(secret: &Secret) -> Vec<u8> {
    secret.data.as_ref().unwrap()["signing-key"].0.clone()
}

/// A release that makes the JWT Secret (off by default: the operator makes it) and no
/// cluster-scoped object.
const JWT_RELEASE: &str = "namespaced=true,crds.enabled=false,jwt.create=true";

#[tokio::test]
async fn the_jwt_signing_key_is_generated_once_and_kept_across_upgrades() {
    let ns = TestNamespace::new("jwt").await;
    let release = format!("p{}", &ns.name[ns.name.len() - 8..]);
    // CRDs are installed by the test support already (crds.enabled=false); namespaced mode
    // keeps the release from creating cluster-scoped objects on the shared control plane.
    let install = |verb: &str| {
        run_ok(
            helm_on_cluster()
                .args([verb, &release])
                .arg(chart())
                .args(["--namespace", &ns.name])
                .args(["--set", JWT_RELEASE]),
        )
    };
    install("install");
    let secrets: Api<Secret> = ns.api();
    // Named after the release (its fullname), as the operator started by it names it.
    let jwt = format!("{release}-panoptes-jwt");
    let first = signing_key(&secrets.get(&jwt).await.unwrap());
    assert!(first.len() >= 64, "key too short: {} bytes", first.len());
    install("upgrade");
    let second = signing_key(&secrets.get(&jwt).await.unwrap());
    assert_eq!(first, second, "an upgrade replaced the JWT signing key");
    // A second installation elsewhere gets its own key.
    let other = TestNamespace::new("jwt2").await;
    let other_release = format!("q{}", &release[1..]);
    run_ok(
        helm_on_cluster()
            .args(["install", &other_release])
            .arg(chart())
            .args(["--namespace", &other.name])
            .args(["--set", JWT_RELEASE]),
    );
    let third = signing_key(
        &other
            .api::<Secret>()
            .get(&format!("{other_release}-panoptes-jwt"))
            .await
            .unwrap(),
    );
    assert_ne!(first, third);
}

/// The flags of `make manifests` (Makefile MANIFEST_FLAGS).
const MANIFEST_FLAGS: &[&str] = &[
    "--namespace",
    "panoptes-system",
    "--skip-tests",
    "--api-versions",
    FINALIZER_POLICY_API,
];

/// What the chart's finalizer policy needs from the cluster (`--api-versions` offline).
const FINALIZER_POLICY_API: &str = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy";

#[test]
fn install_manifest_is_rendered_from_the_chart() {
    let rendered = run_ok(
        helm()
            .args(["template", "panoptes"])
            .arg(chart())
            .args(MANIFEST_FLAGS),
    );
    let on_disk = std::fs::read_to_string(repo_root().join("manifests/install.yaml")).unwrap();
    assert!(
        on_disk.ends_with(&rendered),
        "manifests/install.yaml is stale: run `make manifests`"
    );
    assert!(
        !on_disk.contains("signing-key"),
        "no signing key may be checked in"
    );
}

#[tokio::test]
async fn install_manifest_passes_a_server_side_dry_run() {
    let client = support::admin_client().await;
    // A server-side dry run creates nothing, so the namespace install.yaml targets must exist.
    let system_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "panoptes-system"}})).unwrap();
    Api::<Namespace>::all(client)
        .patch(
            "panoptes-system",
            &PatchParams::apply("panoptes-tests"),
            &Patch::Apply(&system_ns),
        )
        .await
        .unwrap();
    run_ok(
        kubectl()
            .args(["apply", "--dry-run=server", "-f"])
            .arg(repo_root().join("manifests/install.yaml")),
    );
}

/// The chart's MutatingAdmissionPolicy puts the cleanup finalizer on Streams as the API server
/// admits them (no operator running here), keeps it across an apply that leaves it out, and
/// lets deletion finish once it is removed. Not rendered in namespaced mode or offline
/// without the API.
#[tokio::test]
async fn the_finalizer_policy_puts_the_cleanup_finalizer_on_streams_at_admission() {
    use panoptes::resources::Stream;
    use support::eventually;
    const FINALIZER: &str = "panoptes.dev/cleanup";
    let policy = |extra: &[&str]| {
        let mut args = vec!["--show-only", "templates/finalizer-policy.yaml"];
        args.extend_from_slice(extra);
        helm()
            .args(["template", "fp"])
            .arg(chart())
            .args(args)
            .output()
            .unwrap()
    };
    let offline = policy(&[]);
    assert!(!offline.status.success(), "rendered without the API");
    let namespaced = policy(&[
        "--api-versions",
        FINALIZER_POLICY_API,
        "--set",
        "namespaced=true",
    ]);
    assert!(!namespaced.status.success(), "rendered in namespaced mode");
    let rendered = policy(&["--api-versions", FINALIZER_POLICY_API]);
    assert!(rendered.status.success());
    let yaml = String::from_utf8(rendered.stdout).unwrap();
    assert_eq!(
        kinds(&objects(&yaml)),
        ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"]
    );
    let file = std::env::temp_dir().join(format!("finalizer-policy-{}.yaml", std::process::id()));
    std::fs::write(&file, &yaml).unwrap();
    run_ok(kubectl().args(["apply", "--server-side", "-f"]).arg(&file));

    let ns = TestNamespace::new("finalizer-policy").await;
    let streams = ns.api::<Stream>();
    let stream = |name: &str| -> Stream {
        serde_json::from_value(json!({
            "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
            "metadata": { "name": name },
            "spec": { "inputs": [{ "url": "rtsp://10.0.0.1/live" }] },
        }))
        .unwrap()
    };
    let has = |s: &Stream| {
        s.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    };
    // Policies take effect a moment after they are created: probe with server-side dry runs.
    let dry = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(
        std::time::Duration::from_secs(30),
        "the policy is in effect",
        || {
            let (streams, dry, s) = (streams.clone(), dry.clone(), stream("probe"));
            async move { streams.create(&dry, &s).await.ok().filter(has).map(|_| ()) }
        },
    )
    .await;

    let created = streams
        .create(&Default::default(), &stream("cam"))
        .await
        .unwrap();
    assert!(has(&created), "{:?}", created.metadata.finalizers);
    // An apply by the owner of the manifest, which never mentions the finalizer, keeps it.
    let pp = PatchParams::apply("gitops-tool").force();
    let mut applied = serde_json::to_value(stream("cam")).unwrap();
    applied["spec"]["title"] = json!("Gate");
    let after = streams
        .patch("cam", &pp, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert!(has(&after), "{:?}", after.metadata.finalizers);
    // Deleting: the policy stays out of the way once the finalizer is removed.
    streams.delete("cam", &Default::default()).await.unwrap();
    streams
        .patch(
            "cam",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .unwrap();
    eventually(
        std::time::Duration::from_secs(10),
        "the stream is gone",
        || {
            let streams = streams.clone();
            async move {
                streams
                    .get_opt("cam")
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    run_ok(kubectl().args(["delete", "--wait=false", "-f"]).arg(&file));
}

/// The chart's CRD templates render exactly the CRDs of the Rust types (`make crds` writes
/// both), plus the chart labels and, with `crds.keep`, the keep policy. The chart has no
/// `crds/` directory: Helm would install those once and never upgrade them.
#[test]
fn crd_templates_render_the_rust_types_and_are_kept_on_uninstall() {
    use panoptes::resources::{crd_yaml, crds};
    assert!(
        !chart().join("crds").exists(),
        "charts/panoptes/crds/ would be installed once and never upgraded; remove it"
    );
    let dir = chart().join("templates/crds");
    let expected: Vec<String> = crds().into_iter().map(|(f, _)| f.to_string()).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            expected.contains(&name),
            "templates/crds/{name} is not generated by `make crds`; remove it"
        );
    }
    for (file, crd) in crds() {
        let template = format!("templates/crds/{file}");
        let rendered = objects(&render("video", &["--show-only", &template]));
        assert_eq!(rendered.len(), 1, "{template}");
        let mut crd_rendered = rendered[0].clone();
        let meta = crd_rendered["metadata"].as_object_mut().unwrap();
        assert_eq!(
            meta.remove("annotations").unwrap()["helm.sh/resource-policy"],
            "keep"
        );
        assert_eq!(
            meta.remove("labels").unwrap()["app.kubernetes.io/managed-by"],
            "Helm"
        );
        assert!(
            crd_rendered == objects(&crd_yaml(&crd))[0],
            "{template} differs from what `panoptes crd` generates: run `make crds` and commit"
        );
        let unkept = objects(&render(
            "video",
            &["--show-only", &template, "--set", "crds.keep=false"],
        ));
        assert!(unkept[0]["metadata"]["annotations"].is_null(), "{unkept:?}");
    }
    let without = objects(&render("video", &["--set", "crds.enabled=false"]));
    assert!(!kinds(&without).contains(&"CustomResourceDefinition"));
}

/// GitOps tools render the chart on every sync and compare: the same values must give the
/// same bytes, or the application never settles (a random key, a timestamp, map order).
#[test]
fn two_renders_with_the_same_values_are_byte_identical() {
    for values in [&[][..], HA_VALUES] {
        let first = render("video", values);
        assert_eq!(first, render("video", values), "{values:?}");
        assert!(!first.contains("signing-key"), "{values:?} renders a key");
    }
}

/// CRDs are templates, so `helm upgrade` brings a grown schema: a field an older CRD lacked
/// (and refused) is accepted and kept after the upgrade, objects made before survive, and
/// `helm uninstall` leaves the CRD. Starts from a CRD that kubectl applied (as the chart's old
/// crds/ directory or the README did) and walks the migration of CHANGELOG.md: Helm refuses
/// to take it over until it is labelled and annotated, and the first upgrade needs
/// --force-conflicts. Runs on a copy of the Stream CRD under a group of its own, so the shared
/// control plane's panoptes.dev CRDs (other tests use them) never change.
#[tokio::test]
async fn helm_upgrade_upgrades_the_crds() {
    let ns = TestNamespace::new("crd-upgrade").await;
    let suffix = &ns.name[ns.name.len() - 8..];
    let group = format!("u{suffix}.panoptes.test");
    let base = std::env::temp_dir().join(format!("crd-upgrade-{suffix}"));
    let write_chart = |dir: &std::path::Path, crd_template: &str| {
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        for f in [
            "Chart.yaml",
            "values.yaml",
            "values.schema.json",
            "templates/_helpers.tpl",
        ] {
            std::fs::copy(chart().join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join("templates/stream.yaml"), crd_template).unwrap();
    };
    let new_template = std::fs::read_to_string(chart().join("templates/crds/stream.yaml"))
        .unwrap()
        .replace("panoptes.dev", &group);
    let new_chart = base.join("new");
    write_chart(&new_chart, &new_template);
    // The old chart: the same CRD as rendered, without spec.folder_id (JSON is YAML).
    let mut old_crd = objects(&run_ok(
        helm()
            .args(["template", "up"])
            .arg(&new_chart)
            .args(["--show-only", "templates/stream.yaml"]),
    ))
    .remove(0);
    old_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("folder_id")
        .expect("the Stream CRD has spec.folder_id");
    let old_chart = base.join("old");
    write_chart(&old_chart, &old_crd.to_string());

    let release = format!("u{suffix}");
    let helm_release = |verb: &str, dir: &std::path::Path, extra: &[&str]| {
        run_ok(
            helm_on_cluster()
                .args([verb, &release])
                .arg(dir)
                .args(["--namespace", &ns.name, "--wait"])
                .args(extra),
        )
    };
    let crd_name = format!("streams.{group}");
    // One create with strict field validation (kubectl's default): an unknown field fails.
    let create = |name: &str, folder: bool| -> Result<(), String> {
        let mut spec = json!({ "inputs": [{ "url": "rtsp://10.0.0.1/live" }] });
        if folder {
            spec["folder_id"] = json!(7);
        }
        let obj = json!({
            "apiVersion": format!("{group}/v1alpha1"), "kind": "Stream",
            "metadata": { "name": name, "namespace": ns.name }, "spec": spec,
        });
        let file = base.join(format!("{name}.json"));
        std::fs::write(&file, obj.to_string()).unwrap();
        let out = kubectl()
            .args(["create", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    };
    let schema = |c: &str| {
        run_ok(kubectl().args([
            "get",
            "crd",
            c,
            "-o",
            "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.folder_id.type}",
        ]))
    };

    // Creates `name`, retrying while the API server catches up with a CRD change.
    let until_created = |name: &str, folder: bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Err(e) = create(name, folder) {
            assert!(std::time::Instant::now() < deadline, "creating {name}: {e}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };

    // The old CRD as an earlier chart's crds/ (or kubectl) left it: no Helm ownership. The
    // first release with CRD templates must adopt it (CHANGELOG, "Breaking").
    let mut unowned = old_crd.clone();
    let meta = unowned["metadata"].as_object_mut().unwrap();
    meta.remove("labels");
    meta.remove("annotations");
    let unowned_file = base.join("unowned-crd.json");
    std::fs::write(&unowned_file, unowned.to_string()).unwrap();
    run_ok(
        kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&unowned_file),
    );
    until_created("before", false);
    let refused = helm_on_cluster()
        .args(["install", &release])
        .arg(&old_chart)
        .args(["--namespace", &ns.name])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "helm adopted a CRD it does not own"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("meta.helm.sh/release-name"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let crd_ref = format!("crd/{crd_name}");
    run_ok(kubectl().args([
        "label",
        &crd_ref,
        "app.kubernetes.io/managed-by=Helm",
        "--overwrite",
    ]));
    run_ok(kubectl().args([
        "annotate",
        &crd_ref,
        &format!("meta.helm.sh/release-name={release}"),
        &format!("meta.helm.sh/release-namespace={}", ns.name),
        "--overwrite",
    ]));
    helm_release("install", &old_chart, &[]);
    let refused = create("old", true).unwrap_err();
    assert!(refused.contains("unknown field"), "{refused}");
    // Helm 4 applies server-side: the fields kubectl applied are kubectl's, so the first
    // upgrade of adopted CRDs takes them over with --force-conflicts (CHANGELOG).
    helm_release("upgrade", &new_chart, &["--force-conflicts"]);
    assert_eq!(
        schema(&crd_name),
        "integer",
        "helm upgrade left the old CRD"
    );
    until_created("after", true);
    let get = |name: &str| {
        run_ok(kubectl().args([
            "get",
            &crd_name,
            name,
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.spec.folder_id}",
        ]))
    };
    assert_eq!(get("after"), "7", "the upgraded CRD pruned folder_id");
    assert_eq!(
        get("before"),
        "",
        "the object made before the upgrade is gone"
    );
    // From then on the release owns its CRDs: plain upgrades change them both ways.
    helm_release("upgrade", &old_chart, &[]);
    assert_eq!(schema(&crd_name), "", "helm upgrade left the newer CRD");
    helm_release("upgrade", &new_chart, &[]);
    assert_eq!(
        schema(&crd_name),
        "integer",
        "helm upgrade left the old CRD"
    );

    run_ok(helm_on_cluster().args(["uninstall", &release, "--namespace", &ns.name]));
    assert_eq!(
        schema(&crd_name),
        "integer",
        "helm uninstall deleted the CRD"
    );
    run_ok(kubectl().args(["delete", "crd", &crd_name, "--wait=false"]));
}

/// One version for everything released: Cargo.toml's is the image tag, the chart version and
/// its appVersion (the release workflow checks the tag against Cargo.toml).
#[test]
fn chart_version_app_version_and_crate_version_agree() {
    let chart_yaml: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    let crate_version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart_yaml["version"], crate_version, "Chart.yaml version");
    assert_eq!(
        chart_yaml["appVersion"], crate_version,
        "Chart.yaml appVersion"
    );
}

/// `make dist` writes what a release attaches; the checksums hold, install.yaml and crds.yaml
/// pass a server-side dry run, and the packaged chart renders what the chart directory does.
#[tokio::test]
async fn make_dist_writes_artifacts_that_apply() {
    let ns = TestNamespace::new("dist").await;
    let dist = std::env::temp_dir().join(format!("dist-{}", ns.name));
    run_ok(
        Command::new("make")
            .current_dir(repo_root())
            .args(["--no-print-directory", "-s", "dist"])
            .arg(format!("DIST={}", dist.display()))
            .arg(format!(
                "HELM={}",
                support::bin_dir().join("helm").display()
            )),
    );
    let version = env!("CARGO_PKG_VERSION");
    let package = format!("panoptes-{version}.tgz");
    let mut files: Vec<String> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["SHA256SUMS", "crds.yaml", "install.yaml", package.as_str()]
    );
    run_ok(Command::new("sha256sum").current_dir(&dist).args([
        "--check",
        "--strict",
        "SHA256SUMS",
    ]));
    let bundle = std::fs::read_to_string(dist.join("crds.yaml")).unwrap();
    assert_eq!(
        kinds(&objects(&bundle)),
        ["CustomResourceDefinition"; 6],
        "crds.yaml holds the six CRDs"
    );
    let system_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "panoptes-system"}})).unwrap();
    Api::<Namespace>::all(support::admin_client().await)
        .patch(
            "panoptes-system",
            &PatchParams::apply("panoptes-tests"),
            &Patch::Apply(&system_ns),
        )
        .await
        .unwrap();
    for file in ["crds.yaml", "install.yaml"] {
        run_ok(
            kubectl()
                .args([
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "--dry-run=server",
                    "-f",
                ])
                .arg(dist.join(file)),
        );
    }
    let packaged = run_ok(
        helm()
            .args(["template", "panoptes"])
            .arg(dist.join(&package))
            .args(["--namespace", &ns.name]),
    );
    assert_eq!(packaged, render(&ns.name, &[]));
    std::fs::remove_dir_all(&dist).unwrap();
}

/// The chart before this one (N-1): its files at commit 28f5239, the last before the CRDs
/// became templates and the Services split, kept in
/// the tree so the test needs no git history (CI may check out shallow). Replace it with the
/// previous release's chart at each release.
const PREVIOUS_CHART: &str = "tests/fixtures/chart-previous/charts/panoptes";

/// N-1 → N: a release installed from the previous chart, with objects and the chart-made JWT
/// key, upgrades to this chart without losing any of them (jwt.create is now off: the kept
/// Secret stays, and with `instanceName=panoptes` the operator keeps using it and the
/// facade's sessions with it), and gains the metrics Service.
#[tokio::test]
async fn upgrading_from_the_previous_chart_keeps_objects_and_the_jwt_key() {
    use panoptes::resources::Stream;
    let ns = TestNamespace::new("n-minus-1").await;
    let previous = repo_root().join(PREVIOUS_CHART);

    let release = format!("n{}", &ns.name[ns.name.len() - 8..]);
    // No --wait: no kubelet runs the pods here. The shared CRDs are the test support's.
    run_ok(
        helm_on_cluster()
            .args(["install", &release])
            .arg(&previous)
            .args([
                "--namespace",
                &ns.name,
                "--skip-crds",
                "--set",
                "namespaced=true",
            ]),
    );
    let secrets: Api<Secret> = ns.api();
    let key = signing_key(&secrets.get("panoptes-jwt").await.unwrap());
    let streams = ns.api::<Stream>();
    let stream: Stream = serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
        "metadata": { "name": "gate" },
        "spec": { "inputs": [{ "url": "rtsp://10.0.0.1/live" }], "title": "Gate" },
    }))
    .unwrap();
    streams.create(&Default::default(), &stream).await.unwrap();

    // The previous operator named its objects `panoptes-*` whatever the release; names now
    // derive from the release unless instanceName keeps the old ones (CHANGELOG, Breaking).
    // An upgrade that forgets it is warned in the NOTES.
    let forgot = run_ok(
        helm_on_cluster()
            .args(["upgrade", "--dry-run=server", &release])
            .arg(chart())
            .args(["--namespace", &ns.name])
            .args(["--set", "namespaced=true,crds.enabled=false"]),
    );
    assert!(
        forgot.contains("WARNING: Secret panoptes-jwt exists")
            && forgot.contains("instanceName=panoptes"),
        "{forgot}"
    );
    let upgraded = run_ok(
        helm_on_cluster()
            .args(["upgrade", &release])
            .arg(chart())
            .args(["--namespace", &ns.name])
            .args([
                "--set",
                "namespaced=true,crds.enabled=false,instanceName=panoptes",
            ]),
    );
    assert!(!upgraded.contains("WARNING"), "{upgraded}");
    let deployment = run_ok(kubectl().args([
        "get",
        "deployment",
        "-n",
        &ns.name,
        &format!("{release}-panoptes"),
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]));
    assert!(deployment.contains("--instance=panoptes\""), "{deployment}");
    let kept = secrets.get("panoptes-jwt").await.unwrap();
    assert_eq!(signing_key(&kept), key, "the upgrade replaced the JWT key");
    let after = serde_json::to_value(streams.get("gate").await.unwrap()).unwrap();
    assert_eq!(
        after["spec"]["title"], "Gate",
        "the upgrade touched a Stream"
    );
    let services = run_ok(kubectl().args(["get", "services", "-n", &ns.name, "-o", "name"]));
    let fullname = format!("{release}-panoptes");
    assert!(
        services.contains(&format!("service/{fullname}\n"))
            && services.contains(&format!("service/{fullname}-metrics\n")),
        "{services}"
    );
    run_ok(helm_on_cluster().args(["uninstall", &release, "--namespace", &ns.name]));
    assert!(
        secrets.get_opt("panoptes-jwt").await.unwrap().is_some(),
        "helm uninstall deleted the JWT key"
    );
}

/// NOTES tells a fresh install how to create its first admin (it has none); that User is
/// accepted by the API server.
#[tokio::test]
async fn the_first_admin_of_the_notes_is_a_valid_user() {
    let ns = TestNamespace::new("notes").await;
    let out = run_ok(
        helm()
            .args(["install", "--dry-run=client", "panoptes"])
            .arg(chart())
            .args(["--namespace", &ns.name, "--set", "namespaced=true"]),
    );
    let notes = &out[out.find("NOTES:").expect("NOTES rendered")..];
    assert!(
        notes.contains(&format!("Users in namespace {}", ns.name)),
        "{notes}"
    );
    let start = notes.find("<<'YAML'\n").unwrap() + "<<'YAML'\n".len();
    let user = &notes[start..start + notes[start..].find("\nYAML").unwrap()];
    apply_dry_run(&ns.name, user, "notes-user");
}

/// Tenants get the six kinds through the aggregated roles, by impersonation on the real
/// authorizer: view reads, edit writes Streams/Presets/Organizations/Zones but not Streamers (who
/// edits one redirects node traffic) or Users (a facade login), admin writes all. Kubernetes'
/// aggregation controller does not run on the test control plane, so the chart's roles are
/// bound directly; the aggregation labels are checked on the render.
#[tokio::test]
async fn tenants_get_the_kinds_through_aggregated_roles_streamers_and_users_admin_only() {
    let ns = TestNamespace::new("aggregate").await;
    let release = format!("a{}", &ns.name[ns.name.len() - 8..]);
    let yaml = run_ok(
        helm()
            .args(["template", &release])
            .arg(chart())
            .args(["--show-only", "templates/rbac-aggregate.yaml"]),
    );
    let roles = objects(&yaml);
    let label = |role: &Value, to: &str| {
        role["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{to}")] == "true"
    };
    assert!(label(&roles[0], "view") && label(&roles[0], "edit") && label(&roles[0], "admin"));
    assert!(!label(&roles[1], "view") && label(&roles[1], "edit") && label(&roles[1], "admin"));
    assert!(!label(&roles[2], "edit") && label(&roles[2], "admin"));
    let file = std::env::temp_dir().join(format!("{release}-aggregate.yaml"));
    std::fs::write(&file, &yaml).unwrap();
    run_ok(kubectl().args(["apply", "-f"]).arg(&file));
    for role in ["view", "edit", "admin"] {
        // Each level holds the ones below, as the built-in roles aggregate them.
        let below: &[&str] = match role {
            "view" => &["view"],
            "edit" => &["view", "edit"],
            _ => &["view", "edit", "admin"],
        };
        for (i, r) in below.iter().enumerate() {
            run_ok(kubectl().args([
                "create",
                "rolebinding",
                &format!("{role}-{i}"),
                "-n",
                &ns.name,
                &format!("--clusterrole={release}-panoptes-{r}"),
                &format!("--user={role}-tenant"),
            ]));
        }
    }
    let can = |user: &str, verb: &str, resource: &str| {
        let out = kubectl()
            .args(["auth", "can-i", verb, &format!("{resource}.panoptes.dev")])
            .args(["-n", &ns.name, "--as", user])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    for kind in [
        "streamers",
        "streams",
        "presets",
        "organizations",
        "users",
        "zones",
    ] {
        let admin_only = ["streamers", "users"].contains(&kind);
        assert!(can("view-tenant", "list", kind), "view lists {kind}");
        assert!(!can("view-tenant", "create", kind), "view creates {kind}");
        assert_eq!(
            can("edit-tenant", "patch", kind),
            !admin_only,
            "edit patches {kind}"
        );
        assert!(can("admin-tenant", "delete", kind), "admin deletes {kind}");
    }
    run_ok(kubectl().args(["delete", "--wait=false", "-f"]).arg(&file));
    // Namespaced mode creates no cluster-scoped object, so no aggregated roles.
    let namespaced = objects(&render("video", &["--set", "namespaced=true"]));
    assert!(!kinds(&namespaced).contains(&"ClusterRole"));
}

fn monitoring_file(path: &str) -> String {
    std::fs::read_to_string(chart().join("files").join(path)).unwrap()
}

/// Every metric family a PromQL text names: `panoptes_*` and `process_*` identifiers, with
/// the sample suffixes of counters and histograms taken off (the exposition declares the
/// family: `# TYPE panoptes_reconciles counter` for `panoptes_reconciles_total`).
fn metric_families_named_in(promql: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let boundary = i == 0 || !ident(bytes[i - 1]);
        let rest = &promql[i..];
        if boundary && (rest.starts_with("panoptes_") || rest.starts_with("process_")) {
            let len = rest.bytes().take_while(|b| ident(*b)).count();
            let name = &rest[..len];
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    out
}

/// The PrometheusRule is files/prometheus-rules.yaml (what promtool tests) bound to the
/// release's metrics Service; the dashboard ConfigMap carries the sidecar label and the JSON
/// as it is in the chart; both are off by default.
#[tokio::test]
async fn the_prometheus_rule_and_the_dashboard_render_for_the_release() {
    let ns = TestNamespace::new("monitoring").await;
    assert!(
        !kinds(&objects(&render(&ns.name, &[])))
            .iter()
            .any(|k| *k == "PrometheusRule" || *k == "ConfigMap"),
        "off by default"
    );
    let yaml = render(
        &ns.name,
        &[
            "--set",
            "fullnameOverride=vms,prometheusRule.enabled=true,prometheusRule.labels.release=prom",
            "--set",
            "grafanaDashboard.enabled=true,grafanaDashboard.annotations.grafana_folder=Video",
        ],
    );
    let objs = objects(&yaml);
    let rule = one(&objs, "PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let file: Value = serde_yaml::from_str(&monitoring_file("prometheus-rules.yaml")).unwrap();
    let alerts = |groups: &Value| -> Vec<String> {
        groups["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["alert"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(alerts(&rule["spec"]), alerts(&file));
    assert_eq!(alerts(&file).len(), 8);
    // The ServiceMonitor's job label is the metrics Service's name.
    assert_eq!(service(&objs, "metrics")["metadata"]["name"], "vms-metrics");
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        let expr = r["expr"].as_str().unwrap();
        assert!(
            expr.contains("job=\"vms-metrics\"") && !expr.contains("panoptes-metrics"),
            "{expr}"
        );
    }
    let cm = one(&objs, "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "vms-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Video");
    let shipped: Value =
        serde_json::from_str(cm["data"]["panoptes.json"].as_str().unwrap()).unwrap();
    let file: Value = serde_json::from_str(&monitoring_file("dashboards/panoptes.json")).unwrap();
    assert_eq!(shipped, file);
    let configmap_only: String = serde_yaml::to_string(cm).unwrap();
    apply_dry_run(&ns.name, &configmap_only, "dashboard");
}

/// Every metric the alert rules and the dashboard query is one a running operator exports.
/// A labelled family shows only once it has a series, so the operator gets something to do
/// first: a live node with a camera (pushes, node gauges, reconciles), a dead node (probe
/// retries), a facade login (request and password counters) and a deleted camera (removals).
#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_use_is_exported() {
    use support::scenario::{apply, fleet, stream};
    let (ns, _sim) = fleet("metrics-names", 1).await;
    let dead = format!("http://127.0.0.1:{}", support::binary::free_port());
    apply(
        &ns.api::<panoptes::resources::Streamer>(),
        json!({ "kind": "Streamer", "metadata": { "name": "dead" }, "spec": {
            "hostname": "dead.example", "apiUrl": dead,
            "credentials": { "secretName": "node-creds" }, "allowInsecure": true } }),
    )
    .await;
    stream(&ns, "cam", json!({})).await;
    let op = support::binary::Binary::start(&ns, "warn");
    let http = reqwest::Client::new();
    let scrape = || async {
        http.get(format!("http://{}/metrics", op.probe))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let wait = std::time::Duration::from_secs(90);
    support::eventually(wait, "the operator leads, pushes and retries", || async {
        let m = scrape().await?;
        (m.contains("\npanoptes_leader 1\n")
            && m.contains("panoptes_stream_pushes_total{")
            && m.contains("panoptes_node_retries_total{"))
        .then_some(())
    })
    .await;
    http.post(format!("http://{}/watcher/admin-api/v3/login", op.api))
        .basic_auth("nobody", Some("wrong"))
        .send()
        .await
        .unwrap();
    ns.api::<panoptes::resources::Stream>()
        .delete("cam", &Default::default())
        .await
        .unwrap();
    let exposition = support::eventually(wait, "the camera is removed from its node", || async {
        let m = scrape().await?;
        m.contains("panoptes_stream_removals_total{").then_some(m)
    })
    .await;
    let exported: std::collections::BTreeSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let dashboard: Value =
        serde_json::from_str(&monitoring_file("dashboards/panoptes.json")).unwrap();
    let mut queries = vec![monitoring_file("prometheus-rules.yaml")];
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(d) = variable["definition"].as_str() {
            queries.push(d.to_string());
        }
    }
    let named = metric_families_named_in(&queries.join("\n"));
    for must in [
        "panoptes_leader",
        "panoptes_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(named.contains(must), "{must} is used");
    }
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "named by the rules or the dashboard but not exported: {missing:?}\n{exposition}"
    );
    assert!(
        exposition.contains(&format!(
            "panoptes_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{exposition}"
    );
}

/// `make help` and `.PHONY` promise only targets that exist (`make crds-check` once printed
/// "Nothing to be done").
#[test]
fn every_phony_make_target_exists() {
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    let phony = makefile
        .lines()
        .find_map(|l| l.strip_prefix(".PHONY:"))
        .expect("a .PHONY line");
    for target in phony.split_whitespace() {
        assert!(
            makefile
                .lines()
                .any(|l| l.starts_with(&format!("{target}:"))),
            ".PHONY names `{target}`, which has no rule"
        );
    }
}

/// The documents a user reads point only at files the repository has: every relative
/// Markdown link resolves inside the checkout, and no path climbs out of it (the chart
/// comparison once cited a review outside the repository).
#[test]
fn the_docs_refer_to_no_file_outside_the_repository() {
    let root = repo_root().canonicalize().unwrap();
    let mut docs = vec![
        root.join("README.md"),
        root.join("CHANGELOG.md"),
        root.join("RELIABILITY.md"),
        root.join("BENCHMARKS.md"),
    ];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "md") {
            docs.push(path);
        }
    }
    let mut broken = Vec::new();
    for doc in docs.iter().filter(|d| d.exists()) {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.strip_prefix(&root).unwrap().display().to_string();
        // A quoted path that starts outside the checkout (links are resolved below).
        if text.contains("`../") {
            broken.push(format!("{name}: a path starting with ../"));
        }
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let target = &rest[..rest.find(')').unwrap_or(rest.len())];
            let file = target.split('#').next().unwrap_or("");
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            let path = doc.parent().unwrap().join(file);
            if !path.exists() || !path.canonicalize().unwrap().starts_with(&root) {
                broken.push(format!("{name}: {target}"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// `admin.existingSecret`: the chart passes `--admin-secret`, and the operator creates User
/// `admin` from the Secret at start, so the NOTES' login works on a fresh install; a User
/// `admin` that exists is left as it is.
#[tokio::test]
async fn the_first_admin_comes_from_an_existing_secret() {
    let objs = objects(&render("video", &["--set", "admin.existingSecret=boot"]));
    let args =
        one(&objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(
        args.as_array()
            .unwrap()
            .contains(&json!("--admin-secret=boot")),
        "{args}"
    );
    assert!(
        !render("video", &[]).contains("--admin-secret"),
        "off by default"
    );

    let ns = TestNamespace::new("first-admin").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "boot" },
        "stringData": { "password": "correct horse battery" }
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let op = support::binary::Binary::start_with(&ns, "warn", &["--admin-secret", "boot"]);
    let http = reqwest::Client::new();
    let login = format!("http://{}/watcher/admin-api/v3/login", op.api);
    support::eventually(
        std::time::Duration::from_secs(60),
        "admin logs in with the Secret's password",
        || async {
            let r = http
                .post(&login)
                .basic_auth("admin", Some("correct horse battery"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    let user = ns
        .api::<panoptes::resources::User>()
        .get("admin")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&user.spec).unwrap()["passwordSecretRef"],
        json!({ "name": "boot", "key": "password" })
    );
}

/// `kubectl explain <kind>` says what the kind is (not kube-derive's "Auto-generated derived
/// type"), and `kubectl get -o wide` shows Ready's Reason and Message (priority 1, as
/// cert-manager does) with one NAME column.
#[test]
fn crds_describe_their_kind_and_show_reason_and_message_wide() {
    for file in ["stream", "streamer", "preset", "organization", "user"] {
        let path = repo_root().join(format!("crds/{file}.yaml"));
        let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let version = &crd["spec"]["versions"][0];
        let description = version["schema"]["openAPIV3Schema"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            description.len() > 80 && !description.starts_with("Auto-generated"),
            "{file}: {description:?}"
        );
        let columns = version["additionalPrinterColumns"].as_array().unwrap();
        let column = |name: &str| columns.iter().find(|c| c["name"] == name);
        for (name, field) in [("Reason", "reason"), ("Message", "message")] {
            let c = column(name).unwrap_or_else(|| panic!("{file}: no {name} column"));
            assert_eq!(c["priority"], 1, "{file} {name}");
            assert_eq!(
                c["jsonPath"],
                format!(".status.conditions[?(@.type==\"Ready\")].{field}"),
                "{file} {name}"
            );
        }
        assert!(
            column("Name").is_none(),
            "{file}: a second NAME column in -o wide"
        );
    }
}

/// Two releases in one system namespace, each watching its own namespace (the second without
/// CRDs): the objects they render are disjoint (none owned by both) and apply side by side;
/// two real operators started with the flags the chart renders each lead under their own
/// Lease, keep their own keys and number their own Watcher ids (the same id 1 in each, two
/// claims): an installation's ids are its own, as two Watcher servers' are.
#[tokio::test]
async fn two_releases_share_a_namespace_but_no_name_leadership_or_id() {
    use k8s_openapi::api::coordination::v1::Lease;
    use panoptes::resources::Preset;
    use std::collections::BTreeSet;
    use std::time::Duration;
    use support::binary::Binary;
    use support::eventually;

    let sys = TestNamespace::new("two-sys").await;
    let teams = [
        TestNamespace::new("two-a").await,
        TestNamespace::new("two-b").await,
    ];
    let suffix = &sys.name[sys.name.len() - 8..];
    let releases = [format!("a{suffix}"), format!("b{suffix}")];
    let render = |i: usize| {
        let set = format!(
            "crds.enabled={},extraArgs[0]=--namespace={}",
            i == 0,
            teams[i].name
        );
        objects(&run_ok(
            helm()
                .args(["template", &releases[i]])
                .arg(chart())
                .args(["--namespace", &sys.name, "--skip-tests"])
                .args(["--api-versions", FINALIZER_POLICY_API, "--set", &set]),
        ))
    };
    let objs = [render(0), render(1)];
    let key = |o: &Value| {
        let m = &o["metadata"];
        let ns = m["namespace"].as_str().unwrap_or("");
        format!(
            "{}/{ns}/{}",
            o["kind"].as_str().unwrap(),
            m["name"].as_str().unwrap()
        )
    };
    let keys: Vec<BTreeSet<String>> = objs.iter().map(|o| o.iter().map(key).collect()).collect();
    let both: Vec<_> = keys[0].intersection(&keys[1]).collect();
    assert!(both.is_empty(), "objects both releases render: {both:?}");
    // Every optional object too (the chart-made JWT Secret, monitoring, exposure, the helm
    // test Pod): rendered only, some kinds have no CRD here.
    let everything = "ingress.enabled=true,ingress.hosts[0]=cams.example.com,\
        httpRoute.enabled=true,httpRoute.parentRefs[0].name=gw,networkPolicy.enabled=true,\
        networkPolicy.apiServer.cidrs[0]=10.0.0.1/32,serviceMonitor.enabled=true,\
        prometheusRule.enabled=true,grafanaDashboard.enabled=true,replicaCount=2,\
        podDisruptionBudget.enabled=true,jwt.create=true";
    let full: Vec<BTreeSet<String>> = releases
        .iter()
        .map(|r| {
            let yaml = run_ok(helm().args(["template", r]).arg(chart()).args([
                "--namespace",
                &sys.name,
                "--set",
                everything,
            ]));
            objects(&yaml).iter().map(key).collect()
        })
        .collect();
    assert!(full[0].contains(&format!("Secret/{}/{}-panoptes-jwt", sys.name, releases[0])));
    let both: Vec<_> = full[0]
        .intersection(&full[1])
        .filter(|k| !k.starts_with("CustomResourceDefinition/"))
        .collect();
    assert!(
        both.is_empty(),
        "optional objects both releases render: {both:?}"
    );
    assert!(kinds(&objs[0]).contains(&"CustomResourceDefinition"));
    assert!(!kinds(&objs[1]).contains(&"CustomResourceDefinition"));
    for kind in ["ClusterRole", "MutatingAdmissionPolicy", "Role"] {
        assert!(kinds(&objs[1]).contains(&kind), "{kind}");
    }

    // Applied for real, each by its own manager (CRDs and the cluster-wide finalizer policy
    // apart: the test support owns the CRDs, and the policy would reach other tests' Streams).
    let files: Vec<_> = (0..2)
        .map(|i| {
            let items: Vec<&Value> = objs[i]
                .iter()
                .filter(|o| {
                    !o["kind"]
                        .as_str()
                        .unwrap()
                        .starts_with("MutatingAdmissionPolicy")
                        && o["kind"] != "CustomResourceDefinition"
                })
                .collect();
            let file = std::env::temp_dir().join(format!("{}.json", releases[i]));
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": items });
            std::fs::write(&file, list.to_string()).unwrap();
            run_ok(
                kubectl()
                    .args(["apply", "--server-side", "--field-manager", &releases[i]])
                    .args(["-n", &sys.name, "-f"])
                    .arg(&file),
            );
            file
        })
        .collect();

    // The operators, with the flags the chart gives each release's pod.
    let flags = |objs: &[Value], watched: &str| -> Vec<String> {
        let args = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        assert!(args.contains(&format!("--namespace={watched}")), "{args:?}");
        args.into_iter()
            .filter(|a| a.starts_with("--instance=") || a.starts_with("--leader-election="))
            .collect()
    };
    let fullnames = releases.clone().map(|r| format!("{r}-panoptes"));
    let operators: Vec<Binary> = (0..2)
        .map(|i| {
            let flags = flags(&objs[i], &teams[i].name);
            assert!(
                flags.contains(&format!("--instance={}", fullnames[i])),
                "{flags:?}"
            );
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            Binary::start_scoped(&sys.name, &teams[i].name, "warn", &flags)
        })
        .collect();

    let presets: Vec<Api<Preset>> = teams.iter().map(|t| t.api()).collect();
    for p in &presets {
        let preset: Preset = serde_json::from_value(json!({
            "apiVersion": "panoptes.dev/v1alpha1", "kind": "Preset",
            "metadata": { "name": "hd" }, "spec": { "title": "HD" },
        }))
        .unwrap();
        p.create(&Default::default(), &preset).await.unwrap();
    }
    let leases: Api<Lease> = sys.api();
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    let mut leaders = Vec::new();
    for (i, full) in fullnames.iter().enumerate() {
        let lease = format!("{full}-leader");
        let leader = eventually(Duration::from_secs(30), &lease, || {
            let (leases, lease) = (leases.clone(), lease.clone());
            async move { leases.get_opt(&lease).await.ok().flatten().and_then(holder) }
        })
        .await;
        leaders.push(leader);
        let id = eventually(Duration::from_secs(30), "the preset's id", || {
            let p = presets[i].clone();
            async move { p.get("hd").await.ok()?.status?.id }
        })
        .await;
        assert_eq!(id, 1, "{}: {}", releases[i], operators[i].output());
        let claim = leases.get(&format!("{full}-id-preset-1")).await.unwrap();
        assert_eq!(holder(claim), Some(format!("{}/hd", teams[i].name)));
    }
    assert_ne!(leaders[0], leaders[1], "one operator leads both");
    assert!(leases.get_opt("panoptes-leader").await.unwrap().is_none());
    assert!(
        leases
            .get_opt("panoptes-id-preset-1")
            .await
            .unwrap()
            .is_none()
    );
    let secrets: Api<Secret> = sys.api();
    let keys: Vec<Vec<u8>> = {
        let mut keys = Vec::new();
        for full in &fullnames {
            let name = format!("{full}-jwt");
            let secret = eventually(Duration::from_secs(10), &name, || {
                let (secrets, name) = (secrets.clone(), name.clone());
                async move { secrets.get_opt(&name).await.ok().flatten() }
            })
            .await;
            keys.push(signing_key(&secret));
            assert!(
                secrets
                    .get_opt(&format!("{full}-peer-key"))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        keys
    };
    assert_ne!(keys[0], keys[1]);
    drop(operators);
    for file in files {
        run_ok(
            kubectl()
                .args(["delete", "--wait=false", "-n", &sys.name, "-f"])
                .arg(&file),
        );
    }
}
