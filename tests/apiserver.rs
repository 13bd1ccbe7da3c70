//! The CRDs on a real kube-apiserver: server-side apply of the samples, CEL rules, status
//! subresource, finalizers, kubectl as users run it (the Helm chart: tests/chart.rs).

mod support;

use std::time::Duration;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use panoptes::resources::{Preset, Stream, Streamer};
use serde_json::{Value, json};
use support::{TestNamespace, eventually, kubectl, repo_root, run_ok, sample_documents};

fn dynamic_api(ns: &TestNamespace, doc: &Value) -> Api<DynamicObject> {
    let (group, version) = match doc["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            doc["apiVersion"].as_str().unwrap().to_string(),
        ),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, doc["kind"].as_str().unwrap());
    let plural = format!("{}s", gvk.kind.to_lowercase());
    Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::from_gvk_with_plural(&gvk, &plural),
    )
}

#[tokio::test]
async fn every_sample_applies_with_server_side_apply_and_reads_back_equal() {
    let ns = TestNamespace::new("samples").await;
    let pp = PatchParams::apply("panoptes-tests");
    for doc in sample_documents() {
        let api = dynamic_api(&ns, &doc);
        let name = doc["metadata"]["name"].as_str().unwrap();
        let applied = api
            .patch(name, &pp, &Patch::Apply(&doc))
            .await
            .unwrap_or_else(|e| panic!("applying {} {name}: {e}", doc["kind"]));
        let read = api.get(name).await.unwrap();
        assert_eq!(
            applied.metadata.resource_version,
            read.metadata.resource_version
        );
        if doc["kind"] == "Secret" {
            continue;
        }
        assert_eq!(
            read.data["spec"], doc["spec"],
            "{} {name} reads back different",
            doc["kind"]
        );
    }
}

/// Applies `spec` as a new object and expects the API server to refuse it with `message`.
async fn expect_rejected(ns: &TestNamespace, kind: &str, spec: Value, message: &str) {
    let doc = json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": kind,
        "metadata": { "name": format!("bad-{:x}", rand::random::<u32>()) }, "spec": spec
    });
    let err = dynamic_api(ns, &doc)
        .create(
            &PostParams::default(),
            &serde_json::from_value(doc.clone()).unwrap(),
        )
        .await
        .expect_err(&format!("{kind} {spec} should be rejected"));
    assert_invalid(err, message);
}

fn assert_invalid(err: kube::Error, message: &str) {
    match err {
        kube::Error::Api(status) if status.code == 422 => {
            let m = &status.message;
            assert!(
                m.contains(message),
                "rejected, but with `{m}` instead of `{message}`"
            )
        }
        other => panic!("expected 422 Invalid with `{message}`, got {other:?}"),
    }
}

fn streamer_spec() -> Value {
    json!({ "hostname": "node-1.example.com", "apiUrl": "http://127.0.0.1:1" })
}

fn stream_spec() -> Value {
    json!({ "inputs": [{ "url": "fake://x" }] })
}

#[tokio::test]
async fn each_cel_rule_on_create_rejects_with_its_message() {
    let ns = TestNamespace::new("cel").await;
    let with = |mut base: Value, patch: Value| {
        base.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        base
    };
    expect_rejected(
        &ns,
        "Streamer",
        with(streamer_spec(), json!({"config": {"cluster_key": "k"}})),
        "spec.config.cluster_key must not be set",
    )
    .await;
    expect_rejected(
        &ns,
        "Streamer",
        with(
            streamer_spec(),
            json!({"config": {"edit_auth": {"login": "a", "password": "b"}}}),
        ),
        "edit_auth/view_auth must not be set",
    )
    .await;
    expect_rejected(
        &ns,
        "Streamer",
        with(streamer_spec(), json!({"drain": true})),
        "drain requires cordon",
    )
    .await;
    expect_rejected(
        &ns,
        "Streamer",
        with(streamer_spec(), json!({"apiUrl": "ftp://node"})),
        "apiUrl must start with http",
    )
    .await;
    expect_rejected(
        &ns,
        "Streamer",
        with(streamer_spec(), json!({"channelLimit": -1})),
        "should be greater than or equal to 0",
    )
    .await;
    expect_rejected(
        &ns,
        "Stream",
        json!({"title": "no inputs"}),
        "an enabled stream needs at least one input",
    )
    .await;
    expect_rejected(
        &ns,
        "Stream",
        json!({"inputs": [{"url": "rtsp://admin:secret@10.0.0.1/live"}]}),
        "must not carry a password",
    )
    .await;
    expect_rejected(
        &ns,
        "Stream",
        with(stream_spec(), json!({"labels": {"site": "x".repeat(41)}})),
        "stream label values must be 1 to 40 characters",
    )
    .await;
    expect_rejected(
        &ns,
        "Stream",
        with(stream_spec(), json!({"dvr": {"redundancy_factor": 9}})),
        "should be less than or equal to 5",
    )
    .await;
    expect_rejected(
        &ns,
        "Organization",
        json!({"title": "o", "presetRefs": ["a"], "defaultPresetRef": "b"}),
        "defaultPresetRef must be one of presetRefs",
    )
    .await;
    // A disabled stream needs no input.
    let ok = json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream", "metadata": {"name": "off"}, "spec": {"disabled": true}});
    dynamic_api(&ns, &ok)
        .create(
            &PostParams::default(),
            &serde_json::from_value(ok.clone()).unwrap(),
        )
        .await
        .unwrap();
}

/// Creates `kind` with `spec`, then applies `change` and expects `message`.
async fn expect_update_rejected(
    ns: &TestNamespace,
    kind: &str,
    spec: Value,
    change: Value,
    message: &str,
) {
    let name = format!("imm-{:x}", rand::random::<u32>());
    let doc = json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec});
    let api = dynamic_api(ns, &doc);
    let pp = PatchParams::apply("panoptes-tests");
    api.patch(&name, &pp, &Patch::Apply(&doc)).await.unwrap();
    let err = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": change})),
        )
        .await
        .expect_err(&format!("{kind} change {change} should be rejected"));
    assert_invalid(err, message);
}

#[tokio::test]
async fn each_immutability_rule_rejects_updates_with_its_message() {
    let ns = TestNamespace::new("immutable").await;
    expect_update_rejected(
        &ns,
        "Streamer",
        streamer_spec(),
        json!({"hostname": "other"}),
        "hostname is immutable",
    )
    .await;
    let mut named = stream_spec();
    named["name"] = json!("site/cam-1");
    expect_update_rejected(
        &ns,
        "Stream",
        named.clone(),
        json!({"name": "site/cam-2"}),
        "spec.name (the Watcher stream name) is immutable",
    )
    .await;
    expect_update_rejected(
        &ns,
        "Stream",
        stream_spec(),
        json!({"name": "late"}),
        "spec.name (the Watcher stream name) is immutable",
    )
    .await;
    expect_update_rejected(
        &ns,
        "Preset",
        json!({"title": "p", "id": 7}),
        json!({"id": 8}),
        "spec.id is immutable once pinned",
    )
    .await;
    expect_update_rejected(
        &ns,
        "Organization",
        json!({"title": "o", "id": 7}),
        json!({"id": null}),
        "spec.id is immutable once pinned",
    )
    .await;
    expect_update_rejected(
        &ns,
        "User",
        json!({"name": "u", "id": 7}),
        json!({"id": 9}),
        "spec.id is immutable once pinned",
    )
    .await;
}

#[tokio::test]
async fn spec_and_status_are_written_independently_and_generation_follows_spec() {
    let ns = TestNamespace::new("status").await;
    let api: Api<Preset> = ns.api();
    let pp = PatchParams::apply("panoptes-tests");
    let preset: Preset = serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "Preset",
        "metadata": {"name": "p"}, "spec": {"title": "Before"}
    }))
    .unwrap();
    let created = api.patch("p", &pp, &Patch::Apply(&preset)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // A status write through the main resource is ignored; through /status it lands without
    // touching spec or generation.
    let status = json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Preset", "status": {"id": 42, "observedGeneration": 1}});
    let ignored = api
        .patch("p", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert!(
        ignored.status.is_none(),
        "status written through the main resource"
    );
    let with_status = api
        .patch_status("p", &PatchParams::apply("panoptes"), &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(with_status.status.as_ref().unwrap().id, Some(42));
    assert_eq!(with_status.spec.title, "Before");
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "a status write moved the generation"
    );

    // A spec write moves the generation and leaves status alone.
    let mut changed = preset.clone();
    changed.spec.title = "After".into();
    let after = api.patch("p", &pp, &Patch::Apply(&changed)).await.unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(after.status.as_ref().unwrap().id, Some(42));
    // A spec-status attempt through /status does not change spec.
    let sneaky = json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Preset", "spec": {"title": "Sneaky"}});
    let r = api
        .patch_status("p", &PatchParams::apply("sneaky"), &Patch::Apply(&sneaky))
        .await
        .unwrap();
    assert_eq!(r.spec.title, "After");
    assert_eq!(r.metadata.generation, Some(2));
}

#[tokio::test]
async fn a_finalizer_blocks_deletion_until_removed() {
    let ns = TestNamespace::new("finalizer").await;
    let api: Api<Stream> = ns.api();
    let stream: Stream = serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": "cam", "finalizers": ["panoptes.dev/cleanup"]},
        "spec": {"inputs": [{"url": "fake://cam"}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &stream).await.unwrap();
    api.delete("cam", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = api
        .get("cam")
        .await
        .expect("deleted although a finalizer is set");
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch(
        "cam",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "the stream to go away", || {
        let api = api.clone();
        async move { api.get_opt("cam").await.unwrap().is_none().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn kubectl_apply_get_and_explain_work_as_for_a_user() {
    let ns = TestNamespace::new("kubectl").await;
    run_ok(
        kubectl()
            .args(["apply", "-n", &ns.name, "-f"])
            .arg(repo_root().join("manifests/samples")),
    );
    let out = run_ok(kubectl().args(["get", "streams,streamers", "-n", &ns.name]));
    for column in [
        "STREAMER", "ALIVE", "READY", "AGE", "HOSTNAME", "URL", "ROLE", "STREAMS",
    ] {
        assert!(
            out.contains(column),
            "kubectl get lacks column {column}:\n{out}"
        );
    }
    assert!(
        out.contains("north-cam-01") && out.contains("streamer-3"),
        "{out}"
    );
    let by_short = run_ok(kubectl().args([
        "get",
        "cam,str,pst,org,vmsuser",
        "-n",
        &ns.name,
        "-o",
        "name",
    ]));
    assert_eq!(by_short.lines().count(), 12 + 3 + 3 + 2 + 3, "{by_short}");
    let by_category = run_ok(kubectl().args(["get", "panoptes", "-n", &ns.name, "-o", "name"]));
    assert_eq!(by_category.lines().count(), 23, "{by_category}");
    let explain = run_ok(kubectl().args(["explain", "stream.spec"]));
    assert!(explain.contains("Watcher stream name"), "{explain}");
    assert!(explain.contains("presetRef"), "{explain}");
    let explain = run_ok(kubectl().args(["explain", "streamer.spec.credentials"]));
    assert!(explain.contains("clusterKey"), "{explain}");
}

#[tokio::test]
async fn streamers_read_back_typed() {
    let ns = TestNamespace::new("typed").await;
    let api: Api<Streamer> = ns.api();
    let s: Streamer = serde_json::from_value(json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "Streamer",
        "metadata": {"name": "n"}, "spec": streamer_spec()
    }))
    .unwrap();
    api.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(api.get("n").await.unwrap().spec, s.spec);
}

/// The API server's gauge of open watches by `group/resource`.
async fn open_watches(client: &kube::Client) -> std::collections::BTreeMap<String, i64> {
    apiserver_counts(client, "apiserver_longrunning_requests", "WATCH").await
}

/// The API server's count of `verb` requests (`family`, a counter or gauge with `verb`,
/// `group` and `resource` labels) by `group/resource`.
async fn apiserver_counts(
    client: &kube::Client,
    family: &str,
    verb: &str,
) -> std::collections::BTreeMap<String, i64> {
    let mut out = std::collections::BTreeMap::new();
    for (labels, value) in support::apiserver_samples(client, family).await {
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        if label("verb") == verb {
            *out.entry(format!("{}/{}", label("group"), label("resource")))
                .or_insert(0) += value as i64;
        }
    }
    out
}

/// Issue 17: the operator opens one watch per kind, shared by its stores, its controllers'
/// triggers and its indexes, and watches Secrets as metadata only: 20 Secrets of 512 KiB in
/// its namespace leave its memory as it was. Then a User reconciled again and again reads
/// its password and hash Secrets from the Secret cache, not from the API server. (No other
/// test of this binary watches anything, so the API server's gauge counts this operator
/// alone; the others read at most a few Secrets, the samples'.)
#[tokio::test]
async fn the_operator_watches_each_kind_once_and_secrets_as_metadata_only() {
    use k8s_openapi::api::core::v1::Secret;
    use panoptes::resources::{Organization, User};
    use support::binary::Binary;

    let ns = TestNamespace::new("watches").await;
    let before = open_watches(&ns.client).await;
    let lists_before = apiserver_counts(&ns.client, "apiserver_request_total", "LIST").await;
    let pp = PatchParams::apply("panoptes-tests");
    let apply = |kind: &str, name: &str, spec: Value| {
        json!({ "apiVersion": "panoptes.dev/v1alpha1", "kind": kind,
                "metadata": { "name": name }, "spec": spec })
    };
    let presets: Api<Preset> = ns.api();
    let orgs: Api<Organization> = ns.api();
    let users: Api<User> = ns.api();
    let secrets: Api<Secret> = ns.api();
    presets
        .patch(
            "p",
            &pp,
            &Patch::Apply(apply("Preset", "p", json!({ "title": "p" }))),
        )
        .await
        .unwrap();
    orgs.patch(
        "o",
        &pp,
        &Patch::Apply(apply(
            "Organization",
            "o",
            json!({ "title": "o", "presetRefs": ["p"] }),
        )),
    )
    .await
    .unwrap();
    // The password Secret's key stays missing: no argon2 hash (19 MiB of working memory)
    // distorts the memory figures below.
    let user =
        json!({ "name": "watcher", "passwordSecretRef": { "name": "pw", "key": "password" } });
    users
        .patch("u", &pp, &Patch::Apply(apply("User", "u", user)))
        .await
        .unwrap();

    let operator = Binary::start(&ns, "info");
    let reason = |u: &User| {
        u.status
            .as_ref()
            .and_then(|s| panoptes::resources::common::condition(&s.common.conditions, "Ready"))
            .map(|c| (c.reason.to_string(), c.message.to_string()))
    };
    let wait = Duration::from_secs(60);
    eventually(wait, "every meta kind reconciled", || async {
        let p = presets.get("p").await.unwrap();
        let o = orgs.get("o").await.unwrap();
        let u = users.get("u").await.unwrap();
        (p.status.as_ref().and_then(|s| s.organizations_count) == Some(1)
            && o.status.as_ref().and_then(|s| s.id).is_some()
            && reason(&u).is_some_and(|r| r.1.contains("not found")))
        .then_some(())
    })
    .await;

    let baseline = operator.rss();
    let big = "x".repeat(512 * 1024);
    for i in 0..20 {
        let s: Secret = serde_json::from_value(
            json!({ "metadata": { "name": format!("big-{i}") }, "stringData": { "blob": big } }),
        )
        .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    // Watch events arrive in order: once the operator reacts to this Secret, it has been
    // handed every big one before it.
    let pw: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "pw" }, "stringData": { "other": "x" } }),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &pw).await.unwrap();
    eventually(wait, "the User sees its password Secret", || async {
        let u = users.get("u").await.unwrap();
        reason(&u)
            .is_some_and(|r| r.1.contains("has no key"))
            .then_some(())
    })
    .await;
    let grown = operator.rss().saturating_sub(baseline);

    let after = open_watches(&ns.client).await;
    let mine =
        |key: &str| after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0);
    let kinds = ["organizations", "presets", "streamers", "streams", "users"];
    let per_kind: Vec<(&str, i64)> = kinds
        .iter()
        .map(|k| (*k, mine(&format!("panoptes.dev/{k}"))))
        .collect();
    // Informational (another test's kubectl may list Streams meanwhile): the start-up lists.
    let lists = apiserver_counts(&ns.client, "apiserver_request_total", "LIST").await;
    let listed =
        |k: &str| lists.get(k).copied().unwrap_or(0) - lists_before.get(k).copied().unwrap_or(0);
    eprintln!(
        "open watches: {per_kind:?}, Secrets {}; Stream lists since start: {}; RSS growth over \
         20 Secrets of 512 KiB: {} KiB",
        mine("/secrets"),
        listed("panoptes.dev/streams"),
        grown / 1024
    );
    assert_eq!(
        per_kind,
        kinds.iter().map(|k| (*k, 1)).collect::<Vec<_>>(),
        "open watches per panoptes.dev kind"
    );
    assert_eq!(mine("/secrets"), 1, "open watches of Secrets: {after:?}");
    assert!(
        grown < 5 * 1024 * 1024,
        "20 Secrets of 512 KiB grew the operator by {} KiB",
        grown / 1024
    );

    // The password arrives: hashed once, then every further reconcile of the User (here one
    // per spec change, with the status write each makes) finds both Secrets at the version
    // the metadata watch shows and reads neither again. Before the cache: 2 GETs each.
    secrets
        .patch(
            "pw",
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": { "password": "a-password" } })),
        )
        .await
        .unwrap();
    eventually(wait, "the User's password hashed", || async {
        let u = users.get("u").await.unwrap();
        let hashed = u
            .status
            .as_ref()
            .is_some_and(|s| s.password_hash_secret.is_some());
        (hashed && reason(&u).is_some_and(|r| r.0 == "Reconciled")).then_some(())
    })
    .await;
    let secret_gets = || async {
        apiserver_counts(&ns.client, "apiserver_request_total", "GET")
            .await
            .get("/secrets")
            .copied()
            .unwrap_or(0)
    };
    let gets_before = secret_gets().await;
    const CHANGES: i64 = 12;
    for i in 0..CHANGES {
        let changed = users
            .patch(
                "u",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "note": format!("change {i}") } })),
            )
            .await
            .unwrap();
        let generation = changed.metadata.generation;
        eventually(wait, "the User's change reconciled", || async {
            let u = users.get("u").await.unwrap();
            let observed = u.status.as_ref().and_then(|s| s.common.observed_generation);
            (observed == generation && reason(&u).is_some_and(|r| r.0 == "Reconciled"))
                .then_some(())
        })
        .await;
    }
    let gets = secret_gets().await - gets_before;
    eprintln!("Secret GETs over {CHANGES} User changes: {gets}");
    assert!(
        gets < CHANGES,
        "{CHANGES} reconciles of an unchanged User read Secrets {gets} times"
    );
}
