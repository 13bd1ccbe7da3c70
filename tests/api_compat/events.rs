//! Issue 16, "the API's own state must survive": `/events` is the installation's event log,
//! stored as Kubernetes Events — the audit of authenticated writes survives a facade restart
//! and reads the same from every replica; what the operator sees on the nodes (a camera
//! offline, a move) shows there too, a flapping camera writes a bounded number of Events; and
//! `GET /streams/{name}/layouts` lists the placements of a stream, newest first.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::ListParams;
use panoptes::resources::Stream;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::conform::assert_conforms;
use crate::api_support::{Facade, WAIT};
use crate::support::operator::Operator;
use crate::support::scenario::{fleet, stream};
use crate::support::{TestNamespace, eventually};

/// `(event_id, request_id)` of the audited stream saves a facade lists.
async fn saves(f: &Facade) -> Vec<(i64, String)> {
    let (s, v) = f.get("/events?operation_id=stream_save&limit=100").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_conforms("events_list", &v);
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_id"].as_i64().unwrap(),
                e["request_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_audit_survives_a_restart_and_every_replica_lists_the_same() {
    let ns = TestNamespace::new("ev-audit").await;
    let first = Facade::start(&ns).await;
    for name in ["ev-a", "ev-b", "ev-c"] {
        let (s, v) = first
            .put(
                &format!("/streams/{name}"),
                json!({"inputs": [{"url": "fake://x"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // Reads are not audited; an unauthenticated write never enters the log.
    let (s, _) = first.get("/streams").await;
    assert_eq!(s, StatusCode::OK);
    let anonymous = first
        .http
        .put(first.url("/streams/ev-x"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let second = Facade::start_without_admin(&ns).await;
    let listed = eventually(WAIT, "both replicas list the three saves", || async {
        let (a, b) = (saves(&first).await, saves(&second).await);
        (a.len() == 3 && a == b).then_some(a)
    })
    .await;
    assert!(
        listed.windows(2).all(|w| w[0].0 > w[1].0),
        "newest first: {listed:?}"
    );
    let (_, v) = second.get("/events?operation_id=stream_save&limit=1").await;
    let e = &v["events"][0];
    assert_eq!(
        (e["event"].as_str(), e["user"].as_str()),
        (Some("api_call"), Some("root"))
    );
    assert_eq!(e["path"], "/watcher/admin-api/v3/streams/ev-c");
    assert!(v["next"].is_string(), "{v}");
    let (_, all) = second.get("/events?limit=1000").await;
    assert!(!all.to_string().contains("ev-x"), "unauthenticated: {all}");
    assert!(
        all["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["operation_id"] != "streams_list")
    );

    // Restart: the first replica goes, a new one lists what was written before it started.
    drop(first);
    let third = Facade::start_without_admin(&ns).await;
    eventually(
        WAIT,
        "the restarted facade lists the saves made before it",
        || async { (saves(&third).await == listed).then_some(()) },
    )
    .await;
}

/// The Events about `stream` and the writes they cost (a series counts each repeat).
async fn writes(ns: &TestNamespace, stream: &str) -> (usize, i32) {
    let events: Vec<K8sEvent> = ns
        .api::<K8sEvent>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mine: Vec<&K8sEvent> = events
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(stream))
        .collect();
    let total = mine
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    (mine.len(), total)
}

async fn ingest(ns: &TestNamespace, name: &str) -> String {
    eventually(WAIT, "the stream has an ingest node", || async {
        let s = ns.api::<Stream>().get(name).await.ok()?;
        s.status?.layout?.ingest.map(String::from)
    })
    .await
}

async fn alive(ns: &TestNamespace, name: &str, want: bool) {
    eventually(WAIT, "status.alive follows the camera", || async {
        let s = ns.api::<Stream>().get(name).await.ok()?;
        (s.status?.alive == Some(want)).then_some(())
    })
    .await;
}

fn listed(v: &Value, event: &str, object: &str) -> bool {
    v["events"].as_array().is_some_and(|a| {
        a.iter().any(|e| {
            e["event"] == event && e["object"].as_str().is_some_and(|o| o.ends_with(object))
        })
    })
}

#[tokio::test]
async fn what_happens_to_cameras_is_in_events_storms_are_bounded_and_layouts_keep_the_moves() {
    let (ns, sim) = fleet("ev-ops", 3).await;
    let f = Facade::start(&ns).await;
    let op = Operator::start(&ns);
    stream(&ns, "flap", json!({})).await;
    stream(&ns, "mover", json!({})).await;
    let node_of = |host: &str| {
        (0..3)
            .map(|i| sim.node(i))
            .find(|n| n.hostname() == host)
            .unwrap()
    };

    // A camera going offline is an Event, and `/events` shows it.
    let host = ingest(&ns, "flap").await;
    alive(&ns, "flap", true).await;
    node_of(&host).silence("flap", true).unwrap();
    // The simulator judges a source dead after 12 s without frames: let them pass.
    sim.advance(Duration::from_secs(13));
    alive(&ns, "flap", false).await;
    let v = f
        .get_until("/events?limit=1000", "the camera's offline event", |v| {
            listed(v, "stream_offline", "/flap")
        })
        .await;
    assert_conforms("events_list", &v);

    // A flapping camera: every flip is seen (status.alive follows), the Events stop at the
    // object's burst; the rest are counted, not written.
    for i in 0..8 {
        let silent = i % 2 == 1;
        node_of(&host).silence("flap", silent).unwrap();
        if silent {
            sim.advance(Duration::from_secs(13));
        }
        alive(&ns, "flap", !silent).await;
    }
    let limited = op.ctx.events.metrics.get("Alive", "rate_limited")
        + op.ctx.events.metrics.get("NotAlive", "rate_limited");
    assert!(limited >= 4, "flips held back: {limited}");
    let (objects, total) = writes(&ns, "flap").await;
    // The burst (5), plus one refill should the test outlast a minute.
    assert!(
        total <= 6,
        "{objects} Events, {total} writes for one flapping camera"
    );
    let exposition = op.ctx.metrics.encode();
    assert!(
        exposition.contains(r#"panoptes_events_total{reason="NotAlive",outcome="rate_limited"}"#),
        "{exposition}"
    );

    // Two moves: take the ingest node down, twice. Layouts lists the three placements,
    // newest first, each with why it moved there.
    let a = ingest(&ns, "mover").await;
    node_of(&a).down().await;
    let b = eventually(WAIT, "mover moves off the first node", || async {
        let now = ingest(&ns, "mover").await;
        (now != a).then_some(now)
    })
    .await;
    node_of(&b).down().await;
    let c = eventually(WAIT, "mover moves off the second node", || async {
        let now = ingest(&ns, "mover").await;
        (now != b && now != a).then_some(now)
    })
    .await;
    let v = f
        .get_until("/streams/mover/layouts", "three layout records", |v| {
            v["layouts"].as_array().is_some_and(|l| l.len() == 3)
        })
        .await;
    assert_conforms("stream_layouts_get", &v);
    let records: Vec<(&str, &str)> = v["layouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["ingest"].as_str().unwrap(),
                l["change_reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        records,
        [
            (c.as_str(), "node_become_offline"),
            (b.as_str(), "node_become_offline"),
            (a.as_str(), "not_distributed"),
        ]
    );
    let at: Vec<i64> = v["layouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["created_at"].as_i64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] >= w[1]), "{at:?}");
    // The moves and the unreachable nodes are in the log.
    f.get_until(
        "/events?limit=1000",
        "the move and the node's outage",
        |v| {
            listed(v, "stream_moved", "/mover")
                && listed(v, "streamer_unreachable", &format!("/{a}"))
        },
    )
    .await;
    op.stop().await;
}
