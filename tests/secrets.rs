//! Secrets stay secret: a full scenario with known secret values (node credentials, camera
//! and publish passwords, user passwords), after which none of them appears in any resource
//! the operator writes (spec, status, metadata), any Event, or the operator's debug logs.
//! The facade's responses are checked in the facade's own tests.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use panoptes::resources::common::condition;
use panoptes::resources::{Organization, Preset, Stream, Streamer, User};
use serde_json::json;
use support::binary::Binary;
use support::scenario::{apply, fleet};
use support::{TestNamespace, eventually};

const NODE_PASSWORD: &str = "node-pw-Tq7vX2";
const CAMERA_PASSWORD: &str = "cam-pw-Zq81xR";
const PUBLISH_PASSWORD: &str = "pub-pw-Mm20Lk";
const USER_PASSWORD: &str = "user-pw-Kd93Pw";

async fn secret(ns: &TestNamespace, name: &str, data: &[(&str, &str)]) {
    let s = Secret {
        metadata: kube::api::ObjectMeta {
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
        .unwrap();
}

#[tokio::test]
async fn no_secret_value_leaks_into_resources_events_or_logs() {
    let (ns, sim) = fleet("secrets", 2).await;
    // Rotate the nodes to a distinctive password, and the Secret with them.
    for n in sim.nodes() {
        n.set_edit_auth("admin", NODE_PASSWORD);
    }
    ns.api::<Secret>()
        .patch(
            "node-creds",
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": { "login": "admin", "password": NODE_PASSWORD } })),
        )
        .await
        .unwrap();
    secret(
        &ns,
        "camera",
        &[
            ("username", "camuser"),
            ("password", CAMERA_PASSWORD),
            ("publish", PUBLISH_PASSWORD),
        ],
    )
    .await;
    secret(&ns, "user-passwords", &[("alice", USER_PASSWORD)]).await;
    apply(
        &ns.api::<User>(),
        json!({ "kind": "User", "metadata": { "name": "alice" }, "spec": {
            "name": "alice", "accessLevel": "admin",
            "passwordSecretRef": { "name": "user-passwords", "key": "alice" } } }),
    )
    .await;
    apply(
        &ns.api::<Stream>(),
        json!({ "kind": "Stream", "metadata": { "name": "gate" }, "spec": {
            "inputs": [{ "url": "rtsp://10.1.2.3/live" }],
            "credentials": { "secretName": "camera" },
            "publishPassword": { "name": "camera", "key": "publish" } } }),
    )
    .await;

    let op = Binary::start(&ns, "debug");
    eventually(
        Duration::from_secs(40),
        "the stream is pushed with its credentials",
        || async {
            let s = ns.api::<Stream>().get("gate").await.ok()?;
            let synced = condition(&s.status.as_ref()?.common.conditions, "Synced")?;
            (synced.status == "True").then_some(())
        },
    )
    .await;
    let on_node = sim
        .nodes()
        .iter()
        .find_map(|n| n.stored_stream("gate"))
        .expect("the stream is on a node");
    assert!(
        on_node.to_string().contains(CAMERA_PASSWORD),
        "the node (and only the node) receives the camera password"
    );
    eventually(
        Duration::from_secs(40),
        "the user's password is hashed",
        || async {
            let u = ns.api::<User>().get("alice").await.ok()?;
            u.status?.password_hash_secret.map(|_| ())
        },
    )
    .await;
    // Let a few resyncs run with debug logging.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let lp = ListParams::default();
    let mut written = Vec::new();
    macro_rules! dump {
        ($k:ty) => {
            for o in ns.api::<$k>().list(&lp).await.unwrap() {
                written.push(serde_json::to_string(&o).unwrap());
            }
        };
    }
    dump!(Stream);
    dump!(Streamer);
    dump!(User);
    dump!(Preset);
    dump!(Organization);
    dump!(Event);
    dump!(Lease);
    let logs = op.output();
    assert!(
        logs.len() > 1000,
        "debug logs were captured ({} bytes)",
        logs.len()
    );
    for (what, value) in [
        ("node password", NODE_PASSWORD),
        ("camera password", CAMERA_PASSWORD),
        ("publish password", PUBLISH_PASSWORD),
        ("user password", USER_PASSWORD),
    ] {
        for doc in &written {
            assert!(!doc.contains(value), "the {what} leaked into {doc}");
        }
        assert!(
            !logs.contains(value),
            "the {what} leaked into the operator's logs"
        );
    }
    // The password hash Secret holds a slow salted hash, not the password.
    let hash = ns
        .api::<Secret>()
        .list(&lp)
        .await
        .unwrap()
        .into_iter()
        .find(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.contains("alice") && n.contains("hash"))
        })
        .expect("a hash Secret exists");
    let stored: String = hash
        .data
        .unwrap_or_default()
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect();
    assert!(stored.contains("$argon2id$"), "argon2id hash stored");
    assert!(!stored.contains(USER_PASSWORD));
}
