//! Identity of what the facade writes: ids claimed once (no two users or presets share one,
//! and a save reaches the object it names), object names that map one Watcher name to one
//! object, names a node resolves to another path, saves that never revert a concurrent write,
//! and logins and free-text fields bounded the same way in the facade and in the CRDs.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use panoptes::flussonic::{Credentials, NodeClient, NodeClientConfig, NodeMetrics};
use panoptes::resources::{Preset, Stream, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::api_support::{self, Facade, assert_error};
use crate::support::operator::Operator;
use crate::support::{TestNamespace, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// `PUT` with the path exactly as given (no client-side normalisation).
async fn raw_put(f: &Facade, path: &str, body: &str) -> (StatusCode, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = reqwest::Url::parse(&f.base).unwrap();
    let mut tcp = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap();
    let req = format!(
        "PUT {}{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.path(),
        f.token,
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    let status: u16 = out.split(' ').nth(1).unwrap().parse().unwrap();
    let json = out.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        StatusCode::from_u16(status).unwrap(),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

async fn post(f: &Facade, path: &str, body: Value) -> (StatusCode, Value) {
    f.post(path, body).await
}

/// #4: six parallel creates, then back-to-back creates, all get distinct ids; a save sent
/// with the id a create returned changes that user and no other; the controller adopts the
/// facade's claims (every user Ready, none IdConflict).
#[tokio::test]
async fn user_creates_get_distinct_ids_and_a_save_reaches_its_own_user() {
    let ns = TestNamespace::new("sec-ids-users").await;
    let f = Facade::start(&ns).await;
    let op = Operator::start(&ns);
    let parallel = futures::future::join_all((0..6).map(|i| {
        post(
            &f,
            "/users",
            json!({"name": format!("race{i}"), "password": "Race-pass-1", "access_level": "admin"}),
        )
    }))
    .await;
    let mut ids = BTreeSet::new();
    let mut by_login = std::collections::BTreeMap::new();
    for (s, v) in &parallel {
        assert_eq!(*s, StatusCode::OK, "{v}");
        ids.insert(v["id"].as_i64().unwrap());
        by_login.insert(
            v["name"].as_str().unwrap().to_string(),
            v["id"].as_i64().unwrap(),
        );
    }
    for i in 0..4 {
        let (s, v) = post(&f, "/users", json!({"name": format!("bb{i}")})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.insert(v["id"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 10, "ids handed out: {ids:?}");
    // The same login twice at once: one wins, the other is told so in Watcher words.
    let twice =
        futures::future::join_all((0..2).map(|_| post(&f, "/users", json!({"name": "twin"}))))
            .await;
    let statuses: BTreeSet<u16> = twice.iter().map(|(s, _)| s.as_u16()).collect();
    assert_eq!(statuses, BTreeSet::from([200, 409]), "{twice:?}");
    let lost = twice
        .iter()
        .find(|(s, _)| *s == StatusCode::CONFLICT)
        .unwrap();
    assert_eq!(
        lost.1["errors"][0]["title"], "user twin already exists",
        "{lost:?}"
    );
    assert!(
        !ids.contains(&1),
        "the admin's id was handed out again: {ids:?}"
    );

    let race2 = by_login["race2"];
    f.get_until(&format!("/users/{race2}"), "race2", |_| true)
        .await;
    let (s, v) = f
        .put(
            &format!("/users/{race2}"),
            json!({"fullname": "written for race2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "race2", "the save went to another user: {v}");

    let api: Api<User> = ns.api();
    eventually(WAIT, "every created user Ready with its id", || {
        let api = api.clone();
        async move {
            let users = api.list(&Default::default()).await.ok()?;
            let ready = users
                .items
                .iter()
                .filter(|u| u.spec.name != api_support::ADMIN_LOGIN)
                .filter(|u| {
                    let st = u.status.as_ref();
                    st.and_then(|s| s.id) == u.spec.id
                        && st.is_some_and(|s| {
                            s.common
                                .conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count();
            (ready == 11).then_some(())
        }
    })
    .await;
    op.stop().await;
}

/// #4/#18: a kubectl Preset squatting `preset-<next id>` does not block creates, and
/// parallel creates all succeed with distinct ids.
#[tokio::test]
async fn preset_creates_race_and_a_squatted_object_name_does_not_block() {
    let ns = TestNamespace::new("sec-ids-presets").await;
    let f = Facade::start(&ns).await;
    api_support::preset(&ns, "preset-2", 1, "squatter", 1).await;
    f.get_until("/presets", "the squatting preset", |v| {
        v["presets"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let (s, first) = post(&f, "/presets", json!({"title": "first"})).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["id"], 2);
    let parallel = futures::future::join_all(
        (0..6).map(|i| post(&f, "/presets", json!({"title": format!("p{i}")}))),
    )
    .await;
    let mut ids = BTreeSet::from([1, 2]);
    for (s, v) in &parallel {
        assert_eq!(*s, StatusCode::OK, "{v}");
        assert!(ids.insert(v["id"].as_i64().unwrap()), "duplicate id: {v}");
    }
    let api: Api<Preset> = ns.api();
    let stored = api.list(&Default::default()).await.unwrap();
    let pinned: BTreeSet<i64> = stored.items.iter().filter_map(|p| p.spec.id).collect();
    assert_eq!(pinned, ids);
    // The controller finds each facade claim its own, the re-pointed one included.
    let op = Operator::start(&ns);
    eventually(WAIT, "every preset Ready with its pinned id", || {
        let api = api.clone();
        async move {
            let presets = api.list(&Default::default()).await.ok()?;
            presets
                .items
                .iter()
                .all(|p| {
                    let st = p.status.as_ref();
                    st.and_then(|s| s.id) == p.spec.id
                        && st.is_some_and(|s| {
                            s.common
                                .conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .then_some(())
        }
    })
    .await;
    op.stop().await;
}

/// #5: a Stream applied the way the samples are (no `spec.name`) saves through the facade,
/// and keeps having no `spec.name`.
#[tokio::test]
async fn a_kubectl_stream_without_spec_name_saves_through_the_facade() {
    let ns = TestNamespace::new("sec-ids-gitops").await;
    let f = Facade::start(&ns).await;
    api_support::stream(
        &ns,
        "north-cam-01",
        json!({"title": "North 1", "inputs": [{"url": "fake://north"}]}),
    )
    .await;
    f.get_until("/streams/north-cam-01", "the kubectl stream", |_| true)
        .await;
    let (s, v) = f
        .put("/streams/north-cam-01", json!({"title": "North camera 1"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let stored = ns.api::<Stream>().get("north-cam-01").await.unwrap();
    assert_eq!(stored.spec.config.title.as_deref(), Some("North camera 1"));
    assert_eq!(stored.spec.name, None);
}

/// #11: concurrent partial saves of different fields all survive, and a direct API edit
/// racing them is never reverted (a few rounds).
#[tokio::test]
async fn concurrent_partial_saves_and_api_edits_all_survive() {
    let ns = TestNamespace::new("sec-ids-lost").await;
    let f = Facade::start(&ns).await;
    let (s, v) = f
        .put(
            "/streams/b2b",
            json!({"title": "t0", "comment": "c0", "inputs": [{"url": "fake://b2b"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let api: Api<Stream> = ns.api();
    for round in 1..=4 {
        let api_edit = async {
            let patch = json!({"spec": {"postal_address": format!("api-{round}")}});
            api.patch("b2b", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        };
        let saves = futures::future::join_all([
            f.put("/streams/b2b", json!({"title": format!("t{round}")})),
            f.put("/streams/b2b", json!({"comment": format!("c{round}")})),
            f.put(
                "/streams/b2b",
                json!({"labels": {"round": format!("{round}")}}),
            ),
            f.put("/streams/b2b", json!({"folder_id": round})),
        ]);
        let (saves, edited) = tokio::join!(saves, api_edit);
        edited.unwrap();
        for (s, v) in saves {
            assert_eq!(s, StatusCode::OK, "round {round}: {v}");
        }
        let spec = serde_json::to_value(api.get("b2b").await.unwrap().spec).unwrap();
        assert_eq!(spec["title"], format!("t{round}"), "round {round}: {spec}");
        assert_eq!(
            spec["comment"],
            format!("c{round}"),
            "round {round}: {spec}"
        );
        assert_eq!(
            spec["labels"]["round"],
            format!("{round}"),
            "round {round}: {spec}"
        );
        assert_eq!(spec["folder_id"], round, "round {round}: {spec}");
        assert_eq!(
            spec["postal_address"],
            format!("api-{round}"),
            "round {round}: the API edit was reverted: {spec}"
        );
    }
    // The domain settings: two saves of different members at once keep both.
    for round in 1..=2 {
        let saves = futures::future::join_all([
            f.put(
                "/domain_config",
                json!({"appearance": {"color": format!("c{round}")}}),
            ),
            f.put(
                "/domain_config",
                json!({"mail": {"host": format!("h{round}")}}),
            ),
        ])
        .await;
        for (s, v) in saves {
            assert_eq!(s, StatusCode::OK, "round {round}: {v}");
        }
        f.get_until("/domain_config", "both settings saves", |v| {
            v["appearance"]["color"] == format!("c{round}")
                && v["mail"]["host"] == format!("h{round}")
        })
        .await;
    }
    // The same for a user (partial saves of three fields at once).
    let (s, u) = f.post("/users", json!({"name": "lost"})).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let path = format!("/users/{}", u["id"]);
    f.get_until(&path, "the new user", |_| true).await;
    for round in 1..=2 {
        let saves = futures::future::join_all([
            f.put(&path, json!({"fullname": format!("f{round}")})),
            f.put(&path, json!({"phone": format!("p{round}")})),
            f.put(&path, json!({"note": format!("n{round}")})),
        ])
        .await;
        for (s, v) in saves {
            assert_eq!(s, StatusCode::OK, "round {round}: {v}");
        }
        let spec = ns.api::<User>().get("user-lost").await.unwrap().spec;
        let got = (spec.fullname, spec.phone, spec.note);
        let want = (
            Some(format!("f{round}")),
            Some(format!("p{round}")),
            Some(format!("n{round}")),
        );
        assert_eq!(got, want, "round {round}");
    }
}

/// #15: names a node would resolve (`.`, `..`, dot segments) are refused by the facade and
/// the CRD, and the node client never sends a request for them (the simulator counts none).
#[tokio::test]
async fn dot_names_are_refused_and_never_reach_a_node_collection() {
    let ns = TestNamespace::new("sec-ids-dots").await;
    let f = Facade::start(&ns).await;
    // Sent as raw bytes: an HTTP client library would resolve the dot segments itself.
    for raw in ["%2E", "%2E%2E", "a%2F..", "..%2Fb", "a%2F.%2Fb"] {
        let (s, v) = raw_put(
            &f,
            &format!("/streams/{raw}"),
            r#"{"title":"d","inputs":[{"url":"fake://d"}]}"#,
        )
        .await;
        assert_error(s, &v, 400);
        assert_eq!(v["errors"][0]["source"]["parameter"], "name", "{raw}: {v}");
    }
    let err = ns
        .api::<Stream>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(api_support::stream_json(
                "dots",
                json!({"name": "..", "inputs": [{"url": "fake://d"}]}),
            ))
            .unwrap(),
        )
        .await
        .expect_err("the CRD accepted a `..` stream name");
    assert!(err.to_string().contains("'..' segment"), "{err}");

    let cluster = streamer_sim::Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let mut cfg = NodeClientConfig::new(
        node.hostname(),
        node.base_url(),
        Credentials::basic("flussonic", "letmein!"),
    );
    cfg.request_timeout = Duration::from_secs(3);
    // The simulator speaks plain http.
    let client = NodeClient::new(cfg.allow_insecure(true), NodeMetrics::new()).unwrap();
    node.reset_counters();
    for name in ["", ".", ".."] {
        assert!(client.stream_delete(name).await.is_err(), "{name:?}");
        assert!(client.stream_get(name).await.is_err(), "{name:?}");
        assert!(client.stream_stop(name).await.is_err(), "{name:?}");
    }
    let c = node.counters();
    assert_eq!(c.total, 0, "requests reached the node: {:?}", c.by_route);
    // A name with `/` and dots is one segment: the DELETE addresses that stream only.
    client.stream_delete("a/../..").await.unwrap();
    let c = node.counters();
    assert_eq!(
        c.by_route.get("DELETE /streams/{name}"),
        Some(&1),
        "{:?}",
        c.by_route
    );
    assert!(
        c.by_route.keys().all(|r| !r.ends_with(" /streams")),
        "{:?}",
        c.by_route
    );
}

/// #19: Watcher names that are not Kubernetes names save, each to its own object, with no
/// Kubernetes wording; `-leading-dash` and `leading-dash` are two streams.
#[tokio::test]
async fn watcher_names_map_to_distinct_valid_objects() {
    let ns = TestNamespace::new("sec-ids-names").await;
    let f = Facade::start(&ns).await;
    let names = [
        "-leading-dash",
        "leading-dash",
        "a..b",
        "x.-y",
        "a--b",
        "Cam.1",
    ];
    for (i, name) in names.iter().enumerate() {
        let (s, v) = f
            .put(
                &format!("/streams/{name}"),
                json!({"title": format!("n{i}"), "inputs": [{"url": "fake://n"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{name}: {v}");
        assert_eq!(v["name"], *name, "{v}");
    }
    let stored = ns.api::<Stream>().list(&Default::default()).await.unwrap();
    assert_eq!(stored.items.len(), names.len());
    for (i, name) in names.iter().enumerate() {
        let v = f
            .get_until(&format!("/streams/{name}"), name, |_| true)
            .await;
        assert_eq!(v["title"], format!("n{i}"), "{name}: {v}");
    }
}

/// #20: logins with `:` or control characters and oversized free-text fields are refused
/// with Watcher errors by the facade and with the same rule by the CRD.
#[tokio::test]
async fn logins_and_free_text_fields_are_bounded() {
    let ns = TestNamespace::new("sec-ids-fields").await;
    let f = Facade::start(&ns).await;
    let long = "x".repeat(70_000);
    let cases = [
        (json!({"name": "a:b", "password": "Pass-word-1"}), "/name"),
        (
            json!({"name": "bell\u{7}", "password": "Pass-word-1"}),
            "/name",
        ),
        (json!({"name": "ok1", "fullname": long}), "/fullname"),
        (json!({"name": "ok2", "note": long}), "/note"),
        (json!({"name": "ok3", "phone": long}), "/phone"),
        (json!({"name": "ok4", "fullname": "tab\there"}), "/fullname"),
    ];
    for (body, pointer) in cases {
        let (s, v) = f.post("/users", body.clone()).await;
        assert_error(s, &v, 400);
        assert_eq!(v["errors"][0]["source"]["pointer"], pointer, "{v}");
        let title = v["errors"][0]["title"].as_str().unwrap();
        assert!(
            !title.contains("Invalid value") && !title.contains("panoptes.dev"),
            "Kubernetes wording: {title}"
        );
    }
    let (s, v) = f
        .post("/users", json!({"name": "fine", "note": "two\nlines"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Saves find users through the watch: wait until it has the new one.
    f.get_until(&format!("/users/{}", v["id"]), "the new user", |_| true)
        .await;
    let (s, v) = f
        .put(
            &format!("/users/{}", v["id"]),
            json!({"phone": "1".repeat(65)}),
        )
        .await;
    assert_error(s, &v, 400);

    for (body, pointer) in [
        (json!({"title": "bell\u{7}"}), "/title"),
        (json!({"comment": "nul\u{0}"}), "/comment"),
        (json!({"title": "x".repeat(1025)}), "/title"),
    ] {
        let mut body = body;
        body["inputs"] = json!([{"url": "fake://t"}]);
        let (s, v) = f.put("/streams/texts", body).await;
        assert_error(s, &v, 400);
        assert_eq!(v["errors"][0]["source"]["pointer"], pointer, "{v}");
    }
    let err = ns
        .api::<Stream>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(api_support::stream_json(
                "texts",
                json!({"title": "a\u{1}b", "inputs": [{"url": "fake://t"}]}),
            ))
            .unwrap(),
        )
        .await
        .expect_err("the CRD accepted a control character in a title");
    assert!(err.to_string().contains("control characters"), "{err}");

    let users: Api<User> = ns.api();
    for (spec, said) in [
        (json!({"name": "a:b"}), "must not contain ':'"),
        (json!({"name": "a\u{1}b"}), "control characters"),
        (json!({"name": "n", "note": "x".repeat(4097)}), "4096"),
    ] {
        let u: User = serde_json::from_value(json!({
            "apiVersion": "panoptes.dev/v1alpha1", "kind": "User",
            "metadata": {"name": "kubectl-user"}, "spec": spec,
        }))
        .unwrap();
        let err = users
            .create(&PostParams::default(), &u)
            .await
            .expect_err("the CRD accepted it");
        assert!(err.to_string().contains(said), "{err}");
    }
}

/// A facade that dies between claiming an id and creating the object leaves a claim naming
/// an object that never appears: the leader's sweep releases it (with zero grace here), so
/// the id is not lost for good. A claim whose object exists is kept.
#[tokio::test]
async fn the_sweep_releases_id_claims_of_objects_never_created() {
    use k8s_openapi::api::coordination::v1::Lease;
    use panoptes::controllers::credentials::sweep_id_claims;
    use panoptes::domain::ids::{self, IdKind};
    use panoptes::domain::instance::Instance;

    let ns = TestNamespace::new("sec-ids-sweep").await;
    let f = Facade::start(&ns).await;
    let (s, v) = post(&f, "/users", json!({"name": "alive"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let alive_id = v["id"].as_i64().unwrap();
    // Claimed exactly as the facade's create does, then the "facade" dies.
    let ghost_user = ids::claim_new(
        &f.state,
        IdKind::User,
        |_| format!("{}/user-ghost", ns.name),
        &[],
    )
    .await
    .unwrap();
    let ghost_preset = ids::claim_new(
        &f.state,
        IdKind::Preset,
        |_| format!("{}/preset-ghost", ns.name),
        &[],
    )
    .await
    .unwrap();
    // Another installation's ghost in the same namespace: its own sweep's to judge.
    struct Other<'a>(&'a TestNamespace, Instance);
    impl ids::ClaimSpace for Other<'_> {
        fn client(&self) -> &kube::Client {
            &self.0.client
        }
        fn claim_namespace(&self) -> &str {
            &self.0.name
        }
        fn instance(&self) -> &Instance {
            &self.1
        }
    }
    let other = Other(&ns, "team-b-panoptes".parse().unwrap());
    // Its allocator starts at the very id the ghost holds here: free there.
    let below = ids::Holding {
        assigned: Some(ghost_user.id - 1),
        ..Default::default()
    };
    let theirs = ids::claim_new(
        &other,
        IdKind::User,
        |_| format!("{}/user-ghost", ns.name),
        &[below],
    )
    .await
    .unwrap();
    let leases: Api<Lease> = Api::namespaced(ns.client.clone(), &ns.name);
    let ours = Instance::default();
    let mut released = sweep_id_claims(&ns.client, &ns.name, &ours, Duration::ZERO)
        .await
        .unwrap();
    released.sort();
    let mut expected = vec![
        ids::lease_name(IdKind::User, ghost_user.id),
        ids::lease_name(IdKind::Preset, ghost_preset.id),
    ];
    expected.sort();
    assert_eq!(released, expected);
    for name in &expected {
        assert!(leases.get_opt(name).await.unwrap().is_none(), "{name}");
    }
    // The other installation numbers its own ids (an id held here is free there) and sweeps
    // its own claims.
    assert_eq!(theirs.id, ghost_user.id);
    let theirs = ids::claim_name(&other.1, IdKind::User, theirs.id);
    assert!(leases.get_opt(&theirs).await.unwrap().is_some(), "{theirs}");
    let released = sweep_id_claims(&ns.client, &ns.name, &other.1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(released, vec![theirs]);
    let alive = ids::lease_name(IdKind::User, alive_id);
    assert!(leases.get_opt(&alive).await.unwrap().is_some(), "{alive}");
    // A claim younger than the grace may be a create in flight: kept.
    let young = ids::claim_new(
        &f.state,
        IdKind::User,
        |_| format!("{}/user-in-flight", ns.name),
        &[],
    )
    .await
    .unwrap();
    let kept = sweep_id_claims(&ns.client, &ns.name, &ours, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(kept.is_empty(), "{kept:?}");
    let young = ids::lease_name(IdKind::User, young.id);
    assert!(leases.get_opt(&young).await.unwrap().is_some(), "{young}");
}
