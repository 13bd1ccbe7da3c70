//! A deleted object is gone: a terminating object (its finalizer still cleaning the nodes)
//! answers 404 on get, is absent from lists, and a save of its name answers 409 until the
//! cleanup is done.

use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api_support::{Facade, WAIT, assert_error, make_user, org, preset, streamer};
use crate::support::operator::Operator;
use crate::support::scenario::fleet;
use crate::support::{TestNamespace, eventually};
use panoptes::resources::{Organization, Preset, Stream, Streamer, User};

const HOLD: &str = "test.panoptes.dev/hold";

/// Adds (`on`) or removes a finalizer nobody else touches, so the object stays terminating
/// after a delete until the test lets it go.
async fn hold<K>(ns: &TestNamespace, object: &str, on: bool)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = ns.api();
    let Some(k) = api.get_opt(object).await.unwrap() else {
        return;
    };
    let mut fins: Vec<String> = k.meta().finalizers.clone().unwrap_or_default();
    fins.retain(|f| f != HOLD);
    if on {
        fins.push(HOLD.into());
    }
    api.patch(
        object,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": fins}})),
    )
    .await
    .unwrap();
}

fn names(list: &Value, key: &str, member: &str) -> Vec<Value> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[member].clone())
        .collect()
}

#[tokio::test]
async fn deleted_streams_are_gone_at_once() {
    const ROUNDS: usize = 100;
    let (ns, _sim) = fleet("compat-deleted", 1).await;
    let f = Facade::start(&ns).await;
    let operator = Operator::start(&ns);
    for i in 0..ROUNDS {
        let (s, v) = f
            .put(&format!("/streams/gone/{i}"), json!({"disabled": true}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // Every Stream carries the operator's cleanup finalizer, so each delete leaves it
    // terminating for a while (what the vendor client tripped over).
    eventually(WAIT, "cleanup finalizers", || async {
        let all = ns.api::<Stream>().list(&Default::default()).await.ok()?;
        (all.items.len() == ROUNDS
            && all.items.iter().all(|s| {
                s.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| f.iter().any(|f| f == "panoptes.dev/cleanup"))
            }))
        .then_some(())
    })
    .await;
    // The object of `gone/0` (its name is a digest form: the Watcher name has a `/`).
    let object = ns
        .api::<Stream>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|s| s.spec.name.as_deref() == Some("gone/0"))
        .and_then(|s| s.metadata.name)
        .unwrap();
    hold::<Stream>(&ns, &object, true).await;
    for i in 0..ROUNDS {
        let path = format!("/streams/gone%2F{i}");
        let (s, v) = f.delete(&path).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "round {i}: {v}");
        let (s, v) = f.get(&path).await;
        assert_error(s, &v, 404);
        let (s, v) = f.get(&format!("{path}/layouts")).await;
        assert_error(s, &v, 404);
        if i % 10 == 0 {
            let (_, list) = f.get("/streams?limit=1000").await;
            let listed = names(&list, "streams", "name");
            assert!(
                !listed.contains(&json!(format!("gone/{i}"))),
                "round {i}: {list}"
            );
        }
    }
    // The held stream is still terminating: a save of its name says so.
    let (s, v) = f.put("/streams/gone%2F0", json!({"disabled": true})).await;
    assert_error(s, &v, 409);
    assert_eq!(v["errors"][0]["code"], "being_deleted", "{v}");
    hold::<Stream>(&ns, &object, false).await;
    // Once the cleanup is done, the name is free again.
    eventually(WAIT, "re-created after cleanup", || async {
        let (s, _) = f.put("/streams/gone%2F0", json!({"disabled": true})).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    operator.stop().await;
}

/// Kinds the seed's operations do not delete (kubectl or GitOps does): while terminating,
/// get answers 404, lists leave them out, saves of their identity answer 409.
#[tokio::test]
async fn terminating_objects_of_every_kind_are_gone() {
    let ns = TestNamespace::new("compat-terminating").await;
    let f = Facade::start(&ns).await;
    let dp = DeleteParams::default();
    streamer(&ns, "edge", json!({"hostname": "edge.example.com"})).await;
    make_user(&ns, "bob", "bob", "bob-password", false, 51).await;
    preset(&ns, "silver", 61, "Silver", 1).await;
    org(&ns, "initech", 71, "Initech", &["silver"]).await;
    f.get_until("/streamers/edge.example.com", "streamer", |_| true)
        .await;
    f.get_until("/users/51", "user", |_| true).await;
    f.get_until("/presets/61", "preset", |_| true).await;
    crate::api_support::stream(&ns, "held", json!({"disabled": true})).await;
    f.get_until("/streams/held", "stream", |_| true).await;
    let totals = |v: &Value| {
        (
            v["stream_metrics_total"]["total"].clone(),
            v["streamer_metrics_total"]["total"].clone(),
        )
    };
    let (_, v) = f.get("/cluster/stats").await;
    assert_eq!(totals(&v), (json!(1), json!(1)), "{v}");
    hold::<Stream>(&ns, "held", true).await;
    ns.api::<Stream>().delete("held", &dp).await.unwrap();
    hold::<Streamer>(&ns, "edge", true).await;
    hold::<User>(&ns, "bob", true).await;
    hold::<Preset>(&ns, "silver", true).await;
    hold::<Organization>(&ns, "initech", true).await;
    ns.api::<Streamer>().delete("edge", &dp).await.unwrap();
    ns.api::<User>().delete("bob", &dp).await.unwrap();
    ns.api::<Preset>().delete("silver", &dp).await.unwrap();
    ns.api::<Organization>()
        .delete("initech", &dp)
        .await
        .unwrap();

    for (path, key, member, gone) in [
        (
            "/streamers/edge.example.com",
            "streamers",
            "hostname",
            json!("edge.example.com"),
        ),
        ("/users/51", "users_list", "id", json!(51)),
        ("/presets/61", "presets", "id", json!(61)),
    ] {
        eventually(WAIT, path, || async {
            let (s, _) = f.get(path).await;
            (s == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        let list = path.rsplit_once('/').unwrap().0;
        let (_, v) = f.get(list).await;
        assert!(!names(&v, key, member).contains(&gone), "{path}: {v}");
    }
    // Cluster health counts what the lists show: the terminating stream and streamer are gone.
    eventually(
        WAIT,
        "cluster stats without terminating objects",
        || async {
            let (_, v) = f.get("/cluster/stats").await;
            (totals(&v) == (json!(0), json!(0))).then_some(())
        },
    )
    .await;
    let (s, v) = f
        .put("/streamers/edge.example.com", json!({"channel_limit": 3}))
        .await;
    assert_error(s, &v, 409);
    assert_eq!(v["errors"][0]["code"], "being_deleted", "{v}");
    let (s, v) = f.put("/users/51", json!({"fullname": "Bob"})).await;
    assert_error(s, &v, 404);
    let (s, v) = f
        .put("/organizations/71/presets", json!({"preset_id": 61}))
        .await;
    assert_error(s, &v, 404);

    hold::<Stream>(&ns, "held", false).await;
    hold::<Streamer>(&ns, "edge", false).await;
    hold::<User>(&ns, "bob", false).await;
    hold::<Preset>(&ns, "silver", false).await;
    hold::<Organization>(&ns, "initech", false).await;
}
