//! Credentials written through the facade (findings 2, 2b, 3b, 14, 16, 17 of the security
//! review): they go to new Secrets the facade creates and its objects own, never into a Secret
//! someone else created (shared, or kept in Git); a failed write leaves nothing behind; deleted
//! objects take their credentials with them; push passwords are stored like camera passwords.
//! Every test ends by asserting that no unowned `managed-by: panoptes` Secret is left.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use panoptes::controllers::credentials::sweep_once;
use panoptes::controllers::user::{SOURCE_ANNOTATION, hash_secret_name};
use panoptes::domain::credentials as rules;
use panoptes::resources::{Stream, Streamer, User};
use panoptes::state::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::{Facade, assert_error, assert_no_unowned_credentials};
use crate::support::operator::Operator;
use crate::support::scenario::fleet;
use crate::support::{TestNamespace, eventually};

const WAIT: Duration = Duration::from_secs(20);
/// Field manager standing in for a GitOps tool.
const GITOPS: &str = "argocd-controller";

/// Panoptes' own singleton Secrets (system namespace), which have no owner by design.
fn text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// Every Secret value in `ns` that contains `needle` (by Secret name).
async fn secrets_holding(ns: &TestNamespace, needle: &str) -> Vec<String> {
    let list = ns.api::<Secret>().list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .filter(|s| {
            s.data
                .iter()
                .flatten()
                .any(|(_, v)| String::from_utf8_lossy(&v.0).contains(needle))
        })
        .map(|s| s.name_any())
        .collect()
}

/// Creates Secret `name` as a GitOps tool would (not labelled, not owned).
async fn git_secret(ns: &TestNamespace, name: &str, data: &[(&str, &str)]) -> Secret {
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    ns.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await
        .unwrap()
}

/// Server-side applies `doc` as the GitOps tool (its own field manager, forced).
async fn git_apply<K>(ns: &TestNamespace, doc: &Value) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    ns.api::<K>()
        .patch(
            doc["metadata"]["name"].as_str().unwrap(),
            &PatchParams::apply(GITOPS).force(),
            &Patch::Apply(doc),
        )
        .await
        .unwrap()
}

/// Waits until User `object`'s hash was checked against the current version of `source`,
/// so a login attempt (which counts towards the throttle when it fails) uses that password.
async fn wait_hashed(f: &Facade, ns: &TestNamespace, object: &str, source: &str) {
    let secrets = ns.api::<Secret>();
    eventually(WAIT, &format!("{object}'s password hashed"), || async {
        let src = secrets.get(source).await.ok()?;
        let want = format!("{}/{}", src.metadata.uid?, src.metadata.resource_version?);
        let hash = secrets.get(&hash_secret_name(object)).await.ok()?;
        (hash.metadata.annotations?.get(SOURCE_ANNOTATION) == Some(&want)).then_some(())
    })
    .await;
    eventually(WAIT, "the facade sees the hash", || async {
        let users = f.state.stores.users.state();
        let u = users.iter().find(|u| u.name_any() == object)?;
        u.status.as_ref()?.password_hash_secret.as_ref().map(|_| ())
    })
    .await;
}

async fn user_id(f: &Facade, login: &str) -> i64 {
    let v = f
        .get_until(&format!("/users?name={login}"), "user listed", |v| {
            v["users_list"][0]["id"].is_i64()
        })
        .await;
    v["users_list"][0]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_password_changed_through_the_facade_never_touches_a_shared_secret_and_survives_gitops() {
    let ns = TestNamespace::new("api-sec-shared-pw").await;
    let f = Facade::start(&ns).await;
    let op = Operator::start(&ns);
    git_secret(
        &ns,
        "user-passwords",
        &[("alice", "Alice-git-1"), ("bob", "Bob-git-1")],
    )
    .await;
    let manifest = |object: &str, id: i64| {
        json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "User",
            "metadata": {"name": object},
            "spec": {"id": id, "name": object, "accessLevel": "admin",
                "passwordSecretRef": {"name": "user-passwords", "key": object}}})
    };
    for (object, id) in [("alice", 10), ("bob", 11)] {
        git_apply::<User>(&ns, &manifest(object, id)).await;
    }
    let (alice, bob) = (user_id(&f, "alice").await, user_id(&f, "bob").await);

    for (id, pw) in [(alice, "Alice-new-1"), (bob, "Bob-new-1")] {
        let (s, v) = f
            .put(&format!("/users/{id}"), json!({"password": pw}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let shared = ns.api::<Secret>().get("user-passwords").await.unwrap();
    assert_eq!(
        (text(&shared, "alice"), text(&shared, "bob")),
        (Some("Alice-git-1".into()), Some("Bob-git-1".into())),
        "the shared Secret is the manifest's, untouched by the facade"
    );
    let stored: User = ns.api().get("alice").await.unwrap();
    let source = stored.spec.facade_password_secret_ref.clone().unwrap().name;
    let written = ns.api::<Secret>().get(&source).await.unwrap();
    assert!(rules::owned_by(
        &written,
        rules::OwnerKind::User,
        &stored.uid().unwrap()
    ));
    wait_hashed(&f, &ns, "alice", &source).await;
    f.login("alice", "Alice-new-1")
        .await
        .expect("the new password works");

    // GitOps re-applies the manifest (its own field manager), then replaces its fields with a
    // plain merge patch: the field the manifest never sets keeps the facade's password.
    git_apply::<User>(&ns, &manifest("alice", 10)).await;
    let git_fields = manifest("alice", 10);
    ns.api::<User>()
        .patch(
            "alice",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": git_fields["spec"]})),
        )
        .await
        .unwrap();
    let stored: User = ns.api().get("alice").await.unwrap();
    assert_eq!(
        stored.spec.facade_password_secret_ref.map(|r| r.name),
        Some(source.clone())
    );
    // Let the controller see the re-applied object before logging in again.
    eventually(WAIT, "alice reconciled after the re-apply", || async {
        let u: User = ns.api().get("alice").await.ok()?;
        let st = u.status?;
        (st.common.observed_generation == u.metadata.generation
            && st.password_hash_secret.is_some())
        .then_some(())
    })
    .await;
    wait_hashed(&f, &ns, "alice", &source).await;
    f.login("alice", "Alice-new-1")
        .await
        .expect("the new password survives the GitOps re-apply");

    // A second change replaces the facade's Secret and deletes the one it replaced.
    let (s, v) = f
        .put(
            &format!("/users/{alice}"),
            json!({"password": "Alice-new-2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        ns.api::<Secret>().get_opt(&source).await.unwrap().is_none(),
        "the replaced facade Secret is deleted"
    );
    assert_no_unowned_credentials(&ns).await;
    op.stop().await;
}

#[tokio::test]
async fn node_and_object_credentials_never_overwrite_a_secret_the_facade_did_not_create() {
    let ns = TestNamespace::new("api-sec-shared-node").await;
    let f = Facade::start(&ns).await;
    let shared = [
        ("login", "panoptes"),
        ("password", "sample-node-password"),
        ("clusterKey", "sample-cluster-key"),
    ];
    git_secret(&ns, "streamer-credentials", &shared).await;
    let manifest = |object: &str, host: &str, port: u16| {
        json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Streamer",
            "metadata": {"name": object},
            "spec": {"hostname": host, "apiUrl": format!("http://127.0.0.1:{port}"),
                "credentials": {"secretName": "streamer-credentials"}}})
    };
    git_apply::<Streamer>(&ns, &manifest("streamer-1", "s1.example.com", 36001)).await;
    git_apply::<Streamer>(&ns, &manifest("streamer-2", "s2.example.com", 36002)).await;
    for h in ["s1.example.com", "s2.example.com"] {
        f.get_until(&format!("/streamers/{h}"), "streamer visible", |_| true)
            .await;
    }

    // 2b: a cluster key for one streamer, then edit_auth for another.
    let (s, v) = f
        .put(
            "/streamers/s1.example.com",
            json!({"cluster_key": "rotated-cluster-key"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = f
        .put(
            "/streamers/s2.example.com",
            json!({"config": {"edit_auth": {"login": "panoptes", "password": "p2"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // 3b: a new streamer whose object name maps onto the shared Secret's name.
    let (s, v) = f
        .put(
            "/streamers/streamer",
            json!({"api_url": "http://127.0.0.1:36998", "cluster_key": "hijacked"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = ns
        .api::<Secret>()
        .get("streamer-credentials")
        .await
        .unwrap();
    for (k, want) in shared {
        assert_eq!(
            text(&got, k).as_deref(),
            Some(want),
            "shared node Secret key {k}"
        );
    }
    assert!(!rules::is_facade_created(&got));

    // Each streamer has its own facade Secret: the entered keys, the rest copied, each with
    // the destination it was entered for (or was being sent to).
    let s1: Streamer = ns.api().get("streamer-1").await.unwrap();
    assert_eq!(
        s1.spec.credentials.as_ref().unwrap().secret_name,
        "streamer-credentials",
        "the manifest's reference stays"
    );
    let own = s1.spec.facade_credentials.clone().unwrap().secret_name;
    let own = ns.api::<Secret>().get(&own).await.unwrap();
    assert!(rules::owned_by(
        &own,
        rules::OwnerKind::Streamer,
        &s1.uid().unwrap()
    ));
    assert_eq!(
        text(&own, "clusterKey").as_deref(),
        Some("rotated-cluster-key")
    );
    assert_eq!(
        text(&own, "password").as_deref(),
        Some("sample-node-password")
    );
    assert_eq!(
        rules::destinations(&own)
            .get("clusterKey")
            .map(String::as_str),
        Some("http://127.0.0.1:36001")
    );
    let hijack: Streamer = ns.api().get("streamer").await.unwrap();
    assert!(hijack.spec.credentials.is_none());
    let own = hijack.spec.facade_credentials.unwrap().secret_name;
    let own = ns.api::<Secret>().get(&own).await.unwrap();
    assert_eq!(
        own.data.as_ref().unwrap().keys().collect::<Vec<_>>(),
        ["clusterKey"],
        "a new streamer gets nothing it was not given"
    );
    assert_eq!(
        rules::destinations(&own)
            .get("clusterKey")
            .map(String::as_str),
        Some("http://127.0.0.1:36998")
    );
    // GitOps re-applies streamer-1: the facade's credentials stay in effect.
    git_apply::<Streamer>(&ns, &manifest("streamer-1", "s1.example.com", 36001)).await;
    let again: Streamer = ns.api().get("streamer-1").await.unwrap();
    assert_eq!(again.spec.facade_credentials, s1.spec.facade_credentials);

    // The same primitive on users and cameras: Secrets named like the facade's old choices.
    git_secret(&ns, "user-eve-password", &[("password", "not-eves")]).await;
    git_secret(
        &ns,
        "gate-camera-credentials",
        &[("username", "u"), ("password", "not-gates")],
    )
    .await;
    let (s, v) = f
        .post("/users", json!({"name": "eve", "password": "Eve-pass-1"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = f
        .put(
            "/streams/gate",
            json!({"inputs": [{"url": "rtsp://cam:Gate-pass-1@10.0.0.9/live"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (name, key, want) in [
        ("user-eve-password", "password", "not-eves"),
        ("gate-camera-credentials", "password", "not-gates"),
    ] {
        let got = ns.api::<Secret>().get(name).await.unwrap();
        assert_eq!(text(&got, key).as_deref(), Some(want), "{name}");
    }
    let gate: Stream = ns.api().get("gate").await.unwrap();
    assert!(
        gate.spec.credentials.is_none(),
        "the facade leaves the manifest's field alone"
    );
    let own = gate.spec.facade_credentials.unwrap().secret_name;
    let own = ns.api::<Secret>().get(&own).await.unwrap();
    assert_eq!(text(&own, "password").as_deref(), Some("Gate-pass-1"));
    assert_eq!(
        rules::destinations(&own)
            .get("password")
            .map(String::as_str),
        Some("rtsp://10.0.0.9:554")
    );
    assert_no_unowned_credentials(&ns).await;
}

#[tokio::test]
async fn push_passwords_are_stored_in_a_secret_redacted_and_injected_on_the_node() {
    let (ns, sim) = fleet("api-sec-push", 1).await;
    let f = Facade::start(&ns).await;
    let op = Operator::start(&ns);
    let push = "rtmp://pushuser:Push-Secret-9@127.0.0.1:36935/live";
    let (s, v) = f
        .put(
            "/streams/pushcam",
            json!({"title": "p", "inputs": [{"url": "fake://p"}], "pushes": [{"url": push}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v.to_string().contains("Push-Secret-9"), "{v}");
    let v = f
        .get_until("/streams/pushcam", "stream visible", |_| true)
        .await;
    assert!(!v.to_string().contains("Push-Secret-9"), "{v}");
    assert_eq!(v["pushes"][0]["url"], "rtmp://127.0.0.1:36935/live");
    let stored: Stream = ns.api().get("pushcam").await.unwrap();
    assert!(
        !serde_json::to_string(&stored.spec)
            .unwrap()
            .contains("Push-Secret-9")
    );
    let own = stored.spec.push_credentials.clone().unwrap().secret_name;
    let own = ns.api::<Secret>().get(&own).await.unwrap();
    let key = rules::push_password_key("rtmp://127.0.0.1:36935/live");
    assert_eq!(text(&own, &key).as_deref(), Some("Push-Secret-9"));
    assert_eq!(
        rules::destinations(&own).get(&key).map(String::as_str),
        Some("rtmp://127.0.0.1:36935")
    );
    // The node gets the push with its credentials (and only the node).
    eventually(
        Duration::from_secs(30),
        "push pushed with credentials",
        || async {
            let on_node = sim.nodes()[0].stored_stream("pushcam")?;
            (on_node["pushes"][0]["url"] == push).then_some(())
        },
    )
    .await;
    // Node credentials changed through the facade are the ones the operator uses, and the
    // fleet's shared node Secret is left as it was.
    let node = &sim.nodes()[0];
    let ready = |want: &'static str| {
        let ns = &ns;
        move || async move {
            let st: Streamer = ns.api().get(node.hostname()).await.ok()?;
            let status = st.status?;
            let ready = panoptes::resources::common::condition(&status.common.conditions, "Ready")?;
            (ready.status == want && status.common.observed_generation == st.metadata.generation)
                .then_some(())
        }
    };
    eventually(Duration::from_secs(30), "the node is Ready", ready("True")).await;
    node.set_edit_auth("flussonic", "Rotated-node-pw");
    eventually(
        Duration::from_secs(30),
        "the node refuses the old password",
        ready("False"),
    )
    .await;
    let (s, v) = f
        .put(
            &format!("/streamers/{}", node.hostname()),
            json!({"config": {"edit_auth": {"login": "flussonic", "password": "Rotated-node-pw"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    eventually(
        Duration::from_secs(30),
        "the node is managed with the new password",
        ready("True"),
    )
    .await;
    let shared = ns.api::<Secret>().get("node-creds").await.unwrap();
    assert_eq!(text(&shared, "password").as_deref(), Some("letmein!"));

    // A save that keeps the push keeps its credentials; the stream's deletion removes them.
    let (s, v) = f.put("/streams/pushcam", json!({"comment": "c"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    ns.api::<Stream>()
        .delete("pushcam", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "stream and its push Secret deleted", || async {
        let gone = ns.api::<Stream>().get_opt("pushcam").await.ok()?.is_none()
            && ns
                .api::<Secret>()
                .get_opt(&own.name_any())
                .await
                .ok()?
                .is_none();
        gone.then_some(())
    })
    .await;
    assert_no_unowned_credentials(&ns).await;
    op.stop().await;
}

#[tokio::test]
async fn a_five_mib_note_is_a_client_error_that_writes_nothing() {
    let ns = TestNamespace::new("api-sec-413").await;
    let f = Facade::start(&ns).await;
    let (s, v) = f
        .post(
            "/users",
            json!({"name": "fzbig", "password": "Orphan-Pass-2", "note": "n".repeat(5 << 20)}),
        )
        .await;
    // The facade's field rules (domain::validate) answer before the API server would; the
    // API server's own 413 maps to a 413 envelope (unit test `size_limits_are_413`).
    assert_error(s, &v, 400);
    assert_eq!(
        secrets_holding(&ns, "Orphan-Pass-2").await,
        Vec::<String>::new()
    );
    assert_no_unowned_credentials(&ns).await;
}

#[tokio::test]
async fn failed_writes_leave_nothing_and_deleted_objects_take_their_credentials() {
    let ns = TestNamespace::new("api-sec-halfwrites").await;
    let f = Facade::start(&ns).await;

    // Invalid writes write no Secret.
    let (s, v) = f
        .post(
            "/users",
            json!({"name": "fzbad", "password": "Orphan-Pass-1", "locale": "str"}),
        )
        .await;
    assert_error(s, &v, 422);
    assert_eq!(
        secrets_holding(&ns, "Orphan-Pass-1").await,
        Vec::<String>::new()
    );
    let (s, v) = f
        .put(
            "/streams/halfcam",
            // A label value over the CRD's 40 characters: only the API server refuses it, so
            // this is the dry run at work (the facade's own checks would answer 400 first).
            json!({"labels": {"site": "l".repeat(41)},
                "inputs": [{"url": "rtsp://u1:Orphan-Cam-Secret@127.0.0.1:36555/x"}]}),
        )
        .await;
    assert_error(s, &v, 422);
    assert_eq!(
        secrets_holding(&ns, "Orphan-Cam-Secret").await,
        Vec::<String>::new()
    );

    // Deleted objects take their facade Secrets with them (finalizers; no garbage collector).
    let op = Operator::start(&ns);
    let (s, v) = f
        .post("/users", json!({"name": "gone", "password": "Gone-Pass-1"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = f
        .put(
            "/streams/gonecam",
            json!({"inputs": [{"url": "rtsp://u:Gone-Cam-1@10.0.0.7/x"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let user: User = ns.api().get("user-gone").await.unwrap();
    let user_secret = user.spec.facade_password_secret_ref.clone().unwrap().name;
    eventually(WAIT, "finalizers in place", || async {
        let u: User = ns.api().get("user-gone").await.ok()?;
        let s: Stream = ns.api().get("gonecam").await.ok()?;
        (!u.finalizers().is_empty() && !s.finalizers().is_empty()).then_some(())
    })
    .await;
    assert!(rules::owned_by(
        &ns.api::<Secret>().get(&user_secret).await.unwrap(),
        rules::OwnerKind::User,
        &user.uid().unwrap()
    ));
    ns.api::<User>()
        .delete("user-gone", &DeleteParams::default())
        .await
        .unwrap();
    ns.api::<Stream>()
        .delete("gonecam", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "deleted objects' Secrets removed", || async {
        let left = [
            secrets_holding(&ns, "Gone-Pass-1").await,
            secrets_holding(&ns, "Gone-Cam-1").await,
        ];
        left.iter().all(Vec::is_empty).then_some(())
    })
    .await;
    op.stop().await;

    // The sweep: what a crash left (owner gone, never owned) goes, owned and referenced stays.
    let labels = BTreeMap::from([
        (
            rules::MANAGED_BY_LABEL.to_string(),
            rules::MANAGED_BY.to_string(),
        ),
        (
            rules::COMPONENT_LABEL.to_string(),
            rules::FACADE_CREDENTIALS.to_string(),
        ),
    ]);
    let leftover = |name: &str, owner: Option<Value>, for_: &str| {
        let mut s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name,
                "annotations": {rules::FOR_ANNOTATION: for_},
                "ownerReferences": owner.into_iter().collect::<Vec<_>>()},
            "data": {"password": "Q3Jhc2g="},
        }))
        .unwrap();
        s.metadata.labels = Some(labels.clone());
        s
    };
    let secrets = ns.api::<Secret>();
    for s in [
        leftover(
            "crash-owner-gone",
            Some(
                json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "User",
                "name": "ghost", "uid": "00000000-0000-0000-0000-000000000001"}),
            ),
            "User/ghost",
        ),
        leftover("crash-never-owned", None, "User/nobody"),
        // Written for a create whose owner update was lost: the object references it.
        leftover("crash-unadopted", None, "User/adoptee"),
    ] {
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    git_apply::<User>(
        &ns,
        &json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "User",
            "metadata": {"name": "adoptee"},
            "spec": {"id": 40, "name": "adoptee",
                "facadePasswordSecretRef": {"name": "crash-unadopted", "key": "password"}}}),
    )
    .await;
    let (s, v) = f
        .post("/users", json!({"name": "kept", "password": "Kept-Pass-1"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let report = sweep_once(
        &ns.client,
        &Scope::Namespace(ns.name.clone()),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let mut deleted = report.deleted.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            format!("{}/crash-never-owned", ns.name),
            format!("{}/crash-owner-gone", ns.name)
        ]
    );
    assert_eq!(
        report.adopted,
        [format!("{}/crash-unadopted", ns.name)],
        "referenced by the object it was written for: adopted, not deleted"
    );
    assert_eq!(secrets_holding(&ns, "Kept-Pass-1").await.len(), 1);
    assert_no_unowned_credentials(&ns).await;
}

#[tokio::test]
async fn a_camera_password_changed_through_the_facade_survives_a_gitops_reapply() {
    let (ns, sim) = fleet("api-sec-cam-gitops", 1).await;
    let f = Facade::start(&ns).await;
    let op = Operator::start(&ns);
    git_secret(
        &ns,
        "gitcam-camera",
        &[("username", "camuser"), ("password", "Git-Cam-1")],
    )
    .await;
    let camera = "rtsp://127.0.0.1:36554/live";
    let manifest = |title: &str| {
        json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
            "metadata": {"name": "gitcam"},
            "spec": {"title": title, "inputs": [{"url": camera}],
                "credentials": {"secretName": "gitcam-camera"}}})
    };
    git_apply::<Stream>(&ns, &manifest("git-1")).await;
    let node = &sim.nodes()[0];
    // The input URL the node holds once it holds the stream titled `title`.
    let pushed = |title: &'static str| {
        move || async move {
            let v = node.stored_stream("gitcam")?;
            (v["title"] == title).then(|| v["inputs"][0]["url"].as_str().map(String::from))?
        }
    };
    let url = eventually(WAIT, "the manifest's camera on the node", pushed("git-1")).await;
    assert!(url.contains("Git-Cam-1"), "{url}");

    // The camera password changes through the facade (once it knows the stream: a stream
    // without `spec.name` keeps it unset).
    f.get_until("/streams/gitcam", "stream visible", |_| true)
        .await;
    let (s, v) = f
        .put(
            "/streams/gitcam",
            json!({"inputs": [{"url": "rtsp://camuser:Facade-Cam-2@127.0.0.1:36554/live"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v.to_string().contains("Facade-Cam-2"), "{v}");
    let stored: Stream = ns.api().get("gitcam").await.unwrap();
    assert_eq!(
        stored
            .spec
            .credentials
            .as_ref()
            .map(|c| c.secret_name.as_str()),
        Some("gitcam-camera"),
        "the manifest's reference stays"
    );
    let own = stored.spec.facade_credentials.clone().unwrap().secret_name;
    assert!(rules::owned_by(
        &ns.api::<Secret>().get(&own).await.unwrap(),
        rules::OwnerKind::Stream,
        &stored.uid().unwrap()
    ));
    eventually(WAIT, "the facade's camera password on the node", || async {
        node.stored_stream("gitcam")?["inputs"][0]["url"]
            .as_str()?
            .contains("Facade-Cam-2")
            .then_some(())
    })
    .await;

    // GitOps re-applies the manifest (a new commit: only the title changed) with its own
    // field manager, forced: the node still gets the facade's password, and the sweep keeps
    // the facade's Secret.
    git_apply::<Stream>(&ns, &manifest("git-2")).await;
    let url = eventually(WAIT, "the re-applied manifest on the node", pushed("git-2")).await;
    assert_eq!(
        url, "rtsp://camuser:Facade-Cam-2@127.0.0.1:36554/live",
        "the GitOps re-apply took back the camera password changed through the facade"
    );
    let report = sweep_once(
        &ns.client,
        &Scope::Namespace(ns.name.clone()),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(report.deleted, Vec::<String>::new());
    assert!(ns.api::<Secret>().get_opt(&own).await.unwrap().is_some());
    assert_no_unowned_credentials(&ns).await;
    op.stop().await;
}
