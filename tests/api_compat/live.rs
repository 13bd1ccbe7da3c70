//! Every one of the seed's 30 operations, live against a facade over an operator and a
//! simulated node, each JSON success body checked against the served document and the
//! reference's types (integers strict on the raw token).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::conform::assert_conforms;
use crate::api_support::{Facade, example, org};
use crate::support::eventually;
use crate::support::operator::Operator;
use crate::support::scenario::fleet;

/// Calls an operation, asserts a 2xx and the conformance of its JSON body; returns the body.
async fn op(
    f: &Facade,
    id: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (s, v) = f.call(method, path, body).await;
    assert!(s.is_success(), "{id} {path}: {s} {v}");
    if !v.is_null() {
        assert_conforms(id, &v);
    }
    v
}

#[tokio::test]
async fn every_operation_answers_in_the_reference_types() {
    use reqwest::Method as M;
    let (ns, sim) = fleet("compat-live", 1).await;
    let host = sim.node(0).hostname().to_string();
    // The facade's admin is written the way the User controller would; log in before the
    // operator runs (the token stays valid), so the two never race over the admin's status.
    let f = Facade::start(&ns).await;
    let resp = f
        .http
        .post(f.url("/login"))
        .basic_auth(
            crate::api_support::ADMIN_LOGIN,
            Some(crate::api_support::ADMIN_PASSWORD),
        )
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_conforms("login_create", &resp.json().await.unwrap());
    let operator = Operator::start(&ns);
    org(&ns, "acme", 12, "Acme", &[]).await;
    let stream_body = json!({"title": "Cam", "inputs": [{"url": "fake://cam"}], "dvr": {"root": "/dvr", "redundancy_factor": 1}});
    let (s, v) = f.put("/streams/cam", stream_body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The facade reads the operator's node probes and clients through its own registries:
    // hand them over, so `stats` carries what the simulator really reported.
    let live = eventually(
        crate::api_support::WAIT,
        "node probed, stream placed",
        || async {
            let n = operator.ctx.live.node(&host)?;
            let placed = n.streams.get("cam").is_some_and(|l| l.alive());
            (n.server.is_some() && placed).then_some(n)
        },
    )
    .await;
    f.live.update_node(&host, |n| *n = (*live).clone());
    f.nodes.insert(
        operator
            .ctx
            .nodes
            .get(&host)
            .expect("the operator's node client"),
    );
    f.get_until("/streams/cam", "placed", |v| {
        v["layout"]["ingest"].is_string() && v["stats"].is_object()
    })
    .await;

    op(&f, "domain_config_get", M::GET, "/domain_config", None).await;
    op(
        &f,
        "domain_config_save",
        M::PUT,
        "/domain_config",
        Some(example("02_domain_config_save_request.json")),
    )
    .await;
    op(&f, "system_config_get", M::GET, "/system_config", None).await;
    let v = op(&f, "streamers_list", M::GET, "/streamers", None).await;
    assert!(v["streamers"][0]["stats"].is_object(), "{v}");
    op(
        &f,
        "streamer_get",
        M::GET,
        &format!("/streamers/{host}"),
        None,
    )
    .await;
    op(
        &f,
        "streamer_save",
        M::PUT,
        "/streamers/spare.example.com",
        Some(example("06_streamer_save_request.json")),
    )
    .await;
    op(
        &f,
        "preview_layout_change_for_streamer_config",
        M::POST,
        &format!("/streamers/{host}/preview_layout_change"),
        Some(json!({"channel_limit": 0})),
    )
    .await;
    op(&f, "cluster_stats_get", M::GET, "/cluster/stats", None).await;
    op(&f, "users_list", M::GET, "/users", None).await;
    let user = op(
        &f,
        "user_create",
        M::POST,
        "/users",
        Some(example("11_user_create_request.json")),
    )
    .await;
    let uid = eventually(crate::api_support::WAIT, "user id", || async {
        let (_, v) = f.get("/users").await;
        v["users_list"]
            .as_array()?
            .iter()
            .find(|u| u["name"] == user["name"])?["id"]
            .as_i64()
    })
    .await;
    op(&f, "user_get", M::GET, &format!("/users/{uid}"), None).await;
    op(
        &f,
        "user_save",
        M::PUT,
        &format!("/users/{uid}"),
        Some(example("13_user_save_request.json")),
    )
    .await;
    op(&f, "streams_list", M::GET, "/streams", None).await;
    op(&f, "stream_get", M::GET, "/streams/cam", None).await;
    op(
        &f,
        "stream_save",
        M::PUT,
        "/streams/cam",
        Some(json!({"comment": "saved"})),
    )
    .await;
    op(
        &f,
        "stream_save",
        M::PUT,
        "/streams/doomed",
        Some(stream_body),
    )
    .await;
    op(&f, "stream_delete", M::DELETE, "/streams/doomed", None).await;
    op(
        &f,
        "stream_layouts_get",
        M::GET,
        "/streams/cam/layouts",
        None,
    )
    .await;
    op(
        &f,
        "preview_layout_change_for_stream_config",
        M::POST,
        "/streams/cam/preview_layout_change",
        Some(json!({"disabled": true})),
    )
    .await;
    op(
        &f,
        "camera_config_get",
        M::GET,
        "/streams/cam/camera_config",
        None,
    )
    .await;
    op(
        &f,
        "camera_config_save",
        M::PUT,
        "/streams/cam/camera_config",
        Some(example("21_camera_config_save_request.json")),
    )
    .await;
    op(
        &f,
        "stream_firmware_update",
        M::PUT,
        "/streams/cam/firmware_update",
        Some(json!({"image": "AAEC", "proto": "iris"})),
    )
    .await;
    op(&f, "presets_list", M::GET, "/presets", None).await;
    let preset = op(
        &f,
        "presets_create",
        M::POST,
        "/presets",
        Some(example("24_presets_create_request.json")),
    )
    .await;
    let pid = eventually(crate::api_support::WAIT, "preset id", || async {
        let (_, v) = f.get("/presets").await;
        v["presets"]
            .as_array()?
            .iter()
            .find(|p| p["title"] == preset["title"])?["id"]
            .as_i64()
    })
    .await;
    op(&f, "preset_get", M::GET, &format!("/presets/{pid}"), None).await;
    op(
        &f,
        "preset_save",
        M::PUT,
        &format!("/presets/{pid}"),
        Some(example("26_preset_save_request.json")),
    )
    .await;
    op(&f, "agents_list", M::GET, "/agents", None).await;
    op(&f, "events_list", M::GET, "/events", None).await;
    op(
        &f,
        "organization_preset_save",
        M::PUT,
        "/organizations/12/presets",
        Some(json!({"preset_id": pid})),
    )
    .await;
    op(
        &f,
        "delete_organization_preset",
        M::DELETE,
        &format!("/organizations/12/presets/{pid}"),
        None,
    )
    .await;
    operator.stop().await;
}
