//! Facade operations on users, presets, organization presets, settings, streamers, agents,
//! events and the OpenAPI document, on a real API server (the reference's example bodies
//! are sent as they are). Secrets that arrive through the API land in Secrets and are never
//! echoed.

mod api_support;
mod support;

use std::sync::Arc;

use api_support::{
    Facade, assert_error, assert_no_unowned_credentials, example, org, preset, stream,
};
use k8s_openapi::api::core::v1::Secret;
use panoptes::controllers::{Context, Tunables, user};
use panoptes::resources::{Organization, Streamer};
use panoptes::run::Shutdown;
use panoptes::telemetry::Metrics;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestNamespace, eventually};
use tokio::task::JoinSet;

fn secret_value(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn users_create_get_update_and_log_in() {
    let ns = TestNamespace::new("api-admin").await;
    let f = Facade::start(&ns).await;
    org(&ns, "cameras", 12, "Cameras", &[]).await;
    eventually(api_support::WAIT, "org in store", || async {
        (f.state.stores.organizations.state().len() == 1).then_some(())
    })
    .await;
    // The User controller hashes passwords written through the API.
    let mut watches = JoinSet::new();
    let ctx = Arc::new(Context::new(
        &support::shared(&ns, &mut watches),
        Tunables {
            system_namespace: ns.name.clone(),
            ..Default::default()
        },
    ));
    let (stop, shutdown) = Shutdown::new();
    let controller = tokio::spawn(user::run(ctx, shutdown.wait()));

    let (s, list) = f.get("/users").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["users_list"][0]["name"], "root");
    assert!(list.get("users").is_none() && list.get("next").is_none());

    // The reference's create example: password stored in a Secret, never returned.
    let (s, v) = f
        .post("/users", example("11_user_create_request.json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("password").is_none());
    assert_eq!(v["id"], 2);
    assert_eq!(v["organizations"][0]["id"], 12);
    assert_eq!(v["organizations"][0]["title"], "Cameras");
    assert_eq!(v["organizations"][0]["permissions"]["is_member"], true);
    let secrets = ns.api::<Secret>().list(&Default::default()).await.unwrap();
    let pw = secrets
        .items
        .iter()
        .find(|s| {
            s.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("user-string-password-")
        })
        .expect("password Secret");
    assert_eq!(secret_value(pw, "password"), "string");

    let (s, v) = f.post("/users", json!({"name": "string"})).await;
    assert_error(s, &v, 409);
    let (s, v) = f.post("/users", json!({"fullname": "No Login"})).await;
    assert_error(s, &v, 400);
    assert_eq!(v["errors"][0]["source"]["pointer"], "/name");
    let (s, v) = f
        .post("/users", json!({"name": "x", "organization_id": 999}))
        .await;
    assert_error(s, &v, 422);
    let (s, v) = f
        .post("/users", json!({"name": "x", "access_level": "god"}))
        .await;
    assert_error(s, &v, 400);

    let v = f.get_until("/users/2", "user visible", |_| true).await;
    assert_eq!(v["email"], "user@example.com");
    let (_, v) = f.get("/users?organization_id=12&select=name").await;
    assert_eq!(v["users_list"], json!([{"name": "string"}]));

    // Update with the save example (partial, password rotated), then log in with it.
    let mut body = example("13_user_save_request.json");
    body["note"] = json!("updated");
    body["password"] = json!("n3w-password");
    body["access_level"] = json!("admin");
    let (s, v) = f.put("/users/2", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["note"], "updated");
    assert_eq!(v["organizations"][0]["id"], 12, "memberships are kept");
    assert!(!v.to_string().contains("n3w-password"));
    // Failed logins count towards the throttle: wait until the controller hashed the
    // current password Secret before trying it.
    let secrets = ns.api::<Secret>();
    let stored: panoptes::resources::User = ns.api().get("user-string").await.unwrap();
    let source = stored.spec.facade_password_secret_ref.unwrap().name;
    eventually(api_support::WAIT, "new password hashed", || async {
        let src = secrets.get(&source).await.ok()?;
        let want = format!("{}/{}", src.metadata.uid?, src.metadata.resource_version?);
        let hash = secrets.get("panoptes-user-user-string-hash").await.ok()?;
        (hash.metadata.annotations?.get(user::SOURCE_ANNOTATION) == Some(&want)).then_some(())
    })
    .await;
    eventually(api_support::WAIT, "user status names the hash", || async {
        let users = f.state.stores.users.state();
        let u = users.iter().find(|u| u.spec.name == "string")?;
        u.status.as_ref()?.password_hash_secret.as_ref().map(|_| ())
    })
    .await;
    let token = f
        .login("string", "n3w-password")
        .await
        .expect("login with the new password");
    let resp = f
        .http
        .get(f.url("/users"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (s, v) = f.put("/users/99", json!({"note": "x"})).await;
    assert_error(s, &v, 404);
    // Every password Secret the saves above wrote belongs to a User that exists.
    assert_no_unowned_credentials(&ns).await;

    let _ = stop.send(true);
    let _ = controller.await;
}

#[tokio::test]
async fn presets_and_organization_presets() {
    let ns = TestNamespace::new("api-admin").await;
    let f = Facade::start(&ns).await;
    preset(&ns, "seven", 7, "Seven", 1).await;
    org(&ns, "acme", 12, "Acme", &[]).await;
    eventually(api_support::WAIT, "store", || async {
        (f.state.stores.organizations.state().len() == 1
            && f.state.stores.presets.state().len() == 1)
            .then_some(())
    })
    .await;

    let (s, v) = f
        .post("/presets", example("24_presets_create_request.json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"], 8, "a new id above every known one");
    assert_eq!(v["title"], "Example preset name");
    assert!(v.get("deleted_at").is_none());
    let (s, v) = f.post("/presets", json!({"is_default": true})).await;
    assert_error(s, &v, 400);
    assert_eq!(v["errors"][0]["source"]["pointer"], "/title");
    let (s, v) = f
        .post(
            "/presets",
            json!({"title": "x", "dvr": {"redundancy_factor": 9}}),
        )
        .await;
    assert_error(s, &v, 422);

    f.get_until("/presets/8", "created preset", |_| true).await;
    let mut body = example("26_preset_save_request.json");
    body["title"] = json!("Renamed");
    let (s, v) = f.put("/presets/8", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["title"], "Renamed");
    let (s, v) = f.put("/presets/8", json!({"is_adjustable": false})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["title"].clone(), v["is_adjustable"].clone()),
        (json!("Renamed"), json!(false))
    );
    let (s, v) = f.put("/presets/999", json!({"title": "x"})).await;
    assert_error(s, &v, 404);
    let (s, v) = f.get("/presets/0").await;
    assert_error(s, &v, 400);

    // Organization presets: attach (the example attaches id 7), list by organization, detach.
    let (_, v) = f.get("/presets?organization_id=12&select=id").await;
    assert_eq!(
        v["presets"],
        json!([{"id": 8}]),
        "only default presets before attaching: {v}"
    );
    let (s, v) = f
        .put(
            "/organizations/12/presets",
            example("29_organization_preset_save_request.json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"], 7);
    let stored: Organization = ns.api::<Organization>().get("acme").await.unwrap();
    assert_eq!(stored.spec.preset_refs, Some(vec!["seven".to_string()]));
    let v = f
        .get_until(
            "/presets?organization_id=12&select=id",
            "attached preset listed",
            |v| v["presets"].as_array().unwrap().len() == 2,
        )
        .await;
    assert_eq!(v["presets"], json!([{"id": 7}, {"id": 8}]));
    let (s, _) = f
        .put("/organizations/12/presets", json!({"preset_id": 7}))
        .await;
    assert_eq!(s, StatusCode::OK, "re-saving is fine");
    let (s, v) = f
        .put("/organizations/12/presets", json!({"preset_id": 404}))
        .await;
    assert_error(s, &v, 422);
    let (s, v) = f
        .put("/organizations/99/presets", json!({"preset_id": 7}))
        .await;
    assert_error(s, &v, 404);
    let (s, v) = f.put("/organizations/12/presets", json!({})).await;
    assert_error(s, &v, 400);
    let (s, _) = f.delete("/organizations/12/presets/7").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let stored: Organization = ns.api::<Organization>().get("acme").await.unwrap();
    assert_eq!(stored.spec.preset_refs, Some(vec![]));
    eventually(api_support::WAIT, "detached in store", || async {
        let (s, v) = f.delete("/organizations/12/presets/7").await;
        (s == StatusCode::NOT_FOUND).then_some(v)
    })
    .await;
    let (s, _) = f.get("/presets/7").await;
    assert_eq!(s, StatusCode::OK, "detaching does not delete the preset");
}

#[tokio::test]
async fn settings_streamers_agents_events_openapi() {
    let ns = TestNamespace::new("api-admin").await;
    let f = Facade::start(&ns).await;

    // Domain settings: the SMTP password goes to a Secret and is never returned.
    let (s, v) = f.get("/domain_config").await;
    assert_eq!((s, v), (StatusCode::OK, json!({})));
    let body = example("02_domain_config_save_request.json");
    let (s, v) = f.put("/domain_config", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut expected = body.clone();
    expected["mail"].as_object_mut().unwrap().remove("password");
    assert_eq!(v, expected);
    let secret = ns.api::<Secret>().get("panoptes-settings").await.unwrap();
    assert_eq!(
        secret_value(&secret, "smtp-password"),
        body["mail"]["password"].as_str().unwrap()
    );
    f.get_until("/domain_config", "saved settings", |v| *v == expected)
        .await;
    let (s, v) = f.put("/domain_config", json!({"mail": 5})).await;
    assert_error(s, &v, 400);
    let (_, v) = f.get("/system_config").await;
    assert_eq!(v["watcher_brute_force_timeout"], 1800);

    // Streamers: the example creates one; cluster key and admin credentials go to a Secret.
    let (s, v) = f
        .put(
            "/streamers/peer.example.com",
            example("06_streamer_save_request.json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["hostname"], "peer.example.com");
    assert_eq!(v["channel_limit"], 5);
    assert_eq!(v["labels"], json!({"key1": "value1", "key2": "value2"}));
    let text = v.to_string();
    assert!(
        !text.contains("xS6i6Q3DCc5nEvnu") && !text.contains("passw"),
        "{v}"
    );
    let stored: Streamer = ns.api::<Streamer>().get("peer.example.com").await.unwrap();
    let secret_name = stored.spec.facade_credentials.unwrap().secret_name;
    let secret = ns.api::<Secret>().get(&secret_name).await.unwrap();
    assert_eq!(secret_value(&secret, "clusterKey"), "xS6i6Q3DCc5nEvnu");
    assert_eq!(secret_value(&secret, "login"), "secretlogin");
    f.get_until("/streamers/peer.example.com", "streamer visible", |_| true)
        .await;
    let (s, v) = f
        .put("/streamers/peer.example.com", json!({"channel_limit": 10}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["channel_limit"].clone(), v["total_bandwidth"].clone()),
        (json!(10), json!(1024))
    );
    let (s, v) = f
        .put("/streamers/peer.example.com", json!({"hostname": "other"}))
        .await;
    assert_error(s, &v, 400);
    let (s, v) = f
        .put("/streamers/peer.example.com", json!({"role": "nonsense"}))
        .await;
    assert_error(s, &v, 400);
    let (s, v) = f.get("/streamers/nope").await;
    assert_error(s, &v, 404);
    let (_, v) = f.get("/streamers").await;
    assert_eq!(v["streamers"][0]["hostname"], "peer.example.com");
    assert!(v.get("next").is_none());

    // Agents: derived from agent:// inputs.
    stream(
        &ns,
        "cam-a",
        json!({"inputs": [{"url": "agent://abc123"}], "title": "Front door"}),
    )
    .await;
    stream(
        &ns,
        "cam-b",
        json!({"inputs": [{"url": "fake://x"}], "title": "Back"}),
    )
    .await;
    let v = f
        .get_until("/agents", "agent listed", |v| {
            v["agents"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(v["agents"][0]["id"], "abc123");
    assert_eq!(v["agents"][0]["streams"][0]["name"], "cam-a");
    let (_, v) = f.get("/agents?title_like=door").await;
    assert_eq!(v["estimated_count"], 1);
    let (_, v) = f.get("/agents?title_like=back").await;
    assert_eq!(v["estimated_count"], 0);
    let (_, v) = f.get("/agents?stream_is=null").await;
    assert_eq!(v["agents"], json!([]));

    // Events: the writes above (reads are not audited), newest first, no payloads.
    let v = f
        .get_until(
            "/events?operation_id=domain_config_save&limit=100",
            "the two settings saves in the log",
            |v| v["estimated_count"] == 2,
        )
        .await;
    assert!(!v.to_string().contains("password"), "{v}");
    let (s, v) = f.get("/events?limit=2").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[0]["event_id"].as_i64() > events[1]["event_id"].as_i64());
    assert_eq!(events[0]["user"], "root");
    assert!(v["next"].is_string());

    // The OpenAPI document is open and lists the 53 operations served.
    let resp = f.http.get(f.url("/openapi.json")).send().await.unwrap();
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let ops: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(ops, 53);
    assert!(doc["components"]["schemas"]["StreamView"].is_object());

    // Request metrics by operation and status class.
    let metrics = Metrics::new();
    metrics.register(|r| f.state.metrics.register(r));
    let text = metrics.encode();
    // At least the four agents calls above (polling helpers may add more).
    let agents: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"panoptes_api_requests_total{operation="agents_list",status="2xx"} "#)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(agents >= 4, "{text}");
    assert!(
        text.contains(r#"operation="streamer_save",status="4xx""#),
        "{text}"
    );
    // Every node credentials Secret the streamer saves wrote belongs to a Streamer that exists.
    assert_no_unowned_credentials(&ns).await;
}
