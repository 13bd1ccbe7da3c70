//! Access besides logins (reference §10): API keys, camera credentials and shared tokens —
//! the last enforced end to end: a token created through the facade, a simulated node asking
//! the facade's play backend on a viewer's play, allowed or denied by the token's permissions.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use panoptes::controllers::Tunables;
use panoptes::resources::{Stream, User};
use reqwest::StatusCode;
use serde_json::json;
use streamer_sim::PlayOutcome;

use crate::api_support::conform::assert_conforms;
use crate::api_support::{Facade, WAIT, assert_error, make_user, stream};
use crate::support::operator::Operator;
use crate::support::{TestNamespace, eventually, scenario};

/// Every Secret value in `ns` as text, for "never stored in clear" checks.
async fn all_secret_text(ns: &TestNamespace) -> String {
    let list = ns.api::<Secret>().list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .flat_map(|s| s.data.iter().flatten())
        .map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Create → log in with it → rotate → the old key fails → masked get; only the user themself
/// and admins manage it; throttled like a password; gone with the user; never stored or
/// answered in clear but in the create answer.
#[tokio::test]
async fn apikeys_rotate_mask_and_stand_in_for_the_password() {
    use reqwest::Method as M;
    let ns = TestNamespace::new("compat-apikey").await;
    let f = Facade::start(&ns).await;
    make_user(&ns, "bob", "bob", "bob-password-1", false, 2).await;
    f.get_until("/users/2", "bob visible", |_| true).await;

    let (s, v) = f.get("/users/2/apikey").await;
    assert_error(s, &v, 404);
    let (s, v) = f.call(M::POST, "/users/2/apikey", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_conforms("users_apikey_create", &v);
    let k1 = v["apikey"].as_str().unwrap().to_string();
    assert_eq!(k1.len(), 40);
    let bob = eventually(WAIT, "login with the API key", || async {
        f.login("bob", &k1).await.ok()
    })
    .await;

    // The user themself may read and rotate it; another user's is 403, unknown or not.
    let (s, v) = f.call_as(&bob, M::GET, "/users/2/apikey", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_conforms("users_apikey_get", &v);
    let masked = v["apikey"].as_str().unwrap();
    assert!(
        masked.ends_with(&k1[36..]) && masked.starts_with("****"),
        "{masked}"
    );
    assert!(!masked.contains(&k1[..8]));
    for path in ["/users/1/apikey", "/users/99/apikey"] {
        let (s, v) = f.call_as(&bob, M::GET, path, None).await;
        assert_error(s, &v, 403);
        let (s, v) = f.call_as(&bob, M::POST, path, None).await;
        assert_error(s, &v, 403);
    }
    let (s, v) = f.call_as(&bob, M::GET, "/users", None).await;
    assert_error(s, &v, 403);
    let (s, v) = f.get("/users/99/apikey").await;
    assert_error(s, &v, 404);
    let (s, v) = f.get("/users/x/apikey").await;
    assert_error(s, &v, 400);
    let (s, v) = f.post("/users/2/apikey", json!({"bogus": 1})).await;
    assert_error(s, &v, 400);

    // Rotation: the old key fails at once, the new one works.
    let (s, v) = f.call_as(&bob, M::POST, "/users/2/apikey", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let k2 = v["apikey"].as_str().unwrap().to_string();
    assert_ne!(k1, k2);
    let (s, _) = f.login("bob", &k1).await.unwrap_err();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    eventually(WAIT, "login with the new key", || async {
        f.login("bob", &k2).await.ok()
    })
    .await;
    let (_, v) = f.get("/users/2/apikey").await;
    assert!(v["apikey"].as_str().unwrap().ends_with(&k2[36..]), "{v}");

    // Never in clear anywhere but the create answers.
    let stored = all_secret_text(&ns).await;
    let user: User = ns.api().get("bob").await.unwrap();
    let user = serde_json::to_string(&user).unwrap();
    let (_, listed) = f.get("/users").await;
    for k in [&k1, &k2] {
        assert!(!stored.contains(k.as_str()), "a key stored in clear");
        assert!(!user.contains(k.as_str()), "a key on the User");
        assert!(!listed.to_string().contains(k.as_str()));
    }
    let (_, events) = f.get("/events").await;
    assert!(
        events.to_string().contains("users_apikey_create"),
        "{events}"
    );
    assert!(!events.to_string().contains(&k1) && !events.to_string().contains(&k2));

    // Same throttle as passwords: after 5 failures the right key is refused too.
    for _ in 0..5 {
        let (s, _) = f
            .login("bob", "0000000000000000000000000000000000000000")
            .await
            .unwrap_err();
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, _) = f.login("bob", &k2).await.unwrap_err();
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);

    // Deleting the user invalidates the key.
    let (s, v) = f.delete("/users/2").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = f.login("bob", &k2).await.unwrap_err();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// `GET/PUT /streams/{name}/auth`: the password is write-only, empty members keep what is
/// stored, each save writes a new Secret owned by the Stream and drops the old one; a Secret
/// a manifest references is never read or written (409).
#[tokio::test]
async fn camera_auth_is_write_only_and_never_touches_foreign_secrets() {
    use reqwest::Method as M;
    let ns = TestNamespace::new("compat-camauth").await;
    let f = Facade::start(&ns).await;
    let (s, v) = f
        .put(
            "/streams/cam",
            json!({"inputs": [{"url": "rtsp://cam.example/1"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    f.get_until("/streams/cam", "stream seen", |_| true).await;

    let (s, v) = f.get("/streams/cam/auth").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({}));
    let (s, v) = f.put("/streams/cam/auth", json!({"login": "admin"})).await;
    assert_error(s, &v, 400);
    let (s, v) = f
        .put(
            "/streams/cam/auth",
            json!({"login": "admin", "password": "pw-one", "port": 8080}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_conforms("camera_auth_save", &v);
    assert_eq!(v, json!({"login": "admin", "port": 8080}));
    let secret_of = || async {
        let s: Stream = ns.api().get("cam").await.unwrap();
        let name = s.spec.facade_credentials.unwrap().secret_name;
        let secret: Secret = ns.api().get(&name).await.unwrap();
        let pw = secret.data.unwrap()["password"].0.clone();
        (name, String::from_utf8(pw).unwrap())
    };
    let (first, pw) = secret_of().await;
    assert_eq!(pw, "pw-one");
    // A generated client's partial save: empty members keep the stored values.
    let (s, v) = f
        .put(
            "/streams/cam/auth",
            json!({"login": "", "password": "", "port": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"login": "admin", "port": 8080}));
    let (second, pw) = secret_of().await;
    assert_eq!(pw, "pw-one");
    assert_ne!(first, second);
    assert!(
        ns.api::<Secret>().get_opt(&first).await.unwrap().is_none(),
        "old Secret left"
    );
    let (s, _) = f
        .put("/streams/cam/auth", json!({"password": "pw-two"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(secret_of().await.1, "pw-two");
    let v = f
        .get_until("/streams/cam/auth", "saved credentials", |v| {
            v["login"] == "admin"
        })
        .await;
    assert_conforms("camera_auth_get", &v);
    assert!(v.get("password").is_none());
    let (_, stream_view) = f.get("/streams/cam").await;
    assert!(!stream_view.to_string().contains("pw-two"));

    // Errors: bad bodies, unknown streams, non-admins.
    for body in [
        json!({"titel": "x"}),
        json!({"login": 5}),
        json!({"port": 70000}),
    ] {
        let (s, v) = f.put("/streams/cam/auth", body).await;
        assert_error(s, &v, 400);
    }
    let (s, v) = f.call(M::PUT, "/streams/cam/auth", None).await;
    assert_error(s, &v, 400);
    let (s, v) = f.get("/streams/nope/auth").await;
    assert_error(s, &v, 404);
    let (s, v) = f
        .put("/streams/nope/auth", json!({"login": "a", "password": "b"}))
        .await;
    assert_error(s, &v, 404);
    make_user(&ns, "eve", "eve", "eve-password-1", false, 3).await;
    let eve = eventually(WAIT, "eve logs in", || async {
        f.login("eve", "eve-password-1").await.ok()
    })
    .await;
    let (s, v) = f.call_as(&eve, M::GET, "/streams/cam/auth", None).await;
    assert_error(s, &v, 403);

    // A manifest's Secret: 409, and it stays as it was.
    let manual = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("manual-cam-creds".into()),
            ..Default::default()
        },
        string_data: Some(
            [
                ("username".to_string(), "m".to_string()),
                ("password".to_string(), "manual-pw".to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    ns.api::<Secret>()
        .create(&Default::default(), &manual)
        .await
        .unwrap();
    stream(
        &ns,
        "gitops-cam",
        json!({"inputs": [{"url": "rtsp://cam2.example/1"}], "credentials": {"secretName": "manual-cam-creds"}}),
    )
    .await;
    f.get_until("/streams/gitops-cam", "stream seen", |_| true)
        .await;
    let (s, v) = f.get("/streams/gitops-cam/auth").await;
    assert_error(s, &v, 409);
    assert_eq!(v["errors"][0]["code"], "credentials_not_owned");
    let (s, v) = f
        .put(
            "/streams/gitops-cam/auth",
            json!({"login": "x", "password": "y"}),
        )
        .await;
    assert_error(s, &v, 409);
    let after: Secret = ns.api().get("manual-cam-creds").await.unwrap();
    assert_eq!(after.data.unwrap()["password"].0, b"manual-pw");
    let s: Stream = ns.api().get("gitops-cam").await.unwrap();
    assert!(s.spec.facade_credentials.is_none());
}

/// Shared tokens, enforced: a node's play of a pushed stream asks the facade's backend, which
/// allows live and DVR within each token's permissions and depth limit, and nothing for an
/// unknown or deleted token; the keys live in Secrets only.
#[tokio::test]
async fn shared_tokens_are_enforced_by_the_nodes() {
    let (ns, sim) = scenario::fleet("compat-shares", 1).await;
    let f = Facade::start(&ns).await;
    let backend = f.url("/play_auth");
    let op = Operator::start_with(
        &ns,
        Tunables {
            node_resync: Duration::from_millis(500),
            delete_grace: Duration::from_secs(3),
            system_namespace: ns.name.clone(),
            play_auth_url: Some(backend.clone()),
            ..Default::default()
        },
    );
    scenario::stream(&ns, "cam", json!({})).await;
    let node = sim.node(0);
    eventually(WAIT, "cam pushed with on_play", || async {
        let s = node.stored_stream("cam")?;
        (s["on_play"]["url"] == backend.as_str()).then_some(())
    })
    .await;
    f.get_until("/streams/cam", "stream seen", |_| true).await;
    assert_eq!(
        node.viewer_play("cam/index.m3u8", None, "10.0.0.9").await,
        PlayOutcome::Denied(Some(403))
    );

    let (s, live) = f
        .post(
            "/shares",
            json!({"key": "", "name": "door", "media": "cam",
                   "permissions": [{"live": true, "dvr": true, "dvr_depth_limit": 3600}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{live}");
    assert_conforms("shared_token_create", &live);
    let k1 = live["key"].as_str().unwrap().to_string();
    // Read-your-writes: the facade that answered 200 allows the token at once. Before, it
    // allowed it once its watch brought the Stream's new annotation: on an idle machine within
    // the next request (this loop passed without the wait too), under a loaded `make test` a
    // moment too late once (session 10's clean-clone run).
    let mut refused = 0;
    for i in 0..10 {
        let (s, v) = f
            .post(
                "/shares",
                json!({"name": format!("probe-{i}"), "media": "cam", "permissions": [{"live": true}]}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let key = v["key"].as_str().unwrap();
        let url = format!("{backend}?name=cam&token={key}&media_request=index.m3u8");
        if f.http.get(url).send().await.unwrap().status() != StatusCode::OK {
            refused += 1;
        }
        assert_eq!(
            f.delete(&format!("/shares/{key}")).await.0,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(refused, 0, "tokens refused right after they were created");
    let (s, v) = f
        .post(
            "/shares",
            json!({"name": "archive", "media": "cam", "permissions": [{"dvr": true}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let k2 = v["key"].as_str().unwrap().to_string();

    let now = chrono::Utc::now().timestamp();
    let recent = format!("cam/index-{}-60.m3u8", now - 600);
    let old = format!("cam/index-{}-60.m3u8", now - 7200);
    eventually(WAIT, "the node lets the token play live", || async {
        (node
            .viewer_play("cam/index.m3u8", Some(&k1), "10.0.0.9")
            .await
            == PlayOutcome::Allowed)
            .then_some(())
    })
    .await;
    let play = |path: String, token: String| {
        let node = node.clone();
        async move { node.viewer_play(&path, Some(&token), "10.0.0.9").await }
    };
    // The second token reaches the play backend through the same watch, maybe a moment later:
    // its denials below would pass even before it is known.
    eventually(WAIT, "the node lets the archive token play old DVR", || {
        let play = play(old.clone(), k2.clone());
        async move { (play.await == PlayOutcome::Allowed).then_some(()) }
    })
    .await;
    assert_eq!(play(recent.clone(), k1.clone()).await, PlayOutcome::Allowed);
    assert_eq!(
        play(old.clone(), k1.clone()).await,
        PlayOutcome::Denied(Some(403)),
        "beyond the depth limit"
    );
    let export = format!("cam/archive-{}-60.mp4", now - 600);
    assert_eq!(
        play(export, k1.clone()).await,
        PlayOutcome::Denied(Some(403)),
        "no export permission"
    );
    assert_eq!(
        play("cam/index.m3u8".into(), k2.clone()).await,
        PlayOutcome::Denied(Some(403)),
        "dvr only"
    );
    assert_eq!(
        play(old.clone(), k2.clone()).await,
        PlayOutcome::Allowed,
        "no depth limit"
    );
    assert_eq!(
        play("cam/index.m3u8".into(), "f".repeat(40)).await,
        PlayOutcome::Denied(Some(403))
    );

    // The backend tells an unknown stream from a wrong token no better than allow/deny.
    let probe = |q: &str| {
        let url = format!("{backend}?{q}");
        let http = f.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let unknown_stream = probe(&format!("name=nope&token={k1}")).await;
    let wrong_token = probe("name=cam&token=wrong").await;
    assert_eq!(unknown_stream, wrong_token);
    assert_eq!(unknown_stream.0, StatusCode::FORBIDDEN);

    // Listed with keys; the query engine's parameters; keys only in Secrets.
    let (s, list) = f.get("/shares").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_conforms("shared_tokens_list", &list);
    assert_eq!(list["estimated_count"], 2);
    let keys: Vec<&str> = list["shared_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&k1.as_str()) && keys.contains(&k2.as_str()));
    let (_, v) = f.get("/shares?sort=-name&select=name,media&limit=1").await;
    assert_eq!(
        v["shared_tokens"],
        json!([{"name": "door", "media": "cam"}])
    );
    assert!(v["next"].is_string(), "{v}");
    let (s, v) = f.get("/shares?select=nmae").await;
    assert_error(s, &v, 400);
    let obj: Stream = ns.api().get("cam").await.unwrap();
    let obj = serde_json::to_string(&obj).unwrap();
    assert!(
        !obj.contains(&k1) && !obj.contains(&k2),
        "a key on the Stream"
    );
    let stored = all_secret_text(&ns).await;
    assert!(stored.contains(&k1), "the key lives in a Secret");

    // Bad creates.
    for (body, status) in [
        (json!({"name": "x", "media": "nope"}), 422),
        (json!({"media": "cam"}), 400),
        (json!({"name": "x", "media": "cam", "key": "short"}), 400),
        (json!({"name": "x", "media": "cam", "titel": "y"}), 400),
        (
            json!({"name": "x", "media": "cam", "permissions": [{"live": "yes"}]}),
            400,
        ),
    ] {
        let (s, v) = f.post("/shares", body.clone()).await;
        assert_error(s, &v, status);
    }

    // Deleted: denied at the next play, gone from the list, its Secret gone.
    let (s, v) = f.delete(&format!("/shares/{k1}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = f.delete(&format!("/shares/{k1}")).await;
    assert_error(s, &v, 404);
    eventually(WAIT, "the deleted token is refused", || async {
        (node
            .viewer_play("cam/index.m3u8", Some(&k1), "10.0.0.9")
            .await
            == PlayOutcome::Denied(Some(403)))
        .then_some(())
    })
    .await;
    let (_, list) = f.get("/shares").await;
    assert_eq!(list["estimated_count"], 1, "{list}");
    assert!(!all_secret_text(&ns).await.contains(&k1));
    // The audit trail shows the delete, not the key in its path.
    let (_, events) = f.get("/events").await;
    assert!(
        events.to_string().contains("shared_token_delete"),
        "{events}"
    );
    assert!(
        !events.to_string().contains(&k1),
        "a key in the audit trail"
    );
    op.stop().await;
}
