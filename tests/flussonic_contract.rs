//! Contract tests: the node client (`panoptes::flussonic`) against the streamer simulator.
//! Every operation, every error class, retries, pagination under churn, isolation between
//! nodes, drift against `config_on_disk`, restart detection.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use panoptes::flussonic::{
    Credentials, Drift, Error, ListQuery, NodeClient, NodeClientConfig, NodeMetrics, RetryPolicy,
    StreamBody, drift, is_managed, node_stream_body, with_trace_id,
};
use panoptes::resources::wire::{ServerConfig, StreamConfigSpec};
use serde_json::{Value, json};
use streamer_sim::{Cluster, ErrorBody, SimNode};

const LOGIN: &str = "flussonic";
const PASSWORD: &str = "letmein!";

fn admin() -> Credentials {
    Credentials::basic(LOGIN, PASSWORD)
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
    }
}

fn config(node: &SimNode, creds: Credentials) -> NodeClientConfig {
    // The simulator speaks plain http.
    let mut c = NodeClientConfig::new(node.hostname(), node.base_url(), creds).allow_insecure(true);
    c.retry = fast_retry();
    c.request_timeout = Duration::from_secs(3);
    c
}

fn client(node: &SimNode, creds: Credentials) -> NodeClient {
    NodeClient::new(config(node, creds), NodeMetrics::new()).expect("client")
}

fn spec(v: Value) -> StreamConfigSpec {
    serde_json::from_value(v).expect("spec")
}

fn camera(url: &str) -> StreamConfigSpec {
    spec(json!({
        "title": "Gate", "static": true,
        "inputs": [{"url": url}],
        "dvr": {"root": "/storage", "expiration": 3600, "redundancy_factor": 1},
        "labels": {"site": "north"},
        "vision": {"alg": "faces"}, "postal_address": "Main st. 1", "folder_id": 7
    }))
}

/// Polls `f` until it returns `Some`, or panics after `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_config_stats_and_probes() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let c = client(node, admin());

    // A fresh node is `starting`: liveness answers, readiness does not (503, one attempt).
    assert!(c.liveness().await.is_ok());
    let ready = c.readiness().await;
    assert!(
        matches!(ready, Err(Error::ServerError { status: 503, .. })),
        "{ready:?}"
    );
    cluster.advance(Duration::from_secs(1));
    let who = c.readiness().await.unwrap();
    assert_eq!(who.server_version.as_deref(), Some("25.03-sim"));
    assert!(who.now.unwrap() > 1_000_000_000_000);

    let stats = c.config_stats().await.unwrap();
    assert_eq!(stats.streamer_status.as_deref(), Some("running"));
    assert_eq!(stats.hostname.as_deref(), Some(node.hostname()));
    assert_eq!(stats.id, Some(node.instance_id()));
    let version = stats.config_version.clone().unwrap();

    let cfg = c.config_get().await.unwrap();
    assert_eq!(cfg.server_id, Some(node.server_id()));
    assert!(cfg.stats.is_some());
    assert!(cfg.config.edit_auth.is_some());

    // Partial save: only the members set are sent; the rest (credentials) stays.
    let partial: ServerConfig =
        serde_json::from_value(json!({"loglevel": "debug", "total_bandwidth": 1000000})).unwrap();
    let saved = c.config_save(&partial).await.unwrap();
    assert_eq!(saved.config.total_bandwidth, Some(1_000_000));
    let stored = node.server_config();
    assert_eq!(stored["loglevel"], "debug");
    assert_eq!(stored["edit_auth"]["login"], LOGIN);
    let after = c.config_stats().await.unwrap().config_version.unwrap();
    assert_eq!(after[0], version[0]);
    assert!(
        after[1] > version[1],
        "config_version must grow: {version:?} -> {after:?}"
    );

    // Headers every request carries.
    let counters = node.counters();
    assert_eq!(counters.last_originator.as_deref(), Some("panoptes"));
    assert!(counters.last_trace_id.is_some_and(|t| t.len() >= 16));
    with_trace_id("reconcile-42", c.config_stats())
        .await
        .unwrap();
    assert_eq!(
        node.counters().last_trace_id.as_deref(),
        Some("reconcile-42")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_lifecycle() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let c = client(node, admin());

    let body = node_stream_body("cam-1", &camera("fake://cam-1"));
    let saved = c.stream_save(&body).await.unwrap();
    assert_eq!(saved.name, "cam-1");
    assert_eq!(saved.named_by.as_deref(), Some("config"));
    assert!(is_managed(&saved));
    // The node stored exactly the body (minus $reset): no Watcher-only members.
    let stored = node.stored_stream("cam-1").unwrap();
    assert!(stored.get("vision").is_none() && stored.get("postal_address").is_none());
    assert!(stored["dvr"].get("redundancy_factor").is_none());
    assert_eq!(stored["labels"]["managed-by"], "panoptes");
    assert_eq!(drift(&body, saved.config_on_disk.as_ref()), Drift::InSync);
    // Effective config has defaults the disk config does not.
    assert!(saved.extra.contains_key("segment_duration"));
    assert_eq!(
        saved.stats.as_ref().and_then(|s| s.status.as_deref()),
        Some("waiting")
    );

    // Clock-driven life-cycle: running, alive, bitrate after the start delay.
    cluster.advance(Duration::from_secs(3));
    let got = c.stream_get("cam-1").await.unwrap();
    let stats = got.stats.unwrap();
    assert_eq!(stats.status.as_deref(), Some("running"));
    assert_eq!(stats.alive, Some(true));
    assert!(stats.bitrate.unwrap() > 0);
    assert!(stats.lifetime.unwrap() >= 2000.0);

    // Stop = restart for a static stream: lifetime resets, briefly waiting.
    c.stream_stop("cam-1").await.unwrap();
    let got = c.stream_get("cam-1").await.unwrap().stats.unwrap();
    assert_eq!(got.status.as_deref(), Some("waiting"));
    assert!(got.lifetime.unwrap() < 1000.0);

    // Partial save merges: inputs kept, title changed, comment added; null deletes.
    let patch = StreamBody::patch(
        "cam-1",
        json!({"title": "Gate 2", "comment": "c"})
            .as_object()
            .unwrap()
            .clone(),
    );
    c.stream_save(&patch).await.unwrap();
    let patch = StreamBody::patch(
        "cam-1",
        json!({"comment": null}).as_object().unwrap().clone(),
    );
    let got = c.stream_save(&patch).await.unwrap();
    let disk = got.config_on_disk.unwrap();
    assert_eq!(disk["title"], "Gate 2");
    assert!(disk.get("comment").is_none());
    assert_eq!(disk["inputs"][0]["url"], "fake://cam-1");
    assert!(matches!(drift(&body, Some(&disk)), Drift::Differs(p) if p == ["/title"]));

    // Full replace removes what the body does not have.
    let got = c
        .stream_save(&node_stream_body(
            "cam-1",
            &spec(json!({"static": true, "inputs": [{"url": "fake://x"}]})),
        ))
        .await
        .unwrap();
    let disk = got.config_on_disk.unwrap();
    assert!(disk.get("title").is_none() && disk.get("dvr").is_none());

    // Delete; 404 afterwards; deleting again is still Ok; stop of an unknown name is NotFound.
    c.stream_delete("cam-1").await.unwrap();
    assert!(matches!(
        c.stream_get("cam-1").await,
        Err(Error::NotFound { .. })
    ));
    node.reset_counters();
    c.stream_delete("cam-1").await.unwrap();
    assert_eq!(node.requests(), 1, "a 404 is not retried");
    let e = c.stream_stop("nope").await.unwrap_err();
    assert_eq!(e.category(), "not_found");
    assert_eq!(e.target().stream.as_deref(), Some("nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_slashes_are_escaped() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    node.update_behaviour(|b| b.raw_slash_names = false);
    let c = client(node, admin());
    c.stream_save(&node_stream_body("site/cam 1?x", &camera("fake://a")))
        .await
        .unwrap();
    assert!(node.stored_stream("site/cam 1?x").is_some());
    assert_eq!(
        c.stream_get("site/cam 1?x").await.unwrap().name,
        "site/cam 1?x"
    );
    c.stream_stop("site/cam 1?x").await.unwrap();
    c.stream_delete("site/cam 1?x").await.unwrap();
    assert!(node.stream_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_schemes_and_errors() {
    use base64::Engine;
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    node.set_tokens(&["api-token-1"]);

    let ok = [
        admin(),
        Credentials::bearer(
            base64::engine::general_purpose::STANDARD.encode(format!("{LOGIN}:{PASSWORD}")),
        ),
        Credentials::bearer("api-token-1"),
        Credentials::cluster("sim-cluster-key"),
    ];
    for creds in ok {
        let scheme = creds.scheme();
        client(node, creds)
            .stream_save(&node_stream_body("a", &camera("fake://a")))
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        assert_eq!(node.counters().last_auth_scheme.as_deref(), Some(scheme));
    }

    // Wrong or missing credentials: 401, never retried.
    for creds in [
        Credentials::basic(LOGIN, "wrong"),
        Credentials::None,
        Credentials::cluster("other-key"),
        Credentials::bearer("nope"),
    ] {
        node.reset_counters();
        let e = client(node, creds).config_stats().await.unwrap_err();
        assert_eq!(e.category(), "unauthorized", "{e}");
        assert!(!e.is_transient());
        assert_eq!(node.requests(), 1);
    }

    // view_auth reads but cannot write: 403.
    let viewer = client(node, Credentials::basic("viewer", "viewonly"));
    assert!(viewer.stream_get("a").await.is_ok());
    node.reset_counters();
    let e = viewer
        .stream_save(&node_stream_body("a", &camera("fake://b")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Forbidden { status: 403, .. }), "{e}");
    assert_eq!(
        viewer.stream_delete("a").await.unwrap_err().category(),
        "forbidden"
    );
    assert_eq!(node.requests(), 2);

    // Caller outside api_allowed_from: 403.
    node.set_api_allowed_from(&["10.0.0.0/8"]);
    assert_eq!(
        client(node, admin())
            .config_stats()
            .await
            .unwrap_err()
            .category(),
        "forbidden"
    );
    node.set_api_allowed_from(&["127.0.0.0/8"]);
    assert!(client(node, admin()).config_stats().await.is_ok());

    // Credential rotation on the node: the old password is now a 401 (one request, no retry loop).
    node.set_edit_auth("admin", "rotated");
    node.reset_counters();
    assert_eq!(
        client(node, admin())
            .config_stats()
            .await
            .unwrap_err()
            .category(),
        "unauthorized"
    );
    assert_eq!(node.requests(), 1);
    assert!(
        client(node, Credentials::basic("admin", "rotated"))
            .config_stats()
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_is_rejected_with_the_pointer() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let c = client(node, admin());

    let bad = StreamBody::replace(
        "cam",
        json!({"inputs": [{"url": "fake://a"}, {"priority": 2}]})
            .as_object()
            .unwrap()
            .clone(),
    );
    node.reset_counters();
    match c.stream_save(&bad).await.unwrap_err() {
        Error::Rejected {
            status,
            pointer,
            message,
            target,
            ..
        } => {
            assert_eq!(status, 400);
            assert_eq!(pointer.as_deref(), Some("/inputs/1/url"));
            assert!(message.contains("required"), "{message}");
            assert_eq!(target.stream.as_deref(), Some("cam"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(node.requests(), 1, "400 is never retried");

    let long_label = spec(
        json!({"static": true, "inputs": [{"url": "fake://a"}], "labels": {"k": "x".repeat(41)}}),
    );
    let e = c
        .stream_save(&node_stream_body("cam", &long_label))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Rejected { pointer: Some(p), .. } if p == "/labels/k"),
        "{e}"
    );

    let wrong_type = StreamBody::patch(
        "cam",
        json!({"dvr": {"expiration": "one week"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert!(
        matches!(c.stream_save(&wrong_type).await, Err(Error::Rejected { pointer: Some(p), .. }) if p == "/dvr/expiration")
    );

    // Non-JSON error bodies (a proxy's HTML page) still classify, with the raw text as message.
    node.update_faults(|f| f.error_body = ErrorBody::Html);
    let e = c.stream_save(&bad).await.unwrap_err();
    assert!(
        matches!(&e, Error::Rejected { pointer: None, message, .. } if message.contains("url is required")),
        "{e}"
    );
    node.update_faults(|f| f.error_body = ErrorBody::Text);
    assert_eq!(
        c.stream_get("missing").await.unwrap_err().category(),
        "not_found"
    );
    assert!(node.stored_stream("cam").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_external_is_reported_distinctly() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let c = client(node, admin());
    c.stream_save(&node_stream_body("cam", &camera("fake://a")))
        .await
        .unwrap();
    node.set_config_external(Some("http://backend.example/streams"));
    node.reset_counters();
    let e = c
        .stream_save(&node_stream_body("cam", &camera("fake://b")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ConfigExternal { .. }), "{e:?}");
    assert_eq!(e.category(), "config_external");
    assert_eq!(
        c.stream_delete("cam").await.unwrap_err().category(),
        "config_external"
    );
    assert_eq!(node.requests(), 2, "no retries on config_external");
    // Streams then show named_by external and are not Panoptes's to manage.
    let s = c.stream_get("cam").await.unwrap();
    assert_eq!(s.named_by.as_deref(), Some("external"));
    assert!(!is_managed(&s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_5xx_and_transport_errors() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let metrics = NodeMetrics::new();
    let c = NodeClient::new(config(node, admin()), metrics.clone()).unwrap();

    node.fail_next(2, 503);
    c.config_stats().await.unwrap();
    assert_eq!(node.requests(), 3);
    assert_eq!(metrics.count(node.hostname(), "server_error"), 2);
    assert_eq!(metrics.count(node.hostname(), "ok"), 1);

    // Gives up after max_attempts, with the last error.
    node.reset_counters();
    node.fail_next(100, 500);
    let e = c.stream_get("x").await.unwrap_err();
    assert!(matches!(e, Error::ServerError { status: 500, .. }), "{e}");
    assert!(e.is_transient());
    assert_eq!(node.requests(), 4);

    // An HTML 502 page is a server error too.
    node.reset_counters();
    node.update_faults(|f| {
        f.fail_next = 1;
        f.fail_next_status = 502;
        f.error_body = ErrorBody::Html;
    });
    c.config_stats().await.unwrap();
    assert_eq!(node.counters().by_status.get(&502), Some(&1));

    // A response cut mid-body (connection reset) is retried.
    node.clear_faults();
    c.stream_save(&node_stream_body("cam", &camera("fake://a")))
        .await
        .unwrap();
    node.reset_counters();
    node.update_faults(|f| f.truncate_next = 1);
    assert_eq!(c.stream_get("cam").await.unwrap().name, "cam");
    assert_eq!(node.requests(), 2);
    assert_eq!(metrics.count(node.hostname(), "unreachable"), 1);

    // Error rate: with retries most calls still succeed; every failure is a server_error.
    node.set_error_rate(0.3, 0);
    for _ in 0..10 {
        if let Err(e) = c.config_stats().await {
            assert_eq!(e.category(), "server_error");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_unreachable_nodes() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let mut cfg = config(node, admin());
    cfg.request_timeout = Duration::from_millis(200);
    cfg.retry = RetryPolicy {
        max_attempts: 2,
        ..fast_retry()
    };
    let c = NodeClient::new(cfg, NodeMetrics::new()).unwrap();

    node.set_hang(true);
    let started = Instant::now();
    let e = c.config_stats().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(node.requests(), 2, "timeouts are retried");
    node.set_hang(false);

    node.down().await;
    let e = c.config_stats().await.unwrap_err();
    assert_eq!(e.category(), "unreachable", "{e}");
    assert!(e.is_transient());
    node.up().await.unwrap();
    c.config_stats().await.unwrap();

    // A client built for a bad URL fails at construction, not at call time.
    assert!(
        NodeClient::new(
            NodeClientConfig::new("x", "not a url", admin()),
            NodeMetrics::new()
        )
        .is_err()
    );
    assert!(
        NodeClient::new(
            NodeClientConfig::new("x", "ftp://h", admin()),
            NodeMetrics::new()
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_node_does_not_delay_a_fast_one() {
    let cluster = Cluster::start(2).await.unwrap();
    let (slow, fast) = (cluster.node(0), cluster.node(1));
    slow.set_latency(Duration::from_millis(800));
    slow.set_max_concurrency(Some(1));
    let slow_client = client(slow, admin());
    let fast_client = client(fast, admin());

    let mut pending = Vec::new();
    for _ in 0..6 {
        let c = slow_client.clone();
        pending.push(tokio::spawn(async move { c.config_stats().await }));
    }
    eventually(
        Duration::from_secs(2),
        "slow requests in flight",
        || async { (slow.counters().in_flight >= 1).then_some(()) },
    )
    .await;

    let started = Instant::now();
    for _ in 0..20 {
        fast_client.config_stats().await.unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(700),
        "fast node took {took:?} while the slow node was busy"
    );
    assert!(
        slow.counters().in_flight >= 1,
        "the slow node should still be busy"
    );
    for p in pending {
        p.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_per_node_are_bounded() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    node.set_latency(Duration::from_millis(100));
    let mut cfg = config(node, admin());
    cfg.max_in_flight = 2;
    let c = NodeClient::new(cfg, NodeMetrics::new()).unwrap();
    let calls: Vec<_> = (0..6).map(|_| c.config_stats()).collect();
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    let counters = node.counters();
    assert_eq!(counters.total, 6);
    assert_eq!(counters.peak_in_flight, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_survives_churn() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let c = client(node, admin());
    let managed = json!({"static": true, "inputs": [{"url": "fake://x"}], "labels": {"managed-by": "panoptes"}});
    for i in 0..23 {
        node.drift_stream(&format!("cam-{i:02}"), managed.clone())
            .unwrap();
    }
    node.add_foreign_stream("published", "user", json!({}))
        .unwrap();
    node.add_foreign_stream(
        "pulled",
        "remote",
        json!({"inputs": [{"url": "m4f://origin/pulled"}]}),
    )
    .unwrap();

    // Whole list in one call (pages of 5 → 5 pages).
    node.reset_counters();
    let all = c.streams_list(&ListQuery::poll().limit(5)).await.unwrap();
    assert_eq!(all.len(), 25);
    assert_eq!(node.route_count("GET /streams"), 5);
    let named: BTreeMap<&str, &str> = all
        .iter()
        .map(|s| (s.name.as_str(), s.named_by.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(named["published"], "user");
    assert_eq!(named["pulled"], "remote");
    assert_eq!(all.iter().filter(|s| is_managed(s)).count(), 23);
    // Default order: configured streams first, by position.
    assert_eq!(all[0].name, "cam-00");

    // Walk page by page while streams come and go.
    let q = ListQuery::poll().limit(4);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = c.streams_page(&q, cursor.as_deref()).await.unwrap();
        assert!(page.estimated_count.is_some());
        seen.extend(page.streams.iter().map(|s| s.name.clone()));
        pages += 1;
        if pages == 2 {
            assert!(node.drift_delete_stream("cam-01")); // already seen
            assert!(node.drift_delete_stream("cam-15")); // not yet seen
            node.drift_stream("cam-new", managed.clone()).unwrap();
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no stream twice: {seen:?}");
    for i in (0..23).filter(|i| *i != 15) {
        assert!(
            seen.contains(&format!("cam-{i:02}")),
            "cam-{i:02} missing from {seen:?}"
        );
    }
    assert!(!seen.contains(&"cam-15".to_string()));
    assert!(seen.contains(&"published".to_string()) && seen.contains(&"pulled".to_string()));

    // Filters and select (23 - 2 deleted + 1 added).
    let only_config = c
        .streams_list(&ListQuery::poll().filter("named_by", "config"))
        .await
        .unwrap();
    assert_eq!(only_config.len(), 22);
    let labelled = c
        .streams_list(&ListQuery::poll().filter("labels.managed-by", "panoptes"))
        .await
        .unwrap();
    assert_eq!(labelled.len(), 22);
    let small = &only_config[0];
    assert!(small.config_on_disk.is_some());
    assert!(
        !small.extra.contains_key("segment_duration") && !small.extra.contains_key("inputs"),
        "{:?}",
        small.extra.keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_judged_against_config_on_disk() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    let c = client(node, admin());
    let desired = node_stream_body("cam", &camera("fake://cam"));
    c.stream_save(&desired).await.unwrap();
    let version = c.config_stats().await.unwrap().config_version.unwrap();

    let find = |list: Vec<panoptes::resources::wire::NodeStream>| {
        list.into_iter().find(|s| s.name == "cam")
    };
    let listed = find(c.streams_list(&ListQuery::poll()).await.unwrap()).unwrap();
    assert_eq!(
        drift(&desired, listed.config_on_disk.as_ref()),
        Drift::InSync
    );
    // The effective config is not what was written: comparing with it would be false drift.
    let effective = serde_json::to_value(c.stream_get("cam").await.unwrap()).unwrap();
    assert!(drift(&desired, Some(&effective)).needs_write());

    // A human edits the stream on the node: config_version moves, drift shows the member.
    node.drift_stream("cam", json!({"title": "by hand", "comment": "added"}))
        .unwrap();
    let after = c.config_stats().await.unwrap().config_version.unwrap();
    assert!(after[1] > version[1]);
    let listed = find(c.streams_list(&ListQuery::poll()).await.unwrap()).unwrap();
    assert_eq!(
        drift(&desired, listed.config_on_disk.as_ref()),
        Drift::Differs(vec!["/comment".into(), "/title".into()])
    );

    // Repair, then a human deletes it: Missing.
    c.stream_save(&desired).await.unwrap();
    assert_eq!(
        drift(
            &desired,
            c.stream_get("cam").await.unwrap().config_on_disk.as_ref()
        ),
        Drift::InSync
    );
    node.drift_delete_stream("cam");
    assert!(find(c.streams_list(&ListQuery::poll()).await.unwrap()).is_none());
    assert!(matches!(
        c.stream_get("cam").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_is_detected_by_instance_id_without_false_drift() {
    let cluster = Cluster::start(1).await.unwrap();
    let node = cluster.node(0);
    cluster.advance(Duration::from_secs(1));
    let c = client(node, admin());
    let desired = node_stream_body("cam", &camera("fake://cam"));
    c.stream_save(&desired).await.unwrap();
    node.add_foreign_stream("published", "user", json!({}))
        .unwrap();
    cluster.advance(Duration::from_secs(3));
    let before = c.config_stats().await.unwrap();
    assert_eq!(before.online_streams, Some(2));

    node.restart().await.unwrap();
    let after = c.config_stats().await.unwrap();
    assert_ne!(after.id, before.id, "a restart changes the instance id");
    assert_eq!(after.streamer_status.as_deref(), Some("starting"));
    assert!(after.uptime.unwrap() <= 1);
    assert_eq!(after.config_version.as_ref().unwrap()[1], 0);
    assert!(c.readiness().await.is_err());
    // Disk config survived: no drift. Runtime did not: the user stream is gone, stats restart.
    let s = c.stream_get("cam").await.unwrap();
    assert_eq!(drift(&desired, s.config_on_disk.as_ref()), Drift::InSync);
    assert_ne!(s.stats.and_then(|s| s.status), Some("running".into()));
    assert!(matches!(
        c.stream_get("published").await,
        Err(Error::NotFound { .. })
    ));
    cluster.advance(Duration::from_secs(3));
    let s = c.stream_get("cam").await.unwrap().stats.unwrap();
    assert_eq!(s.alive, Some(true));
    assert!(c.readiness().await.is_ok());

    // Restart into a broken config is visible in ServerStats.
    node.restart_broken(json!({"error": "bad_url", "line": 3, "col": 5, "path": ["streams", 0], "detail": "bad url"})).await.unwrap();
    let broken = c.config_stats().await.unwrap();
    assert_eq!(broken.streamer_status.as_deref(), Some("broken_config"));
    assert_eq!(broken.config_error.as_ref().unwrap()["line"], 3);
    assert!(!broken.text_alerts.unwrap().is_empty());
    assert_eq!(c.readiness().await.unwrap_err().category(), "server_error");
}
