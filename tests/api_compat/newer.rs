//! The newer operations (reference §10) served so far: probes, one agent, user deletion, and
//! the operations Panoptes answers 501 on purpose (TLS, Peeklio, camera reboot).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::conform::assert_conforms;
use crate::api_support::{Facade, assert_error, assert_no_unowned_credentials, stream};
use crate::support::TestNamespace;

/// Probes answer without credentials, in the reference's `ServerStatsWhoami`.
#[tokio::test]
async fn probes_answer_whoami_without_credentials() {
    let ns = TestNamespace::new("compat-probes").await;
    let f = Facade::start(&ns).await;
    for (id, path) in [
        ("liveness_probe", "/monitoring/liveness"),
        ("readiness_probe", "/monitoring/readiness"),
    ] {
        let resp = f.http.get(f.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_conforms(id, &v);
        assert_eq!(v["server_version"], env!("CARGO_PKG_VERSION"));
        let (started, now) = (
            v["started_at"].as_i64().unwrap(),
            v["now"].as_i64().unwrap(),
        );
        assert!(started > 0 && started <= now / 1000 + 1, "{v}");
        assert!(v["build"].as_i64().is_some_and(|b| b > 0), "{v}");
    }
}

/// `GET /agents/{id}` is the item `GET /agents` lists; an unknown id is a 404 envelope.
#[tokio::test]
async fn agent_get_is_the_listed_item() {
    let ns = TestNamespace::new("compat-agent").await;
    let f = Facade::start(&ns).await;
    stream(
        &ns,
        "cam-a",
        json!({"inputs": [{"url": "agent://abc123/x"}], "title": "Door"}),
    )
    .await;
    let list = f
        .get_until("/agents", "agent listed", |v| v["estimated_count"] == 1)
        .await;
    let (s, one) = f.get("/agents/abc123").await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_conforms("agent_get", &one);
    assert_eq!(one, list["agents"][0]);
    let (s, v) = f.get("/agents/nope").await;
    assert_error(s, &v, 404);
    let resp = f.http.get(f.url("/agents/abc123")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// TLS, Peeklio and camera reboot: 501 with a stable code, never a faked success; the reboot
/// of an unknown stream is still a 404, and credentials are still required.
#[tokio::test]
async fn unsupported_operations_answer_501_with_a_stable_code() {
    use reqwest::Method as M;
    let ns = TestNamespace::new("compat-501").await;
    let f = Facade::start(&ns).await;
    stream(&ns, "cam", json!({"inputs": [{"url": "fake://x"}]})).await;
    f.get_until("/streams/cam", "stream seen", |_| true).await;
    for (method, path, body, code) in [
        (M::GET, "/tls/letsencrypt", None, "tls_managed_by_cluster"),
        (
            M::POST,
            "/tls/letsencrypt",
            Some(json!({"domains": ["a.example"]})),
            "tls_managed_by_cluster",
        ),
        (
            M::GET,
            "/peeklio/check_watcher_status",
            None,
            "peeklio_not_supported",
        ),
        (
            M::POST,
            "/peeklio/create_operator_id",
            Some(json!({})),
            "peeklio_not_supported",
        ),
        (
            M::POST,
            "/streams/cam/reboot",
            None,
            "camera_reboot_not_supported",
        ),
    ] {
        let (s, v) = f.call(method, path, body).await;
        assert_error(s, &v, 501);
        assert_eq!(v["errors"][0]["code"], code, "{path}");
    }
    let (s, v) = f.call(M::POST, "/streams/nope/reboot", None).await;
    assert_error(s, &v, 404);
    let resp = f.http.get(f.url("/tls/letsencrypt")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// `DELETE /users/{id}`: yourself is a 409, unknown a 404, a bad id a 400; a deleted user is
/// gone, and so is the password Secret the facade wrote for it.
#[tokio::test]
async fn user_delete_refuses_yourself_and_leaves_no_credentials() {
    let ns = TestNamespace::new("compat-user-del").await;
    let f = Facade::start(&ns).await;
    let (s, v) = f.delete("/users/1").await;
    assert_error(s, &v, 409);
    assert_eq!(v["errors"][0]["code"], "cannot_delete_yourself");
    let (s, v) = f
        .post(
            "/users",
            json!({"name": "bob", "password": "b0b-secret-pw"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["id"].as_i64().unwrap();
    f.get_until(&format!("/users/{id}"), "user seen", |_| true)
        .await;
    let (s, v) = f.delete(&format!("/users/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = f.get(&format!("/users/{id}")).await;
    assert_error(s, &v, 404);
    let (s, v) = f.delete(&format!("/users/{id}")).await;
    assert_error(s, &v, 404);
    let (s, v) = f.delete("/users/x").await;
    assert_error(s, &v, 400);
    assert_no_unowned_credentials(&ns).await;
}

/// `DELETE /streamers/{hostname}` drains first: the stream moves to the other node, then the
/// Streamer is gone. The last node is refused with 409 naming the stream, and left as it was.
#[tokio::test]
async fn streamer_delete_moves_streams_first_and_refuses_stranding_them() {
    use kube::api::Api;
    use panoptes::resources::Streamer;
    let (ns, sim) = crate::support::scenario::fleet("compat-node-del", 2).await;
    let f = Facade::start(&ns).await;
    let _operator = crate::support::operator::Operator::start(&ns);
    let (s, v) = f
        .put("/streams/cam", json!({"inputs": [{"url": "fake://cam"}]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = f
        .get_until("/streams/cam", "placed", |v| {
            v["layout"]["ingest"].is_string()
        })
        .await;
    let first = v["layout"]["ingest"].as_str().unwrap().to_string();
    let other = sim
        .nodes()
        .iter()
        .map(|n| n.hostname().to_string())
        .find(|h| *h != first)
        .unwrap();
    let (s, v) = f.delete(&format!("/streamers/{first}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = f.get(&format!("/streamers/{first}")).await;
    assert_error(s, &v, 404);
    let (_, v) = f.get("/streams/cam").await;
    assert_eq!(v["layout"]["ingest"], other.as_str(), "{v}");

    let (s, v) = f.delete(&format!("/streamers/{other}")).await;
    assert_error(s, &v, 409);
    assert_eq!(v["errors"][0]["code"], "streams_cannot_move");
    assert!(
        v["errors"][0]["title"].as_str().unwrap().contains("cam"),
        "{v}"
    );
    let left = Api::<Streamer>::namespaced(ns.client.clone(), &ns.name)
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(left.items.len(), 1);
    assert_eq!(
        left.items[0].spec.drain, None,
        "a refused delete writes nothing"
    );
    let (s, v) = f.delete("/streamers/nope.example").await;
    assert_error(s, &v, 404);
}
