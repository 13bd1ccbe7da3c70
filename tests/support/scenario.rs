//! Building blocks of reconciliation scenarios: a namespace with simulated nodes declared as
//! Streamers, Stream creation, and views of what the cluster and the nodes hold.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use panoptes::resources::{Stream, Streamer, User};
use serde_json::{Value, json};
use streamer_sim::Cluster;

use super::{TestNamespace, eventually};

/// A namespace with node credentials and one Streamer per simulated node.
pub async fn fleet(prefix: &str, nodes: usize) -> (TestNamespace, Cluster) {
    let ns = TestNamespace::new(prefix).await;
    let sim = Cluster::start(nodes).await.expect("simulator starts");
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("node-creds".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("login".to_string(), ByteString(b"flussonic".to_vec())),
            ("password".to_string(), ByteString(b"letmein!".to_vec())),
        ])),
        ..Default::default()
    };
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    for node in sim.nodes() {
        apply(
            &ns.api::<Streamer>(),
            json!({
                "kind": "Streamer",
                "metadata": { "name": node.hostname() },
                "spec": {
                    "hostname": node.hostname(),
                    "apiUrl": node.base_url(),
                    "credentials": { "secretName": "node-creds" },
                    // The simulator speaks plain http.
                    "allowInsecure": true,
                }
            }),
        )
        .await;
    }
    (ns, sim)
}

/// Server-side applies a panoptes.dev document (field manager `test`).
pub async fn apply<K>(api: &Api<K>, mut doc: Value) -> K
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    doc["apiVersion"] = json!("panoptes.dev/v1alpha1");
    let name = doc["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&doc),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

/// Applies a Stream with a healthy simulated input plus `extra` spec members.
pub async fn stream(ns: &TestNamespace, name: &str, extra: Value) -> Stream {
    let mut spec = json!({ "inputs": [{ "url": format!("fake://{name}") }] });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    apply(
        &ns.api::<Stream>(),
        json!({ "kind": "Stream", "metadata": { "name": name }, "spec": spec }),
    )
    .await
}

/// Watcher name → nodes (ingest first) of every Stream's recorded layout.
pub async fn layouts(ns: &TestNamespace) -> BTreeMap<String, Vec<String>> {
    ns.api::<Stream>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter_map(|s| {
            let l = s.status?.layout?;
            let mut nodes: Vec<String> = l.ingest.into_iter().map(String::from).collect();
            nodes.extend(l.dvr_backups.into_iter().map(String::from));
            Some((s.metadata.name.unwrap(), nodes))
        })
        .collect()
}

/// Managed stream names each simulated node holds on disk.
pub fn holdings(sim: &Cluster) -> BTreeMap<String, BTreeSet<String>> {
    sim.nodes()
        .iter()
        .map(|n| {
            let names = n
                .stream_names()
                .into_iter()
                .filter(|s| {
                    n.stored_stream(s)
                        .is_some_and(|c| c["labels"]["managed-by"] == "panoptes")
                })
                .collect();
            (n.hostname().to_string(), names)
        })
        .collect()
}

/// A User whose password the User controller hashes (Secret + `passwordSecretRef`); returns
/// once the hash is in effect (logging in before would count as failures and lock the login).
pub async fn user_with_password(ns: &TestNamespace, object: &str, login: &str, password: &str) {
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{object}-password")},
        "stringData": {"password": password},
    });
    ns.api::<Secret>()
        .patch(
            &format!("{object}-password"),
            &PatchParams::apply("panoptes-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    let user = json!({
        "apiVersion": "panoptes.dev/v1alpha1", "kind": "User",
        "metadata": {"name": object},
        "spec": {
            "name": login, "accessLevel": "admin",
            "passwordSecretRef": {"name": format!("{object}-password"), "key": "password"},
        },
    });
    ns.api::<User>()
        .patch(
            object,
            &PatchParams::apply("panoptes-tests").force(),
            &Patch::Apply(&user),
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the password is hashed",
        || async {
            let u = ns.api::<User>().get(object).await.ok()?;
            u.status?.password_hash_secret.map(|_| ())
        },
    )
    .await;
}
