//! Secrets stay secret: a full scenario with known secret values (node credentials, camera
//! and publish passwords, user passwords), after which none of them appears in any resource
//! the operator writes (spec, status, metadata), any Event, or the operator's debug logs.
//! The facade of the same binary is read end to end, and a cluster key is written through it.

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
const CLUSTER_KEY: &str = "cluster-key-Yb55Qe";

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
    // Through the real binary's facade: log in, read everything a client can read, and write
    // a streamer with a cluster key (a secret arriving through the API).
    let http = reqwest::Client::new();
    let base = format!("http://{}/watcher/admin-api/v3", op.api);
    let token = eventually(
        Duration::from_secs(40),
        "login through the facade",
        || async {
            let r = http
                .post(format!("{base}/login"))
                .basic_auth("alice", Some(USER_PASSWORD))
                .header("content-type", "application/json")
                .body("null")
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            let v: serde_json::Value = r.json().await.ok()?;
            v["access_token"].as_str().map(String::from)
        },
    )
    .await;
    let put = http
        .put(format!("{base}/streamers/edge-9"))
        .bearer_auth(&token)
        .json(&json!({ "hostname": "edge-9", "cluster_key": CLUSTER_KEY }))
        .send()
        .await
        .unwrap();
    let mut responses = vec![put.text().await.unwrap()];
    for path in [
        "/streams",
        "/streams/gate",
        "/streams/gate/camera_config",
        "/streams/gate/layouts",
        "/streamers",
        "/streamers/edge-9",
        "/users",
        "/presets",
        "/domain_config",
        "/system_config",
        "/cluster/stats",
        "/cluster/stats?format=openmetrics",
        "/events",
        "/agents",
        "/openapi.json",
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        responses.push(format!("{path} {} {}", r.status(), r.text().await.unwrap()));
    }
    let jwt_key = eventually(Duration::from_secs(10), "the JWT key Secret", || async {
        let s = ns.api::<Secret>().get_opt("panoptes-jwt").await.ok()??;
        let key = s.data?.get("signing-key")?.0.clone();
        Some(String::from_utf8_lossy(&key).into_owned())
    })
    .await;
    assert!(jwt_key.len() >= 16, "a real signing key");
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
        ("cluster key", CLUSTER_KEY),
        ("JWT signing key", jwt_key.as_str()),
    ] {
        for doc in &written {
            assert!(!doc.contains(value), "the {what} leaked into {doc}");
        }
        for r in &responses {
            assert!(
                !r.contains(value),
                "the {what} leaked into a facade response: {r}"
            );
        }
        assert!(
            !logs.contains(value),
            "the {what} leaked into the operator's logs"
        );
    }
    let ok = responses.iter().filter(|r| r.contains(" 200 OK ")).count();
    assert!(ok >= 14, "the facade answered: {responses:#?}");
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

/// A started operator reads the Streams' camera Secrets with paged lists before its first
/// push, not with a GET per camera: the credentials Secrets the facade wrote with their label
/// selector (large pages), the Secrets made by hand with a list of the namespace's Secrets
/// (issue 21: at 100,000 cameras the first push waited 23 s for pages of 100).
#[tokio::test]
async fn camera_secrets_are_read_with_paged_lists_at_start() {
    use panoptes::domain::credentials as rules;
    const EACH: usize = 60;
    let (ns, sim) = fleet("warm", 2).await;
    let pp = PostParams::default();
    for i in 0..EACH {
        let (facade, own) = (format!("f-{i:02}"), format!("u-{i:02}"));
        let labelled: Secret = serde_json::from_value(json!({
            "metadata": {
                "name": format!("{facade}-creds"),
                "labels": {
                    rules::MANAGED_BY_LABEL: rules::MANAGED_BY,
                    rules::COMPONENT_LABEL: rules::FACADE_CREDENTIALS,
                },
            },
            "stringData": { "username": "admin", "password": CAMERA_PASSWORD },
        }))
        .unwrap();
        ns.api::<Secret>().create(&pp, &labelled).await.unwrap();
        secret(
            &ns,
            &format!("{own}-creds"),
            &[("username", "admin"), ("password", CAMERA_PASSWORD)],
        )
        .await;
        for (name, field) in [(&facade, "facadeCredentials"), (&own, "credentials")] {
            support::scenario::stream(
                &ns,
                name,
                json!({ field: { "secretName": format!("{name}-creds") } }),
            )
            .await;
        }
    }
    let op = Binary::start(&ns, "info,kube=warn");
    let line = eventually(Duration::from_secs(60), "the warm-up's log line", || {
        let out = op.output();
        async move {
            out.lines()
                .find(|l| l.contains("read the Streams' Secrets with paged lists"))
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        }
    })
    .await;
    let fields = &line;
    assert_eq!(fields["secrets"], 2 * EACH as u64, "{line}");
    assert_eq!(fields["unread"], 0, "{line}");
    let lists = fields["lists"].as_str().unwrap_or_default();
    assert!(
        lists.contains(&format!("(\"facade-created\", {EACH})")) && lists.contains("(\"all\","),
        "the labelled list returned the facade's {EACH}, and a list of all Secrets read the rest: {line}"
    );
    eventually(Duration::from_secs(60), "every Stream on a node", || {
        let held: usize = support::scenario::holdings(&sim)
            .values()
            .map(|names| names.len())
            .sum();
        async move { (held == 2 * EACH).then_some(()) }
    })
    .await;
}
