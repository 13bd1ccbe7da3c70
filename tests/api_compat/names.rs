//! Names collide no more: a plain object name held by another Watcher name (GitOps wrote
//! `central-cam-01` for `traffic/central-cam-01`) gives a save of `central-cam-01` a new
//! object, found again by its Watcher name.

use reqwest::StatusCode;
use serde_json::json;

use crate::api_support::{Facade, stream, streamer};
use crate::support::TestNamespace;
use panoptes::resources::{Stream, Streamer};

#[tokio::test]
async fn a_plain_name_held_by_another_watcher_name_gets_a_new_object() {
    let ns = TestNamespace::new("compat-names").await;
    let f = Facade::start(&ns).await;
    stream(
        &ns,
        "central-cam-01",
        json!({"name": "traffic/central-cam-01", "disabled": true}),
    )
    .await;
    streamer(
        &ns,
        "streamer-1",
        json!({"hostname": "other-host.example.com"}),
    )
    .await;
    f.get_until("/streams/traffic%2Fcentral-cam-01", "gitops stream", |_| {
        true
    })
    .await;
    f.get_until(
        "/streamers/other-host.example.com",
        "gitops streamer",
        |_| true,
    )
    .await;

    let (s, _) = f.get("/streams/central-cam-01").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for round in ["create", "update"] {
        let (s, v) = f
            .put(
                "/streams/central-cam-01",
                json!({"disabled": true, "title": round}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{round}: {v}");
        assert_eq!(v["name"], "central-cam-01");
        f.get_until("/streams/central-cam-01", round, |v| v["title"] == round)
            .await;
    }
    let streams = ns
        .api::<Stream>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let mine: Vec<_> = streams
        .iter()
        .filter(|s| s.spec.name.as_deref() == Some("central-cam-01"))
        .collect();
    assert_eq!(mine.len(), 1, "one object, found again by its Watcher name");
    let object = mine[0].metadata.name.clone().unwrap();
    assert!(object.starts_with("central-cam-01--"), "{object}");
    let gitops = streams
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("central-cam-01"))
        .unwrap();
    assert_eq!(gitops.spec.name.as_deref(), Some("traffic/central-cam-01"));
    let (_, v) = f.get("/streams/traffic%2Fcentral-cam-01").await;
    assert_eq!(v["name"], "traffic/central-cam-01");

    for round in [2, 3] {
        let (s, v) = f
            .put("/streamers/streamer-1", json!({"channel_limit": round}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["hostname"], "streamer-1");
        f.get_until("/streamers/streamer-1", "saved streamer", |v| {
            v["channel_limit"] == round
        })
        .await;
    }
    let streamers = ns
        .api::<Streamer>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let mine: Vec<_> = streamers
        .iter()
        .filter(|s| s.spec.hostname == "streamer-1")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_ne!(mine[0].metadata.name.as_deref(), Some("streamer-1"));
    let (_, v) = f.get("/streamers/other-host.example.com").await;
    assert_eq!(v["hostname"], "other-host.example.com");
}
