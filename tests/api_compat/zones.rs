//! Zones (reference §10): the four operations on `Zone` objects, `stats` from the cluster,
//! the zone rules of stream and preset saves (422 for a missing zone, a preset's rules on new
//! cameras), and both previews showing where zone rules would move streams.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::conform::assert_conforms;
use crate::api_support::{Facade, apply, assert_error, set_status, stream, streamer};
use crate::support::TestNamespace;
use panoptes::resources::{Stream, Zone};

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap().to_string())
        .collect()
}

/// Create, read, list (query engine), update, delete, each in the reference's shapes, and
/// their errors: unknown zone 404, bad body 400, typo member 400, bad name 400, in use 409.
#[tokio::test]
async fn zone_operations_and_their_errors() {
    let ns = TestNamespace::new("compat-zones").await;
    let f = Facade::start(&ns).await;
    streamer(&ns, "n1", json!({"hostname": "n1", "zones": ["East_1"]})).await;
    streamer(
        &ns,
        "n2",
        json!({"hostname": "n2", "zones": ["East_1", "west"]}),
    )
    .await;

    // Create: a name Kubernetes would refuse as an object name is still the zone's name.
    let (s, v) = f
        .put("/zones/East_1", json!({"name": "", "is_dedicated": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_conforms("zone_get", &v);
    assert_eq!(v["name"], "East_1");
    assert_eq!(v["is_dedicated"], true);
    assert_eq!(v["created"]["user"]["login"], "root");
    assert!(
        v["created"]["created_at"].as_i64().unwrap() > 1_000_000_000_000,
        "{v}"
    );
    let (s, v) = f.put("/zones/west", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["is_dedicated"], false);

    // Stats come from the cluster: members and the streams requiring or preferring the zone.
    stream(
        &ns,
        "cam",
        json!({"inputs": [{"url": "fake://x"}], "layout_rules": {"required_zones": ["East_1"], "preferred_zones": ["west"]}}),
    )
    .await;
    let v = f
        .get_until("/zones/East_1", "zone stats", |v| {
            // Streams and Streamers are separate watches: wait for both.
            v["stats"]["required_streams_count"] == 1 && v["stats"]["streamers_count"] == 2
        })
        .await;
    assert_conforms("zone_get", &v);
    assert_eq!(v["stats"]["streamers"], json!(["n1", "n2"]));
    assert_eq!(v["stats"]["streamers_count"], 2);
    assert_eq!(v["stats"]["preferred_streams_count"], 0);

    // List: collection key `zones`, select/sort/limit/cursor and filters.
    let (s, v) = f.get("/zones").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(names(&v, "zones"), ["East_1", "west"]);
    assert_eq!(v["zones"][1]["stats"]["preferred_streams_count"], 1);
    let (_, v) = f.get("/zones?sort=-name&limit=1&select=name").await;
    assert_eq!(v["zones"], json!([{"name": "west"}]), "{v}");
    let (_, next) = f
        .get(&format!(
            "/zones?sort=-name&limit=1&select=name&cursor={}",
            v["next"].as_str().unwrap()
        ))
        .await;
    assert_eq!(next["zones"], json!([{"name": "East_1"}]), "{next}");
    let (_, v) = f.get("/zones?is_dedicated=true").await;
    assert_eq!(names(&v, "zones"), ["East_1"]);

    // A whole object read back saves as it is (read-only members ignored); a partial save
    // changes only what it names.
    let (_, whole) = f.get("/zones/East_1").await;
    let (s, v) = f.put("/zones/East_1", whole.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["is_dedicated"], true);
    let (s, v) = f.put("/zones/East_1", json!({"is_dedicated": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["is_dedicated"], false);
    assert_eq!(v["created"], whole["created"], "creation info is kept");

    // Errors.
    let (s, v) = f.get("/zones/nope").await;
    assert_error(s, &v, 404);
    let (s, v) = f.delete("/zones/nope").await;
    assert_error(s, &v, 404);
    let (s, v) = f.put("/zones/west", json!({"is_dedicated": "yes"})).await;
    assert_error(s, &v, 400);
    let (s, v) = f.put("/zones/west", json!({"is_dedicatd": true})).await;
    assert_error(s, &v, 400);
    assert!(v.to_string().contains("is_dedicatd"), "{v}");
    let (s, v) = f.put("/zones/west", json!({"name": "east"})).await;
    assert_error(s, &v, 400);
    let (s, v) = f.put("/zones/a%20b", json!({})).await;
    assert_error(s, &v, 400);
    let (s, v) = f
        .call(reqwest::Method::PUT, "/zones/west", Some(json!([1])))
        .await;
    assert_error(s, &v, 400);

    // A zone a stream still names cannot go: 409 naming the stream; then it can.
    let (s, v) = f.delete("/zones/west").await;
    assert_error(s, &v, 409);
    assert!(v.to_string().contains("stream cam"), "{v}");
    let api = kube::Api::<Stream>::namespaced(ns.client.clone(), &ns.name);
    api.delete("cam", &Default::default()).await.unwrap();
    f.get_until("/zones/west", "cam gone", |v| {
        v["stats"]["preferred_streams_count"] == 0
    })
    .await;
    let (s, v) = f.delete("/zones/west").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = f.get("/zones/west").await;
    assert_error(s, &v, 404);
    let (_, v) = f.get("/zones").await;
    assert_eq!(names(&v, "zones"), ["East_1"]);
}

/// Stream and preset saves refuse rules naming a missing zone (422), a new camera takes its
/// preset's rules, and the stream preview shows where the rules would move the stream.
#[tokio::test]
async fn zone_rules_on_saves_and_previews() {
    let ns = TestNamespace::new("compat-zone-rules").await;
    let f = Facade::start(&ns).await;
    streamer(&ns, "n1", json!({"hostname": "n1"})).await;
    streamer(&ns, "n2", json!({"hostname": "n2", "zones": ["east"]})).await;
    let z: Zone = apply(
        &ns,
        json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "Zone", "metadata": {"name": "east"}, "spec": {}}),
    )
    .await;
    assert_eq!(z.zone_name(), "east");
    f.get_until("/zones/east", "zone and its streamer seen", |v| {
        v["stats"]["streamers_count"] == 1
    })
    .await;
    f.get_until("/streamers/n1", "n1 seen", |_| true).await;

    // A stream naming a missing zone is not created.
    let (s, v) = f
        .put(
            "/streams/lost",
            json!({"inputs": [{"url": "fake://x"}], "layout_rules": {"required_zones": ["nowhere"]}}),
        )
        .await;
    assert_error(s, &v, 422);
    assert_eq!(v["errors"][0]["code"], "unknown_zone");
    assert!(v.to_string().contains("nowhere"), "{v}");
    let (s, _) = f.get("/streams/lost").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A preset's rules: checked on save, copied to new cameras created with it.
    let (s, v) = f
        .post(
            "/presets",
            json!({"title": "P", "layout_rules": {"preferred_zones": ["gone"]}}),
        )
        .await;
    assert_error(s, &v, 422);
    let (s, p) = f
        .post(
            "/presets",
            json!({"title": "East only", "layout_rules": {"required_zones": ["east"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let id = p["id"].as_i64().unwrap();
    f.get_until(&format!("/presets/{id}"), "preset seen", |_| true)
        .await;
    let (s, v) = f
        .put(
            "/streams/cam",
            json!({"inputs": [{"url": "fake://x"}], "preset_id": id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["layout_rules"],
        json!({"required_zones": ["east"]}),
        "{v}"
    );

    // Preview: the stream, recorded on n1, would move to n2 once it requires `east`.
    let (s, v) = f
        .put("/streams/free", json!({"inputs": [{"url": "fake://y"}]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    set_status::<Stream>(&ns, "free", json!({"layout": {"ingest": "n1"}})).await;
    f.get_until("/streams/free/layouts", "layout seen", |v| {
        v["layouts"][0]["ingest"] == "n1"
    })
    .await;
    let (s, v) = f
        .post(
            "/streams/free/preview_layout_change",
            json!({"layout_rules": {"required_zones": ["east"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let moved: Vec<&Value> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "free")
        .collect();
    assert_eq!(moved.len(), 1, "{v}");
    assert_eq!(moved[0]["ingest"], "n2", "{v}");
    assert_eq!(
        moved[0]["change_reason"],
        "node_misses_stream_required_labels"
    );
    // Streamer preview: n2 leaving `east` strands the camera requiring it (n1 is no zone's).
    set_status::<Stream>(&ns, "cam", json!({"layout": {"ingest": "n2"}})).await;
    f.get_until("/streams/cam/layouts", "layout seen", |v| {
        v["layouts"][0]["ingest"] == "n2"
    })
    .await;
    let (s, v) = f
        .post("/streamers/n2/preview_layout_change", json!({"zones": []}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let n2: Vec<&Value> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["hostname"] == "n2" && c["role"] == "ingest")
        .collect();
    assert_eq!(n2.len(), 1, "{v}");
    assert_eq!(
        (n2[0]["before"].as_i64(), n2[0]["after"].as_i64()),
        (Some(1), Some(0)),
        "{v}"
    );
    // Naming a missing zone previews as the save would answer.
    let (s, v) = f
        .post(
            "/streams/free/preview_layout_change",
            json!({"layout_rules": {"required_zones": ["nowhere"]}}),
        )
        .await;
    assert_error(s, &v, 422);
    let stored = kube::Api::<Stream>::namespaced(ns.client.clone(), &ns.name)
        .get("free")
        .await
        .unwrap();
    assert!(
        stored.spec.config.layout_rules.is_none(),
        "a preview writes nothing"
    );
}
