//! Partial saves shaped like a generated client's: every required member present, the
//! identity ones empty (`""`, `0`) — meaning "the object in the path", never a rename.

use reqwest::StatusCode;
use serde_json::json;

use crate::api_support::{Facade, assert_error, make_user, preset};
use crate::support::TestNamespace;

#[tokio::test]
async fn empty_identity_members_mean_the_object_in_the_path() {
    let ns = TestNamespace::new("compat-identity").await;
    let f = Facade::start(&ns).await;

    let (s, v) = f
        .put("/streams/cam", json!({"title": "Cam", "disabled": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = f
        .put("/streams/cam", json!({"name": "", "title": "x"}))
        .await;
    assert_eq!(s, StatusCode::OK, "stream: {v}");
    assert_eq!(
        (v["name"].clone(), v["title"].clone()),
        (json!("cam"), json!("x"))
    );
    let (s, v) = f
        .put("/streams/cam", json!({"name": "other", "title": "y"}))
        .await;
    assert_error(s, &v, 400);
    assert_eq!(v["errors"][0]["source"]["pointer"], "/name");

    let (s, v) = f
        .put("/streamers/n1.example.com", json!({"channel_limit": 5}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = f
        .put(
            "/streamers/n1.example.com",
            json!({"hostname": "", "channel_limit": 7}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "streamer: {v}");
    assert_eq!(v["hostname"], "n1.example.com");
    assert_eq!(v["channel_limit"], 7);
    let (s, v) = f
        .put("/streamers/n1.example.com", json!({"hostname": "n2"}))
        .await;
    assert_error(s, &v, 400);

    make_user(&ns, "alice", "alice", "alice-password", false, 41).await;
    f.get_until("/users/41", "user", |_| true).await;
    let (s, v) = f
        .put(
            "/users/41",
            json!({"id": 0, "name": "", "fullname": "Alice A."}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "user: {v}");
    assert_eq!(
        (v["name"].clone(), v["fullname"].clone()),
        (json!("alice"), json!("Alice A."))
    );
    let (s, v) = f.put("/users/41", json!({"id": 42})).await;
    assert_error(s, &v, 400);

    preset(&ns, "gold", 5, "Gold", 1).await;
    f.get_until("/presets/5", "preset", |_| true).await;
    let (s, v) = f
        .put(
            "/presets/5",
            json!({"id": 0, "title": "", "is_adjustable": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "preset: {v}");
    assert_eq!(
        (v["title"].clone(), v["is_adjustable"].clone()),
        (json!("Gold"), json!(true))
    );
    let (s, v) = f.put("/presets/5", json!({"id": 6, "title": "Gold"})).await;
    assert_error(s, &v, 400);
}
