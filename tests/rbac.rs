//! The chart's RBAC on a real API server, exercised as the chart's ServiceAccount through
//! impersonation: every kind of call the operator makes succeeds, and calls it never makes
//! (pods, other namespaces, cluster-scoped objects, Secret updates) are denied.
//!
//! Running the whole operator under these permissions is tests/operator_rbac.rs.

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use panoptes::resources::{Organization, Preset, Stream, Streamer, User};
use serde_json::json;
use support::{
    TestNamespace, impersonating_client, install_chart_rbac, kubectl, service_account_groups,
};

/// A client that is the ServiceAccount `user` of namespace `ns`.
async fn as_service_account(user: &str, ns: &str) -> Client {
    impersonating_client(user, service_account_groups(ns)).await
}

fn forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what} should be forbidden, got {other:?}"),
    }
}

fn allowed<T>(what: &str, result: Result<T, kube::Error>) -> T {
    result.unwrap_or_else(|e| panic!("{what} should be allowed: {e}"))
}

/// RBAC settles within a moment after the RoleBinding is created (authorizer cache).
async fn wait_for_rbac(client: &Client, ns: &str) {
    let api: Api<Stream> = Api::namespaced(client.clone(), ns);
    support::eventually(std::time::Duration::from_secs(10), "RBAC to apply", || {
        let api = api.clone();
        async move { api.list(&ListParams::default()).await.ok() }
    })
    .await;
}

/// What the controllers and the facade do in a watched namespace.
async fn operator_calls_in(client: &Client, ns: &str) {
    let ssa = PatchParams::apply("panoptes-api");
    for list in [
        Api::<Streamer>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        Api::<Preset>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        Api::<Organization>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        Api::<User>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        Api::<Secret>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
    ] {
        allowed("listing a watched kind", list);
    }
    // The facade creates a camera by server-side apply, a controller patches its status and
    // metadata, the facade deletes it.
    let streams: Api<Stream> = Api::namespaced(client.clone(), ns);
    let cam = json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": "rbac-cam"},
        "spec": {"inputs": [{"url": "fake://rbac-cam"}]}
    });
    allowed(
        "creating a Stream by server-side apply",
        streams.patch("rbac-cam", &ssa, &Patch::Apply(&cam)).await,
    );
    let status = json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "Stream",
        "status": {"observedGeneration": 1, "conditions": [{
            "type": "Ready", "status": "False", "reason": "Pending", "message": "rbac test",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}
    });
    allowed(
        "patching Stream status",
        streams
            .patch_status(
                "rbac-cam",
                &PatchParams::apply("panoptes").force(),
                &Patch::Apply(&status),
            )
            .await,
    );
    allowed(
        "adding the cleanup finalizer",
        streams
            .patch(
                "rbac-cam",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["panoptes.dev/cleanup"]}})),
            )
            .await,
    );
    allowed(
        "removing the finalizer",
        streams
            .patch(
                "rbac-cam",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await,
    );
    allowed(
        "deleting a Stream",
        streams.delete("rbac-cam", &DeleteParams::default()).await,
    );
    // A password-hash Secret: applied, then deleted with its User.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let hash = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rbac-hash"},
                      "stringData": {"hash": "x"}});
    allowed(
        "applying a hash Secret",
        secrets.patch("rbac-hash", &ssa, &Patch::Apply(&hash)).await,
    );
    allowed("reading a Secret", secrets.get("rbac-hash").await);
    // Never updated with a full PUT (get-then-update would race); server-side apply only.
    let read = secrets.get("rbac-hash").await.unwrap();
    forbidden(
        "replacing a Secret",
        secrets
            .replace("rbac-hash", &PostParams::default(), &read)
            .await,
    );
    allowed(
        "deleting a hash Secret",
        secrets.delete("rbac-hash", &DeleteParams::default()).await,
    );
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": format!("rbac.{:x}", rand::random::<u32>())},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "panoptes.dev/panoptes", "reportingInstance": "test",
        "action": "Reconcile", "reason": "Test", "type": "Normal", "note": "rbac test",
        "regarding": {"kind": "Stream", "namespace": ns, "name": "rbac-cam",
                      "apiVersion": Stream::api_version(&())}
    }))
    .unwrap();
    let created = allowed(
        "creating an Event",
        events.create(&PostParams::default(), &event).await,
    );
    allowed(
        "patching an Event series",
        events
            .patch(
                created.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(json!({"series": {
                    "count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"}})),
            )
            .await,
    );
    allowed(
        "listing Events (GET /events)",
        events
            .list(&ListParams::default().fields("reportingController=panoptes"))
            .await,
    );
    // Never touched: workloads, and deletion of the Events it wrote.
    forbidden(
        "listing pods",
        Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "deleting an Event",
        events
            .delete(
                created.metadata.name.as_deref().unwrap(),
                &DeleteParams::default(),
            )
            .await,
    );
}

/// What Panoptes does with its own objects in the system namespace.
async fn system_calls_in(client: &Client, ns: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "rbac-id-claim", "labels": {"panoptes.dev/claim": "test"}},
        "spec": {"holderIdentity": "test"}
    }))
    .unwrap();
    allowed(
        "creating a Lease",
        leases.create(&PostParams::default(), &lease).await,
    );
    allowed(
        "listing Leases by label",
        leases
            .list(&ListParams::default().labels("panoptes.dev/claim=test"))
            .await,
    );
    let mut held = allowed("reading a Lease", leases.get("rbac-id-claim").await);
    held.spec.as_mut().unwrap().lease_duration_seconds = Some(15);
    allowed(
        "renewing the leader Lease (update)",
        leases
            .replace("rbac-id-claim", &PostParams::default(), &held)
            .await,
    );
    allowed(
        "patching a Lease",
        leases
            .patch(
                "rbac-id-claim",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
    );
    allowed(
        "deleting a Lease",
        leases
            .delete("rbac-id-claim", &DeleteParams::default())
            .await,
    );
    let settings: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "panoptes-settings"}, "data": {"a": "b"}});
    allowed(
        "applying the settings ConfigMap",
        settings
            .patch(
                "panoptes-settings",
                &PatchParams::apply("panoptes-api"),
                &Patch::Apply(&cm),
            )
            .await,
    );
    allowed(
        "reading the settings ConfigMap",
        settings.get("panoptes-settings").await,
    );
    forbidden(
        "deleting the settings ConfigMap",
        settings
            .delete("panoptes-settings", &DeleteParams::default())
            .await,
    );
    let jwt: Secret = serde_json::from_value(json!({
        "metadata": {"name": "panoptes-jwt"}, "stringData": {"signing-key": "k"}
    }))
    .unwrap();
    allowed(
        "creating the JWT key Secret",
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &jwt)
            .await,
    );
    allowed(
        "reading the JWT key Secret",
        Api::<Secret>::namespaced(client.clone(), ns)
            .get("panoptes-jwt")
            .await,
    );
}

/// Cluster-scoped reads and writes the operator never needs.
async fn cluster_scoped_denied(client: &Client) {
    forbidden(
        "listing namespaces",
        Api::<Namespace>::all(client.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "reading a CRD",
        Api::<CustomResourceDefinition>::all(client.clone())
            .get("streams.panoptes.dev")
            .await,
    );
    forbidden(
        "listing ClusterRoles",
        Api::<ClusterRole>::all(client.clone())
            .list(&ListParams::default())
            .await,
    );
}

#[tokio::test]
async fn namespaced_mode_allows_the_operator_in_its_namespace_and_nothing_else() {
    let ns = TestNamespace::new("rbac-ns").await;
    let other = TestNamespace::new("rbac-other").await;
    let user = install_chart_rbac(&ns.name, "panoptes", &["--set", "namespaced=true"]);
    let client = as_service_account(&user, &ns.name).await;
    wait_for_rbac(&client, &ns.name).await;

    operator_calls_in(&client, &ns.name).await;
    system_calls_in(&client, &ns.name).await;
    cluster_scoped_denied(&client).await;
    forbidden(
        "listing Streams of another namespace",
        Api::<Stream>::namespaced(client.clone(), &other.name)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "listing Streams of every namespace",
        Api::<Stream>::all(client.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "reading Secrets of another namespace",
        Api::<Secret>::namespaced(client.clone(), &other.name)
            .list(&ListParams::default())
            .await,
    );
}

#[tokio::test]
async fn cluster_mode_watches_every_namespace_but_keeps_leases_in_the_system_namespace() {
    let system = TestNamespace::new("rbac-sys").await;
    let watched = TestNamespace::new("rbac-watched").await;
    // ClusterRoles are cluster-scoped: a release name of its own so parallel tests never share.
    let release = format!("panoptes-{}", &system.name[system.name.len() - 8..]);
    let user = install_chart_rbac(&system.name, &release, &[]);
    let client = as_service_account(&user, &system.name).await;
    wait_for_rbac(&client, &watched.name).await;

    allowed(
        "listing Streams of every namespace (the watch)",
        Api::<Stream>::all(client.clone())
            .list(&ListParams::default())
            .await,
    );
    operator_calls_in(&client, &watched.name).await;
    system_calls_in(&client, &system.name).await;
    cluster_scoped_denied(&client).await;
    forbidden(
        "creating a Lease outside the system namespace",
        Api::<Lease>::namespaced(client.clone(), &watched.name)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
            )
            .await,
    );
    forbidden(
        "writing a ConfigMap outside the system namespace",
        Api::<ConfigMap>::namespaced(client.clone(), &watched.name)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
            )
            .await,
    );
    // Cluster-scoped leftovers of this test; namespaced ones go with the namespaces.
    let _ = kubectl()
        .args(["delete", "clusterrole,clusterrolebinding", &release])
        .output();
}
