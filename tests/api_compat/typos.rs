//! Typos answer 400 naming the parameter or the member, in the Watcher error envelope; every
//! member of the reference's schema is accepted in a body, read-only ones included.

use serde_json::{Value, json};

use crate::api_support::{Facade, assert_error, example};
use crate::support::TestNamespace;
use reqwest::StatusCode;

#[tokio::test]
async fn typos_answer_400_and_reference_members_are_accepted() {
    let ns = TestNamespace::new("compat-typos").await;
    let f = Facade::start(&ns).await;
    let (s, v) = f
        .put("/streams/cam", json!({"title": "Cam", "disabled": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (query, param) in [
        ("select=nmae", "select"),
        ("sort=bogus", "sort"),
        ("stats.alive=flase", "stats.alive"),
        ("titel=Cam", "titel"),
    ] {
        let (s, v) = f.get(&format!("/streams?{query}")).await;
        assert_error(s, &v, 400);
        assert_eq!(v["errors"][0]["source"]["parameter"], param, "{query}: {v}");
    }
    for (path, query, param) in [
        ("/users", "sort=nmae", "sort"),
        ("/presets", "select=titel", "select"),
        ("/streamers", "stats.ready=yes", "stats.ready"),
    ] {
        let (s, v) = f.get(&format!("{path}?{query}")).await;
        assert_error(s, &v, 400);
        assert_eq!(
            v["errors"][0]["source"]["parameter"], param,
            "{path}?{query}: {v}"
        );
    }

    let (s, v) = f.put("/streams/cam", json!({"titel": "x"})).await;
    assert_error(s, &v, 400);
    assert_eq!(v["errors"][0]["source"]["pointer"], "/titel", "{v}");
    let (s, v) = f
        .put("/streamers/n1.example.com", json!({"chanel_limit": 3}))
        .await;
    assert_error(s, &v, 400);
    assert_eq!(v["errors"][0]["source"]["pointer"], "/chanel_limit", "{v}");
    let (s, v) = f
        .post("/presets", json!({"title": "P", "is_adjustible": true}))
        .await;
    assert_error(s, &v, 400);
    let (s, v) = f
        .post("/users", json!({"name": "u1", "pasword": "x"}))
        .await;
    assert_error(s, &v, 400);

    // A whole object read back, read-only members and all, saves as it is.
    let (_, got) = f.get("/streams/cam").await;
    let mut echo: Value = got.clone();
    echo["last_episode_at"] = json!(1_000_000_000_000i64);
    echo["path"] = json!([{"id": 0, "title": "root"}]);
    let (s, v) = f.put("/streams/cam", echo).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["title"], "Cam");
    let (s, v) = f
        .post("/presets", example("24_presets_create_request.json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Nested typos, named by pointer and by their dotted path.
    for (body, pointer) in [
        (json!({"dvr": {"titel": 1}}), "/dvr/titel"),
        (
            json!({"inputs": [{"url": "fake://a"}, {"ulr": "fake://b"}]}),
            "/inputs/1/ulr",
        ),
        (json!({"stats": {"foo": 1}}), "/stats/foo"),
        (json!({"onvif": {"ptzz": true}}), "/onvif/ptzz"),
    ] {
        let (s, v) = f.put("/streams/cam", body.clone()).await;
        assert_error(s, &v, 400);
        assert_eq!(v["errors"][0]["source"]["pointer"], pointer, "{body}: {v}");
    }
    let (s, v) = f
        .post("/presets", json!({"title": "Q", "dvr": {"expiraton": 1}}))
        .await;
    assert_error(s, &v, 400);
    assert_eq!(v["errors"][0]["source"]["pointer"], "/dvr/expiraton", "{v}");
    let (s, v) = f
        .put(
            "/streamers/n1.example.com",
            json!({"config": {"listeners": {"htp": []}}}),
        )
        .await;
    assert_error(s, &v, 400);
    assert_eq!(
        v["errors"][0]["source"]["pointer"], "/config/listeners/htp",
        "{v}"
    );
}

/// The vendor's own request samples, and whole objects read back from a GET, are accepted at
/// every depth: what a generated client sends.
#[tokio::test]
async fn generated_client_bodies_pass_the_nested_check() {
    let ns = TestNamespace::new("compat-typos-deep").await;
    let f = Facade::start(&ns).await;
    // The stream sample names organization 9.
    crate::api_support::org(&ns, "example", 9, "Example LLC", &[]).await;
    // The user sample names organization 12.
    crate::api_support::org(&ns, "example-12", 12, "Example 12", &[]).await;
    for (path, file) in [
        ("/streams/sample", "16_stream_save_request.json"),
        (
            "/streamers/sample.example.com",
            "06_streamer_save_request.json",
        ),
    ] {
        // Until the facade's store has the organization.
        let (s, v) = crate::support::eventually(crate::api_support::WAIT, file, || async {
            let (s, v) = f.put(path, example(file)).await;
            (s != StatusCode::UNPROCESSABLE_ENTITY).then_some((s, v))
        })
        .await;
        assert_eq!(s, StatusCode::OK, "{file}: {v}");
        // The whole object read back saves as it is.
        let got = f.get_until(path, file, |_| true).await;
        let (s, v) = f.put(path, got.clone()).await;
        assert_eq!(s, StatusCode::OK, "{path} round trip: {v}");
    }
    let (s, v) = f
        .post("/presets", example("24_presets_create_request.json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v) = f.put(&format!("/presets/{id}"), v.clone()).await;
    assert_eq!(s, StatusCode::OK, "preset round trip: {v}");
    let (s, v) = f
        .post("/users", example("11_user_create_request.json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v) = f.put(&format!("/users/{id}"), v.clone()).await;
    assert_eq!(s, StatusCode::OK, "user round trip: {v}");
}

/// The facade's copy of the reference's member names is what the script derives from the
/// judge: every member of every schema of `tests/fixtures/reference-types.json`, nested ones
/// included, and nothing else.
#[test]
fn the_facade_copy_of_reference_members_matches_the_fixture() {
    fn names(node: &Value) -> Value {
        if let Some(items) = node.get("items") {
            return names(items);
        }
        if let Some(m) = node.get("members").and_then(Value::as_object) {
            return Value::Object(m.iter().map(|(k, v)| (k.clone(), names(v))).collect());
        }
        node.get("ref").cloned().unwrap_or(Value::Null)
    }
    // The copy marks a map's values with the key `*` (the types file has no use for it).
    fn unwrap_maps(v: &Value) -> Value {
        match v {
            Value::Object(m) if m.len() == 1 && m.contains_key("*") => unwrap_maps(&m["*"]),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), unwrap_maps(v))).collect())
            }
            other => other.clone(),
        }
    }
    let judge = crate::api_support::conform::reference();
    let copy: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/api/reference-members.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let schemas: serde_json::Map<String, Value> = judge["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, members)| {
            let m = members
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), names(v)))
                .collect();
            (name.clone(), Value::Object(m))
        })
        .collect();
    assert_eq!(
        unwrap_maps(&copy["schemas"]),
        Value::Object(schemas),
        "src/api/reference-members.json is stale: rerun scripts/reference-types.py --members"
    );
    for (op, o) in judge["operations"].as_object().unwrap() {
        assert_eq!(
            copy["operations"].get(op),
            o.get("response").filter(|r| !r.is_null()),
            "{op}"
        );
    }
}
