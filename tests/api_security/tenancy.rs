//! Tenancy in cluster mode (finding 6) and hung-node detection (finding 12).
//!
//! Cluster mode is the chart's default (no `--namespace`), but the test harness scopes
//! everything to one namespace, so these tests build their own cluster-wide pieces: a facade
//! whose stores watch every namespace, and an operator whose Streams and Streamers are those
//! labelled with a shard of its own (so it never touches what other tests run concurrently
//! in the same control plane; its User controller is not started, Users being unsharded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use panoptes::api::{ApiConfig, ApiState};
use panoptes::controllers::{Context, Tunables, layouter, stream, streamer};
use panoptes::resources::{Stream, Streamer, User};
use panoptes::run::Shutdown;
use panoptes::state::{Scope, Shard, Shared};
use reqwest::StatusCode;
use serde_json::{Value, json};
use streamer_sim::Cluster;
use tokio::task::JoinSet;

use crate::api_support::{WAIT, make_user};
use crate::support::operator::{Operator, init_logging};
use crate::support::{TestNamespace, eventually, scenario};

/// A facade watching every namespace, as `panoptes run` without `--namespace` serves it.
struct ClusterFacade {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _watches: JoinSet<()>,
}

impl Drop for ClusterFacade {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl ClusterFacade {
    async fn start(client: kube::Client, config: ApiConfig) -> Self {
        let mut watches = JoinSet::new();
        let shared = Shared::start(client, Scope::Cluster, Shard::all(), &mut watches);
        shared.stores.wait_ready().await;
        let state = ApiState::new(&shared, config).await.expect("facade state");
        state.settings.wait_ready().await;
        let (base, tx) = crate::api_support::serve_facade(state).await;
        Self {
            base,
            http: reqwest::Client::new(),
            stop: Some(tx),
            _watches: watches,
        }
    }

    async fn login(&self, login: &str, password: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .basic_auth(login, Some(password))
            .header("content-type", "application/json")
            .body("null")
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
}

fn suffix(ns: &TestNamespace) -> String {
    ns.name.rsplit('-').next().unwrap().to_string()
}

/// Finding 6, identities: a User in another namespace is nobody to the facade (it cannot log
/// in, take over a login, or show in `GET /users`); a duplicate login among identities locks
/// both out; taken logins answer 409.
#[tokio::test]
async fn users_outside_the_api_namespace_are_not_identities() {
    let api = TestNamespace::new("ten-api").await;
    let tenant = TestNamespace::new("ten-a").await;
    let boss = format!("boss-{}", suffix(&api));
    let mallory = format!("mallory-{}", suffix(&api));
    make_user(&api, "boss", &boss, "Real-Admin-1", true, 1).await;
    make_user(&tenant, "fake-admin", &mallory, "Tenant-Admin-1", true, 2).await;
    make_user(&tenant, "takeover", &boss, "Tenant-Owned-1", true, 3).await;

    let f = ClusterFacade::start(api.client.clone(), ApiConfig::new(&api.name, &api.name)).await;
    let token = eventually(WAIT, "the real admin logs in", || async {
        let (s, v) = f.login(&boss, "Real-Admin-1").await;
        (s == StatusCode::OK).then(|| v["access_token"].as_str().unwrap().to_string())
    })
    .await;
    let (s, v) = f.login(&mallory, "Tenant-Admin-1").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a tenant-made admin logged in: {v}"
    );
    let (s, _) = f.login(&boss, "Tenant-Owned-1").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a tenant took over the login");
    let (s, _) = f.login(&boss, "Real-Admin-1").await;
    assert_eq!(s, StatusCode::OK, "the real admin still logs in");

    let (s, list) = f
        .call(&token, reqwest::Method::GET, "/users?limit=1000", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let logins: Vec<&str> = list["users_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert!(logins.contains(&boss.as_str()), "{logins:?}");
    assert!(
        !logins.contains(&mallory.as_str()),
        "GET /users lists another namespace's user: {logins:?}"
    );

    // Taken logins: 409 on create and on a rename onto them.
    let (s, v) = f
        .call(
            &token,
            reqwest::Method::POST,
            "/users",
            Some(json!({"name": boss, "password": "Another-pass-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let other = format!("other-{}", suffix(&api));
    let (s, created) = f
        .call(
            &token,
            reqwest::Method::POST,
            "/users",
            Some(json!({"name": other, "password": "Another-pass-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let id = created["id"].as_i64().unwrap();
    let path = format!("/users/{id}");
    let renamed = eventually(WAIT, "the new user is visible", || async {
        let (s, v) = f
            .call(
                &token,
                reqwest::Method::PUT,
                &path,
                Some(json!({"name": boss})),
            )
            .await;
        (s != StatusCode::NOT_FOUND).then_some((s, v))
    })
    .await;
    assert_eq!(renamed.0, StatusCode::CONFLICT, "{}", renamed.1);
    drop(f);
}

/// The admin's own namespace plus an explicitly listed one: a duplicate login among them makes
/// the login nobody's (neither password works) until one is removed.
#[tokio::test]
async fn a_login_claimed_twice_among_identities_logs_nobody_in() {
    let api = TestNamespace::new("ten-api").await;
    let listed = TestNamespace::new("ten-b").await;
    let boss = format!("boss-{}", suffix(&api));
    let carol = format!("carol-{}", suffix(&api));
    make_user(&api, "boss", &boss, "Real-Admin-1", true, 1).await;
    make_user(&listed, "carol", &carol, "Carol-pass-1", true, 2).await;
    let dup = make_user(&listed, "dup", &boss, "Listed-dup-1", true, 3).await;

    let mut config = ApiConfig::new(&api.name, &api.name);
    config.identity_namespaces = vec![listed.name.clone()];
    let f = ClusterFacade::start(api.client.clone(), config).await;
    // A listed namespace holds identities: its own users log in.
    eventually(WAIT, "a user of a listed namespace logs in", || async {
        (f.login(&carol, "Carol-pass-1").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let (s, _) = f.login(&boss, "Real-Admin-1").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a claimed-twice login logged in"
    );
    let (s, _) = f.login(&boss, "Listed-dup-1").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a claimed-twice login logged in"
    );

    Api::<User>::namespaced(listed.client.clone(), &listed.name)
        .delete(&dup.metadata.name.clone().unwrap(), &Default::default())
        .await
        .unwrap();
    eventually(WAIT, "the remaining holder logs in again", || async {
        (f.login(&boss, "Real-Admin-1").await.0 == StatusCode::OK).then_some(())
    })
    .await;
}

fn condition(u: &User, type_: &str) -> Option<(String, String)> {
    let c = u
        .status
        .as_ref()?
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.to_string(), c.reason.to_string()))
}

/// The User controller marks both holders of one login `Ready=False LoginConflict`, and the
/// survivor Ready again once the other is gone.
#[tokio::test]
async fn the_user_controller_flags_both_holders_of_a_login() {
    let ns = TestNamespace::new("ten-dup").await;
    let op = Operator::start(&ns);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("pw".into()),
            ..Default::default()
        },
        data: Some([("p".to_string(), ByteString(b"Dup-pass-1".to_vec()))].into()),
        ..Default::default()
    };
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let users: Api<User> = ns.api();
    let user = |name: &str| {
        json!({"apiVersion": "panoptes.dev/v1alpha1", "kind": "User", "metadata": {"name": name},
            "spec": {"name": "dup", "accessLevel": "admin", "passwordSecretRef": {"name": "pw", "key": "p"}}})
    };
    let pp = PatchParams::apply("test").force();
    users
        .patch("first", &pp, &Patch::Apply(&user("first")))
        .await
        .unwrap();
    let ready = |name: &'static str, want: (&'static str, &'static str)| {
        let users = users.clone();
        async move {
            eventually(WAIT, &format!("{name} Ready {want:?}"), || async {
                let u = users.get(name).await.ok()?;
                let c = condition(&u, "Ready")?;
                (c.0 == want.0 && c.1 == want.1).then_some(())
            })
            .await
        }
    };
    ready("first", ("True", "Reconciled")).await;
    users
        .patch("second", &pp, &Patch::Apply(&user("second")))
        .await
        .unwrap();
    ready("second", ("False", "LoginConflict")).await;
    ready("first", ("False", "LoginConflict")).await;
    users.delete("second", &Default::default()).await.unwrap();
    ready("first", ("True", "Reconciled")).await;
    op.stop().await;
}

/// A cluster-wide operator over the Streams and Streamers of one shard (a label no other test
/// uses), without the unsharded controllers.
struct ShardOperator {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: JoinSet<()>,
    _watches: JoinSet<()>,
}

impl ShardOperator {
    fn start(client: kube::Client, shard: &str, system_namespace: &str) -> Self {
        init_logging();
        let mut watches = JoinSet::new();
        let shared = Shared::start(client, Scope::Cluster, Shard::named(shard), &mut watches);
        let ctx = Arc::new(Context::new(
            &shared,
            Tunables {
                node_resync: Duration::from_millis(500),
                delete_grace: Duration::from_secs(3),
                system_namespace: system_namespace.into(),
                ..Default::default()
            },
        ));
        let (stop, shutdown) = Shutdown::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(streamer::run(ctx.clone(), shutdown.clone().wait()));
        tasks.spawn(stream::run(ctx.clone(), shutdown.clone().wait()));
        tasks.spawn(layouter::run(ctx.clone(), shutdown.wait()));
        Self {
            stop,
            tasks,
            _watches: watches,
        }
    }
}

impl Drop for ShardOperator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.tasks.abort_all();
    }
}

async fn layout_of(api: &Api<Stream>, name: &str) -> Option<(Option<String>, String)> {
    let s = api.get(name).await.ok()?;
    let st = s.status?;
    let scheduled = st
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == "Scheduled")?
        .reason
        .to_string();
    Some((
        st.layout.and_then(|l| l.ingest).map(String::from),
        scheduled,
    ))
}

/// Finding 6, placement: a Streamer serves the Streams of its own namespace; another
/// namespace's Stream lands on it only once the Streamer admits that namespace.
#[tokio::test]
async fn streams_of_another_namespace_stay_off_a_streamer_until_admitted() {
    let a = TestNamespace::new("ten-nodes").await;
    let b = TestNamespace::new("ten-cams").await;
    let shard = format!("tenancy-{}", suffix(&a));
    let sim = Cluster::start(2).await.unwrap();
    let (node, decoy) = (sim.node(0), sim.node(1));
    a.api::<Secret>()
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("node-creds".into()),
                    ..Default::default()
                },
                data: Some(
                    [
                        ("login".to_string(), ByteString(b"flussonic".to_vec())),
                        ("password".to_string(), ByteString(b"letmein!".to_vec())),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let labels = json!({ "panoptes.dev/shard": shard });
    let streamer = |admit: Value| {
        let mut s = json!({"kind": "Streamer", "metadata": {"name": "node-a", "labels": labels},
            "spec": {"hostname": node.hostname(), "apiUrl": node.base_url(),
                "allowInsecure": true, "credentials": {"secretName": "node-creds"}}});
        if admit != json!([]) {
            s["spec"]["admitNamespaces"] = admit;
        }
        s
    };
    scenario::apply(&a.api::<Streamer>(), streamer(json!([]))).await;
    let cam = |name: &str| {
        json!({"kind": "Stream", "metadata": {"name": name, "labels": labels},
            "spec": {"inputs": [{"url": format!("fake://{name}")}]}})
    };
    let own = format!("own-{}", suffix(&a));
    let foreign = format!("foreign-{}", suffix(&a));
    let _op = ShardOperator::start(a.client.clone(), &shard, &a.name);

    // The node works for its own namespace...
    scenario::apply(&a.api::<Stream>(), cam(&own)).await;
    let streams_a: Api<Stream> = a.api();
    eventually(WAIT, "the own-namespace stream is placed", || async {
        let (ingest, _) = layout_of(&streams_a, &own).await?;
        (ingest.as_deref() == Some(node.hostname())).then_some(())
    })
    .await;
    // ...and not for another's.
    scenario::apply(&b.api::<Stream>(), cam(&foreign)).await;
    let streams_b: Api<Stream> = b.api();
    let (ingest, reason) = eventually(WAIT, "the foreign stream is judged", || async {
        layout_of(&streams_b, &foreign).await
    })
    .await;
    assert_eq!(
        (ingest.as_deref(), reason.as_str()),
        (None, "Unschedulable"),
        "a stream of namespace {} was placed on a node of namespace {}",
        b.name,
        a.name
    );

    // Admitting the namespace opens the node to it.
    scenario::apply(&a.api::<Streamer>(), streamer(json!([b.name]))).await;
    eventually(WAIT, "the admitted stream is placed", || async {
        let (ingest, _) = layout_of(&streams_b, &foreign).await?;
        (ingest.as_deref() == Some(node.hostname())).then_some(())
    })
    .await;
    // Withdrawing the admission moves it off again.
    scenario::apply(&a.api::<Streamer>(), streamer(json!([]))).await;
    eventually(WAIT, "the stream leaves the node", || async {
        let (ingest, _) = layout_of(&streams_b, &foreign).await?;
        ingest.is_none().then_some(())
    })
    .await;

    // A Streamer of namespace B naming A's hostname with a URL of its own gets nothing: no
    // client (so A's streams and their credentials never go to its URL), no streams.
    let squat = json!({"kind": "Streamer", "metadata": {"name": "squat", "labels": labels},
        "spec": {"hostname": node.hostname(), "apiUrl": decoy.base_url()}});
    scenario::apply(&b.api::<Streamer>(), squat).await;
    let streamers_b: Api<Streamer> = b.api();
    let verdict = eventually(WAIT, "the squatter is reconciled", || async {
        let s = streamers_b.get("squat").await.ok()?;
        let c = s.status?.common.conditions;
        c.into_iter().find(|c| c.type_ == "Ready")
    })
    .await;
    // A fresh stream of A makes the layouter and the stream controller push while the
    // squatter exists.
    let again = format!("again-{}", suffix(&a));
    scenario::apply(&a.api::<Stream>(), cam(&again)).await;
    eventually(
        WAIT,
        "a new own stream is placed on the real node",
        || async {
            let (ingest, _) = layout_of(&streams_a, &again).await?;
            (ingest.as_deref() == Some(node.hostname()) && node.stream_names().contains(&again))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        decoy.stream_names(),
        Vec::<String>::new(),
        "namespace A's streams were pushed to the squatter's URL"
    );
    assert_eq!(
        decoy.requests(),
        0,
        "the squatter's URL was called: {:?}",
        decoy.counters()
    );
    assert_eq!(verdict.reason, "HostnameConflict", "{verdict:?}");
}

fn reachable(s: &Streamer) -> Option<String> {
    let c = s
        .status
        .as_ref()?
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == "Reachable")?;
    Some(c.status.to_string())
}

/// Finding 12: a hung node is Unreachable within the probe budget (3× margin), and a node
/// answering every request after 800 ms stays Reachable.
#[tokio::test]
async fn a_hung_node_is_detected_within_the_probe_budget_and_a_slow_one_is_not() {
    let (ns, sim) = scenario::fleet("ten-hung", 2).await;
    let op = Operator::start(&ns);
    let budget = Tunables::default().probe.budget();
    assert!(
        budget <= Duration::from_secs(5),
        "the default detection budget is {budget:?}"
    );
    assert!(
        Tunables::default().probe.timeout > Duration::from_millis(800),
        "a node answering after 800 ms would fail its probes"
    );
    let streamers: Api<Streamer> = ns.api();
    let (hung, slow) = (sim.node(0), sim.node(1));
    for n in [hung, slow] {
        eventually(WAIT, "the node is Reachable", || async {
            let s = streamers.get(n.hostname()).await.ok()?;
            (reachable(&s)? == "True").then_some(())
        })
        .await;
    }

    hung.set_hang(true);
    slow.set_latency(Duration::from_millis(800));
    let started = Instant::now();
    let limit = budget * 3;
    loop {
        let s = streamers.get(hung.hostname()).await.unwrap();
        if reachable(&s).as_deref() == Some("False") {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "the hung node was still Reachable after {:?} (budget {budget:?})",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detected = started.elapsed();
    eprintln!("hung node detected after {detected:?} (budget {budget:?})");
    // The slow node has answered after 800 ms for all this time; keep watching for 10 s in
    // total (the 60 s variant belongs in a soak run).
    while started.elapsed() < Duration::from_secs(10) {
        let host = slow.hostname();
        let live = op.ctx.live.node(host).expect("probed");
        assert!(
            live.reachable,
            "the slow node was marked unreachable after {:?}: {:?}",
            started.elapsed(),
            live.last_error
        );
        let s = streamers.get(host).await.unwrap();
        assert_eq!(reachable(&s).as_deref(), Some("True"), "slow node status");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hung.set_hang(false);
    slow.set_latency(Duration::ZERO);
    op.kill().await;
}
