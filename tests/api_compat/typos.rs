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
}
